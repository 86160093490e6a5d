"""The store contract (tests/store_contract.py) for the embedded backend and the fakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_contract import (
    DIM,
    DocumentStoreContract,
    LexicalStoreContract,
    VectorStoreContract,
)

from rag.store.faiss import FaissVectorStore
from rag.store.lexical import LexicalIndex
from rag.store.sqlite import SqliteStore
from rag.testing import InMemoryDocumentStore, InMemoryLexicalStore, InMemoryVectorStore


def _sqlite(path: Path) -> tuple[SqliteStore, LexicalIndex]:
    store = SqliteStore(path)
    lexical = LexicalIndex(lambda: store.conn)
    store.begin()
    lexical.create_schema()
    store.commit()
    return store, lexical


class TestFaissExact(VectorStoreContract):
    @pytest.fixture
    def vector_store(self) -> FaissVectorStore:
        return FaissVectorStore(DIM, "exact")


class TestFaissHnsw(VectorStoreContract):
    @pytest.fixture
    def vector_store(self) -> FaissVectorStore:
        return FaissVectorStore(DIM, "hnsw")


class TestInMemoryVectors(VectorStoreContract):
    @pytest.fixture
    def vector_store(self) -> InMemoryVectorStore:
        return InMemoryVectorStore(DIM)


class TestSqliteDocuments(DocumentStoreContract):
    @pytest.fixture
    def document_store(self, tmp_path: Path) -> Iterator[SqliteStore]:
        store = SqliteStore(tmp_path / "index.sqlite3")
        yield store
        store.close()


class TestSqliteLexical(LexicalStoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path) -> Iterator[tuple[SqliteStore, LexicalIndex]]:
        store, lexical = _sqlite(tmp_path / "index.sqlite3")
        yield store, lexical
        store.close()


class TestInMemoryDocuments(DocumentStoreContract):
    @pytest.fixture
    def document_store(self) -> InMemoryDocumentStore:
        return InMemoryDocumentStore()


class TestInMemoryLexical(LexicalStoreContract):
    @pytest.fixture
    def stores(self) -> tuple[InMemoryDocumentStore, InMemoryLexicalStore]:
        store = InMemoryDocumentStore()
        return store, InMemoryLexicalStore(store)
