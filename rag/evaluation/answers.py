"""Answer metrics for a BEIR folder with ``answers.jsonl`` (like ``eval/data/xquad-de``).

``answers.jsonl`` holds ``{"query_id", "answerable", "answers": [gold spans], "gold_doc"}``.
Per query language the report gives retrieval over the answerable questions (R@1, R@5,
MRR@10), the **supported answer rate** (answered, and one citation quote contains a gold
answer after ``normalize``), abstention on the unanswerable questions, false abstention on
the answerable ones, and answer latency.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.evaluation.ranking import RankStats
from rag.service import RagService
from rag.types import Answer, Hit

__all__ = [
    "ANSWER_PASSAGES",
    "GoldAnswer",
    "answer_row",
    "format_answer_summary",
    "load_answers",
    "normalize",
    "query_languages",
    "summarize_by_language",
    "supported",
]

# Quotation marks (straight, German, English, guillemets) and brackets.
_QUOTES_AND_BRACKETS = re.compile(
    "[\"'\u201e\u201c\u201d\u201a\u2018\u2019\u00ab\u00bb\u2039\u203a()\\[\\]{}]"
)


def normalize(text: str) -> str:
    """NFKC, case-folded, without quotation marks and brackets, whitespace collapsed."""
    text = _QUOTES_AND_BRACKETS.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(text.split())


@dataclass(frozen=True)
class GoldAnswer:
    """The gold answer spans of one query; none for an unanswerable one."""

    answerable: bool
    answers: tuple[str, ...]


def load_answers(folder: Path) -> dict[str, GoldAnswer]:
    """``answers.jsonl`` of a BEIR folder by query id (empty when the folder has none)."""
    path = folder / "answers.jsonl"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["query_id"]] = GoldAnswer(bool(row["answerable"]), tuple(row["answers"]))
    return out


def query_languages(folder: Path) -> dict[str, str]:
    """The ``lang`` of every query in ``queries.jsonl`` ("?" when a query has none)."""
    rows = (json.loads(x) for x in (folder / "queries.jsonl").read_text("utf-8").splitlines() if x)
    return {q["id"]: q.get("lang", "?") for q in rows}


def supported(answer: Answer, gold: GoldAnswer) -> bool:
    """Answered, and a citation quote contains one of the gold answers (normalised)."""
    if answer.abstained or not gold.answers:
        return False
    quotes = [normalize(c.quote) for c in answer.citations]
    return any(normalize(g) in q for g in gold.answers for q in quotes)


ANSWER_PASSAGES = 5  # passages an answer sees: the service's default ``top_k``


def answer_row(
    service: RagService,
    qid: str,
    question: str,
    hits: Sequence[Hit],
    gold: GoldAnswer,
    langs: dict[str, str],
    retrieval_ms: float,
) -> dict[str, Any]:
    """Answer ``question`` from the top of its ranking ``hits`` and score it against ``gold``.

    The answer sees the first ``ANSWER_PASSAGES`` of the ranking evaluation already made,
    the passages ``RagService.ask`` retrieves, so each question is searched only once.
    """
    t0 = time.perf_counter()
    answer = service.answerer.answer(question, hits[:ANSWER_PASSAGES])
    ms = retrieval_ms + (time.perf_counter() - t0) * 1000
    return {
        "id": qid,
        "lang": langs.get(qid, "?"),
        "answerable": gold.answerable,
        "abstained": answer.abstained,
        "reason": answer.reason,
        "supported": supported(answer, gold),
        "latency_ms": ms,
        "answer": answer.text,
    }


def _share(rows: Sequence[dict[str, Any]], key: str) -> float:
    return sum(1 for r in rows if r[key]) / len(rows) if rows else 0.0


def summarize_by_language(
    rows: Sequence[dict[str, Any]], ranks: dict[str, int | None]
) -> dict[str, dict[str, float]]:
    """Per query language: retrieval (from ``ranks``), supported, abstention, latency."""
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_lang[r["lang"]].append(r)
    out = {}
    for lang, items in sorted(by_lang.items()):
        answerable = [r for r in items if r["answerable"]]
        unanswerable = [r for r in items if not r["answerable"]]
        stats = RankStats()
        for r in answerable:
            stats.add(ranks.get(r["id"]), r["latency_ms"])
        rank = stats.summary()
        out[lang] = {
            "answerable": float(len(answerable)),
            "unanswerable": float(len(unanswerable)),
            "recall@1": rank["recall@1"],
            "recall@5": rank["recall@5"],
            "mrr@10": rank["mrr@10"],
            "supported": _share(answerable, "supported"),
            "abstained_unanswerable": _share(unanswerable, "abstained"),
            "false_abstention": _share(answerable, "abstained"),
            "latency_p50_ms": rank.get("latency_p50_ms", 0.0),
            "latency_p95_ms": rank.get("latency_p95_ms", 0.0),
        }
    return out


def format_answer_summary(summary: dict[str, dict[str, float]]) -> list[str]:
    """Markdown table lines, one row per query language."""
    lines = [
        "| lang | answerable | R@1 | R@5 | MRR@10 | supported | abstains (unanswerable) "
        "| false abstention | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lang, m in summary.items():
        lines.append(
            f"| {lang} | {int(m['answerable'])} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | "
            f"{m['mrr@10']:.3f} | {m['supported']:.3f} | {m['abstained_unanswerable']:.3f} "
            f"({int(m['unanswerable'])}) | {m['false_abstention']:.3f} | "
            f"{m['latency_p50_ms']:.0f} | {m['latency_p95_ms']:.0f} |"
        )
    return lines
