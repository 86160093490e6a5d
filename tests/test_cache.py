"""The bounded cache and per-chunk values shared by the sentence and token banks."""

from __future__ import annotations

from rag.cache import BoundedCache, per_chunk
from rag.types import Chunk


def _chunk(cid: int) -> Chunk:
    return Chunk(cid, f"d{cid}", 0, 0, 1, "x")


def test_the_oldest_stored_entries_go_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # stored again: now the newest
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_missing_chunks_are_computed_once_in_one_call_and_kept() -> None:
    calls: list[list[int]] = []

    def compute(chunks: list[Chunk]) -> list[int]:
        calls.append([c.chunk_id for c in chunks])
        return [10 * c.chunk_id for c in chunks]

    cache: BoundedCache[int, int] = BoundedCache(8)
    chunks = [_chunk(1), _chunk(2), _chunk(1)]
    assert per_chunk(chunks, cache, compute) == [10, 20, 10]
    assert per_chunk([_chunk(2), _chunk(3)], cache, compute) == [20, 30]
    assert calls == [[1, 2], [3]]


def test_nothing_is_kept_when_the_values_cannot_be_computed() -> None:
    cache: BoundedCache[int, int] = BoundedCache(8)
    assert per_chunk([_chunk(1)], cache, lambda _chunks: None) is None
    assert cache.get(1) is None
