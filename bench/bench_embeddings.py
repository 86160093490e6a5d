"""Embedding speed and quality per backend (torch, onnx, onnx-int8).

    python bench/bench_embeddings.py [--backends torch,onnx,onnx-int8] [--passages 256]

For each backend: model load time (ONNX files exported beforehand, once), passages/s for
batch embedding of corpus-like paragraphs (GermanQuAD passages packed into chunks of at most
~180 model tokens, as the chunker makes them), single-query latency (median, p95 over 50
queries embedded one at a time) and a rough Recall@5 on eval/data/dev/dev.jsonl (the demo
corpus split on blank lines; a question is a hit when a paragraph holding one of its gold
quotes is among the top 5; unanswerable questions skipped, boilerplate traps reported apart
since retrieving their "gold" is the failure).

It also measures this machine's float32 matmul speed (numpy) and the model's FLOPs per
passage, to show which share of the machine the encoder uses. Prints a markdown table and
writes bench/results/embeddings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.embedding.convert import prepare_default_model  # noqa: E402
from rag.embedding.embedder import SentenceTransformerEmbedder  # noqa: E402

GERMANQUAD = ROOT / "eval" / "data" / "germanquad"
DEV = ROOT / "eval" / "data" / "dev" / "dev.jsonl"
CORPUS = ROOT / "corpus"
RESULTS = ROOT / "bench" / "results" / "embeddings.json"

# multilingual-e5-small: 12 layers, hidden 384, feed-forward 1536.
LAYERS, HIDDEN, FF = 12, 384, 1536
MATMUL_PARAMS = LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FF)  # Q, K, V, O + 2 FFN


def passage_flops(tokens: int) -> float:
    """Forward FLOPs of one sequence: 2 per matmul weight per token, plus attention."""
    attention = LAYERS * 4 * tokens * tokens * HIDDEN  # QK^T and softmax(.)V, 2 FLOPs each
    return 2.0 * MATMUL_PARAMS * tokens + attention


def machine_gflops(n: int = 4096, repeats: int = 3) -> float:
    """Best float32 matmul GFLOP/s of numpy's BLAS on this machine."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def bench_passages(embedder: SentenceTransformerEmbedder, limit: int) -> list[str]:
    """GermanQuAD passages packed sentence by sentence into chunks of <= 180 tokens."""
    chunks: list[str] = []
    for line in (GERMANQUAD / "corpus.jsonl").open(encoding="utf-8"):
        text = json.loads(line)["text"]
        current: list[str] = []
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
            if not sentence.strip() or sentence.startswith("="):
                continue
            candidate = " ".join([*current, sentence])
            if current and embedder.count_tokens(candidate) > 180:
                chunks.append(" ".join(current))
                current = [sentence]
            else:
                current.append(sentence)
        if current:
            chunks.append(" ".join(current))
        if len(chunks) >= limit:
            break
    return [c for c in chunks if embedder.count_tokens(c) <= 200][:limit]


def bench_queries(n: int) -> list[str]:
    dev = [json.loads(line)["question"] for line in DEV.open(encoding="utf-8")]
    quad = [json.loads(line)["text"] for line in (GERMANQUAD / "queries.jsonl").open()]
    return (dev + quad)[:n]


def paragraphs_with_offsets() -> list[tuple[str, int, int, str]]:
    """(doc id, start, end, text) of every blank-line separated corpus paragraph."""
    out = []
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        start = 0
        for part in re.split(r"(\n\s*\n)", text):
            if part.strip() and not re.fullmatch(r"\n\s*\n", part):
                out.append((path.stem, start, start + len(part), part.strip()))
            start += len(part)
    return out


def chunks_with_offsets(
    embedder: SentenceTransformerEmbedder, max_tokens: int = 200
) -> list[tuple[str, int, int, str]]:
    """Paragraphs, with those over ``max_tokens`` packed sentence by sentence into chunks."""
    out = []
    for doc, start, end, text in paragraphs_with_offsets():
        if embedder.count_tokens(text) <= max_tokens:
            out.append((doc, start, end, text))
            continue
        raw = CORPUS.joinpath(f"{doc}.txt").read_text(encoding="utf-8")[start:end]
        spans = [m.span() for m in re.finditer(r"\S.*?(?:[.!?](?=\s)|\n|$)", raw, re.S)]
        a = b = spans[0][0]
        for s0, s1 in spans:
            if b > a and embedder.count_tokens(raw[a:s1]) > max_tokens:
                out.append((doc, start + a, start + b, raw[a:b].strip()))
                a = s0
            b = s1
        out.append((doc, start + a, start + b, raw[a:b].strip()))
    return out


