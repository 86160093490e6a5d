"""Micro-batching: queries that arrive together share one forward pass.

Sixteen concurrent searches that each run their own forward pass make sixteen OpenMP
parallel regions fight over two cores; served together, the same questions cost about one
short pass (docs/speed.md). No thread of its own and no waiting window: the first caller
runs the pass for everyone queued behind it, so a lone query pays nothing extra.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag.types import FloatArray

__all__ = ["QueryBatcher"]


@dataclass
class _Request:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: FloatArray | None = None
    error: BaseException | None = None
    lead: bool = False  # this caller runs the next pass


class QueryBatcher:
    """Calls ``embed`` once for the texts of all callers queued at the time.

    One pass runs at a time. The caller whose request heads the queue when a pass ends
    (or who finds no pass running) runs the next one, over up to ``max_texts`` texts.
    """

    def __init__(self, embed: Callable[[list[str]], FloatArray], max_texts: int = 64) -> None:
        self._embed = embed
        self._max_texts = max_texts
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._running = False
        self.passes = 0  # forward passes run, for tests and stats

    def __call__(self, texts: Sequence[str]) -> FloatArray:
        request = _Request(list(texts))
        with self._lock:
            self._queue.append(request)
            if not self._running:
                self._running = request.lead = True
        if not request.lead:
            request.done.wait()  # set when our vectors are ready, or when we are to lead
        if request.lead:
            self._run()
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors

    def _run(self) -> None:
        with self._lock:
            batch = self._take()
            self.passes += 1
        try:
            vectors = self._embed([t for r in batch for t in r.texts])
            at = 0
            for r in batch:
                r.vectors = vectors[at : at + len(r.texts)]
                at += len(r.texts)
        except BaseException as exc:  # every caller of the pass sees its failure
            for r in batch:
                r.error = exc
        with self._lock:
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].done.set()
            else:
                self._running = False
        for r in batch:
            r.done.set()

    def _take(self) -> list[_Request]:
        """The head of the queue: at least one request, then more up to ``max_texts``."""
        taken = [self._queue.pop(0)]
        size = len(taken[0].texts)
        while self._queue and size + len(self._queue[0].texts) <= self._max_texts:
            size += len(self._queue[0].texts)
            taken.append(self._queue.pop(0))
        return taken
