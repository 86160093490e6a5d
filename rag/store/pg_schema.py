"""PostgreSQL connections and schema migrations for the pgvector backend.

``PgConnections`` is a psycopg 3 pool shared by the document, lexical and vector stores of
one process. A thread that called ``begin()`` keeps one connection until ``commit()`` or
``rollback()``, and every store's reads and writes on that thread go through it, so a batch
is one transaction; other threads read from the pool (autocommit, or one REPEATABLE READ
snapshot inside ``reading()``), so readers never wait for a writer.

Migrations are numbered SQL scripts; ``rag_schema`` holds the version reached. ``upgrade``
applies the missing ones under an advisory lock (several workers may start at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from rag.errors import ConfigError, IndexCorruptError

# Advisory lock key taken while migrating ("rag" in ASCII).
_MIGRATION_LOCK = 0x726167

MIGRATIONS: tuple[str, ...] = (
    # 1: documents, chunks, vectors, windows, manifest, lexical postings.
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE manifest (key text PRIMARY KEY, value jsonb NOT NULL);
    CREATE TABLE documents (
        doc_id text PRIMARY KEY,
        title text NOT NULL,
        url text,
        published text,
        source text,
        sources jsonb NOT NULL,
        path text,
        text text NOT NULL,
        content_sha256 text NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX documents_published ON documents (published);
    CREATE INDEX documents_source ON documents (source);
    CREATE TABLE chunks (
        chunk_id bigint PRIMARY KEY,
        doc_id text NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
        ordinal integer NOT NULL,
        start integer NOT NULL,
        "end" integer NOT NULL,
        text text NOT NULL,
        context text NOT NULL,
        text_key text NOT NULL
    );
    CREATE INDEX chunks_doc ON chunks (doc_id, ordinal);
    CREATE INDEX chunks_text_key ON chunks (text_key);
    -- Vectors apart from chunks (no foreign key): the vector store's own table; the
    -- column gets its dimension and HNSW index when the first ingest names the model.
    CREATE TABLE vectors (chunk_id bigint PRIMARY KEY, embedding vector NOT NULL);
    CREATE TABLE chunk_windows (
        chunk_id bigint PRIMARY KEY REFERENCES chunks (chunk_id) ON DELETE CASCADE,
        vectors bytea NOT NULL
    );
    -- BM25 postings, one row per (term, chunk); statistics as signed delta rows so that
    -- concurrent writers only insert (no shared counter row to wait for).
    CREATE TABLE lex_postings (
        term text NOT NULL,
        chunk_id bigint NOT NULL,
        tf integer NOT NULL,
        dl integer NOT NULL,
        PRIMARY KEY (term, chunk_id)
    );
    CREATE INDEX lex_postings_chunk ON lex_postings (chunk_id);
    CREATE TABLE lex_docs (chunk_id bigint PRIMARY KEY, length integer NOT NULL);
    CREATE TABLE lex_stats (chunks bigint NOT NULL, length bigint NOT NULL);
    INSERT INTO manifest (key, value) VALUES ('generation', '0');
    """,
)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The migration version the database is at (0: no schema yet)."""
    exists = conn.execute("SELECT to_regclass('rag_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM rag_schema").fetchone()
    return int(row[0] or 0) if row else 0


def connect(url: str) -> psycopg.Connection[Any]:
    """A plain autocommit connection; a clear error when the server cannot be reached."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise ConfigError(
            f"cannot connect to the PostgreSQL database in RAG_DATABASE_URL: {exc}".strip()
        ) from exc


def upgrade(url: str) -> tuple[int, int]:
    """Apply missing migrations; returns (version before, version after)."""
    with connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS rag_schema (version integer PRIMARY KEY)")
        before = schema_version(conn)
        if before > len(MIGRATIONS):
            raise IndexCorruptError(
                f"the database is at schema version {before}, newer than this program "
                f"({len(MIGRATIONS)}); upgrade the program"
            )
        for version in range(before + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1])
            conn.execute("INSERT INTO rag_schema (version) VALUES (%s)", (version,))
    return before, len(MIGRATIONS)


class PgConnections:
    """A connection pool plus the one connection of each thread's open transaction."""

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            configure=register_vector,
            open=True,
        )
        try:
            self.pool.wait(timeout=10)
        except PoolTimeout as exc:
            self.pool.close()
            raise ConfigError(
                "cannot connect to the PostgreSQL database in RAG_DATABASE_URL"
            ) from exc
        self._local = threading.local()

    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's transaction connection, or one from the pool for a statement."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.pool.connection() as pooled:
            yield pooled

    def begin(self, isolation: str = "READ COMMITTED", readonly: bool = False) -> None:
        if self.in_transaction():
            raise RuntimeError("a transaction is already open on this thread")
        conn = self.pool.getconn()
        try:
            conn.execute(f"BEGIN ISOLATION LEVEL {isolation}{' READ ONLY' if readonly else ''}")
        except BaseException:
            self.pool.putconn(conn)
            raise
        self._local.conn = conn

    def end(self, commit: bool) -> None:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        try:
            conn.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            self.pool.putconn(conn)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One snapshot for the reads inside (unless this thread is in a transaction)."""
        if self.in_transaction():
            yield
            return
        self.begin("REPEATABLE READ", readonly=True)
        try:
            yield
        finally:
            self.end(commit=True)

    def close(self) -> None:
        self.pool.close()
