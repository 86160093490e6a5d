"""Answer metrics of `rag eval` on a BEIR folder with answers.jsonl (XQuAD)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.evaluation import every_nth
from rag.evaluation.answers import (
    GoldAnswer,
    load_answers,
    normalize,
    summarize_by_language,
    supported,
)
from rag.types import Answer, Citation

XQUAD = Path(__file__).resolve().parents[1] / "eval" / "data" / "xquad-de"


def _answer(*quotes: str, abstained: bool = False) -> Answer:
    citations = tuple(
        Citation(i + 1, "d", i, "t", q, 0, len(q), 1.0, True) for i, q in enumerate(quotes)
    )
    return Answer("q", "text", citations, (), abstained, "de")


def test_normalize_folds_case_quotes_brackets_and_spaces() -> None:
    assert normalize("Der „Große“  Preis (2016)") == "der grosse preis 2016"
    assert normalize("\uff21\uff22\uff23") == "abc"  # NFKC: full-width letters


def test_supported_needs_an_answer_whose_quote_holds_a_gold_span() -> None:
    gold = GoldAnswer(True, ("Santa Clara", "Levi's Stadium"))
    assert supported(_answer("Das Spiel fand in santa  clara statt."), gold)
    # any citation counts; apostrophe variants are quotation marks alike
    assert supported(_answer("Andere Sache.", "Im \u201eLevi\u2019s Stadium\u201c."), gold)
    assert supported(_answer("Im Levi's Stadium."), gold)
    assert not supported(_answer("Das Spiel fand in Santa Clara statt.", abstained=True), gold)
    assert not supported(_answer("Anderswo."), gold)
    assert not supported(_answer("Santa Clara"), GoldAnswer(False, ()))


def test_summary_per_language() -> None:
    rows = [
        {"id": "a-de", "lang": "de", "answerable": True, "abstained": False, "supported": True,
         "latency_ms": 10.0},
        {"id": "b-de", "lang": "de", "answerable": True, "abstained": True, "supported": False,
         "latency_ms": 20.0},
        {"id": "c-de", "lang": "de", "answerable": False, "abstained": True, "supported": False,
         "latency_ms": 5.0},
        {"id": "a-en", "lang": "en", "answerable": True, "abstained": False, "supported": False,
         "latency_ms": 7.0},
    ]  # fmt: skip
    summary = summarize_by_language(rows, {"a-de": 1, "b-de": 2, "a-en": None})
    de, en = summary["de"], summary["en"]
    assert de["supported"] == 0.5 and de["false_abstention"] == 0.5
    assert de["abstained_unanswerable"] == 1.0 and de["unanswerable"] == 1.0
    assert de["recall@1"] == 0.5 and de["mrr@10"] == pytest.approx(0.75)
    assert en["mrr@10"] == 0.0 and en["supported"] == 0.0


def test_xquad_answers_and_a_fixed_sample_keep_translations_together() -> None:
    gold = load_answers(XQUAD)
    assert len(gold) == 2346
    assert sum(not g.answerable for g in gold.values()) == 434
    queries = {json.loads(x)["id"]: "" for x in (XQUAD / "queries.jsonl").read_text().splitlines()}
    sample = every_nth(queries, 4)
    assert 0.15 < len(sample) / len(queries) < 0.35
    bases = {q.rsplit("-", 1)[0] for q in sample}
    assert all(f"{b}-de" in sample and f"{b}-en" in sample for b in bases)
    assert load_answers(XQUAD.parent / "germanquad") == {}
