"""Probes and metrics: ``/healthz`` (process up), ``/readyz`` (loaded), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from api.deps import RuntimeDep
from api.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (it may still be loading)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Still loading, or loading failed"}},
)
async def readyz(runtime: RuntimeDep) -> Readiness | JSONResponse:
    """200 once the index and models are loaded; 503 until then (or if loading failed)."""
    loaded = runtime.loaded is not None and runtime.loaded.is_set()
    if not loaded or runtime.load_error is not None:
        body = Readiness(
            status="failed" if runtime.load_error else "loading", message=runtime.load_error
        )
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    stats = await run_in_threadpool(runtime.service.stats)
    runtime.metrics.set_index(stats)
    return Readiness(
        status="ready", documents=stats.documents, chunks=stats.chunks, model=runtime.model_info()
    )


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics: requests and latencies per route, pipeline timings, index size."""
    if runtime.loaded is not None and runtime.loaded.is_set() and runtime.load_error is None:
        runtime.metrics.set_index(await run_in_threadpool(runtime.service.stats))
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
