"""The on-disk index: incremental ingest, delete, damage handling, model identity, locking."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from rag.errors import DocumentNotFoundError, IndexBusyError, IndexCorruptError, IndexMismatchError
from rag.ingest.loaders import load_documents
from rag.store import factory
from rag.store.factory import is_fresh
from rag.store.index import Index
from rag.testing import FakeEmbedder
from rag.types import EmbedderIdentity

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS, folder)
    return folder


def open_index(path: Path) -> Index:
    return factory.open_index(path, FakeEmbedder())


def test_reingest_unchanged_embeds_nothing(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    first = index.ingest(load_documents([corpus]).documents)
    assert len(first.added) == 5
    assert first.chunks_embedded == first.chunks_total > 5
    second = index.ingest(load_documents([corpus]).documents)
    assert second.chunks_embedded == 0
    assert len(second.unchanged) == 5
    assert "0 chunks embedded" in second.summary()
    assert is_fresh(tmp_path / "idx", load_documents([corpus]).documents)
    index.close()


def test_a_new_processing_version_reprocesses_and_re_embeds_everything(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changed splitting may give the same chunk text other windows: nothing is reused."""
    index = open_index(tmp_path / "idx")
    first = index.ingest(load_documents([corpus]).documents)
    docs = load_documents([corpus]).documents
    monkeypatch.setattr("rag.store.index.PROCESSING_VERSION", 999)
    assert not is_fresh(tmp_path / "idx", docs)
    # a run over one file re-embeds it but leaves the others' old vectors marked as old
    one = index.ingest(docs[:1])
    assert one.chunks_embedded == one.chunks_total > 0
    assert index.store.get_meta("processing_version") != 999
    again = index.ingest(docs)
    assert len(again.updated) == 5
    assert again.chunks_embedded == again.chunks_total == first.chunks_total
    assert index.store.get_meta("processing_version") == 999
    assert index.ingest(docs).chunks_embedded == 0
    index.close()


