"""``create_app()``: the FastAPI app; the lifespan loads the index and models once.

Run it with ``uvicorn --factory api.main:create_app`` (or ``rag serve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles

from api.deps import Runtime
from api.errors import install_error_handlers
from api.metrics import Metrics, MetricsMiddleware
from api.openai_schemas import pin_dimensions
from api.routes import ask, documents, health, openai, passages, web
from api.security import (
    AccessMiddleware,
    BodyLimitMiddleware,
    PassageSigner,
    RateLimiter,
    rate_policy,
)
from rag.config import Settings, get_settings
from rag.service import RagService

DESCRIPTION = """
Questions answered from the document corpus, with citations checked against the text.

* `POST /v1/ask` answers (JSON, or server-sent events with `"stream": true`);
  `POST /v1/search` returns ranked passages.
* `/v1/documents` lists, reads, adds and deletes documents.
* `/v1/chat/completions`, `/v1/models` and `/v1/embeddings` speak OpenAI's protocol;
  citations arrive as `url_citation` annotations on the `[n]` markers.
* `GET /v1/passages/{chunk_id}` shows a cited passage in its document.

With `RAG_API_KEYS` set, send `Authorization: Bearer KEY`.
"""


def _version() -> str:
    try:
        return version("rag-citations")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(service: RagService | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the app around ``service`` (default: one built from ``settings``).

    A service passed in is opened (if needed) but not closed at shutdown: its owner closes it.
    """
    settings = settings or get_settings()
    owns_service = service is None
    if service is None:
        service = RagService.from_settings(settings)
    keys = [k.get_secret_value() for k in settings.api_keys if k.get_secret_value()]
    runtime = Runtime(
        settings=settings,
        service=service,
        metrics=Metrics(),
        signer=PassageSigner(keys),
        owns_service=owns_service,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.loaded = anyio.Event()
        async with anyio.create_task_group() as tasks:
            # Load in the background: /healthz answers at once, /readyz says 503 until done.
            tasks.start_soon(runtime.load)
            yield
        runtime.metrics.close()
        if runtime.owns_service:
            await anyio.to_thread.run_sync(runtime.service.close)

    app = FastAPI(
        title="RAG citations API",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    _install_routes(app, protected=bool(keys))
    _install_middleware(app, settings, keys, runtime)
    _install_openapi(app, runtime)
    return app


def _install_openapi(app: FastAPI, runtime: Runtime) -> None:
    final: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        # The embedding model's dimension is known once the index is open; until then the
        # document is built afresh on every request.
        if "schema" in final:
            return final["schema"]
        app.openapi_schema = None
        schema = FastAPI.openapi(app)
        if runtime.service.ready:
            pin_dimensions(schema, runtime.service.embedder.identity.dimension)
            final["schema"] = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_routes(app: FastAPI, *, protected: bool) -> None:
    # Declares the bearer scheme in OpenAPI (for /docs); AccessMiddleware enforces it.
    deps = [Depends(HTTPBearer(auto_error=False))] if protected else []
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=deps)
    for module in (ask, documents, passages, openai):
        app.include_router(module.router, dependencies=deps)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")


def _install_middleware(
    app: FastAPI, settings: Settings, keys: list[str], runtime: Runtime
) -> None:
    # Added innermost first: CORS wraps everything, so even 401/413/429 carry its headers.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    per_minute, limit_loopback = rate_policy(settings.rate_limit_per_minute, bool(keys))
    app.add_middleware(
        AccessMiddleware,
        keys=keys,
        limiter=RateLimiter(per_minute, workers=settings.workers) if per_minute else None,
        signer=runtime.signer,
        limit_loopback=limit_loopback,
    )
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
