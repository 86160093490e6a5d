"""The store seams' contract, written once: each backend subclasses these classes.

A subclass provides the ``vector_store``, ``document_store`` or ``stores`` (document store
and lexical store on one database) fixture; every test here then runs against it.
"""

from __future__ import annotations

import numpy as np
import pytest

from rag.errors import DocumentNotFoundError
from rag.store.base import DocumentStore, LexicalStore, VectorStore
from rag.types import Chunk, Document, EmbedderIdentity

DIM = 16


def unit(n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class VectorStoreContract:
    """Add, search (with and without allowed ids), remove, len."""

    @pytest.fixture
    def vector_store(self) -> VectorStore:
        raise NotImplementedError

    def test_add_search_len(self, vector_store: VectorStore) -> None:
        x = unit(60)
        ids = [i * 7 + 3 for i in range(60)]
        vector_store.add(ids, x)
        assert len(vector_store) == 60
        hits = vector_store.search(x[10], 5)
        assert len(hits) == 5
        assert hits[0][0] == ids[10]
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        exact = sorted(
            ((i, float(v @ x[10])) for i, v in zip(ids, x, strict=True)), key=lambda t: -t[1]
        )
        assert [i for i, _ in hits] == [i for i, _ in exact[:5]]

    def test_allowed_ids_restrict_and_keep_k(self, vector_store: VectorStore) -> None:
        x = unit(60, seed=1)
        ids = list(range(100, 160))
        vector_store.add(ids, x)
        allowed = {120, 130, 140}
        hits = vector_store.search(x[0], 3, allowed)
        assert {h[0] for h in hits} == allowed
        assert vector_store.search(x[0], 3, set()) == []

    def test_remove(self, vector_store: VectorStore) -> None:
        x = unit(30, seed=2)
        ids = list(range(1, 31))
        vector_store.add(ids, x)
        vector_store.remove([5, 999])  # unknown ids are ignored
        assert len(vector_store) == 29
        assert all(h[0] != 5 for h in vector_store.search(x[4], 10))
        vector_store.remove([])
        assert len(vector_store) == 29

    def test_empty(self, vector_store: VectorStore) -> None:
        assert len(vector_store) == 0
        assert vector_store.search(unit(1)[0], 5) == []


def _doc(doc_id: str, *, source: str | None = None, published: str | None = None) -> Document:
    return Document(
        doc_id=doc_id,
        text=f"Text von {doc_id}. Zweiter Satz.",
        title=f"Titel {doc_id}",
        url=f"https://example.org/{doc_id}",
        published=published,
        source=source,
        sources=("a", "b"),
        path=f"{doc_id}.md",
    )


def _chunks(doc_id: str, first_id: int, texts: list[str]) -> list[Chunk]:
    return [
        Chunk(
            chunk_id=first_id + i,
            doc_id=doc_id,
            ordinal=i,
            start=i * 10,
            end=i * 10 + len(t),
            text=t,
            context=f"Titel {doc_id}",
        )
        for i, t in enumerate(texts)
    ]


def put(
    store: DocumentStore,
    doc_id: str,
    first_id: int,
    texts: list[str],
    **meta: str | None,
) -> list[Chunk]:
    """Write one document with its chunks and windows in one transaction."""
    chunks = _chunks(doc_id, first_id, texts)
    store.begin()
    store.put_document(_doc(doc_id, **meta), f"hash-{doc_id}")
    store.put_chunks(chunks, unit(len(chunks), seed=first_id))
    store.put_windows({chunks[0].chunk_id: unit(2, seed=first_id + 1000)})
    store.commit()
    return chunks


class DocumentStoreContract:
    """Documents, chunks, vectors, windows, manifest and transactions."""

    @pytest.fixture
    def document_store(self) -> DocumentStore:
        raise NotImplementedError

    def test_commit_makes_a_document_and_its_chunks_visible(
        self, document_store: DocumentStore
    ) -> None:
        store = document_store
        before = store.generation()
        chunks = put(store, "d1", 10, ["Erster Absatz.", "Zweiter Absatz.", "Dritter."])
        assert store.generation() == before + 1
        assert store.get_document("d1") == _doc("d1")
        assert store.chunks_of("d1") == chunks
        assert store.chunk_ids_of("d1") == [10, 11, 12]
        assert store.get_chunks([12, 10, 99]) == {10: chunks[0], 12: chunks[2]}
        vecs = store.embeddings_for([10, 11, 12, 99])
        assert sorted(vecs) == [10, 11, 12]
        np.testing.assert_allclose(vecs[11], unit(3, seed=10)[1], atol=1e-6)
        windows = store.windows_for([10, 11], DIM)
        assert list(windows) == [10]
        assert windows[10].shape == (2, DIM)
        np.testing.assert_allclose(windows[10], unit(2, seed=1010), atol=1e-6)
        assert store.content_hash("d1") == "hash-d1"
        assert store.content_hash("nope") is None
        assert store.content_hashes() == {"d1": "hash-d1"}
        assert store.counts() == (1, 3)
        assert store.all_chunk_ids() == [10, 11, 12]
        [stored] = store.documents()
        assert (stored.document.doc_id, stored.content_sha256, stored.chunk_count) == (
            "d1",
            "hash-d1",
            3,
        )
        meta = store.document_meta(["d1", "nope"])
        assert list(meta) == ["d1"]
        assert meta["d1"].title == "Titel d1"
        batches = list(store.iter_embeddings(batch=2))
        assert [ids for ids, _ in batches] == [[10, 11], [12]]

    def test_rollback_leaves_nothing(self, document_store: DocumentStore) -> None:
        store = document_store
        generation = store.generation()
        store.begin()
        store.put_document(_doc("d2"), "h")
        store.put_chunks(_chunks("d2", 20, ["x"]), unit(1))
        store.rollback()
        assert store.doc_ids() == []
        assert store.counts() == (0, 0)
        assert store.generation() == generation
        with pytest.raises(DocumentNotFoundError):
            store.get_document("d2")

    def test_delete_document(self, document_store: DocumentStore) -> None:
        store = document_store
        put(store, "d1", 10, ["a b", "c d"])
        put(store, "d2", 20, ["e f"])
        store.begin()
        assert sorted(store.delete_document("d1")) == [10, 11]
        store.commit()
        assert store.doc_ids() == ["d2"]
        assert store.all_chunk_ids() == [20]
        assert store.embeddings_for([10, 11]) == {}
        assert store.windows_for([10], DIM) == {}

    def test_replacing_a_document_updates_its_row(self, document_store: DocumentStore) -> None:
        store = document_store
        put(store, "d1", 10, ["a"])
        store.begin()
        store.delete_document("d1")
        changed = Document(doc_id="d1", text="Neu.", title="Neu")
        store.put_document(changed, "h2")
        store.commit()
        assert store.get_document("d1") == changed
        assert store.content_hash("d1") == "h2"

    def test_filters(self, document_store: DocumentStore) -> None:
        store = document_store
        put(store, "d1", 10, ["a", "b"], source="taz", published="2025-01-10")
        put(store, "d2", 20, ["c"], source="zeit", published="2025-03-01")
        put(store, "d3", 30, ["d"])
        assert store.chunk_ids_matching(doc_ids=["d2", "d3"]) == {20, 30}
        assert store.chunk_ids_matching(sources=["taz"]) == {10, 11}
        assert store.chunk_ids_matching(published_from="2025-02-01") == {20}
        assert store.chunk_ids_matching(published_to="2025-02-01") == {10, 11}
        assert store.chunk_ids_matching(sources=["taz"], doc_ids=["d2"]) == set()
        assert store.chunk_ids_matching() == {10, 11, 20, 30}

    def test_duplicates_by_normalised_text(self, document_store: DocumentStore) -> None:
        store = document_store
        put(store, "d1", 10, ["Putin traf Trump.", "Anderes."])
        put(store, "d2", 20, ["putin  traf trump"])
        dups = store.duplicates_of([10, 11])
        assert list(dups) == [10]
        assert [c.chunk_id for c in dups[10]] == [20]

    def test_manifest(self, document_store: DocumentStore) -> None:
        store = document_store
        assert store.embedder_identity() is None
        identity = EmbedderIdentity(name="m", dimension=DIM, weights_sha256="abc")
        store.begin()
        store.set_embedder_identity(identity)
        store.set_meta("processing_version", 7)
        store.commit()
        assert store.embedder_identity() == identity
        assert store.get_meta("processing_version") == 7
        assert store.get_meta("missing") is None

    def test_reading_sees_one_snapshot(self, document_store: DocumentStore) -> None:
        store = document_store
        put(store, "d1", 10, ["a"])
        with store.reading():
            assert store.doc_ids() == ["d1"]
            assert store.counts() == (1, 1)


LEXICAL_DOCS = {
    1: "Präsidentschaftswahlen in den USA\nDie Wahlen finden im November 2024 statt.",
    2: "Russland und die Ukraine\nPutin traf Trump im März 2025 in Alaska.",
    3: "Wirtschaft\nDie Wirtschaftspolitik der Regierung stößt auf Kritik.",
    4: "Sport\nDer FC Barcelona gewinnt gegen Real Madrid mit 3:1.",
    5: "Klima\nDer Anteil der Migranten an der Bevölkerung wächst.",
}


class LexicalStoreContract:
    """German BM25: names, compound parts, removal, filters, vocabulary."""

    @pytest.fixture
    def stores(self) -> tuple[DocumentStore, LexicalStore]:
        raise NotImplementedError

    @pytest.fixture
    def lexical(self, stores: tuple[DocumentStore, LexicalStore]) -> LexicalStore:
        store, lexical = stores
        store.begin()
        lexical.add(list(LEXICAL_DOCS.items()))
        store.commit()
        return lexical

    def test_search_ranks_by_bm25(self, lexical: LexicalStore) -> None:
        assert len(lexical) == 5
        assert lexical.search("Putin und Trump", 3)[0][0] == 2
        # a compound part finds the compound ("Wahlen" in "Präsidentschaftswahlen")
        assert lexical.search("Wahlen", 5)[0][0] == 1
        assert lexical.search("Politik der Wirtschaft", 5)[0][0] == 3
        scores = [s for _, s in lexical.search("die Wahlen in der Ukraine", 5)]
        assert scores == sorted(scores, reverse=True)
        assert all(s > 0 for s in scores)

    def test_allowed_and_k(self, lexical: LexicalStore) -> None:
        assert [c for c, _ in lexical.search("Putin", 5, {1, 3})] == []
        assert lexical.search("Putin", 5, set()) == []
        assert lexical.search("Putin", 0) == []
        assert len(lexical.search("der die", 2)) <= 2

    def test_remove_and_readd(
        self, stores: tuple[DocumentStore, LexicalStore], lexical: LexicalStore
    ) -> None:
        store, _ = stores
        store.begin()
        lexical.remove([2, 77])
        store.commit()
        assert len(lexical) == 4
        assert lexical.search("Putin", 5) == []
        assert lexical.vocabulary({"putin"}) == {}
        store.begin()
        lexical.add([(2, LEXICAL_DOCS[2])])
        store.commit()
        assert lexical.search("Putin", 5)[0][0] == 2

    def test_rollback_drops_postings(
        self, stores: tuple[DocumentStore, LexicalStore], lexical: LexicalStore
    ) -> None:
        store, _ = stores
        store.begin()
        lexical.add([(9, "Grönland und Dänemark")])
        store.rollback()
        assert lexical.search("Grönland", 5) == []
        assert len(lexical) == 5
