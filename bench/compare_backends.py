"""Same questions, same query vectors, embedded index vs PostgreSQL: MRR@10 and HNSW recall.

    RAG_DATABASE_URL=postgresql://... python -m bench.compare_backends \\
        eval/data/germanquad --split test --index-dir vectors/germanquad [--every 4]

Both indexes must hold the same corpus (``rag db import DIR`` copies an embedded index into
the database without embedding again). Each question is embedded once; the retriever then
ranks on each backend (the PostgreSQL one searches exactly below ``PgVectorStore.EXACT_BELOW``
vectors, as in service). Then pgvector's HNSW index is searched at several ``ef_search``
values and its top 10 compared with the exact top 10 over the same stored vectors.
``--every N`` keeps every N-th question (a quicker run on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EF_SEARCH = (40, 100, 200)  # pgvector's default, the backend's setting, twice that


def _mrr(ranks: list[int | None]) -> float:
    return sum(1.0 / r for r in ranks if r is not None) / max(len(ranks), 1)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from rag.config import Settings
    from rag.evaluation import DEPTH, doc_ranking, load_beir, rank_of_first
    from rag.service import RagService
    from rag.store.postgres import PgVectorStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--index-dir", type=Path, required=True, help="the embedded index")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th question")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.database_url:
        parser.error("set RAG_DATABASE_URL to the PostgreSQL database holding the same corpus")
    pg = RagService.from_settings(settings).open()
    embedded = RagService(args.index_dir, pg.embedder, mode=settings.retrieval_mode).open()
    _, queries, qrels = load_beir(args.folder, args.split)
    chosen = [
        q for i, q in enumerate(sorted(q for q in queries if q in qrels)) if i % args.every == 0
    ]
    counts = {"embedded": embedded.index.store.counts(), "postgres": pg.index.store.counts()}
    if counts["embedded"] != counts["postgres"]:
        print(f"warning: the indexes differ (documents, chunks): {counts}", file=sys.stderr)
    hnsw = PgVectorStore(pg.index.store.db, exact_below=0)  # type: ignore[attr-defined]
    ranks: dict[str, list[int | None]] = {"embedded": [], "postgres": []}
    overlap = dict.fromkeys(EF_SEARCH, 0)
    seconds = {"embedded": 0.0, "postgres": 0.0}
    for qid in tqdm(chosen, desc="questions", unit="q"):
        qvec = pg.embedder.embed_queries([queries[qid]])[0]
        for name, svc in (("embedded", embedded), ("postgres", pg)):
            t0 = time.perf_counter()
            hits = svc.retriever.search(queries[qid], 3 * DEPTH, query_vector=qvec)
            seconds[name] += time.perf_counter() - t0
            ranks[name].append(rank_of_first(doc_ranking(hits)[:DEPTH], qrels[qid]))
        exact = {c for c, _ in hnsw.exact_search(qvec, 10)}
        for ef in EF_SEARCH:
            hnsw.HNSW_EF_SEARCH = ef
            overlap[ef] += len(exact & {c for c, _ in hnsw.search(qvec, 10)})
    report: dict[str, Any] = {
        "folder": str(args.folder),
        "split": args.split,
        "questions": len(chosen),
        "of_questions": len(queries),
        "documents_chunks": counts,
        "mrr@10": {name: round(_mrr(r), 4) for name, r in ranks.items()},
        "recall@10": {
            name: round(sum(r is not None for r in rs) / len(rs), 4) for name, rs in ranks.items()
        },
        "retrieval_ms_mean": {
            n: round(1000 * s / max(len(chosen), 1), 1) for n, s in seconds.items()
        },
        "hnsw_recall@10_vs_exact": {
            ef: round(n / (10 * len(chosen)), 4) for ef, n in overlap.items()
        },
        "same_rank": sum(a == b for a, b in zip(ranks["embedded"], ranks["postgres"], strict=True)),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    embedded.close()
    pg.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
