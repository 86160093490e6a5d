"""Several API processes: `rag serve --workers`, metrics merged across them, split rate limits."""

from __future__ import annotations

import concurrent.futures
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.security import RateLimiter
from rag.cli import main
from rag.config import get_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("argv", "env"), [(["--workers", "4"], {}), ([], {"RAG_WORKERS": "2"})])
def test_serve_refuses_workers_on_the_embedded_index(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    for key, value in {"RAG_INDEX_DIR": str(tmp_path), **env}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        started = time.monotonic()
        assert main(["serve", *argv]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "needs the PostgreSQL backend (set RAG_DATABASE_URL)" in err
    assert time.monotonic() - started < 5  # refused before anything loads or binds
    assert not any(tmp_path.iterdir())


def test_rate_limit_is_divided_between_workers() -> None:
    now = [0.0]
    limiter = RateLimiter(120, workers=4, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(30)] == [0.0] * 30
    assert limiter.hit("a") == pytest.approx(2.0)  # refills 30 per minute: one every 2 s
    now[0] += 2.0
    assert limiter.hit("a") == 0.0
    assert RateLimiter(2, workers=4).hit("b") == 0.0  # every worker lets one request through


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _count(metrics: str, route: str) -> float:
    pattern = rf'rag_http_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)'
    return sum(float(v) for v in re.findall(pattern, metrics))


@pytest.mark.slow
def test_metrics_add_up_over_uvicorn_worker_processes(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAG_INDEX_DIR": str(tmp_path / "index"),
        # Loading fails at once: /healthz and /metrics answer, and no worker loads a model.
        "RAG_EMBEDDING_MODEL": str(tmp_path / "no-model"),
        "RAG_MODEL_DIR": str(tmp_path / "models"),
        "RAG_RATE_LIMIT_PER_MINUTE": "0",
        "TMPDIR": str(tmp_path),  # where the server keeps the workers' metrics
    }
    code = (
        "from rag.cli.serve import _serve_workers; "
        f"_serve_workers('api.main:create_app', '127.0.0.1', {port}, 2)"
    )
    server = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/metrics", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.2)

        def hit(_: int) -> int:
            with httpx.Client() as client:  # a new connection each time: any worker may take it
                return client.get(f"{base}/healthz").status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(60))) == {200}
        metrics_dir = next(tmp_path.glob("rag-metrics-*"), None)
        assert metrics_dir is not None
        pids = {p.stem.split("_")[-1] for p in metrics_dir.glob("counter_*.db")}
        views = [httpx.get(f"{base}/metrics", timeout=5).text for _ in range(6)]
    finally:
        server.terminate()
        server.wait(30)
    assert len(pids) == 2, "both workers served requests"
    # Every view, whichever worker rendered it, counts the requests of both.
    assert all(_count(view, "/healthz") == 60 for view in views)
    assert not metrics_dir.exists()  # removed when the server stops


@pytest.mark.slow
def test_workers_on_postgres_share_one_index_under_load(postgres_url: str, tmp_path: Path) -> None:
    from bench.bench_workers import check_workers

    result = check_workers(postgres_url, tmp_path, workers=2, clients=8, seconds=5.0)
    assert result["add_status"] == 201
    # A write through one worker is found at once through both.
    assert result["probes_found"] == result["probes"]
    assert result["workers_answering_probes"] == 2
    load = result["load"]
    assert load["requests"] > 0 and load["statuses"] == {"200": load["requests"]}
