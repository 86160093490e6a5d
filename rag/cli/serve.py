"""``rag serve``: bring the index up to date, then run the API (one process or several workers)."""

from __future__ import annotations

import argparse
import importlib
import os
import threading
from pathlib import Path

from rag.cli.commands import EXIT_OK, cmd_ingest
from rag.config import Settings
from rag.errors import ConfigError


def _check_workers(workers: int, settings: Settings) -> None:
    """Several API processes need an index they can all read and write: not the embedded one."""
    if workers > 1 and not settings.database_url:
        raise ConfigError(
            f"--workers {workers} needs the PostgreSQL backend (set RAG_DATABASE_URL): the "
            "embedded SQLite + FAISS index is written by one process, and each worker would "
            "serve its own copy of FAISS that misses the others' writes. Run one worker (it "
            "serves requests concurrently), or move the index to PostgreSQL."
        )


def _serve_workers(app: str, host: str, port: int, workers: int) -> None:
    """N uvicorn processes sharing the port; metrics merged, rate limits split between them."""
    import shutil
    import tempfile

    import uvicorn

    # The workers are spawned: they read these from the environment like any setting.
    metrics_dir = tempfile.mkdtemp(prefix="rag-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["RAG_WORKERS"] = str(workers)
    try:
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, log_level="info")
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    workers = args.workers or settings.workers
    _check_workers(workers, settings)
    # Importing sentence-transformers takes ~6 s; start it now so it overlaps with the
    # freshness check and uvicorn's start-up (the app's lifespan then finds it imported).
    threading.Thread(
        target=importlib.import_module, args=("sentence_transformers",), daemon=True
    ).start()
    if args.ingest:
        from rag.ingest.loaders import load_documents
        from rag.store.factory import is_fresh

        loaded = load_documents([Path(p) for p in args.ingest])
        if is_fresh(settings.index_dir, loaded.documents, settings.window_vectors):
            print(
                f"index in {settings.index_dir} is up to date ({len(loaded.documents)} documents)"
            )
        else:
            ingest = argparse.Namespace(
                paths=args.ingest,
                prune=True,
                rebuild=False,
                quiet=False,
                log_commits=False,
                ray=None,
            )
            cmd_ingest(ingest, settings)
    # An import string, so rag/ does not import api/ (the API layer depends on us).
    if workers > 1:
        _serve_workers("api.main:create_app", host, port, workers)
    else:
        uvicorn.run("api.main:create_app", factory=True, host=host, port=port, log_level="info")
    return EXIT_OK
