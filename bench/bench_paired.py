"""``/v1/search`` over HTTP against plain ST + FAISS in process, in alternating blocks.

On a shared machine, two sections measured minutes apart see different load. Here the
questions go to the server and to the plain baseline (sentence-transformers ``encode`` +
``faiss.IndexFlatIP`` over the same demo-corpus chunks, same backend) in alternating blocks
of ten, so both p50s come from the same minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import numpy as np

from bench import CORPUS_DIR, MODEL_DIR, Section, latency_stats, log, plain_model

if TYPE_CHECKING:
    from bench.bench_http import Server

PAIRS = 100
TOP_K = 5
BLOCK = 10  # requests per side before the other side's turn


def plain_search(backend: str) -> Callable[[str], object]:
    """The plain form: encode the demo corpus' chunks, then encode a query and search."""
    import faiss

    from rag.embedding.embedder import SentenceTransformerEmbedder
    from rag.ingest.chunking import chunk_document
    from rag.ingest.loaders import load_documents
    from rag.store.passages import embedding_text

    counter = SentenceTransformerEmbedder(model_dir=MODEL_DIR, backend=backend).count_tokens
    docs = load_documents([CORPUS_DIR]).documents
    passages = [embedding_text(c) for d in docs for c in chunk_document(d, counter)]
    model = plain_model(backend)
    matrix = model.encode(passages, prompt_name="passage", normalize_embeddings=True)
    flat = faiss.IndexFlatIP(matrix.shape[1])
    flat.add(np.ascontiguousarray(matrix, dtype=np.float32))

    def search(query: str) -> object:
        vec = model.encode([query], prompt_name="query", normalize_embeddings=True)
        return flat.search(np.ascontiguousarray(vec, dtype=np.float32), TOP_K)

    return search


def paired_section(server: Server, questions: list[str], quick: bool) -> Section:
    from rag.config import Settings

    backend = Settings().embedding_backend
    log(f"plain ST + FAISS ({backend}) beside the server, request by request")
    plain = plain_search(backend)
    n = 10 if quick else PAIRS
    http_s: list[float] = []
    plain_s: list[float] = []
    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        for q in questions[:3]:  # warm-up
            client.post("/v1/search", json={"query": q, "top_k": TOP_K}).raise_for_status()
            plain(q)
        for block in range(0, n, BLOCK):
            # Blocks of each side in turn: both p50s come from the same minutes, and within
            # a block one process does not pay for the other's OpenMP threads, which spin for
            # a while after every pass (pair by pair, whichever side went second paid).
            chunk = [questions[i % len(questions)] for i in range(block, min(n, block + BLOCK))]
            for q in chunk:
                start = time.perf_counter()
                client.post("/v1/search", json={"query": q, "top_k": TOP_K}).raise_for_status()
                http_s.append(time.perf_counter() - start)
            for q in chunk:
                start = time.perf_counter()
                plain(q)
                plain_s.append(time.perf_counter() - start)
    http, base = latency_stats(http_s), latency_stats(plain_s)
    ratio = http["p50_ms"] / base["p50_ms"]
    section = Section("paired", data={"http": http, "plain": base, "ratio": ratio})
    section.add(
        f"HTTP /v1/search p50 / plain ST+FAISS p50, blocks of {BLOCK} in turn (n={n}, {backend})",
        f"{ratio:.2f}x",
        f"p50 {http['p50_ms']:.1f} ms vs {base['p50_ms']:.1f} ms",
    )
    return section
