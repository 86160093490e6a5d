"""Benchmarks: speed, memory and scale, side by side with the alternatives (``make bench``).

``python -m bench`` runs every section in its own process (so memory deltas and crashes
stay separate), writes ``bench/results/<section>.json`` and prints one markdown table.
This module holds what the sections share: result rows, percentiles, memory and paths.
The benchmarks are not part of the test suite: timings never decide a test.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# psutil ships no type hints; typed stubs are not a dependency.
psutil: Any = importlib.import_module("psutil")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CORPUS_DIR = REPO_ROOT / "corpus"
MODEL_DIR = REPO_ROOT / "vectors" / "models"
EVAL_DATA = REPO_ROOT / "eval" / "data"
DEV_QUESTIONS = EVAL_DATA / "dev" / "dev.jsonl"
GERMANQUAD_CORPUS = EVAL_DATA / "germanquad" / "corpus.jsonl"


@dataclass(frozen=True)
class Row:
    """One line of the final table."""

    measure: str
    value: str
    note: str = ""


@dataclass
class Section:
    """A section's table rows plus everything it measured (written as JSON)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, measure: str, value: str, note: str = "") -> None:
        self.rows.append(Row(measure, value, note))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": [asdict(r) for r in self.rows], "data": self.data}


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean/max in milliseconds and the sample count."""
    if not seconds:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan")}
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms),
        "max_ms": ms[-1],
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def fmt_latency(stats: dict[str, float]) -> str:
    return f"p50 {stats['p50_ms']:.1f} ms, p95 {stats['p95_ms']:.1f} ms"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of this (or another) process."""
    return int(psutil.Process(pid).memory_info().rss)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` holds the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def machine_load() -> dict[str, Any]:
    """CPU count and load average: other processes share the CPU, so numbers are noisy."""
    load1, load5, load15 = os.getloadavg()
    return {"cpus": os.cpu_count(), "load1": load1, "load5": load5, "load15": load15}


def plain_model_files(backend: str) -> tuple[str, str]:
    """(folder, ONNX file name or "") that the service loads for ``backend``, so a plain
    sentence-transformers baseline can load the very same model files."""
    from rag.config import DEFAULT_EMBEDDING_MODEL
    from rag.embedding.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(
        DEFAULT_EMBEDDING_MODEL, model_dir=MODEL_DIR, backend=backend
    )
    if backend == "torch":
        # Not loaded: a loaded model would hold a second OpenMP team in this process, and
        # the plain baseline's passes would pay for it (rag.embedding.batching).
        return str(embedder._resolve()[0]), ""
    embedder.load()  # exports the ONNX file once if needed, outside any timed run
    onnx_file = embedder._onnx_file
    return str(onnx_file.parent.parent), str(onnx_file.relative_to(onnx_file.parent.parent))


def plain_model(backend: str) -> Any:
    """A bare ``SentenceTransformer`` over the service's model files for ``backend``."""
    from sentence_transformers import SentenceTransformer

    folder, file_name = plain_model_files(backend)
    kwargs: dict[str, Any] = {}
    if file_name:
        kwargs = {"backend": "onnx", "model_kwargs": {"file_name": file_name}}
    return SentenceTransformer(folder, device="cpu", local_files_only=True, **kwargs)


_STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout at the end)."""
    print(f"  [{time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)
