"""PostgreSQL + pgvector backend: ``PostgresStore`` (documents) and ``PgVectorStore``.

Both share one ``PgConnections`` (see ``rag.store.pg_schema``) with ``PgLexicalIndex``,
so a batch's documents, chunks, vectors, windows and postings commit in one transaction.
Several processes may write at once (different documents): rows of different documents
never collide, and the only shared row, the generation counter, is updated just before
``COMMIT``. Readers use snapshots and never wait for writers; a commit is visible to every
process on its next query.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from rag.errors import DocumentNotFoundError
from rag.store.base import (
    DocumentMeta,
    StoredDocument,
    document_row,
    identity_from_manifest,
    text_key,
)
from rag.store.pg_schema import PgConnections
from rag.types import Chunk, Document, EmbedderIdentity, FloatArray

_DOC_COLUMNS = "doc_id, title, url, published, source, sources, path, text"
_CHUNK_COLUMNS = 'chunk_id, doc_id, ordinal, start, "end", text, context'


def _document(row: Sequence[Any]) -> Document:
    doc_id, title, url, published, source, sources, path, text = row
    return Document(
        doc_id=doc_id,
        text=text,
        title=title,
        url=url,
        published=published,
        source=source,
        sources=tuple(sources),
        path=path,
    )


def _vector(value: Any) -> FloatArray:
    """A loaded pgvector value as float32 (the adapter returns a ``Vector``)."""
    raw = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(raw, dtype=np.float32)


def _chunk(row: Sequence[Any]) -> Chunk:
    cid, doc_id, ordinal, start, end, text, context = row
    return Chunk(int(cid), doc_id, int(ordinal), int(start), int(end), text, context=context)


class PostgresStore:
    """``DocumentStore`` on PostgreSQL."""

    def __init__(self, connections: PgConnections) -> None:
        self.db = connections

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.db.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        with self.db.connection() as conn:
            conn.execute(sql, args)

    # -- transactions -------------------------------------------------------------
    def begin(self) -> None:
        self.db.begin()

    def commit(self) -> int:
        """Bump the generation and commit; returns the new generation."""
        [(generation,)] = self._all(
            "UPDATE manifest SET value = to_jsonb(value::bigint + 1) WHERE key = 'generation'"
            " RETURNING value::bigint"
        )
        self.db.end(commit=True)
        return int(generation)

    def rollback(self) -> None:
        self.db.end(commit=False)

    def reading(self) -> AbstractContextManager[None]:
        return self.db.reading()

    def generation(self) -> int:
        value = self.get_meta("generation")
        return value if isinstance(value, int) else 0

    def close(self) -> None:
        self.db.close()

    # -- manifest -----------------------------------------------------------------
    def get_meta(self, key: str) -> object | None:
        rows = self._all("SELECT value FROM manifest WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: object) -> None:
        self._run(
            "INSERT INTO manifest (key, value) VALUES (%s, %s::jsonb)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    def embedder_identity(self) -> EmbedderIdentity | None:
        return identity_from_manifest(
            self.get_meta("embedder"),
            "the database's embedder entry is damaged; ingest again into a new database",
        )

    def set_embedder_identity(self, identity: EmbedderIdentity) -> None:
        """Record the model and give the vector column its dimension and HNSW index."""
        self.set_meta("embedder", identity.__dict__)
        dim = int(identity.dimension)
        self._run(f"ALTER TABLE vectors ALTER COLUMN embedding TYPE vector({dim})")
        self._run(
            "CREATE INDEX IF NOT EXISTS vectors_hnsw ON vectors USING hnsw"
            f" (embedding vector_cosine_ops) WITH (m = {PgVectorStore.HNSW_M},"
            f" ef_construction = {PgVectorStore.HNSW_EF_CONSTRUCTION})"
        )

    # -- documents ----------------------------------------------------------------
    def content_hash(self, doc_id: str) -> str | None:
        rows = self._all("SELECT content_sha256 FROM documents WHERE doc_id = %s", (doc_id,))
        return str(rows[0][0]) if rows else None

    def content_hashes(self) -> dict[str, str]:
        return dict(self._all("SELECT doc_id, content_sha256 FROM documents"))

    def put_document(self, doc: Document, content_sha256: str) -> None:
        self._run(
            f"INSERT INTO documents ({_DOC_COLUMNS}, content_sha256)"
            " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s) ON CONFLICT (doc_id) DO UPDATE"
            " SET title = excluded.title, url = excluded.url, published = excluded.published,"
            " source = excluded.source, sources = excluded.sources, path = excluded.path,"
            " text = excluded.text, content_sha256 = excluded.content_sha256, ingested_at = now()",
            document_row(doc, content_sha256),
        )

    def delete_document(self, doc_id: str) -> list[int]:
        """Delete a document, its chunks, windows and vectors; returns the chunk ids."""
        ids = [
            int(r[0])
            for r in self._all("DELETE FROM chunks WHERE doc_id = %s RETURNING chunk_id", (doc_id,))
        ]
        self._run("DELETE FROM vectors WHERE chunk_id = ANY(%s)", (ids,))
        self._run("DELETE FROM documents WHERE doc_id = %s", (doc_id,))
        return sorted(ids)

    def get_document(self, doc_id: str) -> Document:
        rows = self._all(f"SELECT {_DOC_COLUMNS} FROM documents WHERE doc_id = %s", (doc_id,))
        if not rows:
            raise DocumentNotFoundError(f"no document with id {doc_id!r}")
        return _document(rows[0])

    def documents(self) -> list[StoredDocument]:
        rows = self._all(
            f"SELECT {_DOC_COLUMNS}, content_sha256,"
            " (SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id)"
            " FROM documents d ORDER BY doc_id"
        )
        return [StoredDocument(_document(r[:8]), str(r[8]), int(r[9])) for r in rows]

    def doc_ids(self) -> list[str]:
        return [str(r[0]) for r in self._all("SELECT doc_id FROM documents ORDER BY 1")]

    def document_meta(self, doc_ids: Iterable[str]) -> dict[str, DocumentMeta]:
        rows = self._all(
            "SELECT doc_id, title, url, published, source FROM documents WHERE doc_id = ANY(%s)",
            (list(set(doc_ids)),),
        )
        return {r[0]: DocumentMeta(r[1], r[2], r[3], r[4]) for r in rows}

    # -- chunks and vectors ---------------------------------------------------------
    def put_chunks(self, chunks: Sequence[Chunk], vectors: FloatArray) -> None:
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO chunks ({_CHUNK_COLUMNS}, text_key)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (c.chunk_id, c.doc_id, c.ordinal, c.start, c.end, c.text, c.context, key)
                    for c, key in zip(chunks, map(text_key, (c.text for c in chunks)), strict=True)
                ],
            )
        PgVectorStore(self.db).add([c.chunk_id for c in chunks], vectors)

    def put_windows(self, windows: dict[int, FloatArray]) -> None:
        rows = [
            (cid, np.asarray(v, dtype=np.float32).tobytes()) for cid, v in windows.items() if len(v)
        ]
        if not rows:
            return
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunk_windows (chunk_id, vectors) VALUES (%s, %s)"
                " ON CONFLICT (chunk_id) DO UPDATE SET vectors = excluded.vectors",
                rows,
            )

    def windows_for(self, chunk_ids: Sequence[int], dimension: int) -> dict[int, FloatArray]:
        rows = self._all(
            "SELECT chunk_id, vectors FROM chunk_windows WHERE chunk_id = ANY(%s)",
            (list(chunk_ids),),
        )
        return {
            int(cid): np.frombuffer(blob, dtype=np.float32).reshape(-1, dimension)
            for cid, blob in rows
        }

    def embeddings_for(self, chunk_ids: Sequence[int]) -> dict[int, FloatArray]:
        rows = self._all(
            "SELECT chunk_id, embedding FROM vectors WHERE chunk_id = ANY(%s)", (list(chunk_ids),)
        )
        return {int(cid): _vector(vec) for cid, vec in rows}

    def iter_embeddings(self, batch: int = 10_000) -> Iterator[tuple[list[int], FloatArray]]:
        last = -(2**63)
        while True:
            rows = self._all(
                "SELECT chunk_id, embedding FROM vectors WHERE chunk_id > %s"
                " ORDER BY chunk_id LIMIT %s",
                (last, batch),
            )
            if not rows:
                return
            ids = [int(r[0]) for r in rows]
            yield ids, np.stack([_vector(r[1]) for r in rows])
            last = ids[-1]

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        rows = self._all(
            "SELECT chunk_id FROM chunks WHERE doc_id = %s ORDER BY ordinal", (doc_id,)
        )
        return [int(r[0]) for r in rows]

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self._all(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE doc_id = %s ORDER BY ordinal", (doc_id,)
        )
        return [_chunk(r) for r in rows]

    def get_chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        rows = self._all(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE chunk_id = ANY(%s)", (list(chunk_ids),)
        )
        return {int(r[0]): _chunk(r) for r in rows}

    def duplicates_of(self, chunk_ids: Sequence[int]) -> dict[int, list[Chunk]]:
        rows = self._all(
            f"SELECT o.chunk_id, {', '.join('c.' + c for c in _CHUNK_COLUMNS.split(', '))}"
            " FROM chunks o JOIN chunks c ON c.text_key = o.text_key AND c.chunk_id <> o.chunk_id"
            " WHERE o.chunk_id = ANY(%s) ORDER BY o.chunk_id, c.doc_id, c.ordinal",
            (list(chunk_ids),),
        )
        out: dict[int, list[Chunk]] = {}
        for row in rows:
            out.setdefault(int(row[0]), []).append(_chunk(row[1:]))
        return out

    def all_chunk_ids(self) -> list[int]:
        return [int(r[0]) for r in self._all("SELECT chunk_id FROM chunks ORDER BY 1")]

    def chunk_ids_matching(
        self,
        *,
        doc_ids: Sequence[str] = (),
        sources: Sequence[str] = (),
        published_from: str | None = None,
        published_to: str | None = None,
    ) -> set[int]:
        where: list[str] = []
        args: list[object] = []
        for column, op, value in (
            ("d.doc_id", "= ANY(%s)", list(doc_ids) if doc_ids else None),
            ("d.source", "= ANY(%s)", list(sources) if sources else None),
            ("d.published", ">= %s", published_from or None),
            ("d.published", "<= %s", published_to or None),
        ):
            if value is not None:
                where.append(f"{column} {op}")
                args.append(value)
        sql = "SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return {int(r[0]) for r in self._all(sql, args)}

    def counts(self) -> tuple[int, int]:
        [(docs, chunks)] = self._all(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)"
        )
        return int(docs), int(chunks)

    def size_bytes(self) -> int:
        [(size,)] = self._all("SELECT pg_database_size(current_database())")
        return int(size)


class PgVectorStore:
    """``VectorStore`` on the ``vectors`` table: pgvector HNSW (cosine), exact when small."""

    follows_documents = False  # rows of the database, written in the batch's transaction

    HNSW_M = 16  # pgvector's default graph degree
    HNSW_EF_CONSTRUCTION = 64  # pgvector's default
    # Candidates the HNSW search keeps; recall@10 against exact measured in docs/scaling.md.
    HNSW_EF_SEARCH = 100
    # Below this many vectors (or allowed ids) search exactly: a scan of 20k took 28 ms here
    # (HNSW 14 ms, docs/scaling.md), a price worth paying for exact results on small indexes.
    EXACT_BELOW = 20_000

    def __init__(self, connections: PgConnections, *, exact_below: int | None = None) -> None:
        self.db = connections
        self.exact_below = self.EXACT_BELOW if exact_below is None else exact_below

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        if len(ids) == 0:
            return
        rows = [
            (int(i), np.asarray(v, dtype=np.float32)) for i, v in zip(ids, vectors, strict=True)
        ]
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vectors (chunk_id, embedding) VALUES (%s, %s)"
                " ON CONFLICT (chunk_id) DO UPDATE SET embedding = excluded.embedding",
                rows,
            )

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            with self.db.connection() as conn:
                conn.execute(
                    "DELETE FROM vectors WHERE chunk_id = ANY(%s)", ([int(i) for i in ids],)
                )

    def __len__(self) -> int:
        with self.db.connection() as conn:
            row = conn.execute("SELECT count(*) FROM vectors").fetchone()
        return int(row[0]) if row else 0

    @property
    def kind(self) -> str:
        return f"pgvector hnsw (exact below {self.exact_below})"

    def search(
        self, query: FloatArray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k ``(chunk_id, cosine)``, best first; exact for small sets, else HNSW."""
        if k <= 0 or (allowed is not None and not allowed):
            return []
        q = np.asarray(query, dtype=np.float32)
        where, args = "", []
        if allowed is not None:
            where, args = "WHERE chunk_id = ANY(%s)", [list(allowed)]
        with self.db.connection() as conn:
            if self._exact(conn, allowed):
                # ORDER BY the score expression: no index can serve it, so every row counts.
                sql = (
                    f"SELECT chunk_id, 1 - (embedding <=> %s) AS score FROM vectors {where}"
                    " ORDER BY score DESC, chunk_id LIMIT %s"
                )
                rows = conn.execute(sql, [q, *args, k]).fetchall()
            else:
                rows = self._hnsw(conn, q, k, where, args)
        return [(int(cid), float(score)) for cid, score in rows]

    def exact_search(
        self, query: FloatArray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """Exact top-k whatever the size (the reference HNSW recall is measured against)."""
        saved, self.exact_below = self.exact_below, 2**62
        try:
            return self.search(query, k, allowed)
        finally:
            self.exact_below = saved

    def _exact(self, conn: Any, allowed: Collection[int] | None) -> bool:
        if allowed is not None and len(allowed) < self.exact_below:
            return True
        # The planner's row estimate: free, and exact enough to pick a method.
        row = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'vectors'::regclass"
        ).fetchone()
        estimate = float(row[0]) if row else -1.0
        if estimate < 0:  # never analysed: count (small tables are the ones never analysed)
            row = conn.execute("SELECT count(*) FROM vectors").fetchone()
            estimate = float(row[0]) if row else 0.0
        return estimate < self.exact_below

    def _hnsw(self, conn: Any, q: FloatArray, k: int, where: str, args: list[Any]) -> list[Any]:
        sql = (
            f"SELECT chunk_id, 1 - (embedding <=> %s) FROM vectors {where}"
            " ORDER BY embedding <=> %s LIMIT %s"
        )
        settings = (
            f"SET LOCAL hnsw.ef_search = {max(self.HNSW_EF_SEARCH, k)};"
            # with a filter, keep scanning the graph until k allowed rows are found
            " SET LOCAL hnsw.iterative_scan = strict_order"
        )
        if self.db.in_transaction():
            conn.execute(settings)
            return list(conn.execute(sql, [q, *args, q, k]).fetchall())
        with conn.transaction():
            conn.execute(settings)
            return list(conn.execute(sql, [q, *args, q, k]).fetchall())
