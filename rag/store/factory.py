"""Build an ``Index`` from where it lives: an index directory (embedded SQLite + FAISS)
or a PostgreSQL database with pgvector (``database_url``).

Layout of the index directory::

    index.sqlite3              documents, chunks, embeddings, lexical postings, manifest
    faiss-<gen>-<sha16>.index  FAISS snapshot (see ``rag.store.snapshots``)
    write.lock                 one writer at a time
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from rag.embedding.base import Embedder
from rag.embedding.late import DEFAULT_WINDOW_VECTORS, WindowVectors
from rag.errors import IndexBusyError
from rag.store.faiss import FaissVectorStore
from rag.store.index import Index, content_hash, window_vectors_of
from rag.store.lexical import LexicalIndex
from rag.store.snapshots import FaissSnapshots
from rag.store.sqlite import SqliteStore
from rag.types import Document

DB_NAME = "index.sqlite3"


class FileWriteLock:
    """One writer per index directory, across processes."""

    def __init__(self, path: Path, default_timeout_s: float) -> None:
        self.path = path
        self.default_timeout_s = default_timeout_s
        self._lock = FileLock(str(path))

    def acquire(self, timeout: float | None) -> None:
        try:
            self._lock.acquire(timeout=self.default_timeout_s if timeout is None else timeout)
        except Timeout as exc:
            raise IndexBusyError(
                f"another process is writing to the index in {self.path.parent}; try again "
                "when it has finished"
            ) from exc

    def release(self) -> None:
        self._lock.release()


def open_index(
    directory: Path,
    embedder: Embedder,
    *,
    ann: str = "auto",
    ann_threshold: int = 200_000,
    max_tokens: int = 200,
    lock_timeout_s: float = 30.0,
    database_url: str | None = None,
    window_vectors: WindowVectors = DEFAULT_WINDOW_VECTORS,
) -> Index:
    """Open (or create) the index for use with ``embedder``.

    With ``database_url`` the index is in that PostgreSQL database and ``directory`` is
    not used; otherwise it is the embedded one in ``directory``.
    """
    if database_url:
        return open_postgres_index(
            database_url, embedder, max_tokens=max_tokens, window_vectors=window_vectors
        )
    directory.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(directory / DB_NAME)
    try:
        lexical = LexicalIndex(lambda: store.conn)
        store.begin()
        try:
            lexical.create_schema()
            store.conn.execute("COMMIT")
        except BaseException:
            store.rollback()
            raise
        vectors = FaissVectorStore(embedder.identity.dimension, "exact")
        snapshots = FaissSnapshots(
            directory, vectors, store, ann=ann, ann_threshold=ann_threshold, db_name=DB_NAME
        )
        return Index(
            store,
            lexical,
            vectors,
            embedder,
            max_tokens=max_tokens,
            write_lock=FileWriteLock(directory / "write.lock", lock_timeout_s),
            snapshots=snapshots,
            location=f"the index in {directory}",
            window_vectors=window_vectors,
        )
    except BaseException:
        store.close()
        raise


def open_postgres_index(
    url: str,
    embedder: Embedder,
    *,
    max_tokens: int = 200,
    window_vectors: WindowVectors = DEFAULT_WINDOW_VECTORS,
) -> Index:
    """Open the index in the PostgreSQL database at ``url``, creating or migrating its schema."""
    from rag.store.pg_lexical import PgLexicalIndex
    from rag.store.pg_schema import PgConnections, upgrade
    from rag.store.postgres import PgVectorStore, PostgresStore

    upgrade(url)
    connections = PgConnections(url)
    try:
        lexical = PgLexicalIndex(connections)
        lexical.check_analysis()
        return Index(
            PostgresStore(connections),
            lexical,
            PgVectorStore(connections),
            embedder,
            max_tokens=max_tokens,
            location="the index in the PostgreSQL database",
            window_vectors=window_vectors,
        )
    except BaseException:
        connections.close()
        raise


def is_fresh(
    directory: Path,
    docs: Sequence[Document],
    window_vectors: WindowVectors = DEFAULT_WINDOW_VECTORS,
) -> bool:
    """True when the index holds exactly ``docs``, unchanged (checked without any model)."""
    db = directory / DB_NAME
    if not db.exists():
        return False
    store = SqliteStore(db)
    try:
        if store.embedder_identity() is None or window_vectors_of(store) != window_vectors:
            return False
        return store.content_hashes() == {d.doc_id: content_hash(d) for d in docs}
    finally:
        store.close()
