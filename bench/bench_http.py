"""Latency of ``/v1/search`` and ``/v1/ask`` (extractive) over HTTP on the demo corpus.

A real uvicorn server runs as a child process on 127.0.0.1 (a free port) over an index
built in a temporary directory by ``rag ingest``; requests come one at a time from an
``httpx.Client``. The same server then takes the load test (``bench.bench_load``), which
saves a second model load.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import (
    CORPUS_DIR,
    DEV_QUESTIONS,
    MODEL_DIR,
    REPO_ROOT,
    Section,
    fmt_bytes,
    fmt_latency,
    latency_stats,
    log,
    rss_bytes,
    stopwatch,
)

SEARCH_REQUESTS = 100
ASK_REQUESTS = 40
WARM_UP = 5


@dataclass(frozen=True)
class Server:
    """A running uvicorn child process."""

    url: str
    pid: int
    ingest_s: float
    startup_s: float


def dev_questions() -> list[str]:
    """The 20 questions of the shared dev set (German and English)."""
    lines = DEV_QUESTIONS.read_text("utf-8").splitlines()
    return [str(json.loads(line)["question"]) for line in lines if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(index_dir: Path) -> dict[str, str]:
    """Settings for the child processes: temp index, local model, no limits, no LLM."""
    env = dict(os.environ)
    env.update(
        RAG_INDEX_DIR=str(index_dir),
        RAG_MODEL_DIR=str(MODEL_DIR),
        RAG_LLM_MODEL="",
        RAG_API_KEYS="",
        RAG_RATE_LIMIT_PER_MINUTE="0",  # the load test would otherwise measure the limiter
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


@contextmanager
def serve(corpus: Path = CORPUS_DIR, ready_timeout_s: float = 240.0) -> Iterator[Server]:
    """Ingest ``corpus`` into a temp index and serve it with uvicorn on a free loopback port."""
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        work = Path(tmp)
        env = server_env(work / "index")
        # cwd = the temp dir, so a developer's .env in the repo does not leak into the numbers
        log("rag ingest of the demo corpus into a temp index")
        with stopwatch() as ingest:
            subprocess.run(
                [sys.executable, "-m", "rag.cli", "ingest", str(corpus), "--quiet"],
                cwd=work,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        port = free_port()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=work,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        log(f"uvicorn on {url}, waiting for /readyz")
        try:
            _wait_ready(url, proc, ready_timeout_s)
            yield Server(url, proc.pid, ingest[0], time.perf_counter() - started)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} while starting")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s")


def measure(
    client: httpx.Client, path: str, bodies: list[dict[str, Any]], n: int, server_key: str
) -> dict[str, Any]:
    """``n`` sequential POSTs (cycling through ``bodies``) after a warm-up."""
    for body in bodies[:WARM_UP]:
        client.post(path, json=body).raise_for_status()
    client_s: list[float] = []
    server_ms: list[float] = []
    errors = 0
    for i in range(n):
        start = time.perf_counter()
        response = client.post(path, json=bodies[i % len(bodies)])
        client_s.append(time.perf_counter() - start)
        if response.status_code != 200:
            errors += 1
            continue
        server_ms.append(float(response.json()["timings_ms"][server_key]))
    return {
        "client": latency_stats(client_s),
        "server": latency_stats([ms / 1000 for ms in server_ms]),
        "errors": errors,
    }


def run_latency(server: Server, quick: bool) -> Section:
    section = Section("http")
    questions = dev_questions()
    n_search = 10 if quick else SEARCH_REQUESTS
    n_ask = 5 if quick else ASK_REQUESTS
    rss_ready = rss_bytes(server.pid)
    log("sequential /v1/search and /v1/ask")
    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        search = measure(
            client,
            "/v1/search",
            [{"query": q, "top_k": 5} for q in questions],
            n_search,
            "retrieve",
        )
        ask = measure(
            client, "/v1/ask", [{"question": q, "top_k": 5} for q in questions], n_ask, "total"
        )
    rss_after = rss_bytes(server.pid)
    section.add(
        "demo corpus: `rag ingest` (5 articles, cold CLI incl. model load)",
        f"{server.ingest_s:.1f} s",
        f"server start until /readyz 200: {server.startup_s:.1f} s",
    )
    for name, result in (("/v1/search top 5", search), ("/v1/ask extractive top 5", ask)):
        client, inside = result["client"], result["server"]
        section.add(
            f"HTTP {name}, sequential (n={client['n']})",
            fmt_latency(client),
            f"in-handler p50 {inside['p50_ms']:.1f} ms; errors {result['errors']}",
        )
    section.add(
        "server RSS (ready / after latency runs)",
        f"{fmt_bytes(rss_ready)} / {fmt_bytes(rss_after)}",
        "uvicorn, 1 worker, model of the default backend loaded",
    )
    section.data = {
        "search": search,
        "ask": ask,
        "ingest_s": server.ingest_s,
        "startup_s": server.startup_s,
        "server_rss_ready": rss_ready,
        "server_rss_after": rss_after,
    }
    return section


def run(quick: bool = False) -> list[Section]:
    from bench import bench_load
    from bench.bench_paired import paired_section

    with serve() as server:
        latency = run_latency(server, quick)
        paired = paired_section(server, dev_questions(), quick)
        load = bench_load.load_section(server, quick)
    return [latency, paired, load]
