"""Side by side on the demo corpus and the dev questions, in one process and one run.

- service: ``RagService.search`` in process (hybrid, and dense only);
- plain: what an expert writes without the service: sentence-transformers ``encode`` +
  ``faiss.IndexFlatIP.search`` over the same passages, the baseline for the overhead ratio;
- LlamaIndex (when installed: ``llama-index-core`` + ``llama-index-embeddings-huggingface``):
  ``VectorStoreIndex`` over the same passages with the same local model folder.

All three embed the same passages (the service's chunks, headline included) with the same
model and prompts, so speed differences are the frameworks'; hit@5 counts answerable dev
questions whose gold quote is inside one of the top 5 passages. "Index build" is the
service's whole ingest (clean, chunk, embed, SQLite, lexical, FAISS) but only embedding +
indexing the given passages for the other two.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import (
    CORPUS_DIR,
    DEV_QUESTIONS,
    MODEL_DIR,
    Section,
    fmt_latency,
    latency_stats,
    log,
    plain_model,
    timed,
)
from rag.embedding.batching import MODEL_THREAD

TOP_K = 5
REPEATS = 3


@dataclass(frozen=True)
class Question:
    text: str
    quotes: tuple[str, ...]  # empty: not counted for hit@5


def questions() -> list[Question]:
    out = []
    for line in DEV_QUESTIONS.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        counted = q["type"] not in ("unanswerable", "boilerplate_trap")
        quotes = tuple(g["quote"] for g in q["gold"]) if counted else ()
        out.append(Question(q["question"], quotes))
    return out


def hit_rate(qs: list[Question], retrieved: list[list[str]]) -> float:
    """Share of counted questions with a gold quote inside one of their passages."""
    counted = [(q, texts) for q, texts in zip(qs, retrieved, strict=True) if q.quotes]
    hits = [any(quote in t for quote in q.quotes for t in texts) for q, texts in counted]
    return sum(hits) / len(hits) if hits else float("nan")


def measure(
    search: Callable[[str], list[str]], qs: list[Question], repeats: int = REPEATS
) -> dict[str, Any]:
    """Warm up, then time every question ``repeats`` times; hit@5 from the first pass."""
    for q in qs[:3]:
        search(q.text)
    retrieved = [search(q.text) for q in qs]
    seconds = [timed(search, q.text)[1] for _ in range(repeats) for q in qs]
    return {"latency": latency_stats(seconds), "hit_at_5": hit_rate(qs, retrieved)}


def plain(
    backend: str, passages: list[str], texts: list[str], qs: list[Question], repeats: int
) -> tuple[dict[str, Any], Any]:
    """The plain form an expert would write: its measures and its passage vectors."""
    import faiss

    model = plain_model(backend)
    start = time.perf_counter()
    matrix = model.encode(passages, prompt_name="passage", normalize_embeddings=True)
    flat = faiss.IndexFlatIP(matrix.shape[1])
    flat.add(np.ascontiguousarray(matrix, dtype=np.float32))
    build_s = time.perf_counter() - start

    def search(query: str) -> list[str]:
        vec = model.encode([query], prompt_name="query", normalize_embeddings=True)
        _, ids = flat.search(np.ascontiguousarray(vec, dtype=np.float32), TOP_K)
        return [texts[i] for i in ids[0] if i >= 0]

    return {"build_s": build_s, **measure(search, qs, repeats)}, matrix


def run(quick: bool = False) -> list[Section]:
    from rag.config import DEFAULT_EMBEDDING_MODEL, Settings
    from rag.embedding.embedder import SentenceTransformerEmbedder, resolve_model
    from rag.ingest.loaders import load_documents
    from rag.service import RagService
    from rag.store.index import embedding_text

    repeats = 1 if quick else REPEATS
    # Service and plain baseline run the same backend: the ratio is the service's overhead.
    backend = Settings().embedding_backend
    qs = questions()
    section = Section("baselines")
    folder = str(resolve_model(DEFAULT_EMBEDDING_MODEL, MODEL_DIR)[0])
    docs = load_documents([CORPUS_DIR]).documents

    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as tmp:
        embedder = SentenceTransformerEmbedder(
            DEFAULT_EMBEDDING_MODEL, model_dir=MODEL_DIR, backend=backend
        )
        embedder.load()
        log("service: ingest the demo corpus, then search")
        service = RagService(Path(tmp), embedder).open()
        _, ingest_s = timed(service.add_documents, docs)
        chunks = [c for d in docs for c in service.get_chunks(d.doc_id)]
        passages = [embedding_text(c) for c in chunks]
        texts = [c.text for c in chunks]

        def service_search(query: str) -> list[str]:
            return [h.chunk.text for h in service.search(query, top_k=TOP_K)]

        def service_dense(query: str) -> list[str]:
            hits = service.retriever.search(query, TOP_K, mode="dense")
            return [h.chunk.text for h in hits]

        results: dict[str, Any] = {
            "service": {"build_s": ingest_s, **measure(service_search, qs, repeats)},
            "service_dense": {"build_s": ingest_s, **measure(service_dense, qs, repeats)},
        }
        service.close()

    # The other two run on the process's model thread as the service does: from the main
    # thread their passes would pay for a second OpenMP team (rag.embedding.batching).
    log("plain sentence-transformers + FAISS")
    results["plain"], matrix = MODEL_THREAD(plain, backend, passages, texts, qs, repeats)
    results["llamaindex"] = MODEL_THREAD(llamaindex, folder, passages, texts, qs, matrix, repeats)

    base = results["plain"]["latency"]["p50_ms"]
    labels = {
        "plain": "plain sentence-transformers encode + faiss.IndexFlatIP",
        "service": "RagService.search, hybrid (in process)",
        "service_dense": "RagService retriever, dense only (in process)",
        "llamaindex": "LlamaIndex VectorStoreIndex (same model folder)",
    }
    for key, label in labels.items():
        res = results[key]
        if "skipped" in res:
            section.add(label, "skipped", res["skipped"])
            continue
        ratio = res["latency"]["p50_ms"] / base
        extra = ""
        if key == "llamaindex":
            extra = (
                f"; import {res['import_s']:.1f} s; same vectors as plain "
                f"(min cosine {res['min_cosine_vs_plain']:.4f})"
            )
        section.add(
            f"{label}: query latency, top 5",
            fmt_latency(res["latency"]),
            f"{ratio:.2f}x plain p50; hit@5 {res['hit_at_5']:.2f}; index build "
            f"{res['build_s']:.1f} s ({len(passages)} passages){extra}",
        )
    section.data = {"passages": len(passages), "questions": len(qs), **results}
    return [section]


def llamaindex(
    folder: str,
    passages: list[str],
    texts: list[str],
    qs: list[Question],
    reference: Any,
    repeats: int,
) -> dict[str, Any]:
    """LlamaIndex over the same passages, or why it was skipped."""
    try:
        started = time.perf_counter()
        core = importlib.import_module("llama_index.core")
        schema = importlib.import_module("llama_index.core.schema")
        hf = importlib.import_module("llama_index.embeddings.huggingface")
        import_s = time.perf_counter() - started
    except ImportError as exc:
        return {
            "skipped": f"not installed ({exc.name}); pip install llama-index-core "
            "llama-index-embeddings-huggingface"
        }
    log(f"LlamaIndex (import {import_s:.1f} s)")
    core.Settings.llm = None  # retrieval only: never reach for a hosted LLM
    embed_model = hf.HuggingFaceEmbedding(
        model_name=folder,
        device="cpu",
        query_instruction="query: ",
        text_instruction="passage: ",
        normalize=True,
        embed_batch_size=32,
    )
    nodes = [schema.TextNode(text=p, id_=str(i)) for i, p in enumerate(passages)]
    start = time.perf_counter()
    index = core.VectorStoreIndex(nodes, embed_model=embed_model)
    build_s = time.perf_counter() - start
    retriever = index.as_retriever(similarity_top_k=TOP_K)

    def search(query: str) -> list[str]:
        return [texts[int(n.node.node_id)] for n in retriever.retrieve(query)]

    # Same vectors as ours? (same folder and prompts: cosine should be ~1)
    check = np.asarray(embed_model.get_text_embedding_batch(passages[:8]), dtype=np.float32)
    cosine = float(np.min(np.sum(check * reference[:8], axis=1)))
    return {
        "build_s": build_s,
        "import_s": import_s,
        "min_cosine_vs_plain": cosine,
        **measure(search, qs, repeats),
    }
