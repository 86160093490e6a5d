"""A bounded, thread-safe cache, and per-chunk values computed once for the missing ones."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from rag.types import Chunk

__all__ = ["BoundedCache", "per_chunk"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A map that keeps the ``max_items`` most recently stored entries."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the newest entry; the oldest go beyond ``max_items``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


def per_chunk(
    chunks: Sequence[Chunk],
    cache: BoundedCache[int, V],
    compute: Callable[[list[Chunk]], list[V] | None],
) -> list[V] | None:
    """Each chunk's value from ``cache`` by ``chunk_id`` (chunks are immutable); the missing
    ones come from one ``compute`` call and are kept. None when ``compute`` gives None."""
    found = {c.chunk_id: cache.get(c.chunk_id) for c in chunks}
    missing = list({c.chunk_id: c for c in chunks if found[c.chunk_id] is None}.values())
    if missing:
        fresh = compute(missing)
        if fresh is None:
            return None
        for chunk, value in zip(missing, fresh, strict=True):
            found[chunk.chunk_id] = value
            cache.put(chunk.chunk_id, value)
    out = []
    for chunk in chunks:
        kept = found[chunk.chunk_id]
        assert kept is not None
        out.append(kept)
    return out
