"""The chunk half of ``SqliteStore``: chunks, their vectors and windows, filters, counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import numpy as np

from rag.store.base import text_key
from rag.types import Chunk, FloatArray


class SqliteChunks:
    """Chunk rows of the SQLite store; ``SqliteStore`` adds documents and transactions."""

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def put_chunks(self, chunks: Sequence[Chunk], vectors: FloatArray) -> None:
        self.conn.executemany(
            'INSERT INTO chunks(chunk_id, doc_id, ordinal, start, "end", text, context,'
            " text_key, embedding) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    c.chunk_id,
                    c.doc_id,
                    c.ordinal,
                    c.start,
                    c.end,
                    c.text,
                    c.context,
                    text_key(c.text),
                    np.asarray(v, dtype=np.float32).tobytes(),
                )
                for c, v in zip(chunks, vectors, strict=True)
            ],
        )

    def put_windows(self, windows: dict[int, FloatArray]) -> None:
        """Store each chunk's window vectors (an ``(n, dimension)`` array; empty: none)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO chunk_windows(chunk_id, vectors) VALUES (?, ?)",
            [
                (cid, np.asarray(v, dtype=np.float32).tobytes())
                for cid, v in windows.items()
                if len(v)
            ],
        )

    def windows_for(self, chunk_ids: Sequence[int], dimension: int) -> dict[int, FloatArray]:
        """Window vectors of those chunk ids that have any, as ``(n, dimension)`` arrays."""
        out: dict[int, FloatArray] = {}
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            try:
                rows = self.conn.execute(
                    f"SELECT chunk_id, vectors FROM chunk_windows WHERE chunk_id IN ({marks})",
                    part,
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # read-only open of an index made before
                    return {}
                raise
            for cid, blob in rows:
                out[int(cid)] = np.frombuffer(blob, dtype=np.float32).reshape(-1, dimension)
        return out

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        return [
            int(r[0])
            for r in self.conn.execute(
                "SELECT chunk_id FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc_id,)
            )
        ]

    def embeddings_for(self, chunk_ids: Sequence[int]) -> dict[int, FloatArray]:
        """Stored vectors of the given chunk ids that exist (reuse instead of re-embedding)."""
        out: dict[int, FloatArray] = {}
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for cid, blob in self.conn.execute(
                f"SELECT chunk_id, embedding FROM chunks WHERE chunk_id IN ({marks})", part
            ):
                out[int(cid)] = np.frombuffer(blob, dtype=np.float32)
        return out

    _CHUNK_COLUMNS = 'chunk_id, doc_id, ordinal, start, "end", text, context'

    @staticmethod
    def _chunk(row: tuple[object, ...]) -> Chunk:
        cid, doc_id, ordinal, start, end, text, context = row
        return Chunk(
            chunk_id=int(str(cid)),
            doc_id=str(doc_id),
            ordinal=int(str(ordinal)),
            start=int(str(start)),
            end=int(str(end)),
            text=str(text),
            context=str(context),
        )

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self.conn.execute(
            f"SELECT {self._CHUNK_COLUMNS} FROM chunks WHERE doc_id = ? ORDER BY ordinal",
            (doc_id,),
        ).fetchall()
        return [self._chunk(r) for r in rows]

    def get_chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        out: dict[int, Chunk] = {}
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                f"SELECT {self._CHUNK_COLUMNS} FROM chunks WHERE chunk_id IN ({marks})", part
            ):
                chunk = self._chunk(row)
                out[chunk.chunk_id] = chunk
        return out

    def duplicates_of(self, chunk_ids: Sequence[int]) -> dict[int, list[Chunk]]:
        """For each chunk id, the other chunks with the same normalised text."""
        out: dict[int, list[Chunk]] = {}
        for cid in chunk_ids:
            rows = self.conn.execute(
                f"SELECT {self._CHUNK_COLUMNS} FROM chunks WHERE text_key ="
                " (SELECT text_key FROM chunks WHERE chunk_id = ?) AND chunk_id != ?"
                " ORDER BY doc_id, ordinal",
                (cid, cid),
            ).fetchall()
            if rows:
                out[cid] = [self._chunk(r) for r in rows]
        return out

    def iter_embeddings(self, batch: int = 10_000) -> Iterator[tuple[list[int], FloatArray]]:
        """All (chunk ids, vectors) in chunk-id order, in batches (for rebuilding FAISS)."""
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT chunk_id, embedding FROM chunks WHERE chunk_id > ? ORDER BY chunk_id"
                " LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return
            ids = [int(r[0]) for r in rows]
            vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            yield ids, vecs
            last = ids[-1]

    def all_chunk_ids(self) -> list[int]:
        return [int(r[0]) for r in self.conn.execute("SELECT chunk_id FROM chunks ORDER BY 1")]

    def chunk_ids_matching(
        self,
        *,
        doc_ids: Sequence[str] = (),
        sources: Sequence[str] = (),
        published_from: str | None = None,
        published_to: str | None = None,
    ) -> set[int]:
        """Chunk ids whose document passes the filters (AND of the given conditions)."""
        where: list[str] = []
        args: list[object] = []
        if doc_ids:
            where.append(f"d.doc_id IN ({','.join('?' * len(doc_ids))})")
            args.extend(doc_ids)
        if sources:
            where.append(f"d.source IN ({','.join('?' * len(sources))})")
            args.extend(sources)
        if published_from:
            where.append("d.published >= ?")
            args.append(published_from)
        if published_to:
            where.append("d.published <= ?")
            args.append(published_to)
        sql = "SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return {int(r[0]) for r in self.conn.execute(sql, args)}

    def counts(self) -> tuple[int, int]:
        docs = self.conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)
