"""QA files (like ``eval/data/dev/dev.jsonl``): retrieval of the gold quotes and answer checks."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.evaluation.ranking import DEPTH, MODES, RankStats, rank_of_all
from rag.retrieve.retriever import Mode
from rag.service import RagService
from rag.types import Answer, Chunk


# -- QA files -------------------------------------------------------------------------
def gold_chunks(chunks: Sequence[Chunk], text: str, quote: str) -> set[str]:
    """Ids of the chunks that contain (or, if split, overlap) the quote."""
    start = text.find(quote)
    if start < 0:
        return set()
    end = start + len(quote)
    inside = {str(c.chunk_id) for c in chunks if c.start <= start and end <= c.end}
    if inside:
        return inside
    return {str(c.chunk_id) for c in chunks if c.start < end and start < c.end}


def boilerplate_lines(chunks: Sequence[Chunk], quote: str) -> list[str]:
    """Lines of a trap quote that no passage contains: the page chrome itself."""
    return [
        line.strip()
        for line in quote.split("\n")
        if line.strip() and not any(line.strip() in c.text for c in chunks)
    ]


def shows_boilerplate(texts: Sequence[str], lines: Sequence[str]) -> bool:
    return any(line in text for text in texts for line in lines)


def evaluate_qa(
    service: RagService, path: Path, *, modes: Sequence[Mode] = MODES, answers: bool = True
) -> dict[str, Any]:
    """Retrieval metrics per mode and question type, then extractive/LLM answer metrics."""
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    store = service.index.store
    per_mode: dict[str, dict[str, RankStats]] = {m: defaultdict(RankStats) for m in modes}
    rows: list[dict[str, Any]] = []
    answer_rows: list[dict[str, Any]] = []
    for q in tqdm(questions, desc="eval", unit="q"):
        row: dict[str, Any] = {"id": q["id"], "type": q["type"], "lang": q["lang"]}
        gold: list[set[str]] = []
        for g in q.get("gold", []):
            doc_text = store.get_document(g["doc"]).text
            gold.append(gold_chunks(store.chunks_of(g["doc"]), doc_text, g["quote"]))
        qvec = service.embedder.embed_queries([q["question"]])[0]
        answerable = q["type"] not in ("unanswerable", "boilerplate_trap")
        for mode in modes:
            t0 = time.perf_counter()
            hits = service.retriever.search(q["question"], DEPTH, mode=mode, query_vector=qvec)
            ms = (time.perf_counter() - t0) * 1000
            ranked = [
                {str(h.chunk.chunk_id)} | {str(d.chunk_id) for d in h.duplicates} for h in hits
            ]
            if answerable:
                rank = rank_of_all(ranked, gold)
                per_mode[mode][q["type"]].add(rank, ms)
                per_mode[mode]["all"].add(rank, ms)
                row[f"rank_{mode}"] = rank
            elif q["type"] == "boilerplate_trap":
                chrome = [
                    line
                    for g in q["gold"]
                    for line in boilerplate_lines(store.chunks_of(g["doc"]), g["quote"])
                ]
                row[f"trap_passed_{mode}"] = not shows_boilerplate(
                    [h.chunk.text for h in hits[:5]], chrome
                )
        rows.append(row)
        if answers:
            answer_rows.append(_answer_row(service, q, service.ask(q["question"])))
    report: dict[str, Any] = {
        "file": str(path),
        "questions": len(questions),
        "retrieval": {
            mode: {t: s.summary() for t, s in sorted(stats.items())}
            for mode, stats in per_mode.items()
        },
        "per_question": rows,
    }
    if answers:
        report["answers"] = summarize_answers(answer_rows)
        report["answers_per_question"] = answer_rows
    return report


def _answer_row(service: RagService, q: dict[str, Any], answer: Answer) -> dict[str, Any]:
    store = service.index.store
    passage_ids = {h.chunk.chunk_id for h in answer.passages}
    valid = 0
    for c in answer.citations:
        text = store.get_document(c.doc_id).text
        if c.chunk_id in passage_ids and text[c.start : c.end] == c.quote and c.quote:
            valid += 1
    keywords = [k.lower() for k in q.get("answer_keywords", [])]
    trap_ok = True
    if q["type"] == "boilerplate_trap":
        chrome = [
            line
            for g in q["gold"]
            for line in boilerplate_lines(store.chunks_of(g["doc"]), g["quote"])
        ]
        shown = [c.quote for c in answer.citations] + [h.chunk.text for h in answer.passages[:1]]
        # Passes when nothing cited or top-ranked shows the page chrome, and the answer does
        # not repeat it either.
        trap_ok = not shows_boilerplate([*shown, answer.text], chrome)
    return {
        "id": q["id"],
        "type": q["type"],
        "lang": q["lang"],
        "abstained": answer.abstained,
        "reason": answer.reason,
        "language": answer.language,
        "keyword_hit": any(k in answer.text.lower() for k in keywords) if keywords else None,
        "citations": len(answer.citations),
        "citations_valid": valid,
        "citations_supported": sum(1 for c in answer.citations if c.supported),
        "trap_passed": trap_ok,
        "answer": answer.text,
    }


def summarize_answers(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if r["type"] not in ("unanswerable", "boilerplate_trap")]
    unanswerable = [r for r in rows if r["type"] == "unanswerable"]
    traps = [r for r in rows if r["type"] == "boilerplate_trap"]
    cited = sum(r["citations"] for r in rows)

    def share(items: Sequence[dict[str, Any]], pred: Any) -> float:
        return sum(1 for r in items if pred(r)) / len(items) if items else 0.0

    by_type: dict[str, dict[str, float]] = {}
    for t in sorted({r["type"] for r in rows}):
        items = [r for r in rows if r["type"] == t]
        by_type[t] = {
            "n": len(items),
            "answered": share(items, lambda r: not r["abstained"]),
            "keyword_hit": share(items, lambda r: bool(r["keyword_hit"])),
        }
    return {
        "keyword_hit_answerable": share(answerable, lambda r: bool(r["keyword_hit"])),
        "answered_answerable": share(answerable, lambda r: not r["abstained"]),
        "abstained_unanswerable": share(unanswerable, lambda r: r["abstained"]),
        "boilerplate_traps_passed": share(traps, lambda r: r["trap_passed"]),
        "citations": cited,
        "citations_valid": (sum(r["citations_valid"] for r in rows) / cited) if cited else 1.0,
        "citations_supported": (
            sum(r["citations_supported"] for r in rows) / cited if cited else 1.0
        ),
        "language_matches": share(rows, lambda r: r["language"] == r["lang"]),
        "by_type": by_type,
    }
