"""Micro-batching of concurrent query embeddings."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers.vectors import assert_same_vectors

from rag.embedding.batching import ModelThread, QueryBatcher, _Request
from rag.types import FloatArray


def encode(texts: list[str]) -> FloatArray:
    """Row i holds len(texts[i]): callers can check they got their own rows."""
    return np.array([[float(len(t))] for t in texts], dtype=np.float32)


def test_a_lone_call_runs_one_pass_of_its_own_texts() -> None:
    batcher = QueryBatcher(encode, ModelThread())
    assert batcher(["a", "bcd"]).tolist() == [[1.0], [3.0]]
    assert batcher.passes == 1


def test_callers_queued_behind_a_pass_share_the_next_one() -> None:
    first_started, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def slow(texts: list[str]) -> FloatArray:
        sizes.append(len(texts))
        if len(sizes) == 1:
            first_started.set()
            release.wait(5)
        return encode(texts)

    batcher = QueryBatcher(slow, ModelThread())
    with ThreadPoolExecutor(9) as pool:
        head = pool.submit(batcher, ["x"])
        assert first_started.wait(5)
        rest = [pool.submit(batcher, ["y" * n]) for n in range(1, 9)]
        while len(batcher._queue) < 8:  # all eight wait behind the running pass
            threading.Event().wait(0.01)
        release.set()
        assert head.result().tolist() == [[1.0]]
        assert [f.result().tolist() for f in rest] == [[[float(n)]] for n in range(1, 9)]
    assert sizes == [1, 8]
    assert batcher.passes == 2


def test_a_pass_takes_at_most_max_texts() -> None:
    batcher = QueryBatcher(encode, ModelThread(), max_texts=3)
    requests = [_Request(["a", "b"]), _Request(["c"]), _Request(["d"])]
    batcher._queue = list(requests)
    assert batcher._take() == requests[:2]
    assert batcher._queue == requests[2:]


def test_a_failed_pass_fails_its_callers_and_the_next_call_works() -> None:
    calls = {"n": 0}

    def flaky(texts: list[str]) -> FloatArray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("backend died")
        return encode(texts)

    batcher = QueryBatcher(flaky, ModelThread())
    with pytest.raises(RuntimeError, match="backend died"):
        batcher(["a"])
    assert batcher(["ab"]).tolist() == [[2.0]]


@pytest.mark.slow
def test_concurrent_queries_get_the_vectors_they_get_alone(embedder) -> None:
    questions = [f"Wann wurde Gebäude Nummer {i} in Berlin eröffnet?" for i in range(24)]
    alone = np.vstack([embedder.embed_queries([q]) for q in questions])
    before = embedder._queries.passes
    with ThreadPoolExecutor(12) as pool:
        together = np.vstack(list(pool.map(lambda q: embedder.embed_queries([q]), questions)))
    assert_same_vectors(together, alone, embedder.bf16)
    assert embedder._queries.passes - before <= len(questions)


def test_every_pass_runs_on_the_model_thread() -> None:
    threads: set[int] = set()

    def record(texts: list[str]) -> FloatArray:
        threads.add(threading.get_ident())
        return encode(texts)

    batcher = QueryBatcher(record, ModelThread())
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: batcher(["x" * n]), range(1, 33)))
    assert [r.tolist() for r in results] == [[[float(n)]] for n in range(1, 33)]
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_a_call_from_the_model_thread_runs_inline() -> None:
    thread = ModelThread()
    # Waiting on its own queue would deadlock: the inner call must run where it is.
    assert thread(lambda: thread(threading.get_ident)) == thread(threading.get_ident)


def test_other_work_on_the_model_thread_is_not_starved_by_queries() -> None:
    thread = ModelThread()
    order: list[str] = []
    first_started, release = threading.Event(), threading.Event()

    def slow(texts: list[str]) -> FloatArray:
        order.append(f"pass {len(texts)}")
        if len(order) == 1:
            first_started.set()
            release.wait(5)
        return encode(texts)

    batcher = QueryBatcher(slow, thread)
    with ThreadPoolExecutor(4) as pool:
        head = pool.submit(batcher, ["a"])
        assert first_started.wait(5)
        other = thread.submit(lambda: order.append("passages"))
        rest = [pool.submit(batcher, ["b"]) for _ in range(2)]
        while len(batcher._queue) < 2:
            threading.Event().wait(0.01)
        release.set()
        head.result(), other.result(), [f.result() for f in rest]
    assert order == ["pass 1", "passages", "pass 2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_model_thread() -> None:
    thread = ModelThread()
    assert thread(lambda: 1) == 1  # the parent's thread exists now
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread was not copied
        try:
            os._exit(0 if thread.submit(lambda: 2).result(timeout=10) == 2 else 1)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_query_from_the_model_thread_runs_its_own_pass() -> None:
    thread = ModelThread()
    batcher = QueryBatcher(encode, thread)
    vectors = thread.submit(batcher, ["abc"]).result(timeout=10)  # would wait on itself
    assert vectors.tolist() == [[3.0]] and batcher.passes == 0
