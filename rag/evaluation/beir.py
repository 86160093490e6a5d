"""BEIR folders (corpus, queries, qrels, optional splits and answers).

Documents are ranked by their best chunk."""

from __future__ import annotations

import json
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.config import Settings
from rag.embedding.base import Embedder
from rag.errors import ConfigError
from rag.evaluation.ranking import DEPTH, MODES, RankStats, beir_summary, doc_ranking, rank_of_first
from rag.retrieve.retriever import Mode
from rag.service import RagService


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
    from rag.evaluation import answers as answer_metrics
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
        svc = _service(settings, Path(tmp), embedder)
        docs = [
            document_from_text(d["id"], d["text"], title=d.get("title") or None) for d in corpus
        ]
        _refuse_foreign_documents(svc, {d.doc_id for d in docs})
        t0 = time.perf_counter()
        report_ingest = svc.index.ingest(tqdm(docs, desc="ingest", unit="doc"), prune=True)
        ingest_s = time.perf_counter() - t0
        langs = answer_metrics.query_languages(folder) if asked else {}
        stats, per_query, answer_rows = _run_queries(svc, queries, asked, qrels, modes, gold, langs)
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
        "retrieval": {m: beir_summary(s) for m, s in stats.items()},
        "per_query": per_query,
    }


def _service(settings: Settings, directory: Path, embedder: Embedder | None) -> RagService:
    if embedder is not None:  # tests share one loaded model
        return RagService(directory, embedder, mode=settings.retrieval_mode)
    return RagService.from_settings(settings.model_copy(update={"index_dir": directory}))


def _run_queries(
    svc: RagService,
    queries: dict[str, str],
    asked: dict[str, str],
    qrels: dict[str, set[str]],
    modes: Sequence[Mode],
    gold: dict[str, Any],
    langs: dict[str, str],
) -> tuple[dict[str, RankStats], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rank documents for every query in every mode; answer the questions with gold answers."""
    from rag.evaluation import answers as answer_metrics

    stats: dict[str, RankStats] = {m: RankStats() for m in modes}
    per_query: list[dict[str, Any]] = []
    answer_rows: list[dict[str, Any]] = []
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
                rank = rank_of_first(doc_ranking(hits)[:DEPTH], qrels[qid])
                stats[mode].add(rank, ms)
                row[mode] = rank
            if qid in asked and mode == svc.retriever.mode:
                answer_rows.append(
                    answer_metrics.answer_row(svc, qid, text, hits, gold[qid], langs, ms)
                )
        if qid in queries:
            per_query.append(row)
    return stats, per_query, answer_rows


def _refuse_foreign_documents(svc: RagService, corpus_ids: set[str]) -> None:
    """The evaluation prunes what is not in its corpus: never in an index that holds other
    documents (a PostgreSQL database shared with users, a wrong ``--index-dir``)."""
    foreign = [d for d in svc.index.store.doc_ids() if d not in corpus_ids]
    if foreign:
        svc.close()
        raise ConfigError(
            f"the index for this evaluation already holds {len(foreign)} documents that are not "
            f"in the benchmark corpus (e.g. {foreign[0]!r}); evaluation would delete them. Point "
            "--index-dir (or RAG_DATABASE_URL) at an empty index of its own."
        )
