"""Load: requests/s, error rate and latency of ``/v1/search`` under concurrent clients.

An asyncio load generator (``httpx.AsyncClient``) runs ``clients`` workers in a closed
loop, each sending its next request when the previous one answered, for ``seconds``. It
is bounded in time and count and talks to loopback only. The generator shares the CPU
with the server, so on this 2-core machine it takes some capacity away from it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

from bench import Section, fmt_bytes, latency_stats, log, rss_bytes

if TYPE_CHECKING:
    from bench.bench_http import Server

CLIENTS = 16
SECONDS = 30.0
MAX_REQUESTS = 50_000  # a hard cap, whatever the server's speed
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return self.requests - self.statuses.get("200", 0)

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "requests": self.requests,
            "requests_per_s": self.requests / self.seconds if self.seconds else 0.0,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "statuses": dict(self.statuses),
            "latency": latency_stats(self.latencies_s),
        }


async def _worker(
    client: httpx.AsyncClient,
    bodies: list[dict[str, Any]],
    offset: int,
    deadline: float,
    result: LoadResult,
) -> None:
    i = offset
    while time.perf_counter() < deadline and result.requests < MAX_REQUESTS:
        start = time.perf_counter()
        try:
            response = await client.post("/v1/search", json=bodies[i % len(bodies)])
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        result.latencies_s.append(time.perf_counter() - start)
        result.statuses[status] += 1
        i += 1


async def load_test(
    base_url: str, bodies: list[dict[str, Any]], *, clients: int = CLIENTS, seconds: float = SECONDS
) -> LoadResult:
    """``clients`` concurrent closed-loop clients POSTing ``/v1/search`` for ``seconds``."""
    host = urlparse(base_url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"the load test only targets loopback, not {host!r}")
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        started = time.perf_counter()
        result = LoadResult(clients, 0.0)
        await asyncio.gather(
            *(_worker(client, bodies, n * 7, started + seconds, result) for n in range(clients))
        )
        # Requests in flight at the deadline still count: divide by the real duration.
        result.seconds = time.perf_counter() - started
    return result


def load_section(server: Server, quick: bool) -> Section:
    """Run the load test against ``server`` with 1 client, then ``CLIENTS``, and compare."""
    from bench.bench_http import dev_questions

    bodies = [{"query": q, "top_k": 5} for q in dev_questions()]
    seconds = 5.0 if quick else SECONDS
    rss_before = rss_bytes(server.pid)
    log(f"load test: 1 client for {seconds:.0f} s")
    single = asyncio.run(load_test(server.url, bodies, clients=1, seconds=seconds)).summary()
    log(f"load test: {CLIENTS} clients for {seconds:.0f} s")
    result = asyncio.run(load_test(server.url, bodies, clients=CLIENTS, seconds=seconds))
    rss_after = rss_bytes(server.pid)
    summary = result.summary()
    section = Section("load")
    for label, run in (("1 client", single), (f"{CLIENTS} concurrent clients", summary)):
        lat = run["latency"]
        section.add(
            f"/v1/search, {label}, {seconds:.0f} s (closed loop)",
            f"{run['requests_per_s']:.1f} req/s, errors {run['error_rate']:.1%}",
            f"{run['requests']} requests; p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms (includes queueing)",
        )
    scaling = summary["requests_per_s"] / single["requests_per_s"] if single["requests"] else 0.0
    section.add(
        f"requests/s with {CLIENTS} clients / 1 client",
        f"{scaling:.2f}x",
        f"{summary['requests'] - summary['statuses'].get('200', 0)} errors under load",
    )
    section.add(
        "server RSS before / after load",
        f"{fmt_bytes(rss_before)} / {fmt_bytes(rss_after)}",
        "load generator runs on the same 2 cores",
    )
    section.data = {
        **summary,
        "single_client": single,
        "scaling": scaling,
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
    }
    return section


def run(quick: bool = False) -> list[Section]:
    """Standalone: start a server of its own (``bench_http`` reuses one for both)."""
    from bench.bench_http import serve

    with serve() as server:
        return [load_section(server, quick)]
