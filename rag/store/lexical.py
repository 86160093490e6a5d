"""Persistent, incremental BM25 over German-analysed terms, inside the caller's SQLite file.

Tables (prefix ``lex_``), all written inside the caller's transaction (this module never
commits or rolls back), so chunks, vectors and postings commit atomically together:

    lex_terms     term_id, term (stem or compound part), df (chunks holding it), fresh
    lex_postings  (term_id, seg) -> level, chunk_ids, tfs, dls as packed little-endian arrays
    lex_docs      chunk_id -> length and the ids of its terms (what ``remove`` must undo)
    lex_meta      totals (chunks, summed lengths), segment counter, analyzer signature

Postings are packed: each ``add`` appends one level-0 segment row per term. When a term
has ``MERGE_FANOUT`` segments on one level they are merged into one on the next level (a
log-structured merge, like Lucene's segments), so a term has a few dozen rows at most, a
posting is rewritten about log_F(adds) times, and a search reads whole arrays instead of
one SQL row per posting (at 100k chunks: a few ms per query instead of tens).

``search`` keeps no cache: it reads the totals and the postings of the query terms in one
SQL statement, i.e. from one snapshot of the last commit (or of the caller's own open
transaction), so a server sees what another process ingested as soon as it commits.
Scoring is BM25 with Lucene's non-negative idf, ``ln(1 + (N - df + 0.5) / (df + 0.5))``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from rag.errors import IndexMismatchError
from rag.text.analysis import ANALYSIS_VERSION, GermanAnalyzer

STORAGE_VERSION = 1  # bump whenever the tables' layout or encoding changes
# BM25's usual parameters (term-frequency saturation, length normalisation), both backends.
BM25_K1 = 1.2
BM25_B = 0.75
SCORE_DECIMALS = 9  # BM25 scores are compared at this precision (ties: lower id first)
MERGE_FANOUT = 8  # merge a term's segments of one level once this many exist

_IDS = np.dtype("<i8")  # chunk ids (< 2**53)
_TERMS = np.dtype("<u4")  # term ids of a chunk in lex_docs
_COUNTS = np.dtype("<u2")  # tf and chunk length; saturate at 65535 (BM25 saturates far sooner)
_MAX_COUNT = 65535

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lex_terms (
        term_id INTEGER PRIMARY KEY,
        term TEXT NOT NULL UNIQUE,
        df INTEGER NOT NULL,
        fresh INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS lex_postings (
        term_id INTEGER NOT NULL,
        seg INTEGER NOT NULL,
        level INTEGER NOT NULL,
        chunk_ids BLOB NOT NULL,
        tfs BLOB NOT NULL,
        dls BLOB NOT NULL,
        PRIMARY KEY (term_id, seg)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lex_docs (
        chunk_id INTEGER PRIMARY KEY,
        length INTEGER NOT NULL,
        term_ids BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS lex_meta (
        key TEXT PRIMARY KEY,
        value NOT NULL
    )""",
)

# One statement, hence one snapshot: a first row with the totals, then every posting
# segment of the query terms (``q.key`` is the term's position in the JSON array).
_SEARCH_SQL = """
SELECT -1, 0, (SELECT value FROM lex_meta WHERE key = 'chunks'),
       (SELECT value FROM lex_meta WHERE key = 'length'), NULL
UNION ALL
SELECT q.key, t.df, p.chunk_ids, p.tfs, p.dls
FROM json_each(?) AS q
JOIN lex_terms AS t ON t.term = q.value
JOIN lex_postings AS p ON p.term_id = t.term_id
"""

_IN_JSON = "IN (SELECT value FROM json_each(?))"
_IN_PAIRS = "IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"


def analysis_signature(analyzer: GermanAnalyzer) -> str:
    """The analysis settings postings depend on (stored with them, checked on open)."""
    a = analyzer
    flags = f"stopwords={a.stopwords},stem={a.stem},fold={a.fold},decompound={a.decompound}"
    return f"lex-v{STORAGE_VERSION}:german-v{ANALYSIS_VERSION}:{flags}".lower()


