"""Rank fusion: merge the dense and the lexical result lists into one ranking.

Two methods, both weighted by ``weights = (dense, lexical)``:

- ``"rrf"``: weighted reciprocal rank fusion (Cormack et al. 2009),
  ``w_d / (k + rank_d) + w_l / (k + rank_l)`` with 1-based ranks; a list that misses a
  chunk adds nothing. Uses ranks only, so it needs no score calibration.
- ``"convex"``: a convex combination of min-max normalised scores (Bruch et al. 2023),
  ``(w_d * d + w_l * l) / (w_d + w_l)`` where each list's scores are mapped to [0, 1]
  (best = 1, worst retrieved = 0); a list that misses a chunk contributes 0.

``language`` other than ``"de"`` (English, Spanish, ...): the lexical side of such a
question sees only names, numbers and acronyms, so it may re-rank what the dense side found
but adds no chunk of its own.

Measured (``python bench/bench_lexical.py fusion``, GermanQuAD dev, 50 candidates a side,
MRR@10): dense 0.963, lexical 0.925, rrf k=60 (1, 1) 0.967, best rrf (k=10, (1, 0.7)) 0.974,
convex (1, 0.5) 0.981. English questions (80 translated) lose with any lexical weight above
0.1 (dense 0.890, convex (1, 0.5) 0.881, (1, 0.1) 0.890). Hence convex with (1, 0.5) for
German and (1, 0.1) for English questions.
"""

from __future__ import annotations

from collections.abc import Sequence

METHODS = ("rrf", "convex")


def fuse(
    dense: Sequence[tuple[int, float]],
    lexical: Sequence[tuple[int, float]],
    *,
    method: str = "rrf",
    weights: tuple[float, float] = (1.0, 1.0),
    k: int = 60,
    language: str = "de",
) -> list[tuple[int, float]]:
    """Fused ``(chunk_id, score)`` list, best first; inputs are best-first lists."""
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; use one of {METHODS}")
    w_dense, w_lexical = weights
    if w_dense < 0 or w_lexical < 0 or w_dense + w_lexical <= 0:
        raise ValueError(f"fusion weights must be >= 0 and not both 0, got {weights}")
    if method == "rrf" and k < 0:
        raise ValueError(f"the RRF constant k must be >= 0, got {k}")
    dense = _first_occurrences(dense)
    lexical = _first_occurrences(lexical)
    if language != "de":
        found = {chunk_id for chunk_id, _ in dense}
        lexical = [item for item in lexical if item[0] in found]
    if method == "rrf":
        d_part = {c: w_dense / (k + rank) for rank, (c, _) in enumerate(dense, 1)}
        l_part = {c: w_lexical / (k + rank) for rank, (c, _) in enumerate(lexical, 1)}
    else:
        total = w_dense + w_lexical
        d_part = {c: w_dense / total * s for c, s in _min_max(dense).items()}
        l_part = {c: w_lexical / total * s for c, s in _min_max(lexical).items()}
    # Ties go to the better rank in either list, then to the smaller id (deterministic).
    best_rank: dict[int, int] = {}
    for ranking in (dense, lexical):
        for rank, (c, _) in enumerate(ranking):
            best_rank[c] = min(rank, best_rank.get(c, rank))
    scores = {c: d_part.get(c, 0.0) + l_part.get(c, 0.0) for c in best_rank}
    order = sorted(scores, key=lambda c: (-scores[c], best_rank[c], c))
    return [(c, scores[c]) for c in order]


def _first_occurrences(ranking: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """Drop repeated ids, keeping each id's first (best) position."""
    seen: set[int] = set()
    out = []
    for chunk_id, score in ranking:
        if chunk_id not in seen:
            seen.add(chunk_id)
            out.append((chunk_id, float(score)))
    return out


def _min_max(ranking: Sequence[tuple[int, float]]) -> dict[int, float]:
    """Scores mapped to [0, 1]; a list whose scores are all equal maps to 1."""
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    low, high = min(scores), max(scores)
    if high <= low:
        return {c: 1.0 for c, _ in ranking}
    return {c: (s - low) / (high - low) for c, s in ranking}
