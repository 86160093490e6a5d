"""Embedding throughput per backend, interleaved in one process so load drift hits each alike.

``bench_embeddings`` runs the backends one after another (with recall and matmul share),
which on a shared machine lets a burst of other work land on one backend only. Here every
backend embeds the same batch of chunk-sized GermanQuAD passages in turn, round after
round, and the ratio of medians against torch fp32 is reported.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from bench import GERMANQUAD_CORPUS, MODEL_DIR, Section, log

# (name, backend, precision); "torch fp32" is the reference every ratio divides by.
CONFIGS = (
    ("torch fp32", "torch", "fp32"),
    ("torch bf16", "torch", "bf16"),
    ("onnx", "onnx", "fp32"),
    ("onnx-int8", "onnx-int8", "fp32"),
)
REFERENCE = "torch fp32"
ROUNDS = 5
PASSAGES = 32


def passages(n: int) -> list[str]:
    """Chunk-sized texts (~160 tokens) from GermanQuAD."""
    lines = GERMANQUAD_CORPUS.read_text("utf-8").splitlines()
    return [json.loads(line)["text"][:700] for line in lines[:n]]


def measure(rounds: int, n: int) -> dict[str, Any]:
    from rag.config import DEFAULT_EMBEDDING_MODEL
    from rag.embedding.embedder import SentenceTransformerEmbedder

    texts = passages(n)
    models = {}
    for name, backend, precision in CONFIGS:
        model = SentenceTransformerEmbedder(
            DEFAULT_EMBEDDING_MODEL, model_dir=MODEL_DIR, backend=backend, precision=precision
        )
        model.embed_passages(texts[:4])  # load (and export once) outside the timing
        models[name] = model
    names = [name for name, _, _ in CONFIGS]
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            started = time.perf_counter()
            models[name].embed_passages(texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
        log(f"round {r + 1}/{rounds}: " + ", ".join(f"{b} {rates[b][-1]:.1f}/s" for b in names))
    medians = {b: statistics.median(v) for b, v in rates.items()}
    return {
        "passages": len(texts),
        "rounds": rounds,
        "passages_per_s": rates,
        "median_passages_per_s": medians,
        "ratio_to_torch": {b: medians[b] / medians[REFERENCE] for b in names},
    }


def default_config() -> str:
    """The name in ``CONFIGS`` of what the default settings run on this machine."""
    from rag.config import Settings
    from rag.embedding.embedder import SentenceTransformerEmbedder

    settings = Settings()
    model = SentenceTransformerEmbedder(
        backend=settings.embedding_backend, precision=settings.embedding_precision
    )
    if model.bf16:
        return "torch bf16"
    return "torch fp32" if model.backend == "torch" else model.backend


def run(quick: bool = False) -> list[Section]:
    data = measure(2 if quick else ROUNDS, 8 if quick else PASSAGES)
    default = default_config()
    section = Section("backends", data={**data, "default": default})
    for name, _, _ in CONFIGS:
        mark = " (default here)" if name == default else ""
        section.add(
            f"embedding throughput, {name}{mark} / {REFERENCE}, interleaved",
            f"{data['ratio_to_torch'][name]:.2f}x",
            f"median {data['median_passages_per_s'][name]:.1f} passages/s over "
            f"{data['rounds']} rounds of {data['passages']} passages",
        )
    return [section]