def recall_at_5(
    embedder: SentenceTransformerEmbedder, paragraphs: list[tuple[str, int, int, str]]
) -> dict[str, Any]:
    texts = {p.stem: p.read_text(encoding="utf-8") for p in CORPUS.glob("*.txt")}
    vectors = embedder.embed_passages([p[3] for p in paragraphs])
    hits: dict[str, bool] = {}
    traps: dict[str, bool] = {}
    for line in DEV.open(encoding="utf-8"):
        q = json.loads(line)
        if q["type"] == "unanswerable":
            continue
        gold = set()
        for quote in q["gold"]:
            start = texts[quote["doc"]].index(quote["quote"])
            end = start + len(quote["quote"])
            gold |= {
                i
                for i, (doc, a, b, _) in enumerate(paragraphs)
                if doc == quote["doc"] and a < end and start < b
            }
        scores = vectors @ embedder.embed_queries([q["question"]])[0]
        top5 = set(np.argsort(-scores)[:5].tolist())
        # A boilerplate trap's "gold" is page chrome: finding it is a failure, not a hit.
        target = traps if q["type"] == "boilerplate_trap" else hits
        target[f"{q['id']} ({q['type']})"] = bool(top5 & gold)
    return {
        "recall_at_5": sum(hits.values()) / len(hits),
        "questions": len(hits),
        "misses": [k for k, v in hits.items() if not v],
        "boilerplate_in_top5": [k for k, v in traps.items() if v],
    }


def bench_backend(
    backend: str, model_dir: Path, passages: list[str], queries: list[str], batch: int
) -> dict[str, Any]:
    SentenceTransformerEmbedder(model_dir=model_dir, backend=backend).load()  # export once
    embedder = SentenceTransformerEmbedder(model_dir=model_dir, backend=backend, batch_size=batch)
    start = time.perf_counter()
    embedder.load()
    load_s = time.perf_counter() - start

    embedder.embed_passages(passages[:batch])  # warm-up
    start = time.perf_counter()
    embedder.embed_passages(passages)
    batch_s = time.perf_counter() - start

    for q in queries[:3]:
        embedder.embed_queries([q])
    latencies = []
    for q in queries:
        start = time.perf_counter()
        embedder.embed_queries([q])
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    return {
        "backend": backend,
        "load_s": round(load_s, 2),
        "passages_per_s": round(len(passages) / batch_s, 2),
        "query_median_ms": round(statistics.median(latencies), 1),
        "query_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "paragraphs": recall_at_5(embedder, paragraphs_with_offsets()),
        # As the chunker will cut them: long paragraphs would be truncated at 512 tokens.
        "chunks_200": recall_at_5(embedder, chunks_with_offsets(embedder)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "vectors" / "models")
    args = parser.parse_args()

    prepare_default_model(args.model_dir)
    probe = SentenceTransformerEmbedder(model_dir=args.model_dir)
    passages = bench_passages(probe, args.passages)
    queries = bench_queries(args.queries)
    # Tokens the model sees: prompt and <s>/</s> included.
    tokens = [probe.count_tokens("passage: " + p) + 2 for p in passages]
    flops = float(np.mean([passage_flops(t) for t in tokens]))
    gflops = machine_gflops()

    rows = []
    for backend in args.backends.split(","):
        row = bench_backend(backend, args.model_dir, passages, queries, args.batch_size)
        row["model_gflops_per_s"] = round(row["passages_per_s"] * flops / 1e9, 1)
        rows.append(row)
        print(f"{backend}: done", file=sys.stderr, flush=True)
    # Other processes share this machine: the best of two measurements is the least disturbed.
    gflops = max(gflops, machine_gflops())
    for row in rows:
        row["share_of_machine"] = round(row["model_gflops_per_s"] / gflops, 3)

    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "numpy_float32_matmul_gflops": round(gflops, 1),
        },
        "workload": {
            "passages": len(passages),
            "mean_tokens_per_passage": round(float(np.mean(tokens)), 1),
            "gflop_per_passage": round(flops / 1e9, 2),
            "matmul_params": MATMUL_PARAMS,
            "batch_size": args.batch_size,
            "queries": len(queries),
        },
        "backends": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    m, w = result["machine"], result["workload"]
    print(
        f"\nMachine: {m['cpu_count']} CPUs, numpy float32 matmul {m['numpy_float32_matmul_gflops']}"
        f" GFLOP/s, load average {m['load_average_1m']}. Workload: {w['passages']} passages,"
        f" {w['mean_tokens_per_passage']} tokens each, {w['gflop_per_passage']} GFLOP each.\n"
    )
    print(
        "| backend | load s | passages/s | query median ms | query p95 ms | model GFLOP/s "
        "| share of machine | Recall@5 paragraphs | Recall@5 chunks <= 200 tokens |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        para, chunk = r["paragraphs"], r["chunks_200"]
        print(
            f"| {r['backend']} | {r['load_s']} | {r['passages_per_s']} | {r['query_median_ms']}"
            f" | {r['query_p95_ms']} | {r['model_gflops_per_s']} | {r['share_of_machine']:.0%}"
            f" | {para['recall_at_5']:.2f} of {para['questions']}"
            f" | {chunk['recall_at_5']:.2f} of {chunk['questions']} |"
        )
    print(f"\nWrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
