"""SQLite store: the source of truth for documents, chunks, embeddings and the manifest.

WAL mode lets readers (a serving process) keep reading while one writer commits. Every
write a caller makes between ``begin()`` and ``commit()`` lands together or not at all,
and each commit bumps ``generation`` so readers can tell that derived data (the FAISS
index, caches) is stale.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import DocumentNotFoundError, IndexCorruptError
from rag.store.base import DocumentMeta, StoredDocument, document_row, identity_from_manifest
from rag.store.sqlite_chunks import SqliteChunks
from rag.types import Document, EmbedderIdentity

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    doc_id         TEXT PRIMARY KEY,
    title          TEXT NOT NULL,
    url            TEXT,
    published      TEXT,
    source         TEXT,
    sources        TEXT NOT NULL,          -- JSON list
    path           TEXT,
    text           TEXT NOT NULL,          -- the original, verbatim
    content_sha256 TEXT NOT NULL,          -- of text + metadata: unchanged input embeds nothing
    ingested_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS documents_published ON documents(published);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id  INTEGER PRIMARY KEY,
    doc_id    TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ordinal   INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    "end"     INTEGER NOT NULL,
    text      TEXT NOT NULL,
    context   TEXT NOT NULL,
    text_key  TEXT NOT NULL,               -- normalised-text hash: finds syndicated copies
    embedding BLOB NOT NULL                -- float32, L2-normalised
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ordinal);
CREATE INDEX IF NOT EXISTS chunks_text_key ON chunks(text_key);
-- Vectors of a chunk's sentence windows (rows of float32, L2-normalised): a fact that
-- fills one sentence of a long passage is diluted in the passage's own vector.
CREATE TABLE IF NOT EXISTS chunk_windows (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(chunk_id) ON DELETE CASCADE,
    vectors  BLOB NOT NULL
);
"""