def test_changed_file_replaces_its_chunks_and_reuses_vectors(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest(load_documents([corpus]).documents)
    path = corpus / "002_4f089928bdc79d71.txt"
    old_ids = set(index.store.chunk_ids_of("002_4f089928bdc79d71"))
    path.write_text(
        path.read_text(encoding="utf-8")
        + "\n\nEin ganz neuer Absatz über Gespräche in Genf am Ende des Artikels, "
        "der vorher nicht da war.\n",
        encoding="utf-8",
    )
    assert not is_fresh(tmp_path / "idx", load_documents([corpus]).documents)
    report = index.ingest(load_documents([corpus]).documents)
    assert report.updated == ["002_4f089928bdc79d71"]
    assert 1 <= report.chunks_embedded <= 2  # only the new/changed paragraph
    assert report.chunks_reused >= 1
    new_ids = set(index.store.chunk_ids_of("002_4f089928bdc79d71"))
    assert new_ids != old_ids
    assert set(index.vectors.ids().tolist()) == set(index.store.all_chunk_ids())
    assert any("Genf" in c.text for c in index.store.chunks_of("002_4f089928bdc79d71"))
    index.close()


def test_delete_and_unknown_id(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest(load_documents([corpus]).documents)
    index.delete(["003_70d3c8a4cd60ef26"])
    assert "003_70d3c8a4cd60ef26" not in index.store.doc_ids()
    assert set(index.vectors.ids().tolist()) == set(index.store.all_chunk_ids())
    assert index.lexical_search("Nord Stream", 5) == [] or all(
        cid in set(index.store.all_chunk_ids()) for cid, _ in index.lexical_search("Nord Stream", 5)
    )
    with pytest.raises(DocumentNotFoundError, match="nope"):
        index.delete(["nope"])
    index.close()


def test_damaged_faiss_file_is_rebuilt_from_sqlite(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest(load_documents([corpus]).documents)
    expected = set(index.store.all_chunk_ids())
    index.close()
    [faiss_file] = list((tmp_path / "idx").glob("faiss-*.index"))
    faiss_file.write_bytes(faiss_file.read_bytes()[: faiss_file.stat().st_size // 2])
    reopened = open_index(tmp_path / "idx")
    assert set(reopened.vectors.ids().tolist()) == expected
    assert any("damaged" in note and "rebuilt" in note for note in reopened.stats().notes)
    reopened.close()
    # The rebuilt snapshot verifies on the next open.
    again = open_index(tmp_path / "idx")
    assert again.stats().notes == ()
    again.close()


def test_damaged_manifest_gives_clear_error(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest(load_documents([corpus]).documents)
    index.close()
    with sqlite3.connect(tmp_path / "idx" / "index.sqlite3") as conn:
        conn.execute("UPDATE manifest SET value = '{broken' WHERE key = 'embedder'")
    with pytest.raises(IndexCorruptError, match=r"manifest.*ingest again"):
        open_index(tmp_path / "idx")


def test_truncated_database_gives_clear_error(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest(load_documents([corpus]).documents)
    index.close()
    db = tmp_path / "idx" / "index.sqlite3"
    db.write_bytes(db.read_bytes()[:3000])
    with pytest.raises(IndexCorruptError, match="damaged"):
        open_index(tmp_path / "idx")


def test_other_embedder_is_refused_with_instructions(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest(load_documents([corpus]).documents[:1])
    index.close()

    class Other(FakeEmbedder):
        @property
        def identity(self) -> EmbedderIdentity:
            return EmbedderIdentity(name="other-model", dimension=64, weights_sha256="abc")

    with pytest.raises(IndexMismatchError, match=r"rag ingest --rebuild"):
        factory.open_index(tmp_path / "idx", Other())


def test_second_writer_is_refused(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    other = open_index(tmp_path / "idx")
    other._acquire(None)
    try:
        with pytest.raises(IndexBusyError, match="another process"):
            index.ingest(load_documents([corpus]).documents, lock_timeout=0.1)
    finally:
        other._release()
    index.close()
    other.close()


def test_reader_sees_commits_of_another_writer(tmp_path: Path, corpus: Path) -> None:
    reader = open_index(tmp_path / "idx")
    writer = open_index(tmp_path / "idx")
    writer.ingest(load_documents([corpus]).documents)
    assert len(reader.vectors) == 0
    reader.refresh()
    assert set(reader.vectors.ids().tolist()) == set(writer.store.all_chunk_ids())
    reader.close()
    writer.close()


def test_index_takes_its_stores(tmp_path: Path, corpus: Path) -> None:
    from rag.store.lexical import LexicalIndex
    from rag.store.sqlite import SqliteStore
    from rag.testing import InMemoryVectorStore

    store = SqliteStore(tmp_path / "index.sqlite3")
    lexical = LexicalIndex(lambda: store.conn)
    store.begin()
    lexical.create_schema()
    store.commit()
    vectors = InMemoryVectorStore(64)
    index = Index(store, lexical, vectors, FakeEmbedder())
    index.ingest(load_documents([corpus]).documents)
    assert len(vectors) == store.counts()[1] > 0
    index.delete(["003_70d3c8a4cd60ef26"])
    assert len(vectors) == store.counts()[1]
    [(cid, _)] = index.dense_search(
        store.embeddings_for(store.all_chunk_ids()[:1])[store.all_chunk_ids()[0]], 1
    )
    assert cid == store.all_chunk_ids()[0]
    index.close()


def test_index_on_the_in_memory_fakes(corpus: Path) -> None:
    from rag.testing import InMemoryDocumentStore, InMemoryLexicalStore, InMemoryVectorStore

    store = InMemoryDocumentStore()
    index = Index(store, InMemoryLexicalStore(store), InMemoryVectorStore(64), FakeEmbedder())
    report = index.ingest(load_documents([corpus]).documents)
    assert report.added and len(index.vectors) == len(index.lexical) == store.counts()[1]
    assert index.ingest(load_documents([corpus]).documents).chunks_embedded == 0
    hits = index.lexical_search("Nord Stream", 3)
    assert hits and "Nord Stream" in store.get_chunks([hits[0][0]])[hits[0][0]].text
