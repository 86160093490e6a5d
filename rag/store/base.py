"""The store seams: what ``Index`` needs from a backend, as three small protocols.

``DocumentStore``
    The source of truth: documents, chunks with their vectors, sentence-window vectors,
    the manifest (embedder identity, generation, processing version) and transactions.
    Every write between ``begin()`` and ``commit()`` lands together or not at all.
``LexicalStore``
    The German BM25 index over chunk texts. It lives in the document store's database
    and writes inside the document store's open transaction, so chunks and postings
    commit together (a protocol of its own: the postings have their own layout and tests).
``VectorStore``
    Top-k inner-product search over chunk vectors, optionally restricted to allowed ids.
    ``follows_documents`` says who writes it: True for a derived in-memory index (FAISS)
    that ``Index`` keeps in step after each commit and can rebuild from the stored
    vectors; False for vectors that are rows of the document store's own database
    (pgvector), written by ``put_chunks`` in the batch's transaction, so ``Index`` never
    calls ``add``/``remove`` on them.

Backends: embedded SQLite (``SqliteStore`` + ``LexicalIndex``) with ``FaissVectorStore``;
PostgreSQL with pgvector (``rag.store.postgres``); in-memory fakes in ``rag.testing``.
``rag.store.factory.open_index`` builds an ``Index`` from a directory or a database URL.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from rag.errors import IndexCorruptError
from rag.types import Chunk, Document, EmbedderIdentity, FloatArray


@dataclass(frozen=True)
class StoredDocument:
    """A document row without its chunks."""

    document: Document
    content_sha256: str
    chunk_count: int


@dataclass(frozen=True)
class DocumentMeta:
    """The metadata a hit carries about its document."""

    title: str
    url: str | None
    published: str | None
    source: str | None


def text_key(text: str) -> str:
    """Hash of the text with case, punctuation and spacing removed (syndication detector)."""
    normal = re.sub(r"\W+", " ", text.casefold()).strip()
    return hashlib.sha256(normal.encode()).hexdigest()[:32]


class VectorStore(Protocol):
    """Id -> unit vector index answering top-k inner-product (cosine) queries."""

    follows_documents: bool

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(
        self, query: FloatArray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]: ...

    def __len__(self) -> int: ...


class LexicalStore(Protocol):
    """BM25 over analysed chunk texts; writes join the document store's transaction."""

    def add(self, items: Sequence[tuple[int, str]]) -> None: ...

    def remove(self, chunk_ids: Sequence[int]) -> None: ...

    def search(
        self, query: str, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]: ...

    def vocabulary(self, terms: Collection[str]) -> Mapping[str, int]: ...

    def __len__(self) -> int: ...


class DocumentStore(Protocol):
    """Documents, chunks, vectors and the manifest; the truth every other part derives from."""

    # -- transactions and change detection
    def begin(self) -> None: ...

    def commit(self) -> int: ...

    def rollback(self) -> None: ...

    def reading(self) -> AbstractContextManager[None]:
        """Reads inside see one committed snapshot (a search's several queries agree)."""
        ...

    def generation(self) -> int: ...

    def close(self) -> None: ...

    # -- manifest
    def embedder_identity(self) -> EmbedderIdentity | None: ...

    def set_embedder_identity(self, identity: EmbedderIdentity) -> None: ...

    def get_meta(self, key: str) -> object | None: ...

    def set_meta(self, key: str, value: object) -> None: ...

    # -- documents
    def content_hash(self, doc_id: str) -> str | None: ...

    def content_hashes(self) -> dict[str, str]: ...

    def put_document(self, doc: Document, content_sha256: str) -> None: ...

    def delete_document(self, doc_id: str) -> list[int]: ...

    def get_document(self, doc_id: str) -> Document: ...

    def documents(self) -> list[StoredDocument]: ...

    def doc_ids(self) -> list[str]: ...

    def document_meta(self, doc_ids: Iterable[str]) -> dict[str, DocumentMeta]: ...

    # -- chunks and vectors
    def put_chunks(self, chunks: Sequence[Chunk], vectors: FloatArray) -> None: ...

    def put_windows(self, windows: dict[int, FloatArray]) -> None: ...

    def windows_for(self, chunk_ids: Sequence[int], dimension: int) -> dict[int, FloatArray]: ...

    def embeddings_for(self, chunk_ids: Sequence[int]) -> dict[int, FloatArray]: ...

    def iter_embeddings(self, batch: int = 10_000) -> Iterator[tuple[list[int], FloatArray]]: ...

    def chunk_ids_of(self, doc_id: str) -> list[int]: ...

    def chunks_of(self, doc_id: str) -> list[Chunk]: ...

    def get_chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]: ...

    def duplicates_of(self, chunk_ids: Sequence[int]) -> dict[int, list[Chunk]]: ...

    def all_chunk_ids(self) -> list[int]: ...

    def chunk_ids_matching(
        self,
        *,
        doc_ids: Sequence[str] = (),
        sources: Sequence[str] = (),
        published_from: str | None = None,
        published_to: str | None = None,
    ) -> set[int]: ...

    def counts(self) -> tuple[int, int]: ...


def document_row(doc: Document, content_sha256: str) -> tuple[object, ...]:
    """A document's columns in the order both SQL stores write them."""
    return (
        doc.doc_id,
        doc.title,
        doc.url,
        doc.published,
        doc.source,
        json.dumps(list(doc.sources)),
        doc.path,
        doc.text,
        content_sha256,
    )


def identity_from_manifest(value: object, damaged: str) -> EmbedderIdentity | None:
    """The embedder identity stored in a manifest; ``IndexCorruptError(damaged)`` if unreadable."""
    if value is None:
        return None
    if isinstance(value, dict):
        try:
            return EmbedderIdentity(**value)
        except TypeError as exc:
            raise IndexCorruptError(damaged) from exc
    raise IndexCorruptError(damaged)
