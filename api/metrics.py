"""Prometheus metrics of one app, in its own registry (apps in one process don't collide).

Under ``rag serve --workers N`` every worker is its own process: the CLI sets
``PROMETHEUS_MULTIPROC_DIR``, prometheus_client then keeps each worker's values in files
there, and ``/metrics`` (whichever worker answers) adds up every worker's counters and
histograms; gauges give the maximum over live workers (``rag_ready`` the minimum).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from rag.store.index import IndexStats

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Request, pipeline and index metrics, rendered by ``GET /metrics``."""

    def __init__(self) -> None:
        # prometheus_client's own variable: it decides at import where values live.
        self.shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "Time until the last byte of the response was sent.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retrieval = Histogram(
            "rag_retrieval_duration_seconds",
            "Retrieval time per question or search.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generation = Histogram(
            "rag_generation_duration_seconds",
            "Answer generation (and citation checking) time per question.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.abstentions = Counter(
            "rag_abstentions", "Questions answered with an abstention.", registry=self.registry
        )
        self.documents = Gauge(
            "rag_index_documents",
            "Documents in the index.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.chunks = Gauge(
            "rag_index_chunks",
            "Passages in the index.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.index_bytes = Gauge(
            "rag_index_bytes",
            "Size of the index files.",
            ["file"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "rag_ready",
            "1 once the index and models are loaded.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )

    def observe_timings(self, timings_ms: dict[str, float], *, abstained: bool = False) -> None:
        if "retrieve" in timings_ms:
            self.retrieval.observe(timings_ms["retrieve"] / 1000)
        if "generate" in timings_ms:
            self.generation.observe(timings_ms["generate"] / 1000)
        if abstained:
            self.abstentions.inc()

    def set_index(self, stats: IndexStats) -> None:
        self.documents.set(stats.documents)
        self.chunks.set(stats.chunks)
        self.index_bytes.labels("sqlite").set(stats.sqlite_bytes)
        self.index_bytes.labels("faiss").set(stats.faiss_bytes)

    def render(self) -> bytes:
        if self.shared_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def close(self) -> None:
        """A worker that stops takes its gauges out of the merged view."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]


def _route_label(scope: Scope) -> str:
    # The template ("/v1/documents/{doc_id}"), never the raw path: bounded label values.
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path or "/"
    return "<unmatched>"


class MetricsMiddleware:
    """Counts every response (errors from outer middlewares included) and its duration."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = _route_label(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
