"""``rag eval``: retrieval and answer metrics on a QA file or a BEIR-style folder.

QA file (like ``eval/data/dev/dev.jsonl``): gold = the passages containing the gold quotes; a
question with several quotes counts as found at rank r only when all of them are in the top r.
BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``, optional ``splits.json``): the
corpus is ingested into a fresh temporary index through the normal path; a chunk counts for its
document, and documents are ranked by their best chunk.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.evaluation.beir import evaluate_beir, every_nth, load_beir
from rag.evaluation.qa import evaluate_qa
from rag.evaluation.ranking import DEPTH, MODES, RankStats, doc_ranking, rank_of_first
from rag.retrieve.retriever import Mode
from rag.service import RagService

__all__ = [
    "DEPTH",
    "MODES",
    "RankStats",
    "doc_ranking",
    "evaluate_beir",
    "evaluate_qa",
    "every_nth",
    "format_report",
    "load_beir",
    "rank_of_first",
    "run_eval",
]


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    retrieval = report["retrieval"]
    if "folder" in report:
        lines.append(
            f"{report['folder']} split={report['split']}: {report['documents']} documents, "
            f"{report['chunks']} chunks, {report['queries']} queries, "
            f"ingest {report['ingest_seconds']:.1f} s"
        )
        lines.append("| mode | MRR@10 | S@1 | S@5 | S@10 | nDCG@10 | p50 ms | p95 ms |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for mode, m in retrieval.items():
            lines.append(
                f"| {mode} | {m['mrr@10']:.3f} | {m['success@1']:.3f} | {m['success@5']:.3f} | "
                f"{m['success@10']:.3f} | {m['ndcg@10']:.3f} | {m['latency_p50_ms']:.1f} | "
                f"{m['latency_p95_ms']:.1f} |"
            )
        if "answers" in report:
            from rag.evaluation.answers import format_answer_summary

            lines += ["", "answers (extractive unless an LLM is set), per query language:"]
            lines += format_answer_summary(report["answers"]["by_language"])
        return "\n".join(lines)
    lines.append(f"{report['file']}: {report['questions']} questions")
    lines.append("| mode | type | n | R@1 | R@5 | MRR@10 |")
    lines.append("|---|---|---|---|---|---|")
    for mode, types in retrieval.items():
        for t, m in types.items():
            lines.append(
                f"| {mode} | {t} | {int(m['n'])} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | "
                f"{m['mrr@10']:.3f} |"
            )
    if "answers" in report:
        a = report["answers"]
        lines.append("")
        lines.append(
            f"answers: keyword hit {a['keyword_hit_answerable']:.2f} (answerable), answered "
            f"{a['answered_answerable']:.2f} (answerable), abstained "
            f"{a['abstained_unanswerable']:.2f} (unanswerable), traps passed "
            f"{a['boilerplate_traps_passed']:.2f}, citations valid {a['citations_valid']:.2f} "
            f"of {a['citations']}, supported {a['citations_supported']:.2f}, language "
            f"{a['language_matches']:.2f}"
        )
        lines.append("| type | n | answered | keyword hit |")
        lines.append("|---|---|---|---|")
        for t, m in a["by_type"].items():
            lines.append(f"| {t} | {m['n']} | {m['answered']:.2f} | {m['keyword_hit']:.2f} |")
    return "\n".join(lines)


def run_eval(
    settings: Settings,
    path: Path,
    *,
    split: str | None = None,
    out: Path | None = None,
    modes: str = "dense,lexical,hybrid",
    index_dir: Path | None = None,
    every: int = 1,
) -> int:
    """CLI entry: evaluate, print a table, write the JSON report."""
    chosen: list[Mode] = [m for m in MODES if m in {x.strip() for x in modes.split(",")}]
    if path.is_dir():
        report = evaluate_beir(
            settings, path, split=split, modes=chosen, index_dir=index_dir, every=every
        )
    else:
        service = RagService.from_settings(settings)
        report = evaluate_qa(service, path, modes=chosen)
        service.close()
    print(format_report(report))
    target = out or Path("bench/results") / f"eval-{path.stem}{'-' + split if split else ''}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=_json_default))
    print(f"report written to {target}")
    return 0


def _json_default(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    return str(value)