class LexicalIndex:
    """BM25 search over chunk texts, stored next to the chunks in the same SQLite database."""

    def __init__(
        self,
        conn: sqlite3.Connection | Callable[[], sqlite3.Connection],
        analyzer: GermanAnalyzer | None = None,
        *,
        k1: float = BM25_K1,
        b: float = BM25_B,
    ) -> None:
        # A callable gives each thread its own connection (``SqliteStore.conn``).
        self._conn = conn
        self.analyzer = analyzer or GermanAnalyzer()
        self.k1 = k1
        self.b = b

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn if isinstance(self._conn, sqlite3.Connection) else self._conn()

    @property
    def signature(self) -> str:
        """What the stored postings depend on; any other value needs a rebuilt index."""
        return analysis_signature(self.analyzer)

    def create_schema(self) -> None:
        """Create the tables if missing (idempotent, no commit).

        Raises IndexMismatchError when the stored postings came from another analysis;
        ``clear`` and re-adding every chunk fixes that.
        """
        # One statement at a time: ``executescript`` would COMMIT the caller's transaction.
        for statement in _SCHEMA:
            self.conn.execute(statement)
        for key in ("chunks", "length", "segment"):
            self.conn.execute(
                "INSERT INTO lex_meta(key, value) VALUES (?, 0) ON CONFLICT(key) DO NOTHING",
                (key,),
            )
        stored = self._meta("analyzer")
        if stored is not None and stored != self.signature and len(self) > 0:
            raise IndexMismatchError(
                f"the lexical index was built with analysis {stored!r}, not {self.signature!r};"
                " rebuild it (delete the index directory and ingest again)"
            )
        if stored != self.signature:
            self._set_meta("analyzer", self.signature)

    def clear(self) -> None:
        """Drop every posting and statistic (no commit).

        Use it to rebuild (then ``add`` every chunk again) after ``create_schema`` reported
        an index built with another analysis.
        """
        for table in ("lex_terms", "lex_postings", "lex_docs", "lex_meta"):
            self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.create_schema()

    def add(self, items: Sequence[tuple[int, str]]) -> None:
        """Index ``(chunk_id, text)`` pairs; an id that is already indexed is replaced."""
        docs: dict[int, Counter[str]] = {}
        for chunk_id, text in items:
            docs[int(chunk_id)] = Counter(self.analyzer.analyze(text))
        if not docs:
            return
        self.remove(list(docs))
        by_term: defaultdict[str, list[tuple[int, int, int]]] = defaultdict(list)
        doc_rows = []
        total = 0
        for chunk_id, tf in docs.items():
            length = sum(tf.values())
            total += length
            for term, count in tf.items():
                by_term[term].append((chunk_id, count, length))
        self.conn.executemany(
            "INSERT INTO lex_terms(term, df, fresh) VALUES (?, ?, 1) ON CONFLICT(term) "
            "DO UPDATE SET df = df + excluded.df, fresh = fresh + 1",
            [(term, len(p)) for term, p in sorted(by_term.items())],
        )
        term_id: dict[str, int] = dict(
            self.conn.execute(
                f"SELECT term, term_id FROM lex_terms WHERE term {_IN_JSON}",
                (json.dumps(list(by_term)),),
            ).fetchall()
        )
        seg = self._next_segments(1)
        rows = []
        for term, postings in by_term.items():
            ids, tfs, dls = zip(*sorted(postings), strict=True)
            rows.append((term_id[term], seg, 0, *_pack(ids, tfs, dls)))
        rows.sort()
        self.conn.executemany("INSERT INTO lex_postings VALUES (?, ?, ?, ?, ?, ?)", rows)
        for chunk_id, tf in docs.items():
            ids_of_chunk = np.asarray(sorted(term_id[t] for t in tf), dtype=_TERMS)
            doc_rows.append((chunk_id, sum(tf.values()), ids_of_chunk.tobytes()))
        self.conn.executemany("INSERT INTO lex_docs VALUES (?, ?, ?)", doc_rows)
        self._bump(len(docs), total)
        crowded = self.conn.execute(
            f"SELECT term_id FROM lex_terms WHERE fresh >= ? AND term {_IN_JSON}",
            (MERGE_FANOUT, json.dumps(list(by_term))),
        ).fetchall()
        if crowded:
            self._merge([row[0] for row in crowded])

    def remove(self, chunk_ids: Sequence[int]) -> None:
        """Drop chunks from the index; ids that are not indexed are ignored."""
        if not chunk_ids:
            return
        found = self.conn.execute(
            f"SELECT chunk_id, length, term_ids FROM lex_docs WHERE chunk_id {_IN_JSON}",
            (json.dumps([int(c) for c in chunk_ids]),),
        ).fetchall()
        if not found:
            return
        gone = np.asarray(sorted(row[0] for row in found), dtype=np.int64)
        affected = sorted({t for row in found for t in np.frombuffer(row[2], _TERMS).tolist()})
        rows = self.conn.execute(
            "SELECT term_id, seg, level, chunk_ids, tfs, dls FROM lex_postings "
            f"WHERE term_id {_IN_JSON}",
            (json.dumps(affected),),
        ).fetchall()
        updates, deletes = [], []
        df_drop: Counter[int] = Counter()
        fresh_drop: Counter[int] = Counter()
        for term, seg, level, ids_blob, tfs_blob, dls_blob in rows:
            ids = np.frombuffer(ids_blob, _IDS)
            hit = np.isin(ids, gone, assume_unique=True)
            dropped = int(hit.sum())
            if not dropped:
                continue
            df_drop[term] += dropped
            if dropped == ids.size:
                deletes.append((term, seg))
                fresh_drop[term] += level == 0
                continue
            keep = ~hit
            tfs = np.frombuffer(tfs_blob, _COUNTS)[keep]
            dls = np.frombuffer(dls_blob, _COUNTS)[keep]
            updates.append((*_pack(ids[keep], tfs, dls), term, seg))
        self.conn.executemany(
            "UPDATE lex_postings SET chunk_ids = ?, tfs = ?, dls = ? WHERE term_id = ? AND seg = ?",
            updates,
        )
        self.conn.executemany("DELETE FROM lex_postings WHERE term_id = ? AND seg = ?", deletes)
        self.conn.executemany(
            "UPDATE lex_terms SET df = df - ?, fresh = fresh - ? WHERE term_id = ?",
            [(df_drop[t], fresh_drop[t], t) for t in sorted(df_drop)],
        )
        # Terms no chunk uses any more leave the vocabulary (query splitting relies on it).
        self.conn.execute(
            f"DELETE FROM lex_terms WHERE df <= 0 AND term_id {_IN_JSON}",
            (json.dumps(sorted(df_drop)),),
        )
        self.conn.execute(
            f"DELETE FROM lex_docs WHERE chunk_id {_IN_JSON}", (json.dumps(gone.tolist()),)
        )
        self._bump(-len(found), -sum(row[1] for row in found))

    def search(
        self, query: str, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best ``(chunk_id, bm25)`` for ``query``, best first.

        ``allowed`` restricts the result to those chunk ids (the top ``k`` among them).
        """
        if k <= 0 or (allowed is not None and not allowed):
            return []
        words = self.analyzer.query_words(query)
        weights = Counter(self.analyzer.terms(words, vocabulary=self.vocabulary))
        if not weights:
            return []
        terms = list(weights)
        rows = self.conn.execute(_SEARCH_SQL, (json.dumps(terms),)).fetchall()
        n_chunks, total_length = rows[0][2], rows[0][3]
        if len(rows) == 1 or not n_chunks:
            return []
        chunk_id = np.concatenate([np.frombuffer(r[2], _IDS) for r in rows[1:]])
        tf = np.concatenate([np.frombuffer(r[3], _COUNTS) for r in rows[1:]]).astype(np.float64)
        dl = np.concatenate([np.frombuffer(r[4], _COUNTS) for r in rows[1:]]).astype(np.float64)
        sizes = [len(r[2]) // _IDS.itemsize for r in rows[1:]]
        df = np.repeat(np.asarray([r[1] for r in rows[1:]], dtype=np.float64), sizes)
        w = np.repeat(np.asarray([weights[terms[r[0]]] for r in rows[1:]], np.float64), sizes)
        if allowed is not None:
            keep = np.isin(chunk_id, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            chunk_id, tf, dl, df, w = chunk_id[keep], tf[keep], dl[keep], df[keep], w[keep]
            if chunk_id.size == 0:
                return []
        idf = np.log1p((n_chunks - df + 0.5) / (df + 0.5))
        norm = self.k1 * (1.0 - self.b + self.b * dl * (n_chunks / total_length))
        ids, slot = np.unique(chunk_id, return_inverse=True)
        scores = np.bincount(slot, weights=w * idf * tf * (self.k1 + 1.0) / (tf + norm))
        # Rounded: scores equal but for summation order tie in id order on every backend.
        scores = np.round(scores, SCORE_DECIMALS)
        top = np.arange(ids.size)
        if k < ids.size:  # the k best, plus every chunk tied with the k-th
            kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
            top = np.flatnonzero(scores >= kth)
        # best first; equal scores in id order so results are deterministic
        order = top[np.lexsort((ids[top], -scores[top]))][:k]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def vocabulary(self, terms: Collection[str]) -> Mapping[str, int]:
        """Document frequency of those ``terms`` the index holds."""
        if not terms:
            return {}
        rows = self.conn.execute(
            f"SELECT term, df FROM lex_terms WHERE term {_IN_JSON}", (json.dumps(sorted(terms)),)
        ).fetchall()
        return dict(rows)

    def __len__(self) -> int:
        value = self._meta("chunks")
        return value if isinstance(value, int) else 0

    def _merge(self, term_ids: Sequence[int]) -> None:
        """Merge full levels: F segments on level L become one on L + 1, cascading upwards."""
        levels: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
        for term, seg, level in self.conn.execute(
            f"SELECT term_id, seg, level FROM lex_postings WHERE term_id {_IN_JSON}",
            (json.dumps(sorted(term_ids)),),
        ):
            levels[term].append((seg, level))
        plans = {}
        for term, segs in levels.items():
            count = Counter(level for _, level in segs)
            top = 0
            carry = count[0]
            while carry >= MERGE_FANOUT:  # level `top` overflows into `top + 1`
                top += 1
                carry = count[top] + 1
            if top:
                plans[term] = (top, sorted(seg for seg, level in segs if level < top))
        if not plans:
            return
        pairs = json.dumps([[term, seg] for term, (_, segs) in plans.items() for seg in segs])
        parts: defaultdict[int, list[tuple[bytes, bytes, bytes]]] = defaultdict(list)
        for term, ids_blob, tfs_blob, dls_blob in self.conn.execute(
            "SELECT term_id, chunk_ids, tfs, dls FROM lex_postings "
            f"WHERE (term_id, seg) {_IN_PAIRS}",
            (pairs,),
        ):
            parts[term].append((ids_blob, tfs_blob, dls_blob))
        first = self._next_segments(len(plans))
        merged = []
        for offset, (term, (level, _)) in enumerate(sorted(plans.items())):
            ids = np.concatenate([np.frombuffer(p[0], _IDS) for p in parts[term]])
            tfs = np.concatenate([np.frombuffer(p[1], _COUNTS) for p in parts[term]])
            dls = np.concatenate([np.frombuffer(p[2], _COUNTS) for p in parts[term]])
            order = np.argsort(ids, kind="stable")
            merged.append((term, first + offset, level, *_pack(ids[order], tfs[order], dls[order])))
        self.conn.execute(
            f"DELETE FROM lex_postings WHERE (term_id, seg) {_IN_PAIRS}",
            (pairs,),
        )
        self.conn.executemany("INSERT INTO lex_postings VALUES (?, ?, ?, ?, ?, ?)", merged)
        self.conn.execute(
            f"UPDATE lex_terms SET fresh = 0 WHERE term_id {_IN_JSON}", (json.dumps(sorted(plans)),)
        )

    def _next_segments(self, count: int) -> int:
        """Reserve ``count`` consecutive segment numbers; returns the first."""
        self.conn.execute("UPDATE lex_meta SET value = value + ? WHERE key = 'segment'", (count,))
        row = self.conn.execute("SELECT value FROM lex_meta WHERE key = 'segment'").fetchone()
        return int(row[0]) - count + 1

    def _bump(self, chunks: int, length: int) -> None:
        self.conn.executemany(
            "UPDATE lex_meta SET value = value + ? WHERE key = ?",
            [(chunks, "chunks"), (length, "length")],
        )

    def _meta(self, key: str) -> object | None:
        try:
            row = self.conn.execute("SELECT value FROM lex_meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no schema yet
            return None
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: object) -> None:
        self.conn.execute(
            "INSERT INTO lex_meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _pack(ids: npt.ArrayLike, tfs: npt.ArrayLike, dls: npt.ArrayLike) -> tuple[bytes, bytes, bytes]:
    return (
        np.asarray(ids, dtype=_IDS).tobytes(),
        np.minimum(tfs, _MAX_COUNT).astype(_COUNTS).tobytes(),
        np.minimum(dls, _MAX_COUNT).astype(_COUNTS).tobytes(),
    )
