from __future__ import annotations

import pytest

from rag.retrieve.fusion import fuse

DENSE = [(1, 0.91), (2, 0.88), (3, 0.80)]
LEXICAL = [(3, 14.0), (4, 9.0), (1, 2.0)]


def ids(results: list[tuple[int, float]]) -> list[int]:
    return [chunk_id for chunk_id, _ in results]


def test_rrf_scores_are_weighted_reciprocal_ranks() -> None:
    fused = dict(fuse(DENSE, LEXICAL, method="rrf", weights=(1.0, 0.5), k=10))
    assert fused[1] == pytest.approx(1 / 11 + 0.5 / 13)
    assert fused[2] == pytest.approx(1 / 12)
    assert fused[3] == pytest.approx(1 / 13 + 0.5 / 11)
    assert fused[4] == pytest.approx(0.5 / 12)
    assert ids(fuse(DENSE, LEXICAL, method="rrf", weights=(1.0, 0.5), k=10)) == [1, 3, 2, 4]


def test_rrf_agreement_beats_a_single_first_place() -> None:
    # chunk 3 is found by both lists, chunk 1 tops dense only
    fused = fuse([(1, 0.9), (3, 0.8)], [(3, 5.0), (5, 4.0)])
    assert ids(fused)[0] == 3


def test_weights_decide_which_side_wins() -> None:
    dense, lexical = [(1, 0.9), (2, 0.8)], [(2, 7.0), (1, 1.0)]
    assert ids(fuse(dense, lexical, weights=(1.0, 0.0)))[:2] == [1, 2]
    assert ids(fuse(dense, lexical, weights=(0.0, 1.0)))[:2] == [2, 1]
    assert ids(fuse(dense, lexical, method="convex", weights=(0.0, 1.0)))[:2] == [2, 1]


def test_convex_uses_min_max_normalised_scores() -> None:
    fused = dict(fuse(DENSE, LEXICAL, method="convex", weights=(3.0, 1.0)))
    d = {1: 1.0, 2: (0.88 - 0.80) / 0.11, 3: 0.0}
    lx = {3: 1.0, 4: (9.0 - 2.0) / 12.0, 1: 0.0}
    for chunk_id in (1, 2, 3, 4):
        expected = 0.75 * d.get(chunk_id, 0.0) + 0.25 * lx.get(chunk_id, 0.0)
        assert fused[chunk_id] == pytest.approx(expected)
    # scores are a convex combination: never above 1
    assert max(fused.values()) <= 1.0


def test_convex_single_item_or_equal_scores() -> None:
    assert fuse([(7, 0.5)], [], method="convex") == [(7, 0.5)]
    fused = fuse([(1, 0.5), (2, 0.5)], [(2, 3.0)], method="convex")
    assert ids(fused) == [2, 1]


def test_one_side_empty_keeps_the_other_order() -> None:
    assert ids(fuse(DENSE, [])) == [1, 2, 3]
    assert ids(fuse([], LEXICAL)) == [3, 4, 1]
    assert fuse([], []) == []


def test_english_lexical_only_reranks_dense_candidates() -> None:
    fused = fuse(DENSE, LEXICAL, language="en")
    assert 4 not in ids(fused)  # found by the lexical side alone
    assert ids(fused) == [1, 3, 2]  # chunk 3 is lifted by its name match
    assert 4 in ids(fuse(DENSE, LEXICAL, language="de"))


def test_ties_and_duplicates_are_deterministic() -> None:
    # same score everywhere: better rank in either list first, then smaller id
    fused = fuse([(5, 1.0), (6, 1.0)], [(6, 1.0), (5, 1.0)])
    assert ids(fused) == [5, 6]
    assert fused[0][1] == pytest.approx(fused[1][1])
    # a repeated id counts once, at its best position
    assert fuse([(1, 0.9), (1, 0.1)], [], k=0) == [(1, 1.0)]


@pytest.mark.parametrize(
    "kwargs",
    [{"method": "sum"}, {"weights": (-1.0, 1.0)}, {"weights": (0.0, 0.0)}, {"k": -1}],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        fuse(DENSE, LEXICAL, **kwargs)  # type: ignore[arg-type]
