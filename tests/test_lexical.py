from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.errors import IndexMismatchError
from rag.store import lexical
from rag.store.lexical import LexicalIndex
from rag.text.analysis import GermanAnalyzer

DOCS = {
    1: "Präsidentschaftswahlen in den USA\nDie Wahlen finden im November 2024 statt.",
    2: "Russland und die Ukraine\nPutin traf Trump im März 2025 in Alaska.",
    3: "Wirtschaft\nDie Wirtschaftspolitik der Regierung stößt auf Kritik.",
    4: "Sport\nDer FC Barcelona gewinnt gegen Real Madrid mit 3:1.",
    5: "Klima\nDer Anteil der Migranten an der Bevölkerung wächst.",
}


def connect(path: Path) -> sqlite3.Connection:
    # like the application's store: autocommit mode, explicit transactions, WAL
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite3"


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(db)
    yield conn
    conn.close()


@pytest.fixture
def index(conn: sqlite3.Connection) -> LexicalIndex:
    index = LexicalIndex(conn)
    conn.execute("BEGIN")
    index.create_schema()
    index.add(list(DOCS.items()))
    conn.execute("COMMIT")
    return index


def ids(results: list[tuple[int, float]]) -> list[int]:
    return [chunk_id for chunk_id, _ in results]


def test_search_finds_names_numbers_and_compound_parts(index: LexicalIndex) -> None:
    assert len(index) == 5
    assert ids(index.search("Putin und Trump", 3))[0] == 2
    assert ids(index.search("2025", 3)) == [2]
    # "Wahlen" finds the compound "Präsidentschaftswahlen" (doc 1 has both) ...
    assert ids(index.search("Wahl", 5)) == [1]
    # ... and "Wirtschaftspolitik" is found by its parts
    assert ids(index.search("Politik", 5)) == [3]
    assert ids(index.search("Wirtschaft", 5)) == [3]
    # a query compound the index never saw is split into words it knows
    assert ids(index.search("Migrantenanteil", 5)) == [5]
    assert index.search("Quantenphysik", 5) == []
    assert index.search("der die das", 5) == []  # stop words only
    assert index.search("Putin", 0) == []


def test_scores_are_bm25(index: LexicalIndex) -> None:
    # "alaska" occurs once in doc 2 only: score = idf * tf * (k1 + 1) / (tf + k1 * norm)
    conn = index.conn
    n, total = 5, sum(len(index.analyzer.analyze(t)) for t in DOCS.values())
    dl = len(index.analyzer.analyze(DOCS[2]))
    idf = math.log1p((n - 1 + 0.5) / (1 + 0.5))
    norm = 1 - 0.75 + 0.75 * dl / (total / n)
    expected = idf * 1 * 2.2 / (1 + 1.2 * norm)
    [(chunk_id, score)] = index.search("Alaska", 5)
    assert chunk_id == 2
    assert score == pytest.approx(expected, rel=1e-9)
    other = LexicalIndex(conn, k1=2.0, b=0.0)
    [(_, score_b0)] = other.search("Alaska", 5)
    assert score_b0 == pytest.approx(idf * 3.0 / (1 + 2.0), rel=1e-9)


