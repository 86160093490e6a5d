"""The on-disk index: SQLite (truth) + lexical postings + a FAISS index derived from it.

Layout of the index directory::

    index.sqlite3              documents, chunks, embeddings, lexical postings, manifest
    faiss-<gen>-<sha16>.index  FAISS snapshot of generation <gen>; a start-up cache only
    write.lock                 one writer at a time

Writes commit in batches; a crash at any moment leaves the last committed batch, and
FAISS is patched from SQLite on the next open (or rebuilt when its file is damaged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from rag.embedding.base import Embedder
from rag.errors import (
    DocumentNotFoundError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
)
from rag.ingest.chunking import chunk_document
from rag.ingest.loaders import Skipped
from rag.store.faiss import FaissVectorStore, IndexKind, choose_kind
from rag.store.lexical import LexicalIndex
from rag.store.sqlite import SqliteStore, StoredDocument
from rag.text.sentences import split_sentences
from rag.types import Chunk, Document, EmbedderIdentity, FloatArray

log = logging.getLogger(__name__)

DB_NAME = "index.sqlite3"
_FAISS_FILE = re.compile(r"^faiss-(\d+)-([0-9a-f]{16})\.index$")


@dataclass
class IngestReport:
    """What an ingest did; printed by ``rag ingest`` and returned by the API."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted, "
            f"{len(self.skipped)} skipped; {self.chunks_embedded} chunks embedded, "
            f"{self.chunks_reused} reused, {self.chunks_total} chunks written "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Progress:
    """Ingest progress, reported after every committed batch."""

    documents: int
    chunks: int
    committed_doc_ids: tuple[str, ...]
    generation: int


@dataclass(frozen=True)
class IndexStats:
    documents: int
    chunks: int
    generation: int
    embedder: EmbedderIdentity | None
    index_kind: str
    sqlite_bytes: int
    faiss_bytes: int
    notes: tuple[str, ...] = ()


# Bumped when cleaning, sentence splitting, chunking or windows change what is stored for
# the same input: every document's hash changes and the manifest's version differs, so
# ingests re-process and re-embed (no vector reuse) until one run has covered every stored
# document. 2: clauses broken by a blank line.
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


def is_fresh(directory: Path, docs: Sequence[Document]) -> bool:
    """True when the index holds exactly ``docs``, unchanged (checked without any model)."""
    db = directory / DB_NAME
    if not db.exists():
        return False
    store = SqliteStore(db)
    try:
        if store.embedder_identity() is None:
            return False
        return store.content_hashes() == {d.doc_id: content_hash(d) for d in docs}
    finally:
        store.close()


def embedding_text(chunk: Chunk) -> str:
    """What the embedder sees: the headline as context, then the passage."""
    if chunk.context and not chunk.text.startswith(chunk.context):
        return f"{chunk.context}\n{chunk.text}"
    return chunk.text


WINDOW_SIZES = (1, 2)  # sentences per window; measured in README (dev.jsonl, GermanQuAD)


def window_texts(chunk: Chunk, sizes: Sequence[int] = WINDOW_SIZES) -> list[str]:
    """Runs of ``sizes`` neighbouring sentences of a chunk, each with the headline.

    One sentence's fact is diluted in the vector of a 200-token passage, so the retriever
    also scores a chunk by its best window. A run as long as the chunk is left out (the
    chunk's own vector covers it); a one-sentence chunk has no windows.
    """
    spans = split_sentences(chunk.text)
    prefix = f"{chunk.context}\n" if chunk.context else ""
    return [
        prefix + chunk.text[spans[i][0] : spans[i + size - 1][1]]
        for size in sizes
        if size < len(spans)
        for i in range(len(spans) - size + 1)
    ]


def embed_chunks(
    embedder: Embedder, chunks: Sequence[Chunk]
) -> tuple[list[FloatArray], list[FloatArray]]:
    """Each chunk's vector and its windows' vectors (one array per chunk, possibly empty).

    The one place chunks are embedded: ``Index.ingest`` and the Ray bulk ingest both call it,
    so the two paths store identical vectors.
    """
    texts = [embedding_text(c) for c in chunks]
    wins = [window_texts(c) for c in chunks]
    # One call: the embedder batches chunks and windows together.
    vecs = embedder.embed_passages(texts + [t for w in wins for t in w])
    windows: list[FloatArray] = []
    at = len(chunks)
    for win in wins:
        windows.append(vecs[at : at + len(win)])
        at += len(win)
    return list(vecs[: len(chunks)]), windows


@dataclass(frozen=True)
class EmbeddedDocument:
    """A document chunked and embedded elsewhere (e.g. on Ray), ready for ``Index.ingest``.

    ``vectors[i]`` and ``windows[i]`` are what ``embed_chunks`` returns for ``chunks[i]``;
    the Index writes them as they are (it checks only the vector dimension).
    """

    document: Document
    chunks: tuple[Chunk, ...]
    vectors: tuple[FloatArray, ...]
    windows: tuple[FloatArray, ...]


