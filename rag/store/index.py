"""``Index``: chunks, embeds and writes documents into the stores, and searches them.

The stores come in through the constructor (see ``rag.store.base`` for the seams);
``rag.store.factory.open_index`` builds the embedded SQLite + FAISS default or the
PostgreSQL one. Writes commit in batches: a crash at any moment leaves the last committed
batch. A derived vector store (FAISS) is brought up to date after each commit and, through
``snapshots``, from the stored vectors when another process has written.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.embedding.base import Embedder
from rag.embedding.late import DEFAULT_WINDOW_VECTORS, WINDOW_VECTORS, WindowVectors
from rag.errors import DocumentNotFoundError, IndexMismatchError
from rag.ingest.chunking import chunk_document
from rag.ingest.loaders import Skipped
from rag.store.base import DocumentStore, LexicalStore, StoredDocument, VectorStore
from rag.store.passages import (
    WINDOW_SIZES,
    EmbeddedDocument,
    embed_chunks,
    embedding_text,
    window_texts,
)
from rag.store.reports import IndexStats, IngestReport, Progress
from rag.types import Chunk, Document, FloatArray

if TYPE_CHECKING:
    from rag.store.snapshots import FaissSnapshots

__all__ = [
    "PROCESSING_VERSION",
    "WINDOW_SIZES",
    "EmbeddedDocument",
    "Index",
    "IndexStats",
    "IngestReport",
    "Progress",
    "WriteLock",
    "content_hash",
    "embed_chunks",
    "embedding_text",
    "window_texts",
    "window_vectors_of",
]


class WriteLock(Protocol):
    """Excludes other writers (a file lock for the embedded index)."""

    def acquire(self, timeout: float | None) -> None: ...

    def release(self) -> None: ...


# Bumped when cleaning, sentence splitting, chunking or windows change what is stored for
# the same input: every document's hash changes and the manifest's version differs, so
# ingests re-process and re-embed (no vector reuse) until one run has covered every stored
# document. 2: clauses broken by a blank line. How window vectors are made is recorded
# apart (the manifest's window_vectors), with the same effect when it changes.
PROCESSING_VERSION = 2


def content_hash(doc: Document) -> str:
    """Hash of everything stored about a document: unchanged hash = nothing to do."""
    payload = json.dumps(
        [
            PROCESSING_VERSION,
            doc.doc_id,
            doc.text,
            doc.title,
            doc.url,
            doc.published,
            doc.source,
            list(doc.sources),
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def window_vectors_of(store: DocumentStore) -> object:
    """How the stored window vectors were made (``rag.embedding.late.WINDOW_VECTORS``)."""
    # Indexes from before late chunking embedded windows separately and recorded nothing.
    return store.get_meta("window_vectors") or "separate"


class Index:
    """Ingest into and search over a document store, a lexical index and a vector store."""

    def __init__(
        self,
        store: DocumentStore,
        lexical: LexicalStore,
        vectors: VectorStore,
        embedder: Embedder,
        *,
        max_tokens: int = 200,
        write_lock: WriteLock | None = None,
        snapshots: FaissSnapshots | None = None,
        location: str = "the index",
        window_vectors: WindowVectors = DEFAULT_WINDOW_VECTORS,
    ) -> None:
        if window_vectors not in WINDOW_VECTORS:
            raise ValueError(f"window_vectors must be one of {WINDOW_VECTORS}")
        self.window_vectors = window_vectors
        self.store = store
        self.lexical = lexical
        self.vectors = vectors
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.location = location
        self.snapshots = snapshots
        self._write_lock = write_lock
        self._reuse_vectors = True  # set per ingest run
        # Serialises updates of a derived vector store (this process's writer and the
        # refresh that picks up other processes' commits); searches never take it.
        self._sync_lock = threading.Lock()
        self._seen_generation = -1
        self._check_embedder()
        if snapshots is not None:
            self._seen_generation = store.generation()
            snapshots.load()

    @property
    def notes(self) -> list[str]:
        return self.snapshots.notes if self.snapshots is not None else []

    def _check_embedder(self) -> None:
        stored = self.store.embedder_identity()
        current = self.embedder.identity
        if stored is None or stored.same_model(current):
            return
        raise IndexMismatchError(
            f"{self.location} was built with embedding model {stored.name!r} "
            f"(dimension {stored.dimension}, weights {stored.weights_sha256[:12]}), but the "
            f"configured model is {current.name!r} (dimension {current.dimension}, weights "
            f"{current.weights_sha256[:12]}). Either set RAG_EMBEDDING_MODEL back to "
            f"{stored.name!r}, or rebuild the index with the new model: "
            f"`rag ingest --rebuild corpus/` (or delete {self.location})."
        )

    def refresh(self) -> None:
        """Pick up commits made by another process (cheap when nothing changed)."""
        if self.snapshots is None or self.store.generation() == self._seen_generation:
            return
        if not self._sync_lock.acquire(blocking=False):
            return  # this process's writer is updating it right now
        try:
            generation = self.store.generation()
            self.snapshots.sync()
            self._seen_generation = generation
        finally:
            self._sync_lock.release()

    def close(self) -> None:
        self.store.close()

    # -- writing ------------------------------------------------------------------
    def ingest(
        self,
        items: Iterable[Document | EmbeddedDocument | Skipped],
        *,
        batch_docs: int = 32,
        prune: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        lock_timeout: float | None = None,
    ) -> IngestReport:
        """Add new, replace changed and skip unchanged documents, committing in batches."""
        started = time.perf_counter()
        report = IngestReport()
        self._acquire(lock_timeout)
        try:
            self._start_run()
            seen: set[str] = set()
            batch: list[Document | EmbeddedDocument] = []
            done_docs = 0
            for item in items:
                if isinstance(item, Skipped):
                    report.skipped.append(item)
                    continue
                doc = item.document if isinstance(item, EmbeddedDocument) else item
                if doc.doc_id in seen:
                    report.skipped.append(
                        Skipped(doc.path or doc.doc_id, f"duplicate document id {doc.doc_id!r}")
                    )
                else:
                    seen.add(doc.doc_id)
                    batch.append(item)
                if len(batch) >= batch_docs:
                    done_docs += self._ingest_batch(batch, report, on_progress, done_docs)
                    batch = []
            if batch:
                done_docs += self._ingest_batch(batch, report, on_progress, done_docs)
            if prune:
                gone = [d for d in self.store.doc_ids() if d not in seen]
                if gone:
                    self._delete_locked(gone)
                    report.deleted.extend(gone)
            self._finish_run(seen, bool(report.added or report.updated or report.deleted))
        finally:
            self._release()
        report.seconds = time.perf_counter() - started
        return report

    def _acquire(self, timeout: float | None) -> None:
        if self._write_lock is not None:
            self._write_lock.acquire(timeout)

    def _release(self) -> None:
        if self._write_lock is not None:
            self._write_lock.release()

    def _start_run(self) -> None:
        if self.store.embedder_identity() is None:
            self.store.begin()
            try:
                self.store.set_embedder_identity(self.embedder.identity)
                self.store.set_meta("processing_version", PROCESSING_VERSION)
                self.store.set_meta("window_vectors", self.window_vectors)
                self.store.commit()
            except BaseException:
                self.store.rollback()
                raise
        # Set only after a run that covered every stored document: a run cut short, or one
        # over a few files, leaves old vectors that must not be reused next time either.
        self._reuse_vectors = (
            self.store.get_meta("processing_version") == PROCESSING_VERSION
            and window_vectors_of(self.store) == self.window_vectors
        )

    def _finish_run(self, seen: set[str], changed: bool) -> None:
        if not self._reuse_vectors and set(self.store.doc_ids()) <= seen:
            self.store.begin()
            self.store.set_meta("processing_version", PROCESSING_VERSION)
            self.store.set_meta("window_vectors", self.window_vectors)
            self.store.commit()
        if self.snapshots is not None:
            with self._sync_lock:
                self.snapshots.settle(changed)

    def _ingest_batch(
        self,
        items: list[Document | EmbeddedDocument],
        report: IngestReport,
        on_progress: Callable[[Progress], None] | None,
        done_before: int,
    ) -> int:
        embedded = {i.document.doc_id: i for i in items if isinstance(i, EmbeddedDocument)}
        docs = [i.document if isinstance(i, EmbeddedDocument) else i for i in items]
        hashes = {d.doc_id: content_hash(d) for d in docs}
        todo: list[tuple[Document, bool]] = []
        for doc in docs:
            old = self.store.content_hash(doc.doc_id)
            if old == hashes[doc.doc_id] and self._reuse_vectors:
                report.unchanged.append(doc.doc_id)
            else:
                todo.append((doc, old is not None))
        # A batch with nothing to write still reports progress: its documents are settled.
        generation = (
            self._commit(todo, embedded, hashes, report) if todo else self.store.generation()
        )
        if on_progress is not None:
            on_progress(
                Progress(
                    documents=done_before + len(docs),
                    chunks=report.chunks_total,
                    committed_doc_ids=tuple(d.doc_id for d, _ in todo),
                    generation=generation,
                )
            )
        return len(docs)

    def _commit(
        self,
        todo: list[tuple[Document, bool]],
        embedded: dict[str, EmbeddedDocument],
        hashes: dict[str, str],
        report: IngestReport,
    ) -> int:
        """Chunk, embed and write the new or changed documents; the generation written."""
        chunks_by_doc = {
            doc.doc_id: list(embedded[doc.doc_id].chunks)
            if doc.doc_id in embedded
            else chunk_document(doc, self.embedder.count_tokens, max_tokens=self.max_tokens)
            for doc, _ in todo
        }
        all_chunks = [c for cs in chunks_by_doc.values() for c in cs]
        given = [embedded[d.doc_id] for d, _ in todo if d.doc_id in embedded]
        vectors, windows = self._vectors_for(all_chunks, given, report)
        removed, generation = self._write_batch(todo, hashes, chunks_by_doc, vectors, windows)
        for doc, existed in todo:
            (report.updated if existed else report.added).append(doc.doc_id)
        self._after_commit(generation, removed, all_chunks, vectors)
        return generation

    def _vectors_for(
        self, chunks: list[Chunk], given: Sequence[EmbeddedDocument], report: IngestReport
    ) -> tuple[dict[int, FloatArray], dict[int, FloatArray]]:
        """Chunk and window vectors: given, reused where stored, or embedded now."""
        known, windows = self._given_vectors(given)
        # A changed document often keeps most paragraphs: reuse their stored vectors (not
        # across a PROCESSING_VERSION change: the same chunk text may now have other windows).
        if self._reuse_vectors:
            stored = self.store.embeddings_for(
                [c.chunk_id for c in chunks if c.chunk_id not in known]
            )
            known.update(stored)
            windows.update(self.store.windows_for(list(stored), self.embedder.identity.dimension))
        fresh = [c for c in chunks if c.chunk_id not in known]
        if fresh:
            new_vecs, new_wins = embed_chunks(self.embedder, fresh, self.window_vectors)
            known.update(zip((c.chunk_id for c in fresh), new_vecs, strict=True))
            windows.update(zip((c.chunk_id for c in fresh), new_wins, strict=True))
        n_given = sum(len(g.chunks) for g in given)
        report.chunks_embedded += len(fresh) + n_given
        report.chunks_reused += len(chunks) - len(fresh) - n_given
        report.chunks_total += len(chunks)
        return known, windows

    def _given_vectors(
        self, items: Sequence[EmbeddedDocument]
    ) -> tuple[dict[int, FloatArray], dict[int, FloatArray]]:
        """Vectors and windows of documents embedded elsewhere, checked for the dimension."""
        known: dict[int, FloatArray] = {}
        windows: dict[int, FloatArray] = {}
        dim = self.embedder.identity.dimension
        for item in items:
            for chunk, vec, win in zip(item.chunks, item.vectors, item.windows, strict=True):
                if vec.shape != (dim,) or (len(win) and win.shape[1] != dim):
                    raise IndexMismatchError(
                        f"{item.document.doc_id}: vectors of dimension {vec.shape[-1]} given "
                        f"for an index of dimension {dim}; embed with the index's model"
                    )
                known[chunk.chunk_id] = vec
                windows[chunk.chunk_id] = win
        return known, windows

    def _write_batch(
        self,
        todo: list[tuple[Document, bool]],
        hashes: dict[str, str],
        chunks_by_doc: dict[str, list[Chunk]],
        vectors: dict[int, FloatArray],
        windows: dict[int, FloatArray],
    ) -> tuple[list[int], int]:
        """One transaction: old versions out, documents, chunks, windows and postings in."""
        removed: list[int] = []
        self.store.begin()
        try:
            for doc, existed in todo:
                if existed:
                    old_ids = self.store.delete_document(doc.doc_id)
                    self.lexical.remove(old_ids)
                    removed.extend(old_ids)
                chunks = chunks_by_doc[doc.doc_id]
                self.store.put_document(doc, hashes[doc.doc_id])
                if chunks:
                    self.store.put_chunks(chunks, np.stack([vectors[c.chunk_id] for c in chunks]))
                    self.store.put_windows(
                        {c.chunk_id: windows[c.chunk_id] for c in chunks if c.chunk_id in windows}
                    )
                    self.lexical.add([(c.chunk_id, embedding_text(c)) for c in chunks])
            generation = self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        return removed, generation

    def _after_commit(
        self,
        generation: int,
        removed: Sequence[int],
        added: Sequence[Chunk],
        vectors: dict[int, FloatArray],
    ) -> None:
        """Bring a derived vector store up to the commit that made ``generation``."""
        if not self.vectors.follows_documents:
            return
        with self._sync_lock:
            if self.snapshots is not None and generation != self._seen_generation + 1:
                self.snapshots.sync()  # another process committed in between
            else:
                self.vectors.remove(removed)
                if added:
                    ids = [c.chunk_id for c in added]
                    self.vectors.add(ids, np.stack([vectors[i] for i in ids]))
            self._seen_generation = generation

    def delete(self, doc_ids: Sequence[str], *, lock_timeout: float | None = None) -> None:
        """Delete documents; raises DocumentNotFoundError for an unknown id (nothing deleted)."""
        self._acquire(lock_timeout)
        try:
            known = set(self.store.doc_ids())
            missing = [d for d in doc_ids if d not in known]
            if missing:
                raise DocumentNotFoundError(f"no document with id {missing[0]!r}")
            self._delete_locked(doc_ids)
            if self.snapshots is not None:
                with self._sync_lock:
                    self.snapshots.settle(True)
        finally:
            self._release()

    def _delete_locked(self, doc_ids: Sequence[str]) -> None:
        removed: list[int] = []
        self.store.begin()
        try:
            for doc_id in doc_ids:
                ids = self.store.delete_document(doc_id)
                self.lexical.remove(ids)
                removed.extend(ids)
            generation = self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        self._after_commit(generation, removed, [], {})

    # -- reading ------------------------------------------------------------------
    def dense_search(
        self, vector: FloatArray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        return self.vectors.search(vector, k, allowed)

    def lexical_search(
        self, query: str, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        return self.lexical.search(query, k, allowed)

    def documents(self) -> list[StoredDocument]:
        return self.store.documents()

    def stats(self) -> IndexStats:
        docs, chunks = self.store.counts()
        sqlite_bytes, faiss_bytes = self.snapshots.sizes() if self.snapshots else (0, 0)
        return IndexStats(
            documents=docs,
            chunks=chunks,
            generation=self.store.generation(),
            embedder=self.store.embedder_identity(),
            index_kind=str(getattr(self.vectors, "kind", type(self.vectors).__name__)),
            sqlite_bytes=sqlite_bytes,
            faiss_bytes=faiss_bytes,
            notes=tuple(self.notes),
            database_bytes=int(getattr(self.store, "size_bytes", lambda: 0)()),
        )
