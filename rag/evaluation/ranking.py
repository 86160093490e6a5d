"""Ranking metrics: the rank of the gold, MRR, success@k, nDCG, latency percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.retrieve.retriever import Mode
from rag.types import Hit

MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")


DEPTH = 10


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


def doc_ranking(hits: Sequence[Hit]) -> list[str]:
    seen: list[str] = []
    for h in hits:
        for doc_id in [h.chunk.doc_id, *(d.doc_id for d in h.duplicates)]:
            if doc_id not in seen:
                seen.append(doc_id)
    return seen


def beir_summary(s: RankStats) -> dict[str, float]:
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