class Index:
    """Open (or create) the index in ``directory`` for use with ``embedder``."""

    def __init__(
        self,
        directory: Path,
        embedder: Embedder,
        *,
        ann: str = "auto",
        ann_threshold: int = 200_000,
        max_tokens: int = 200,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.directory = directory
        self.embedder = embedder
        self.ann = ann
        self.ann_threshold = ann_threshold
        self.max_tokens = max_tokens
        self.lock_timeout_s = lock_timeout_s
        self.notes: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(directory / DB_NAME)
        self.lexical = LexicalIndex(self.store.conn)
        self._lock = FileLock(str(directory / "write.lock"))
        self.store.begin()
        try:
            self.lexical.create_schema()
            self.store.conn.execute("COMMIT")
        except BaseException:
            self.store.rollback()
            raise
        self._check_embedder()
        self.vectors = FaissVectorStore(embedder.identity.dimension, "exact")
        self._seen_version = -1
        self._reuse_vectors = True  # set per ingest run
        self._load_vectors()

    # -- opening ------------------------------------------------------------------
    def _check_embedder(self) -> None:
        stored = self.store.embedder_identity()
        current = self.embedder.identity
        if stored is None:
            return
        if not stored.same_model(current):
            raise IndexMismatchError(
                f"the index in {self.directory} was built with embedding model {stored.name!r} "
                f"(dimension {stored.dimension}, weights {stored.weights_sha256[:12]}), but the "
                f"configured model is {current.name!r} (dimension {current.dimension}, weights "
                f"{current.weights_sha256[:12]}). Either set RAG_EMBEDDING_MODEL back to "
                f"{stored.name!r}, or rebuild the index with the new model: "
                f"`rag ingest --rebuild corpus/` (or delete {self.directory / DB_NAME})."
            )

    def _faiss_files(self) -> list[tuple[int, str, Path]]:
        found = []
        for path in self.directory.glob("faiss-*.index"):
            match = _FAISS_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), match.group(2), path))
        return sorted(found, reverse=True)

    def _load_vectors(self) -> None:
        """Load the newest FAISS snapshot that verifies, then patch it up to SQLite."""
        generation = self.store.generation()
        self._seen_version = self.store.data_version()
        for gen, sha16, path in self._faiss_files():
            if gen > generation:
                continue  # written by a writer whose commit never happened? ignore
            try:
                store = FaissVectorStore.load(path)
                if hashlib.sha256(path.read_bytes()).hexdigest()[:16] != sha16:
                    raise IndexCorruptError(f"{path.name} does not match its checksum")
            except IndexCorruptError as exc:
                note = f"FAISS file damaged ({exc}); rebuilt from SQLite"
                log.warning(note)
                self.notes.append(note)
                continue
            self.vectors = store
            break
        changed = self._sync_vectors()
        wanted = choose_kind(self.ann, len(self.vectors), self.ann_threshold)
        if wanted != self.vectors.kind:
            self.rebuild_vectors(wanted)
        elif changed or not self._faiss_files():
            self._save_vectors()

    def _sync_vectors(self) -> bool:
        """Make the FAISS ids equal to the SQLite chunk ids; True if anything changed."""
        truth = np.asarray(self.store.all_chunk_ids(), dtype=np.int64)
        have = self.vectors.ids()
        extra = np.setdiff1d(have, truth, assume_unique=True)
        missing = np.setdiff1d(truth, have, assume_unique=True)
        if len(extra):
            self.vectors.remove(extra)
        if len(missing):
            vecs = self.store.embeddings_for([int(i) for i in missing])
            self.vectors.add(list(vecs), np.stack(list(vecs.values())))
        return bool(len(extra) or len(missing))

    def _save_vectors(self) -> None:
        generation = self.store.generation()
        data = self.vectors.to_bytes()
        sha = hashlib.sha256(data).hexdigest()[:16]
        path = self.directory / f"faiss-{generation}-{sha}.index"
        self.vectors.save(path)
        for _, _, old in self._faiss_files():
            if old != path:
                old.unlink(missing_ok=True)

    def rebuild_vectors(self, kind: IndexKind | None = None) -> None:
        """Rebuild the FAISS index from the embeddings in SQLite."""
        kind = kind or choose_kind(self.ann, self.store.counts()[1], self.ann_threshold)
        ids: list[int] = []
        parts: list[FloatArray] = []
        for batch_ids, batch_vecs in self.store.iter_embeddings():
            ids.extend(batch_ids)
            parts.append(batch_vecs)
        dim = self.embedder.identity.dimension
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        self.vectors = FaissVectorStore.build(ids, vectors, kind)
        if not parts:
            self.vectors = FaissVectorStore(dim, kind)
        self._save_vectors()

    def refresh(self) -> None:
        """Pick up commits made by another process (cheap when nothing changed)."""
        version = self.store.data_version()
        if version != self._seen_version:
            self._seen_version = version
            self._sync_vectors()

    def close(self) -> None:
        self.store.close()

    # -- writing ------------------------------------------------------------------
    def _acquire(self, timeout: float | None) -> None:
        try:
            self._lock.acquire(timeout=self.lock_timeout_s if timeout is None else timeout)
        except Timeout as exc:
            raise IndexBusyError(
                f"another process is writing to the index in {self.directory}; try again "
                "when it has finished"
            ) from exc

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
            if self.store.embedder_identity() is None:
                self.store.begin()
                self.store.set_embedder_identity(self.embedder.identity)
                self.store.set_meta("processing_version", PROCESSING_VERSION)
                self.store.commit()
            # Set only after a run that covered every stored document: a run cut short, or one
            # over a few files, leaves old vectors that must not be reused next time either.
            self._reuse_vectors = self.store.get_meta("processing_version") == PROCESSING_VERSION
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
                    continue
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
            if not self._reuse_vectors and set(self.store.doc_ids()) <= seen:
                self.store.begin()
                self.store.set_meta("processing_version", PROCESSING_VERSION)
                self.store.commit()
            wanted = choose_kind(self.ann, len(self.vectors), self.ann_threshold)
            if wanted != self.vectors.kind:
                self.rebuild_vectors(wanted)
            elif report.added or report.updated or report.deleted:
                self._save_vectors()
        finally:
            self._lock.release()
        report.seconds = time.perf_counter() - started
        return report

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
        if not todo:
            return len(docs)
        chunks_by_doc = {
            doc.doc_id: list(embedded[doc.doc_id].chunks)
            if doc.doc_id in embedded
            else chunk_document(doc, self.embedder.count_tokens, max_tokens=self.max_tokens)
            for doc, _ in todo
        }
        all_chunks = [c for cs in chunks_by_doc.values() for c in cs]
        known, windows = self._given_vectors(
            [embedded[d.doc_id] for d, _ in todo if d.doc_id in embedded]
        )
        # A changed document often keeps most paragraphs: reuse their stored vectors (not
        # across a PROCESSING_VERSION change: the same chunk text may now have other windows).
        if self._reuse_vectors:
            wanted = [c.chunk_id for c in all_chunks if c.chunk_id not in known]
            stored = self.store.embeddings_for(wanted)
            known.update(stored)
            windows.update(self.store.windows_for(list(stored), self.embedder.identity.dimension))
        fresh = [c for c in all_chunks if c.chunk_id not in known]
        if fresh:
            new_vecs, new_wins = embed_chunks(self.embedder, fresh)
            for chunk, vec, win in zip(fresh, new_vecs, new_wins, strict=True):
                known[chunk.chunk_id] = vec
                windows[chunk.chunk_id] = win
        given = sum(len(embedded[d.doc_id].chunks) for d, _ in todo if d.doc_id in embedded)
        report.chunks_embedded += len(fresh) + given
        report.chunks_reused += len(all_chunks) - len(fresh) - given
        report.chunks_total += len(all_chunks)

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
                    vecs = np.stack([known[c.chunk_id] for c in chunks])
                    self.store.put_chunks(chunks, vecs)
                    self.store.put_windows(
                        {c.chunk_id: windows[c.chunk_id] for c in chunks if c.chunk_id in windows}
                    )
                    self.lexical.add([(c.chunk_id, embedding_text(c)) for c in chunks])
            generation = self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        self._seen_version = self.store.data_version()
        for doc, existed in todo:
            (report.updated if existed else report.added).append(doc.doc_id)
        self.vectors.remove(removed)
        self.vectors.add(
            [c.chunk_id for c in all_chunks],
            np.stack([known[c.chunk_id] for c in all_chunks])
            if all_chunks
            else np.zeros((0, self.vectors.dimension), np.float32),
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

    def delete(self, doc_ids: Sequence[str], *, lock_timeout: float | None = None) -> None:
        """Delete documents; raises DocumentNotFoundError for an unknown id (nothing deleted)."""
        self._acquire(lock_timeout)
        try:
            known = set(self.store.doc_ids())
            missing = [d for d in doc_ids if d not in known]
            if missing:
                raise DocumentNotFoundError(f"no document with id {missing[0]!r}")
            self._delete_locked(doc_ids)
            self._save_vectors()
        finally:
            self._lock.release()

    def _delete_locked(self, doc_ids: Sequence[str]) -> None:
        removed: list[int] = []
        self.store.begin()
        try:
            for doc_id in doc_ids:
                ids = self.store.delete_document(doc_id)
                self.lexical.remove(ids)
                removed.extend(ids)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        self._seen_version = self.store.data_version()
        self.vectors.remove(removed)

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
        sqlite_bytes = sum(
            p.stat().st_size for p in self.directory.glob(DB_NAME + "*") if p.is_file()
        )
        faiss_bytes = sum(p.stat().st_size for _, _, p in self._faiss_files())
        return IndexStats(
            documents=docs,
            chunks=chunks,
            generation=self.store.generation(),
            embedder=self.store.embedder_identity(),
            index_kind=self.vectors.kind,
            sqlite_bytes=sqlite_bytes,
            faiss_bytes=faiss_bytes,
            notes=tuple(self.notes),
        )