class SqliteStore(SqliteChunks):
    """Documents, chunks and embeddings in one SQLite file."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        # One connection per thread: WAL gives each its own snapshot, so request threads
        # read in parallel while a writer's transaction is open on another connection.
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._schema_ready = readonly
        self.conn  # noqa: B018 - opens now: a damaged file fails here, not mid-request

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{self.path}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            if not self.readonly:
                # FULL: a commit survives power loss too, not only a killed process.
                conn.execute("PRAGMA synchronous = FULL")
            if not self._schema_ready:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                self._schema_ready = True
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise IndexCorruptError(
                f"the index database {self.path} is damaged ({exc}); delete the index "
                "directory and ingest again (`rag ingest corpus/`)"
            ) from exc
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # -- transactions -------------------------------------------------------------
    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so a second writer waits instead of failing later.
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> int:
        """Bump the generation and commit; returns the new generation."""
        generation = self.generation() + 1
        self._set("generation", generation)
        self.conn.execute("COMMIT")
        return generation

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Run the reads inside in one snapshot (a read transaction, unless one is open)."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    # -- manifest -----------------------------------------------------------------
    def _get(self, key: str) -> object | None:
        row = self.conn.execute("SELECT value FROM manifest WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            value: object = json.loads(row[0])
            return value
        except json.JSONDecodeError as exc:
            raise IndexCorruptError(
                f"the index manifest entry {key!r} is damaged; delete {self.path.parent} and "
                "ingest again (`rag ingest corpus/`)"
            ) from exc

    def _set(self, key: str, value: object) -> None:
        self.conn.execute(
            "INSERT INTO manifest(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    def generation(self) -> int:
        value = self._get("generation")
        if value is None:
            return 0
        if not isinstance(value, int):
            raise IndexCorruptError("the index manifest's generation is damaged; re-ingest")
        return value

    def embedder_identity(self) -> EmbedderIdentity | None:
        """The model that embedded this index, or None for an empty new index."""
        return identity_from_manifest(
            self._get("embedder"),
            "the index manifest's embedder entry is damaged; delete the index directory "
            "and ingest again (`rag ingest corpus/`)",
        )

    def set_embedder_identity(self, identity: EmbedderIdentity) -> None:
        self._set("embedder", identity.__dict__)
        self._set("schema_version", SCHEMA_VERSION)

    def manifest(self) -> dict[str, object]:
        rows = self.conn.execute("SELECT key, value FROM manifest ORDER BY key").fetchall()
        out: dict[str, object] = {}
        for key, _ in rows:
            out[key] = self._get(key)
        return out

    def get_meta(self, key: str) -> object | None:
        return self._get(key)

    def set_meta(self, key: str, value: object) -> None:
        self._set(key, value)

    # -- documents ----------------------------------------------------------------
    def content_hash(self, doc_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT content_sha256 FROM documents WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def content_hashes(self) -> dict[str, str]:
        """doc_id -> content hash of every stored document."""
        rows = self.conn.execute("SELECT doc_id, content_sha256 FROM documents")
        return {str(d): str(h) for d, h in rows}

    def put_document(self, doc: Document, content_sha256: str) -> None:
        """Insert or replace a document row (its old chunks are deleted by the caller)."""
        self.conn.execute(
            "INSERT INTO documents(doc_id, title, url, published, source, sources, path, text,"
            " content_sha256) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(doc_id) DO UPDATE SET"
            " title=excluded.title, url=excluded.url, published=excluded.published,"
            " source=excluded.source, sources=excluded.sources, path=excluded.path,"
            " text=excluded.text, content_sha256=excluded.content_sha256,"
            " ingested_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            document_row(doc, content_sha256),
        )

    def delete_document(self, doc_id: str) -> list[int]:
        """Delete a document and its chunks; returns the removed chunk ids."""
        ids = self.chunk_ids_of(doc_id)
        self.conn.execute(
            "DELETE FROM chunk_windows WHERE chunk_id IN"
            " (SELECT chunk_id FROM chunks WHERE doc_id = ?)",
            (doc_id,),
        )
        self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self.conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        return ids

    @staticmethod
    def _document(row: sqlite3.Row | tuple[object, ...]) -> Document:
        doc_id, title, url, published, source, sources, path, text = row
        return Document(
            doc_id=str(doc_id),
            text=str(text),
            title=str(title),
            url=None if url is None else str(url),
            published=None if published is None else str(published),
            source=None if source is None else str(source),
            sources=tuple(json.loads(str(sources))),
            path=None if path is None else str(path),
        )

    _DOC_COLUMNS = "doc_id, title, url, published, source, sources, path, text"

    def get_document(self, doc_id: str) -> Document:
        row = self.conn.execute(
            f"SELECT {self._DOC_COLUMNS} FROM documents WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id!r}")
        return self._document(row)

    def documents(self) -> list[StoredDocument]:
        """Every document (with text) and its chunk count, ordered by id."""
        rows = self.conn.execute(
            f"SELECT {self._DOC_COLUMNS}, content_sha256,"
            " (SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id)"
            " FROM documents d ORDER BY doc_id"
        ).fetchall()
        return [StoredDocument(self._document(r[:8]), str(r[8]), int(r[9])) for r in rows]

    def doc_ids(self) -> list[str]:
        return [str(r[0]) for r in self.conn.execute("SELECT doc_id FROM documents ORDER BY 1")]

    def document_texts(self, doc_ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(doc_ids))
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for doc_id, text in self.conn.execute(
                f"SELECT doc_id, text FROM documents WHERE doc_id IN ({marks})", part
            ):
                out[str(doc_id)] = str(text)
        return out

    def document_meta(self, doc_ids: Iterable[str]) -> dict[str, DocumentMeta]:
        """Title, url, date and source of the given documents (no text)."""
        out: dict[str, DocumentMeta] = {}
        ids = list(set(doc_ids))
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for doc_id, title, url, published, source in self.conn.execute(
                "SELECT doc_id, title, url, published, source FROM documents"
                f" WHERE doc_id IN ({marks})",
                part,
            ):
                out[str(doc_id)] = DocumentMeta(str(title), url, published, source)
        return out

    def check(self) -> None:
        """Fail with IndexCorruptError unless SQLite's own integrity check passes."""
        row = self.conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise IndexCorruptError(f"the index database is damaged: {row}; re-ingest")
