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

BACKENDS = ("torch", "onnx", "onnx-int8")
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
    for backend in BACKENDS:
        model = SentenceTransformerEmbedder(
            DEFAULT_EMBEDDING_MODEL, model_dir=MODEL_DIR, backend=backend
        )
        model.embed_passages(texts[:4])  # load (and export once) outside the timing
        models[backend] = model
    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for r in range(rounds):
        order = BACKENDS if r % 2 == 0 else tuple(reversed(BACKENDS))
        for backend in order:
            started = time.perf_counter()
            models[backend].embed_passages(texts)
            rates[backend].append(len(texts) / (time.perf_counter() - started))
        log(f"round {r + 1}/{rounds}: " + ", ".join(f"{b} {rates[b][-1]:.1f}/s" for b in BACKENDS))
    medians = {b: statistics.median(v) for b, v in rates.items()}
    return {
        "passages": len(texts),
        "rounds": rounds,
        "passages_per_s": rates,
        "median_passages_per_s": medians,
        "ratio_to_torch": {b: medians[b] / medians["torch"] for b in BACKENDS},
    }


def run(quick: bool = False) -> list[Section]:
    from rag.config import Settings

    data = measure(2 if quick else ROUNDS, 8 if quick else PASSAGES)
    default = Settings().embedding_backend
    section = Section("backends", data={**data, "default": default})
    for backend in BACKENDS:
        mark = " (default)" if backend == default else ""
        section.add(
            f"embedding throughput, {backend}{mark} / torch fp32, interleaved",
            f"{data['ratio_to_torch'][backend]:.2f}x",
            f"median {data['median_passages_per_s'][backend]:.1f} passages/s over "
            f"{data['rounds']} rounds of {data['passages']} passages",
        )
    return [section]
