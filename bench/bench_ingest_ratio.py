"""Ingest against plain encoding: both in a fresh process, model load included, same backend.

``rag ingest`` of the XQuAD corpus (192 German paragraphs: load, clean, chunk, embed chunks
and sentence windows, SQLite, lexical postings, FAISS) is timed as a command, next to a
fresh Python process that only loads sentence-transformers and encodes the same chunk
texts (headline included, passage prompt) with the same backend. Their ratio is what the
service costs on top of the encoder. The two alternate, twice, and each takes its best run:
the machine is shared and the least disturbed run is the closest to the truth. The
ingest runs once per way of making window vectors (``RAG_WINDOW_VECTORS``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import EVAL_DATA, MODEL_DIR, REPO_ROOT, Section, log, plain_model_files
from rag.embedding.late import WINDOW_VECTORS

XQUAD_CORPUS = EVAL_DATA / "xquad-de" / "corpus.jsonl"
ROUNDS = int(os.environ.get("BENCH_INGEST_ROUNDS", "2"))  # best of this many runs each

# The plain baseline: what an expert writes with sentence-transformers alone, at the
# precision the service embeds passages with (bf16 autocast where the CPU has it).
PLAIN = """
import contextlib, json, sys, time
import torch
from sentence_transformers import SentenceTransformer
folder, file_name, texts_file, bf16 = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
kwargs = {"backend": "onnx", "model_kwargs": {"file_name": file_name}} if file_name else {}
model = SentenceTransformer(folder, device="cpu", local_files_only=True, **kwargs)
texts = json.load(open(texts_file, encoding="utf-8"))
cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 == "1" else contextlib.nullcontext()
with cast:
    model.encode(texts, prompt_name="passage", batch_size=32, normalize_embeddings=True)
"""


def chunk_texts(backend: str) -> list[str]:
    """The chunk texts ``rag ingest`` embeds for the XQuAD corpus (headline included)."""
    from rag.embedding.embedder import SentenceTransformerEmbedder
    from rag.ingest.chunking import chunk_document
    from rag.ingest.loaders import iter_documents
    from rag.store.index import embedding_text
    from rag.types import Document

    counter = SentenceTransformerEmbedder(model_dir=MODEL_DIR, backend=backend).count_tokens
    texts = []
    for doc in iter_documents([XQUAD_CORPUS]):
        if isinstance(doc, Document):
            texts.extend(embedding_text(c) for c in chunk_document(doc, counter))
    return texts


def _bf16(backend: str) -> bool:
    from rag.config import Settings
    from rag.embedding.embedder import SentenceTransformerEmbedder

    precision = Settings().embedding_precision
    return SentenceTransformerEmbedder(backend=backend, precision=precision).bf16


def _timed_run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(backend: str, rounds: int = ROUNDS) -> dict[str, Any]:
    """Best-of-``rounds`` seconds of a fresh ``rag ingest`` and of plain encoding."""
    folder, file_name = plain_model_files(backend)
    texts = chunk_texts(backend)
    env = dict(os.environ)
    env.update(
        RAG_MODEL_DIR=str(MODEL_DIR),
        RAG_EMBEDDING_BACKEND=backend,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    ingest_s: dict[str, list[float]] = {mode: [] for mode in WINDOW_VECTORS}
    plain_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-ratio-") as tmp:
        work = Path(tmp)
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        bf16 = "1" if _bf16(backend) else "0"
        plain = [sys.executable, "-c", PLAIN, folder, file_name, str(texts_file), bf16]
        ingest = [sys.executable, "-m", "rag.cli", "ingest", str(XQUAD_CORPUS), "--quiet"]
        for n in range(rounds):
            for mode in WINDOW_VECTORS:
                log(f"fresh `rag ingest` of the XQuAD corpus ({backend}, {mode} windows)")
                run_env = {**env, "RAG_WINDOW_VECTORS": mode}
                run_env["RAG_INDEX_DIR"] = str(work / f"index-{mode}-{n}")
                ingest_s[mode].append(_timed_run(ingest, run_env, work))
            log(f"fresh plain sentence-transformers encoding of {len(texts)} chunks, round {n + 1}")
            plain_s.append(_timed_run(plain, env, work))
    return {
        "backend": backend,
        "bf16": bf16 == "1",
        "chunks": len(texts),
        "ingest_s": ingest_s,
        "plain_s": plain_s,
        "ratio": {mode: min(v) / min(plain_s) for mode, v in ingest_s.items()},
    }


def run(quick: bool = False) -> list[Section]:
    from rag.config import Settings

    settings = Settings()
    backend = settings.embedding_backend
    data = measure(backend, rounds=1 if quick else ROUNDS)
    data["default"] = settings.window_vectors
    section = Section("ingest-ratio", data=data)
    precision = "bf16" if data["bf16"] else "fp32"
    for mode, seconds in data["ingest_s"].items():
        mark = " (default)" if mode == settings.window_vectors else ""
        section.add(
            f"`rag ingest` ({mode} windows{mark}) / plain ST encoding, XQuAD corpus "
            f"({data['chunks']} chunks, {backend} {precision}, fresh processes, model load "
            "included)",
            f"{data['ratio'][mode]:.2f}x",
            f"best of {len(seconds)}: {min(seconds):.1f} s / {min(data['plain_s']):.1f} s",
        )
    return [section]
