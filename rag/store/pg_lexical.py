"""BM25 over German-analysed terms in PostgreSQL, ranked in SQL like ``LexicalIndex``.

Terms come from the same ``GermanAnalyzer`` (stemming, decompounding, folding); a query's
words the index has never seen are split into parts it holds, as in SQLite. Postings are
rows ``(term, chunk_id, tf, dl)``; the chunk count and summed length are signed delta rows
in ``lex_stats`` (writers only insert, so concurrent ingests never wait on a shared row).
Scoring is the same BM25 as ``rag.store.lexical``: Lucene's non-negative idf
``ln(1 + (N - df + 0.5) / (df + 0.5))``, ties in chunk-id order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from rag.errors import IndexMismatchError
from rag.store.lexical import BM25_B, BM25_K1, SCORE_DECIMALS, analysis_signature
from rag.store.pg_schema import PgConnections
from rag.text.analysis import GermanAnalyzer

_SEARCH_SQL = """
WITH q AS (SELECT * FROM unnest(%(terms)s::text[], %(weights)s::float8[]) AS q(term, weight)),
stats AS (SELECT coalesce(sum(chunks), 0)::float8 AS n,
                 greatest(coalesce(sum(length), 0), 1)::float8 AS total FROM lex_stats),
df AS (SELECT q.term, q.weight, count(*)::float8 AS df
       FROM q JOIN lex_postings p ON p.term = q.term GROUP BY q.term, q.weight)
SELECT p.chunk_id, round(sum(df.weight * ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5))
           * p.tf * (%(k1)s + 1)
           / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl * (stats.n / stats.total))))::numeric,
             %(decimals)s)::float8 AS score
FROM df JOIN lex_postings p ON p.term = df.term CROSS JOIN stats
{where}
GROUP BY p.chunk_id
ORDER BY score DESC, p.chunk_id
LIMIT %(k)s
"""


class PgLexicalIndex:
    """``LexicalStore`` on PostgreSQL; writes join the thread's open transaction."""

    def __init__(
        self,
        connections: PgConnections,
        analyzer: GermanAnalyzer | None = None,
        *,
        k1: float = BM25_K1,
        b: float = BM25_B,
    ) -> None:
        self.db = connections
        self.analyzer = analyzer or GermanAnalyzer()
        self.k1 = k1
        self.b = b

    @property
    def signature(self) -> str:
        return analysis_signature(self.analyzer)

    def check_analysis(self) -> None:
        """Record the analysis, or refuse postings made by another one."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT value FROM manifest WHERE key = 'analyzer'").fetchone()
            stored = row[0] if row else None
            if stored is not None and stored != self.signature and len(self) > 0:
                raise IndexMismatchError(
                    f"the lexical index was built with analysis {stored!r}, not "
                    f"{self.signature!r}; ingest again into a new database"
                )
            if stored != self.signature:
                conn.execute(
                    "INSERT INTO manifest (key, value) VALUES ('analyzer', to_jsonb(%s::text))"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (self.signature,),
                )

    def add(self, items: Sequence[tuple[int, str]]) -> None:
        """Index ``(chunk_id, text)`` pairs; an id that is already indexed is replaced."""
        docs = {int(cid): Counter(self.analyzer.analyze(text)) for cid, text in items}
        if not docs:
            return
        self.remove(list(docs))
        postings: list[tuple[str, int, int, int]] = []
        lengths: list[tuple[int, int]] = []
        for cid, tf in docs.items():
            length = sum(tf.values())
            lengths.append((cid, length))
            postings.extend((term, cid, count, length) for term, count in sorted(tf.items()))
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO lex_postings (term, chunk_id, tf, dl) VALUES (%s, %s, %s, %s)",
                postings,
            )
            cur.executemany("INSERT INTO lex_docs (chunk_id, length) VALUES (%s, %s)", lengths)
            cur.execute(
                "INSERT INTO lex_stats (chunks, length) VALUES (%s, %s)",
                (len(lengths), sum(n for _, n in lengths)),
            )

    def remove(self, chunk_ids: Sequence[int]) -> None:
        """Drop chunks from the index; ids that are not indexed are ignored."""
        if not len(chunk_ids):
            return
        ids = [int(c) for c in chunk_ids]
        with self.db.connection() as conn:
            gone = conn.execute(
                "DELETE FROM lex_docs WHERE chunk_id = ANY(%s) RETURNING length", (ids,)
            ).fetchall()
            if not gone:
                return
            conn.execute("DELETE FROM lex_postings WHERE chunk_id = ANY(%s)", (ids,))
            conn.execute(
                "INSERT INTO lex_stats (chunks, length) VALUES (%s, %s)",
                (-len(gone), -sum(int(r[0]) for r in gone)),
            )

    def search(
        self, query: str, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best ``(chunk_id, bm25)`` for ``query``, best first."""
        if k <= 0 or (allowed is not None and not allowed):
            return []
        words = self.analyzer.query_words(query)
        weights = Counter(self.analyzer.terms(words, vocabulary=self.vocabulary))
        if not weights:
            return []
        params: dict[str, object] = {
            "terms": list(weights),
            "weights": [float(w) for w in weights.values()],
            "k1": self.k1,
            "b": self.b,
            "k": k,
            "decimals": SCORE_DECIMALS,
        }
        where = ""
        if allowed is not None:
            where = "WHERE p.chunk_id = ANY(%(allowed)s)"
            params["allowed"] = [int(c) for c in allowed]
        with self.db.connection() as conn:
            rows = conn.execute(_SEARCH_SQL.format(where=where), params).fetchall()
        return [(int(cid), float(score)) for cid, score in rows]

    def vocabulary(self, terms: Collection[str]) -> Mapping[str, int]:
        """Document frequency of those ``terms`` the index holds."""
        if not terms:
            return {}
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT term, count(*) FROM lex_postings WHERE term = ANY(%s) GROUP BY term",
                (sorted(terms),),
            ).fetchall()
        return {str(t): int(n) for t, n in rows}

    def __len__(self) -> int:
        with self.db.connection() as conn:
            row = conn.execute("SELECT coalesce(sum(chunks), 0) FROM lex_stats").fetchone()
        return int(row[0]) if row else 0
