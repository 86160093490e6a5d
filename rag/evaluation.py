"""``rag eval``: retrieval and answer metrics on a QA file or a BEIR-style folder.

QA file (like ``eval/data/dev/dev.jsonl``): gold = the passages containing the gold quotes; a
question with several quotes counts as found at rank r only when all of them are in the top r.
BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``, optional ``splits.json``): the
corpus is ingested into a fresh temporary index through the normal path; a chunk counts for its
document, and documents are ranked by their best chunk.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.config import Settings
from rag.embedding.base import Embedder
from rag.retrieve.retriever import Mode
from rag.service import RagService
from rag.types import Answer, Chunk, Hit

MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
DEPTH = 10


# -- metric helpers -------------------------------------------------------------------
def rank_of_all(ranked: Sequence[set[str]], gold: Sequence[set[str]]) -> int | None:
    """1-based rank at which every gold item has been seen (each gold: a set of matches)."""
    seen: set[str] = set()
    for rank, ids in enumerate(ranked, 1):
        seen |= ids
        if all(g & seen for g in gold):
            return rank
    return None


def rank_of_first(ranked: Sequence[str], gold: set[str]) -> int | None:
    for rank, item in enumerate(ranked, 1):
        if item in gold:
            return rank
    return None


def ndcg_at(rank: int | None, k: int) -> float:
    """nDCG@k for one relevant item (binary relevance)."""
    return 0.0 if rank is None or rank > k else 1.0 / math.log2(rank + 1)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[pos]


@dataclass
class RankStats:
    """Accumulates ranks of the gold item(s) per question."""

    ranks: list[int | None] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, rank: int | None, latency_ms: float | None = None) -> None:
        self.ranks.append(rank)
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)

    def summary(self) -> dict[str, float]:
        n = len(self.ranks) or 1
        out = {
            "n": float(len(self.ranks)),
            "recall@1": sum(1 for r in self.ranks if r is not None and r <= 1) / n,
            "recall@5": sum(1 for r in self.ranks if r is not None and r <= 5) / n,
            "recall@10": sum(1 for r in self.ranks if r is not None and r <= 10) / n,
            "mrr@10": sum(1 / r for r in self.ranks if r is not None and r <= 10) / n,
            "ndcg@10": sum(ndcg_at(r, 10) for r in self.ranks) / n,
        }
        if self.latencies_ms:
            out["latency_p50_ms"] = percentile(self.latencies_ms, 50)
            out["latency_p95_ms"] = percentile(self.latencies_ms, 95)
        return out


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


# -- BEIR folders ---------------------------------------------------------------------
def load_beir(
    folder: Path, split: str | None
) -> tuple[list[dict[str, str]], dict[str, str], dict[str, set[str]]]:
    corpus = [json.loads(x) for x in (folder / "corpus.jsonl").read_text("utf-8").splitlines() if x]
    queries = {
        q["id"]: q["text"]
        for q in (
            json.loads(x) for x in (folder / "queries.jsonl").read_text("utf-8").splitlines() if x
        )
    }
    qrels: dict[str, set[str]] = defaultdict(set)
    for line in (folder / "qrels.tsv").read_text("utf-8").splitlines()[1:]:
        qid, did, rel = line.split("\t")
        if int(rel) > 0:
            qrels[qid].add(did)
    if split:
        splits = json.loads((folder / "splits.json").read_text("utf-8"))
        keep = set(splits[split])
        queries = {k: v for k, v in queries.items() if k in keep}
    return corpus, queries, dict(qrels)


def every_nth(queries: dict[str, str], every: int) -> dict[str, str]:
    """A fixed 1-in-``every`` sample of the queries, by question: the translations of one
    question ("<id>-de", "<id>-en") are kept or dropped together."""
    if every <= 1:
        return queries
    return {
        q: t for q, t in queries.items() if zlib.crc32(q.rsplit("-", 1)[0].encode()) % every == 0
    }


def evaluate_beir(
    settings: Settings,
    folder: Path,
    *,
    split: str | None = None,
    every: int = 1,
    modes: Sequence[Mode] = MODES,
    limit_docs: int | None = None,
    embedder: Embedder | None = None,
    index_dir: Path | None = None,
) -> dict[str, Any]:
    """Ingest the BEIR corpus into an index and rank documents for every query.

    The index is temporary unless ``index_dir`` is given: a kept index makes the next run
    (the other split, other settings) re-embed nothing, since ingestion skips unchanged
    documents.
    """
    from rag import answer_metrics
    from rag.ingest.loaders import document_from_text

    corpus, queries, qrels = load_beir(folder, split)
    queries = every_nth(queries, every)
    gold = answer_metrics.load_answers(folder)
    if limit_docs is not None:
        corpus = corpus[:limit_docs]
        kept = {d["id"] for d in corpus}
        queries = {q: t for q, t in queries.items() if qrels.get(q, set()) & kept}
    asked = {q: t for q, t in queries.items() if q in gold}
    queries = {q: t for q, t in queries.items() if q in qrels}
    place: AbstractContextManager[str] = (
        nullcontext(str(index_dir))
        if index_dir is not None
        else tempfile.TemporaryDirectory(prefix="rag-eval-")
    )
    with place as tmp:
        if embedder is not None:  # tests share one loaded model
            svc = RagService(Path(tmp), embedder, mode=settings.retrieval_mode)
        else:
            svc = RagService.from_settings(settings.model_copy(update={"index_dir": Path(tmp)}))
        docs = [
            document_from_text(d["id"], d["text"], title=d.get("title") or None) for d in corpus
        ]
        t0 = time.perf_counter()
        report_ingest = svc.index.ingest(tqdm(docs, desc="ingest", unit="doc"), prune=True)
        ingest_s = time.perf_counter() - t0
        stats: dict[str, RankStats] = {m: RankStats() for m in modes}
        per_query: list[dict[str, Any]] = []
        answer_rows: list[dict[str, Any]] = []
        langs = answer_metrics.query_languages(folder) if asked else {}
        for qid, text in tqdm({**queries, **asked}.items(), desc="queries", unit="q"):
            t0 = time.perf_counter()
            qvec = svc.embedder.embed_queries([text])[0]
            embed_ms = (time.perf_counter() - t0) * 1000
            row: dict[str, Any] = {"id": qid}
            for mode in dict.fromkeys([*modes, svc.retriever.mode] if qid in asked else modes):
                t0 = time.perf_counter()
                hits = svc.retriever.search(text, 3 * DEPTH, mode=mode, query_vector=qvec)
                ms = (time.perf_counter() - t0) * 1000 + (embed_ms if mode != "lexical" else 0)
                if qid in qrels and mode in stats:
                    rank = rank_of_first(_doc_ranking(hits)[:DEPTH], qrels[qid])
                    stats[mode].add(rank, ms)
                    row[mode] = rank
                if qid in asked and mode == svc.retriever.mode:
                    answer_rows.append(
                        answer_metrics.answer_row(svc, qid, text, hits, gold[qid], langs, ms)
                    )
            if qid in queries:
                per_query.append(row)
        answers: dict[str, Any] = {}
        if answer_rows:
            ranks = {row["id"]: row.get(svc.retriever.mode) for row in per_query}
            answers = {
                "by_language": answer_metrics.summarize_by_language(answer_rows, ranks),
                "per_query": answer_rows,
            }
        n_chunks = svc.index.store.counts()[1]
        svc.close()
    return {
        **({"answers": answers} if answers else {}),
        "folder": str(folder),
        "split": split,
        "every": every,
        "documents": len(corpus),
        "chunks": n_chunks,
        "queries": len(queries),
        "ingest_seconds": ingest_s,
        "chunks_embedded": report_ingest.chunks_embedded,
        "retrieval": {m: _beir_summary(s) for m, s in stats.items()},
        "per_query": per_query,
    }


def _doc_ranking(hits: Sequence[Hit]) -> list[str]:
    seen: list[str] = []
    for h in hits:
        for doc_id in [h.chunk.doc_id, *(d.doc_id for d in h.duplicates)]:
            if doc_id not in seen:
                seen.append(doc_id)
    return seen


def _beir_summary(s: RankStats) -> dict[str, float]:
    base = s.summary()
    return {
        "n": base["n"],
        "mrr@10": base["mrr@10"],
        "success@1": base["recall@1"],
        "success@5": base["recall@5"],
        "success@10": base["recall@10"],
        "ndcg@10": base["ndcg@10"],
        "latency_p50_ms": base.get("latency_p50_ms", 0.0),
        "latency_p95_ms": base.get("latency_p95_ms", 0.0),
    }


# -- printing -------------------------------------------------------------------------
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
            from rag.answer_metrics import format_answer_summary

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
