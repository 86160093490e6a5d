"""The HTTP API on the PostgreSQL backend: tests/test_api.py's main routes, and two app
processes' worth of services sharing one database through real uvicorn servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from test_api import (
    test_add_search_and_delete_a_json_document,
    test_ask_returns_answer_with_offsets,
    test_ask_streams_passages_deltas_citations_done,
    test_list_and_read_documents,
    test_search_ranks_passages,
    test_top_k_is_capped_and_filters_apply,
)

from api.main import create_app
from rag.service import RagService
from rag.testing import FakeEmbedder

pytestmark = pytest.mark.slow  # starts a PostgreSQL server

__all__ = [  # run here against PostgreSQL
    "test_add_search_and_delete_a_json_document",
    "test_ask_returns_answer_with_offsets",
    "test_ask_streams_passages_deltas_citations_done",
    "test_list_and_read_documents",
    "test_search_ranks_passages",
    "test_top_k_is_capped_and_filters_apply",
]


def _pg_service(url: str, embedder: Any, documents: list[Any]) -> RagService:
    service = RagService(Path("unused"), embedder, database_url=url).open()
    if documents:
        service.add_documents(documents)
    return service


@pytest.fixture(scope="module")
def api_fake_service(new_postgres_database: Any, api_corpus: list[Any]) -> Iterator[RagService]:
    """Like conftest's, but on PostgreSQL: the demo corpus, shared read-only."""
    service = _pg_service(new_postgres_database(), FakeEmbedder(), api_corpus)
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(api_fake_service: RagService, api_settings: Any) -> Iterator[TestClient]:
    with TestClient(create_app(api_fake_service, api_settings())) as test_client:
        yield test_client


@pytest.fixture
def writable(
    new_postgres_database: Any, api_corpus: list[Any], api_settings: Any
) -> Iterator[TestClient]:
    service = _pg_service(new_postgres_database(), FakeEmbedder(), api_corpus)
    with TestClient(create_app(service, api_settings())) as test_client:
        yield test_client
    service.close()


def test_workers_sharing_the_database_see_each_others_writes(
    new_postgres_database: Any,
    embedder: Any,
    api_corpus: list[Any],
    api_settings: Any,
    serve_api: Any,
) -> None:
    """Two services (as two `rag serve --workers` processes have) on one database."""
    url = new_postgres_database()
    first = _pg_service(url, embedder, api_corpus[:1])
    second = _pg_service(url, embedder, [])
    doc = {
        "id": "neu/zebra",
        "title": "Zebrastreifen in Quakenbrück",
        "text": "Der Stadtrat von Quakenbrück beschloss am Montag neue Zebrastreifen.",
    }
    with (
        serve_api(create_app(first, api_settings())) as one,
        serve_api(create_app(second, api_settings())) as two,
    ):
        listed = httpx.get(f"{two}/v1/documents").json()
        assert listed["total"] == 1
        assert httpx.post(f"{one}/v1/documents", json=doc, timeout=60).status_code == 201
        found = httpx.post(f"{two}/v1/search", json={"query": "Zebrastreifen Quakenbrück"})
        assert found.json()["passages"][0]["doc_id"] == "neu/zebra"
        answer = httpx.post(
            f"{two}/v1/ask",
            json={"question": "Was beschloss der Stadtrat von Quakenbrück?"},
            timeout=60,
        ).json()
        assert any(c["doc_id"] == "neu/zebra" for c in answer["citations"]), answer
        assert httpx.delete(f"{two}/v1/documents/neu/zebra").status_code == 200
        gone = httpx.post(f"{one}/v1/search", json={"query": "Zebrastreifen Quakenbrück"}).json()
        assert all(p["doc_id"] != "neu/zebra" for p in gone["passages"])
        assert httpx.get(f"{one}/v1/documents/neu/zebra").status_code == 404
    first.close()
    second.close()
