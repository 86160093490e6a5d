"""The model's thread, and micro-batching of the queries that arrive together.

Every model pass of the process runs on one thread (``MODEL_THREAD``). OpenMP keeps
a team of worker threads per thread that calls it, and with more OpenMP threads than cores
its threads stop spinning between parallel regions: a second team made every pass about
1.8x slower, and passes led by request threads left one team per request thread, which
halved a lone client's rate after the first burst of concurrent requests (docs/speed.md).

Queries of concurrent requests share one forward pass (``QueryBatcher``). There is no
waiting window: a pass takes whatever is queued when the model's thread gets to it, so a
lone query pays only the hand-over.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from rag.types import FloatArray

__all__ = ["MODEL_THREAD", "ModelThread", "QueryBatcher"]

T = TypeVar("T")


class ModelThread:
    """Runs calls on one thread, started on first use; a call from that thread runs inline."""

    def __init__(self, name: str = "model") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        # A forked child has no copy of the thread: it starts its own.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget(ref()))

    def __call__(self, fn: Callable[..., T], *args: object) -> T:
        if self.is_current():
            return fn(*args)
        return self.submit(fn, *args).result()

    def is_current(self) -> bool:
        """Whether the caller runs on this thread."""
        return threading.get_ident() == self._ident

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    1, thread_name_prefix=self._name, initializer=self._mark
                )
            return self._executor.submit(fn, *args)

    def _mark(self) -> None:
        self._ident = threading.get_ident()


def _forget(thread: ModelThread | None) -> None:
    if thread is not None:
        thread._lock = threading.Lock()
        thread._executor = None
        thread._ident = None


# The one thread of the process that runs model passes: every embedder shares it, so a
# process has one OpenMP team however many models it holds.
MODEL_THREAD = ModelThread("embedding")


@dataclass
class _Request:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: FloatArray | None = None
    error: BaseException | None = None


class QueryBatcher:
    """Calls ``embed`` on ``thread`` once for the texts of all callers queued at the time.

    One pass runs at a time, over up to ``max_texts`` texts of the requests at the head of
    the queue. After each pass the next one is queued on the thread behind whatever else
    waits there (a batch of passages), so neither starves the other.
    """

    def __init__(
        self,
        embed: Callable[[list[str]], FloatArray],
        thread: ModelThread,
        max_texts: int = 64,
    ) -> None:
        self._embed = embed
        self._thread = thread
        self._max_texts = max_texts
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._scheduled = False
        self.passes = 0  # forward passes run, for tests and stats

    def __call__(self, texts: Sequence[str]) -> FloatArray:
        if self._thread.is_current():  # a pass waited for here would never run
            return self._embed(list(texts))
        request = _Request(list(texts))
        with self._lock:
            self._queue.append(request)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self._thread.submit(self._pass)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors

    def _pass(self) -> None:
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
            self._scheduled = bool(self._queue)
        if self._scheduled:
            self._thread.submit(self._pass)
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
