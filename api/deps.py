"""Per-app state and the dependencies routes take (``ServiceDep``, ``SettingsDep`` ...)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import Depends, HTTPException, Request

from api.errors import scrub_paths
from api.metrics import Metrics
from api.schemas import ModelInfo
from api.security import PassageSigner
from rag.config import Settings
from rag.errors import RagError
from rag.service import RagService

log = logging.getLogger(__name__)

# How long a request waits for the index and models to finish loading before giving up.
LOAD_WAIT_S = 120.0


@dataclass
class Runtime:
    """Everything one app instance shares between requests."""

    settings: Settings
    service: RagService
    metrics: Metrics
    signer: PassageSigner
    owns_service: bool
    loaded: anyio.Event | None = None
    load_error: str | None = None
    # Set when loading failed with a library error, to answer with its status.
    load_exception: RagError | None = field(default=None, repr=False)

    async def load(self) -> None:
        """Open the service (models, index) in a worker thread; sets ``loaded`` when done."""
        assert self.loaded is not None
        try:
            await anyio.to_thread.run_sync(self._open_and_warm)
            self.metrics.ready.set(1)
        except RagError as exc:
            log.error("loading the index failed: %s", exc)
            self.load_error = scrub_paths(str(exc))
            self.load_exception = exc
        except Exception as exc:
            log.exception("loading the index failed")
            self.load_error = f"loading failed ({type(exc).__name__}); see the server log"
        finally:
            self.loaded.set()

    def _open_and_warm(self) -> None:
        self.service.open()
        # The first embedding pays for lazy model loading; do it now, not in a request.
        self.service.embed(["warm-up"], kind="query")
        self.metrics.set_index(self.service.stats())

    def model_info(self) -> ModelInfo:
        return ModelInfo(embedding=self.service.embedding_model_name, llm=self.service.llm_name)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_metrics(runtime: RuntimeDep) -> Metrics:
    return runtime.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_service(runtime: RuntimeDep) -> RagService:
    """The loaded service; waits while it is still loading."""
    if runtime.loaded is not None and not runtime.loaded.is_set():
        with anyio.move_on_after(LOAD_WAIT_S):
            await runtime.loaded.wait()
        if not runtime.loaded.is_set():
            raise HTTPException(
                503,
                "the index and models are still loading; retry shortly",
                headers={"Retry-After": "10"},
            )
    if runtime.load_exception is not None:
        raise runtime.load_exception
    if runtime.load_error is not None:
        raise HTTPException(503, runtime.load_error, headers={"Retry-After": "60"})
    return runtime.service


ServiceDep = Annotated[RagService, Depends(get_service)]


class Links:
    """Absolute links to this server's passage view (signed when API keys are set)."""

    def __init__(self, base_url: str, signer: PassageSigner) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer

    def passage(self, chunk_id: int, start: int | None = None, end: int | None = None) -> str:
        params: dict[str, int | str] = {}
        if start is not None and end is not None:
            params = {"start": start, "end": end}
        token = self.signer.sign(chunk_id, *((start, end) if params else (None, None)))
        if token is not None:
            params["token"] = token
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}/v1/passages/{chunk_id}{query}"


def get_links(request: Request, runtime: RuntimeDep) -> Links:
    base = runtime.settings.public_url or str(request.base_url)
    return Links(base, runtime.signer)


LinksDep = Annotated[Links, Depends(get_links)]
