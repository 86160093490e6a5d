"""``rag serve --workers N`` on PostgreSQL: N API processes under load, one index for all.

The real command in a child process, against a throwaway PostgreSQL (``bench_postgres``):

1. a document is added through the API (``POST /v1/documents``, answered by one worker);
2. right after, searches on fresh connections (so the kernel hands them to any worker) must
   all find it; which worker answered each is read from the workers' own metric files
   (prometheus_client keeps one per process), and every worker must have answered some;
3. ``CLIENTS`` closed-loop clients search for ``seconds``: no request may fail.

``python -m bench --only workers`` runs it at 4 workers, 16 clients, 60 s (not part of the
default run: four models and a minute of load); tests run it smaller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import MODEL_DIR, REPO_ROOT, Section, log

WORKERS = 4
CLIENTS = 16
SECONDS = 60.0
PROBES = 48  # fresh-connection searches right after the write
PROBE_DOC = {
    "id": "workers-probe",
    "title": "Quirinius der Zwergpinguin",
    "text": "Der Zwergpinguin Quirinius lebt seit dem Frühjahr im Zoo von Wuppertal. "
    "Er taucht jeden Morgen nach Heringen und schläft nachmittags auf einem Stein.",
}
PROBE_QUERY = "Wo lebt der Zwergpinguin Quirinius?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def searches_by_worker(metrics_dir: Path) -> Counter[str]:
    """``/v1/search`` requests each worker process answered so far (from its metric file)."""
    import json

    from prometheus_client.mmap_dict import MmapedDict

    counts: Counter[str] = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            name, _, labels, _ = json.loads(key)
            if name == "rag_http_requests" and labels.get("route") == "/v1/search":
                counts[pid] += int(value)
    return counts


def start(database_url: str, workers: int, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``rag serve --workers`` on ``database_url``; returns once every worker answers."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "RAG_DATABASE_URL": database_url,
        "RAG_MODEL_DIR": str(MODEL_DIR),
        "RAG_RATE_LIMIT_PER_MINUTE": "0",
        "TMPDIR": str(tmp),  # the server's metric files go here
    }
    cmd = [sys.executable, "-m", "rag.cli", "serve", "--workers", str(workers)]
    server = subprocess.Popen([*cmd, "--port", str(port)], env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    ready = 0
    # Readiness is per worker and any worker may answer: wait for a run of 200s.
    while ready < 4 * workers:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"rag serve --workers {workers} did not become ready")
        try:
            ok = httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            ok = False
        ready = ready + 1 if ok else 0
        time.sleep(0.05 if ok else 0.5)
    return server, base


def check_workers(
    database_url: str, tmp: Path, workers: int, clients: int, seconds: float
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns what they measured (asserts nothing)."""
    from bench.bench_load import load_test

    server, base = start(database_url, workers, tmp)
    try:
        metrics_dir = next(tmp.glob("rag-metrics-*"))
        added = httpx.post(f"{base}/v1/documents", json=PROBE_DOC, timeout=120).status_code
        before = searches_by_worker(metrics_dir)

        def probe(_: int) -> bool:
            with httpx.Client(base_url=base, timeout=60) as client:  # a new connection
                body = {"query": PROBE_QUERY, "top_k": 3}
                passages = client.post("/v1/search", json=body).json()["passages"]
                return bool(passages) and passages[0]["doc_id"] == PROBE_DOC["id"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            found = list(pool.map(probe, range(PROBES)))
        answered = searches_by_worker(metrics_dir) - before
        bodies = [{"query": q, "top_k": 5} for q in (PROBE_QUERY, "Zoo Wuppertal", "Heringe")]
        load = asyncio.run(load_test(base, bodies, clients=clients, seconds=seconds))
    finally:
        server.terminate()
        server.wait(60)
    return {
        "workers": workers,
        "add_status": added,
        "probes": len(found),
        "probes_found": sum(found),
        "workers_answering_probes": len(answered),
        "probes_per_worker": dict(answered),
        "load": load.summary(),
    }


def run(quick: bool = False) -> list[Section]:
    import tempfile

    from bench.bench_postgres import postgres

    workers, seconds = (2, 5.0) if quick else (WORKERS, SECONDS)
    section = Section("workers")
    with postgres() as (uri, _), tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        log(f"rag serve --workers {workers} on PostgreSQL, {CLIENTS} clients for {seconds:.0f} s")
        data = check_workers(uri, Path(tmp), workers, CLIENTS, seconds)
    load = data["load"]
    section.data = data
    section.add(
        f"a document added through one worker, then {data['probes']} searches on new connections",
        f"found by {data['probes_found']} of {data['probes']}",
        f"answered by {data['workers_answering_probes']} of {workers} workers: "
        f"{data['probes_per_worker']}",
    )
    section.add(
        f"/v1/search, {CLIENTS} clients for {seconds:.0f} s, {workers} workers on PostgreSQL",
        f"{load['requests']} requests, {load['requests'] - load['statuses'].get('200', 0)} errors",
        f"{load['requests_per_s']:.1f} req/s; p50 {load['latency']['p50_ms']:.0f} ms, "
        f"p95 {load['latency']['p95_ms']:.0f} ms; statuses {load['statuses']}",
    )
    return [section]