def test_exact_compound_outranks_a_text_with_only_its_head(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    index = LexicalIndex(conn)
    index.create_schema()
    index.add([(10, "Die Wahlen in Bayern."), (11, "Die Präsidentschaftswahlen in Bayern.")])
    assert ids(index.search("Präsidentschaftswahlen", 2)) == [11, 10]
    assert ids(index.search("Wahlen", 2))[0] in (10, 11)  # both hold the head


def test_english_query_matches_names_not_junk(index: LexicalIndex) -> None:
    assert ids(index.search("What did Putin and Trump agree on in Alaska?", 5)) == [2]
    # ordinary English words stemmed as German must not match German text
    assert index.search("which party wins the elections", 5) == []


def test_filter_keeps_top_k_after_filtering(index: LexicalIndex) -> None:
    query = "Wahlen Putin Barcelona Wirtschaft"
    assert set(ids(index.search(query, 10))) == {1, 2, 3, 4}
    assert ids(index.search(query, 2, allowed={3, 4, 5})) in ([3, 4], [4, 3])
    assert ids(index.search(query, 1, allowed={4})) == [4]
    assert index.search(query, 5, allowed={5}) == []
    assert index.search(query, 5, allowed=set()) == []


def test_remove_and_replace(index: LexicalIndex, conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    index.remove([2, 999])  # unknown ids are ignored
    conn.execute("COMMIT")
    assert len(index) == 4
    assert index.search("Putin", 5) == []
    # terms nobody uses any more leave the vocabulary
    assert index.vocabulary({"putin", "wahl"}) == {"wahl": 1}
    conn.execute("BEGIN")
    index.add([(1, "Putin gewinnt"), (2, "Trump verliert")])  # 1 replaced, 2 new again
    conn.execute("COMMIT")
    assert len(index) == 5
    assert ids(index.search("Putin", 5)) == [1]
    assert index.search("Präsidentschaftswahlen", 5) == []
    totals = conn.execute("SELECT value FROM lex_meta WHERE key = 'length'").fetchone()[0]
    assert totals == sum(len(index.analyzer.analyze(t)) for t in conn_texts(index))


def conn_texts(index: LexicalIndex) -> list[str]:
    return [DOCS[3], DOCS[4], DOCS[5], "Putin gewinnt", "Trump verliert"]


def test_persists_across_connections(db: Path, index: LexicalIndex) -> None:
    before = index.search("Wahlen Putin", 5)
    index.conn.close()
    reopened = connect(db)
    try:
        again = LexicalIndex(reopened)
        again.create_schema()  # idempotent on an existing index
        assert len(again) == 5
        assert again.search("Wahlen Putin", 5) == before
    finally:
        reopened.close()


def test_second_connection_sees_commits_of_the_first(db: Path, index: LexicalIndex) -> None:
    reader = LexicalIndex(connect(db))
    try:
        assert reader.search("Neuwahl Berlin", 5) == []
        writer = index.conn
        writer.execute("BEGIN IMMEDIATE")
        index.add([(42, "Neuwahl in Berlin")])
        # not committed yet: the reader still sees the old state
        assert reader.search("Neuwahl Berlin", 5) == []
        assert len(reader) == 5
        writer.execute("COMMIT")
        assert ids(reader.search("Neuwahl Berlin", 5))[0] == 42
        assert len(reader) == 6
        writer.execute("BEGIN IMMEDIATE")
        index.remove([42])
        writer.execute("COMMIT")
        assert ids(reader.search("Neuwahl Berlin", 5)) == []
    finally:
        reader.conn.close()


def test_rollback_leaves_nothing_behind(index: LexicalIndex, conn: sqlite3.Connection) -> None:
    def snapshot() -> list[list[tuple[object, ...]]]:
        tables = ("lex_terms", "lex_postings", "lex_docs", "lex_meta")
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables]

    before = snapshot()
    conn.execute("BEGIN")
    index.add([(77, "Ein ganz neuer Text über Raumfahrt"), (1, "ersetzt")])
    index.remove([3])
    assert ids(index.search("Raumfahrt", 5)) == [77]  # the transaction sees its own writes
    assert not conn.execute("SELECT 1 FROM lex_docs WHERE chunk_id = 3").fetchall()
    conn.execute("ROLLBACK")
    assert snapshot() == before
    assert index.search("Raumfahrt", 5) == []
    assert ids(index.search("Wirtschaftspolitik", 5)) == [3]


def test_writes_do_not_commit_the_callers_transaction(db: Path, conn: sqlite3.Connection) -> None:
    index = LexicalIndex(conn)
    conn.execute("BEGIN")
    index.create_schema()
    index.add([(1, "Wahlen")])
    index.remove([1])
    index.add([(2, "Wahlen")])
    assert conn.in_transaction
    other = connect(db)
    try:
        assert not other.execute(
            "SELECT name FROM sqlite_master WHERE name = 'lex_docs'"
        ).fetchall()
    finally:
        other.close()
    conn.execute("COMMIT")


def test_merges_keep_results_identical(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"Bericht {i} über Wahlen und Regierung in Land {i % 7}" for i in range(60)]
    conn.execute("BEGIN")  # one transaction: no fsync per statement
    flat = LexicalIndex(conn)
    flat.create_schema()
    flat.add(list(enumerate(texts)))  # one segment per term
    expected = flat.search("Wahlen Regierung Land", 60)
    flat.remove(list(range(60)))
    monkeypatch.setattr(lexical, "MERGE_FANOUT", 2)
    one_by_one = LexicalIndex(conn)
    for i, text in enumerate(texts):
        one_by_one.add([(i, text)])
    rows = conn.execute(
        "SELECT COUNT(*) FROM lex_postings p JOIN lex_terms t USING (term_id) WHERE t.term = 'wahl'"
    ).fetchone()[0]
    assert rows < 10  # 60 single-chunk segments were merged
    fresh = conn.execute("SELECT fresh FROM lex_terms WHERE term = 'wahl'").fetchone()[0]
    assert fresh < 2  # level-0 segments left after the last merge
    merged = one_by_one.search("Wahlen Regierung Land", 60)
    assert ids(merged) == ids(expected)
    assert [s for _, s in merged] == pytest.approx([s for _, s in expected], rel=1e-12)
    one_by_one.remove(list(range(0, 60, 2)))
    assert sorted(ids(one_by_one.search("Wahlen", 60))) == list(range(1, 60, 2))
    conn.execute("ROLLBACK")


def test_other_analysis_is_refused(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    LexicalIndex(conn).create_schema()
    LexicalIndex(conn).add([(1, "Wahlen")])
    with pytest.raises(IndexMismatchError):
        LexicalIndex(conn, GermanAnalyzer(decompound=False)).create_schema()
    # an empty index may switch
    LexicalIndex(conn).remove([1])
    LexicalIndex(conn, GermanAnalyzer(decompound=False)).create_schema()
    LexicalIndex(conn, GermanAnalyzer(decompound=False)).add([(1, "Wahlen")])
    # clear() drops the old postings so that the index can be rebuilt with another analysis
    index = LexicalIndex(conn)
    with pytest.raises(IndexMismatchError):
        index.create_schema()
    index.clear()
    assert len(index) == 0
    assert index.search("Wahlen", 5) == []
    index.add([(1, "Präsidentschaftswahlen")])
    assert ids(index.search("Wahlen", 5)) == [1]
