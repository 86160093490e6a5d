"""The PostgreSQL + pgvector backend against the store contract, on a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from store_contract import (
    DIM,
    DocumentStoreContract,
    LexicalStoreContract,
    VectorStoreContract,
    unit,
)

from rag.store.pg_lexical import PgLexicalIndex
from rag.store.pg_schema import MIGRATIONS, PgConnections, schema_version, upgrade
from rag.store.postgres import PgVectorStore, PostgresStore
from rag.types import Document, EmbedderIdentity

pytestmark = pytest.mark.slow  # starts a PostgreSQL server


@pytest.fixture
def connections(postgres_url: str) -> Iterator[PgConnections]:
    upgrade(postgres_url)
    db = PgConnections(postgres_url)
    yield db
    db.close()


class TestPostgresDocuments(DocumentStoreContract):
    @pytest.fixture
    def document_store(self, connections: PgConnections) -> PostgresStore:
        return PostgresStore(connections)


class TestPostgresLexical(LexicalStoreContract):
    @pytest.fixture
    def stores(self, connections: PgConnections) -> tuple[PostgresStore, PgLexicalIndex]:
        lexical = PgLexicalIndex(connections)
        lexical.check_analysis()
        return PostgresStore(connections), lexical


class TestPgVectorExact(VectorStoreContract):
    @pytest.fixture
    def vector_store(self, connections: PgConnections) -> PgVectorStore:
        return PgVectorStore(connections)


class TestPgVectorHnsw(VectorStoreContract):
    @pytest.fixture
    def vector_store(self, connections: PgConnections) -> PgVectorStore:
        store = PostgresStore(connections)
        store.begin()
        store.set_embedder_identity(EmbedderIdentity("m", DIM, "w"))
        store.commit()
        return PgVectorStore(connections, exact_below=0)  # always the HNSW index


def test_upgrade_is_idempotent_and_versioned(postgres_url: str) -> None:
    assert upgrade(postgres_url) == (0, len(MIGRATIONS))
    assert upgrade(postgres_url) == (len(MIGRATIONS), len(MIGRATIONS))
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert schema_version(conn) == len(MIGRATIONS)


def test_same_bm25_ranking_as_sqlite(connections: PgConnections, tmp_path) -> None:
    from store_contract import LEXICAL_DOCS

    from rag.store.lexical import LexicalIndex
    from rag.store.sqlite import SqliteStore

    sqlite = SqliteStore(tmp_path / "index.sqlite3")
    lite = LexicalIndex(lambda: sqlite.conn)
    pg = PgLexicalIndex(connections)
    pg_store = PostgresStore(connections)
    extra = {10 + i: f"Die Wahl {i} in der Ukraine und Russland, Bericht {i}." for i in range(20)}
    items = list(LEXICAL_DOCS.items()) + list(extra.items())
    sqlite.begin()
    lite.create_schema()
    lite.add(items)
    sqlite.commit()
    pg_store.begin()
    pg.add(items)
    pg_store.commit()
    for query in ("Wahlen Ukraine", "Putin Trump Alaska", "Bericht 7", "Wirtschaftspolitik"):
        a, b = lite.search(query, 10), pg.search(query, 10)
        assert [c for c, _ in a] == [c for c, _ in b], (query, a, b)
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9)
    sqlite.close()


def test_hnsw_agrees_with_exact(connections: PgConnections) -> None:
    store = PostgresStore(connections)
    store.begin()
    store.set_embedder_identity(EmbedderIdentity("m", DIM, "w"))
    store.commit()
    vectors = PgVectorStore(connections, exact_below=0)
    x = unit(500, seed=5)
    vectors.add(list(range(500)), x)
    hits = 0
    for q in unit(20, seed=6):
        approx = {c for c, _ in vectors.search(q, 10)}
        exact = {c for c, _ in vectors.exact_search(q, 10)}
        hits += len(approx & exact)
    assert hits / 200 >= 0.95


def test_index_on_postgres_ingests_searches_and_deletes(postgres_url: str, api_corpus) -> None:
    from rag.service import RagService
    from rag.testing import FakeEmbedder

    service = RagService(Path("unused"), FakeEmbedder(), database_url=postgres_url).open()
    report = service.add_documents(api_corpus)
    assert len(report.added) == len(api_corpus)
    assert service.index.store.counts()[1] == report.chunks_total
    assert len(service.index.vectors) == len(service.index.lexical) == report.chunks_total
    again = service.add_documents(api_corpus)
    assert again.chunks_embedded == 0 and len(again.unchanged) == len(api_corpus)
    hits = service.search("Nord Stream 2 Investoren", top_k=3)
    assert hits and "Nord Stream" in hits[0].chunk.text
    doc_id = api_corpus[0].doc_id
    service.delete_document(doc_id)
    assert doc_id not in {d.doc_id for d in service.list_documents()}
    assert all(h.chunk.doc_id != doc_id for h in service.search(api_corpus[0].title, top_k=10))
    assert service.stats().documents == len(api_corpus) - 1
    service.close()
    # a second process (here: a second service) opens the same database as it is
    reopened = RagService(Path("unused"), FakeEmbedder(), database_url=postgres_url).open()
    assert reopened.stats().chunks == len(reopened.index.vectors)
    reopened.close()


def test_another_model_is_refused(postgres_url: str, api_corpus) -> None:
    from rag.errors import IndexMismatchError
    from rag.service import RagService
    from rag.testing import FakeEmbedder

    service = RagService(Path("unused"), FakeEmbedder(), database_url=postgres_url).open()
    service.add_documents(api_corpus[:1])
    service.close()
    with pytest.raises(IndexMismatchError, match="rebuild"):
        RagService(Path("unused"), FakeEmbedder(dimension=32), database_url=postgres_url).open()


def test_unreachable_database_is_a_clear_error(tmp_path) -> None:
    from rag.errors import ConfigError
    from rag.store.factory import open_index
    from rag.testing import FakeEmbedder

    url = f"postgresql://postgres@/nope?host={tmp_path}"
    with pytest.raises(ConfigError, match="RAG_DATABASE_URL"):
        open_index(tmp_path, FakeEmbedder(), database_url=url)


def _ingest_process(corpus: Path, url: str, batch: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.crash_ingest", str(corpus), url, str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _complete_documents(url: str, corpus: Path) -> dict[str, bool]:
    """For each stored document: are its chunks, vectors, windows and postings all there?"""
    from rag.ingest.chunking import chunk_document
    from rag.ingest.loaders import iter_documents
    from rag.store.factory import open_index
    from rag.testing import FakeEmbedder

    embedder = FakeEmbedder()
    index = open_index(Path("."), embedder, database_url=url)
    try:
        stored = {d.document.doc_id: d.chunk_count for d in index.documents()}
        out = {}
        for doc in iter_documents([corpus]):
            if isinstance(doc, Document) and doc.doc_id in stored:
                want = [c.chunk_id for c in chunk_document(doc, embedder.count_tokens)]
                have = index.store.chunk_ids_of(doc.doc_id)
                vectors = index.store.embeddings_for(want)
                postings = index.lexical.search(doc.title, 1000, set(want))
                out[doc.doc_id] = sorted(have) == sorted(want) == sorted(vectors) and bool(postings)
        return out
    finally:
        index.close()


def test_two_ingest_processes_write_at_once_and_sigkill_leaves_no_partial_document(
    postgres_url: str, tmp_path: Path
) -> None:
    from test_crash import N_DOCS, write_corpus

    from rag.store.pg_schema import upgrade

    upgrade(postgres_url)  # as `rag db upgrade` would, before the writers start
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_corpus(first, 0)
    write_corpus(second, 1)
    write_corpus(third, 2)
    # different folders -> different document ids: rename the second and third sets
    for folder, prefix in ((second, "b"), (third, "c")):
        for path in folder.iterdir():
            path.rename(folder / f"{prefix}-{path.name}")
    procs = [_ingest_process(first, postgres_url, 4), _ingest_process(second, postgres_url, 4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    assert all('"done": true' in out for out, _ in outputs)
    complete = _complete_documents(postgres_url, first) | _complete_documents(postgres_url, second)
    assert len(complete) == 2 * N_DOCS and all(complete.values())

    killed = _ingest_process(third, postgres_url, 8)
    assert killed.stdout is not None
    first_commit = killed.stdout.readline()  # one batch committed, the next one in flight
    assert '"documents"' in first_commit
    time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    landed = _complete_documents(postgres_url, third)
    assert 8 <= len(landed) < N_DOCS  # killed mid-ingest, after the first batch
    assert all(landed.values())  # every document that is there is there completely
    assert len(landed) % 8 == 0  # whole batches only


def test_copy_an_embedded_index_into_postgres(
    postgres_url: str, tmp_path: Path, api_corpus
) -> None:
    from rag.store.factory import open_index
    from rag.store.transfer import copy_index
    from rag.testing import FakeEmbedder

    embedder = FakeEmbedder()
    source = open_index(tmp_path / "idx", embedder)
    source.ingest(api_corpus)
    target = open_index(tmp_path, embedder, database_url=postgres_url)
    report = copy_index(source, target)
    assert len(report.added) == len(api_corpus)
    assert target.store.counts() == source.store.counts()
    ids = source.store.all_chunk_ids()
    assert target.store.all_chunk_ids() == ids
    for cid in ids[:5]:
        np.testing.assert_allclose(
            target.store.embeddings_for([cid])[cid], source.store.embeddings_for([cid])[cid]
        )
    q = embedder.embed_queries(["Nord Stream Investoren"])[0]
    assert [c for c, _ in target.dense_search(q, 5)] == [c for c, _ in source.dense_search(q, 5)]
    assert [c for c, _ in target.lexical_search("Nord Stream", 5)] == [
        c for c, _ in source.lexical_search("Nord Stream", 5)
    ]
    again = copy_index(source, target)  # nothing changed: nothing written
    assert len(again.unchanged) == len(api_corpus) and not again.added
    source.close()
    target.close()
