"""The search path at 10k, 100k and 1M chunks: latency, memory, bytes, exact versus ANN.

Text and vectors are synthetic (``bench.synthetic``): embedding 100k passages with the real
model would take hours on this machine. Up to 100k chunks the data goes through the real
storage path (``SqliteStore`` + ``LexicalIndex``, then ``Index`` builds FAISS from SQLite)
and queries go through ``Retriever.search`` with a precomputed query vector; what embedding
a query costs is measured separately with the real model and added for the end-to-end
estimate. At 1M chunks writing SQLite and the lexical postings would take 20+ minutes here
(~800 chunks/s, mostly German analysis and postings), so 1M is measured on
``FaissVectorStore`` alone and the SQLite bytes are projected from 100k. ANN indexes whose
projected build time (from the previous scale) exceeds the budget are skipped and reported.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import (
    DEV_QUESTIONS,
    MODEL_DIR,
    Section,
    fmt_bytes,
    fmt_latency,
    latency_stats,
    log,
    rss_bytes,
    stopwatch,
    timed,
)
from bench.synthetic import (
    FloatArray,
    GermanLikeText,
    RandomEmbedder,
    TopicVectors,
    normalize,
    random_unit_vectors,
    synthetic_batches,
)

DIM = 384
TOP_K = 10
PER_TOPIC = 100  # chunks per topic direction in the synthetic vector space
QUERY_NOISE = 1.0  # query vector = chunk vector + noise: cosine ~0.7 to its source chunk
WINDOW_NOISE = 0.8  # a sentence window's vector: cosine ~0.8 to its chunk's


@dataclass(frozen=True)
class Plan:
    full_scales: tuple[int, ...]  # through SQLite + lexical + FAISS + Retriever
    faiss_scales: tuple[int, ...]  # FaissVectorStore only
    queries: int
    max_build_s: float  # skip an ANN index whose projected build time is longer


PLAN = Plan((10_000, 100_000), (1_000_000,), queries=100, max_build_s=180.0)
QUICK_PLAN = Plan((2_000, 5_000), (20_000,), queries=20, max_build_s=30.0)


def projected_build_s(kind: str, n: int, measured: tuple[int, float]) -> float:
    """Build time at ``n`` from a build at ``measured = (n0, seconds)``.

    HNSW inserts cost ~log n each; IVF with ~sqrt(n) lists costs ~n * sqrt(n) to train
    (FAISS samples at most 256 points per list) and to assign.
    """
    n0, seconds = measured
    if kind == "hnsw":
        return float(seconds * (n * np.log(n)) / (n0 * np.log(n0)))
    return float(seconds * (n / n0) ** 1.5)


@dataclass
class Written:
    ids: np.ndarray[Any, np.dtype[np.int64]]
    vectors: FloatArray
    query_texts: list[str]
    query_vectors: FloatArray
    store_s: float
    lexical_s: float
    total_s: float
    windows: int


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def _queries_from(
    vectors: FloatArray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], FloatArray]:
    """Positions of the chunks the queries come from, and query vectors near them."""
    positions = np.sort(rng.choice(len(vectors), size=count, replace=False))
    noise = rng.standard_normal((count, vectors.shape[1]), dtype=np.float32)
    noise *= np.float32(QUERY_NOISE / np.sqrt(vectors.shape[1]))
    return positions, normalize(vectors[positions] + noise)


def write_index(directory: Path, n: int, queries: int, seed: int = 0) -> Written:
    """Write ``n`` synthetic chunks into SQLite + lexical postings, the way ingest does."""
    import rag.store.index
    from rag.store.factory import DB_NAME
    from rag.store.index import content_hash
    from rag.store.lexical import LexicalIndex
    from rag.store.sqlite import SqliteStore

    # Sentence-window vectors, where the index keeps them (the retriever re-scores dense
    # candidates with them): one vector per 1- and 2-sentence run, as ingest embeds them.
    window_texts: Callable[[Any], list[str]] | None = getattr(rag.store.index, "window_texts", None)
    with_windows = window_texts is not None and hasattr(SqliteStore, "put_windows")
    rng = np.random.default_rng(seed + 1)
    space = TopicVectors(DIM, max(1, n // PER_TOPIC), seed=seed)
    text = GermanLikeText(seed)
    store = SqliteStore(directory / DB_NAME)
    lexical = LexicalIndex(store.conn)
    store.begin()
    lexical.create_schema()
    store.set_embedder_identity(RandomEmbedder(DIM).identity)
    store.commit()
    ids = np.empty(n, dtype=np.int64)
    vectors = np.empty((n, DIM), dtype=np.float32)
    texts: dict[int, str] = {}
    query_rows = set(rng.choice(n, size=queries, replace=False).tolist())
    store_s = lexical_s = 0.0
    windows_total = 0
    row = 0
    with stopwatch() as total:
        for batch in synthetic_batches(n, text=text, seed=seed):
            vecs = space.sample(len(batch.chunks), rng)
            windows: dict[int, FloatArray] = {}
            if with_windows and window_texts is not None:
                counts = [len(window_texts(c)) for c in batch.chunks]
                parts = window_vectors(vecs, counts, rng)
                windows = {c.chunk_id: w for c, w in zip(batch.chunks, parts, strict=True)}
                windows_total += sum(counts)
            with stopwatch() as t_store:
                store.begin()
                for doc in batch.documents:
                    store.put_document(doc, content_hash(doc))
                store.put_chunks(batch.chunks, vecs)
                if with_windows:
                    store.put_windows(windows)
            with stopwatch() as t_lex:
                # the same text the real ingest indexes: headline + passage
                lexical.add([(c.chunk_id, f"{c.context}\n{c.text}") for c in batch.chunks])
                store.commit()
            store_s += t_store[0]
            lexical_s += t_lex[0]
            for i, chunk in enumerate(batch.chunks):
                ids[row + i] = chunk.chunk_id
                if row + i in query_rows:
                    texts[row + i] = chunk.text
            vectors[row : row + len(batch.chunks)] = vecs
            row += len(batch.chunks)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    positions = np.asarray(sorted(texts), dtype=np.int64)
    noise = rng.standard_normal((len(positions), DIM), dtype=np.float32)
    noise *= np.float32(QUERY_NOISE / np.sqrt(DIM))
    query_vectors = normalize(vectors[positions] + noise)
    query_texts = [text.query_from(texts[int(p)]) for p in positions]
    return Written(
        ids, vectors, query_texts, query_vectors, store_s, lexical_s, total[0], windows_total
    )


def window_vectors(
    vectors: FloatArray, counts: list[int], rng: np.random.Generator
) -> list[FloatArray]:
    """``counts[i]`` unit vectors near ``vectors[i]`` (a sentence is near its passage)."""
    noise = rng.standard_normal((sum(counts), vectors.shape[1]), dtype=np.float32)
    noise *= np.float32(WINDOW_NOISE / np.sqrt(vectors.shape[1]))
    out: list[FloatArray] = []
    at = 0
    for vector, count in zip(vectors, counts, strict=True):
        part = noise[at : at + count]
        out.append(normalize(part + vector) if count else part)
        at += count
    return out


def sqlite_breakdown(path: Path) -> dict[str, int]:
    """Bytes per table and index (SQLite's dbstat), or just the file size without dbstat."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        return {str(name): int(size) for name, size in rows}
    except sqlite3.OperationalError:
        return {"(file)": path.stat().st_size}
    finally:
        conn.close()


def recall_at_k(exact: list[list[int]], approx: list[list[int]], k: int = TOP_K) -> float:
    """Mean share of the exact top-k that the approximate top-k found."""
    scores = [
        len(set(a[:k]) & set(e[:k])) / max(1, min(k, len(e)))
        for e, a in zip(exact, approx, strict=True)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def _search_all(
    store: Any, queries: FloatArray, k: int = TOP_K, threads: int | None = None
) -> tuple[list[list[int]], list[float]]:
    """Top-k ids and seconds per query; ``threads`` caps FAISS's OpenMP threads meanwhile."""
    from rag.store.faiss import faiss

    default = int(faiss.omp_get_max_threads())
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    results: list[list[int]] = []
    seconds: list[float] = []
    try:
        for q in queries:
            hits, s = timed(store.search, q, k)
            results.append([i for i, _ in hits])
            seconds.append(s)
    finally:
        faiss.omp_set_num_threads(default)
    return results, seconds


def _compare_ann(
    section: Section,
    label: str,
    ids: np.ndarray[Any, np.dtype[np.int64]],
    vectors: FloatArray,
    queries: FloatArray,
    exact_results: list[list[int]],
    exact_stats: dict[str, float],
    plan: Plan,
    builds: dict[str, tuple[int, float]],
) -> dict[str, Any]:
    """Build HNSW and IVF over the same vectors; recall@10 against exact, speed, size.

    Latencies compare with one OpenMP thread (``exact_stats`` likewise): one query at a
    time, FAISS's default threads mostly measure how long idle threads take to wake up on a
    shared CPU (the defaults are in the JSON).
    """
    from rag.store.faiss import FaissVectorStore

    out: dict[str, Any] = {}
    n = len(ids)
    for kind in ("hnsw", "ivf"):
        log(f"{_label(len(ids))}: {kind}")
        if kind in builds:
            projected = projected_build_s(kind, n, builds[kind])
            if projected > plan.max_build_s:
                out[kind] = {"skipped": True, "projected_build_s": projected}
                section.add(
                    f"{label}: {kind.upper()}",
                    "not built",
                    f"projected build {projected / 60:.1f} min on this machine (from the "
                    f"{_label(builds[kind][0])} build) exceeds the bench budget",
                )
                continue
        rss0 = rss_bytes()
        store, build_s = timed(FaissVectorStore.build, ids, vectors, kind)
        rss1 = rss_bytes()
        builds[kind] = (n, build_s)
        size = len(store.to_bytes())
        _search_all(store, queries[:5], threads=1)  # warm-up
        results, seconds = _search_all(store, queries, threads=1)
        stats = latency_stats(seconds)
        default_stats = latency_stats(_search_all(store, queries)[1])
        recall = recall_at_k(exact_results, results)
        params = (
            f"M={store.HNSW_M}, efSearch={store.HNSW_EF_SEARCH}"
            if kind == "hnsw"
            else f"nlist={int(np.sqrt(n))}, nprobe={store.IVF_NPROBE}"
        )
        out[kind] = {
            "build_s": build_s,
            "bytes": size,
            "bytes_per_chunk": size / n,
            "rss_delta": rss1 - rss0,
            "latency_1_thread": stats,
            "latency_default_threads": default_stats,
            "recall_at_10": recall,
            "params": params,
        }
        speedup = exact_stats["p50_ms"] / stats["p50_ms"] if stats["p50_ms"] else float("nan")
        section.add(
            f"{label}: {kind.upper()} vs exact (FAISS, k=10, 1 thread)",
            f"recall@10 {recall:.3f}; p50 {stats['p50_ms']:.2f} ms vs "
            f"{exact_stats['p50_ms']:.2f} ms ({speedup:.1f}x)",
            f"{params}; build {build_s:.1f} s; {size / n:.0f} B/chunk",
        )
        del store
        gc.collect()
    return out


def bench_full(
    n: int, plan: Plan, builds: dict[str, tuple[int, float]]
) -> tuple[Section, dict[str, Any]]:
    """One scale through SQLite + lexical + FAISS + ``Retriever``."""
    from rag.retrieve.retriever import Mode, Retriever
    from rag.store.factory import DB_NAME, open_index

    label = _label(n)
    section = Section("search")
    with tempfile.TemporaryDirectory(prefix=f"bench-search-{label}-") as tmp:
        directory = Path(tmp)
        log(f"{label}: writing synthetic chunks into SQLite + lexical")
        written = write_index(directory, n, plan.queries)
        log(f"{label}: opening the index and searching")
        section.add(
            f"{label}: write SQLite + lexical (synthetic text, no embedding)",
            f"{written.total_s:.1f} s ({n / written.total_s:.0f} chunks/s)",
            f"rows+vectors {written.store_s:.1f} s (with {written.windows / n:.1f} "
            f"sentence-window vectors per chunk), lexical {written.lexical_s:.1f} s",
        )
        breakdown = sqlite_breakdown(directory / DB_NAME)
        gc.collect()
        rss0 = rss_bytes()
        index, open_s = timed(open_index, directory, RandomEmbedder(DIM), ann="exact")
        retriever = Retriever(index)
        modes: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
        latencies: dict[str, dict[str, float]] = {}
        for mode in modes:
            for text, vec in zip(written.query_texts[:5], written.query_vectors[:5], strict=True):
                retriever.search(text, TOP_K, mode=mode, query_vector=vec)  # warm-up
            seconds = [
                timed(retriever.search, text, TOP_K, mode=mode, query_vector=vec)[1]
                for text, vec in zip(written.query_texts, written.query_vectors, strict=True)
            ]
            latencies[mode] = latency_stats(seconds)
        rss1 = rss_bytes()
        stats = index.stats()
        exact_results, exact_seconds = _search_all(index.vectors, written.query_vectors)
        exact_stats = latency_stats(exact_seconds)
        single = single_thread_faiss(index.vectors, written.query_vectors)
        section.add(
            f"{label}: FAISS exact, 1 OpenMP thread vs the default {single['default_threads']}",
            f"p50 {single['latency']['p50_ms']:.2f} ms vs {exact_stats['p50_ms']:.2f} ms",
            _threads_note(single["latency"]["p50_ms"], exact_stats["p50_ms"]),
        )
        for mode in modes:
            section.add(
                f"{label}: Retriever.search {mode}, top 10 (query vector given)",
                fmt_latency(latencies[mode]),
                "FAISS exact" if mode != "lexical" else "BM25 in SQLite",
            )
        section.add(
            f"{label}: RSS delta after opening + searching",
            f"{fmt_bytes(rss1 - rss0)} ({(rss1 - rss0) / n:.0f} B/chunk)",
            f"open (FAISS rebuilt from SQLite) {open_s:.1f} s",
        )
        lexical_bytes = sum(v for k, v in breakdown.items() if "lex_" in k)
        window_bytes = sum(v for k, v in breakdown.items() if "chunk_windows" in k)
        chunk_bytes = sum(v for k, v in breakdown.items() if k.startswith("chunks"))
        section.add(
            f"{label}: index on disk",
            f"{(stats.sqlite_bytes + stats.faiss_bytes) / n:.0f} B/chunk",
            f"SQLite {stats.sqlite_bytes / n:.0f} (chunks+vector {chunk_bytes / n:.0f}, "
            f"window vectors {window_bytes / n:.0f}, lexical {lexical_bytes / n:.0f}) "
            f"+ FAISS {stats.faiss_bytes / n:.0f}",
        )
        ann = _compare_ann(
            section,
            label,
            written.ids,
            written.vectors,
            written.query_vectors,
            exact_results,
            single["latency"],
            plan,
            builds,
        )
        index.close()
        data = {
            "chunks": n,
            "write": {
                "windows_per_chunk": written.windows / n,
                "total_s": written.total_s,
                "store_s": written.store_s,
                "lexical_s": written.lexical_s,
            },
            "open_s": open_s,
            "latency": latencies,
            "faiss_exact_latency": exact_stats,
            "faiss_exact_1_thread": single,
            "rss_delta": rss1 - rss0,
            "sqlite_bytes": stats.sqlite_bytes,
            "faiss_bytes": stats.faiss_bytes,
            "sqlite_breakdown": breakdown,
            "ann": ann,
        }
    return section, data


def bench_faiss_only(
    n: int,
    plan: Plan,
    builds: dict[str, tuple[int, float]],
    sqlite_per_chunk: float | None,
    write_rate: float | None,
) -> tuple[Section, dict[str, Any]]:
    """One scale on ``FaissVectorStore`` alone (no SQLite, no lexical)."""
    from rag.store.faiss import FaissVectorStore

    label = _label(n)
    section = Section("search")
    rng = np.random.default_rng(7)
    space = TopicVectors(DIM, max(1, n // PER_TOPIC), seed=7)
    log(f"{label}: FAISS only")
    vectors, gen_s = timed(space.sample, n, rng)
    ids = np.arange(n, dtype=np.int64)
    _, queries = _queries_from(vectors, plan.queries, rng)
    gc.collect()
    rss0 = rss_bytes()
    exact, build_s = timed(FaissVectorStore.build, ids, vectors, "exact")
    rss1 = rss_bytes()
    size = len(exact.to_bytes())
    _search_all(exact, queries[:5])
    exact_results, seconds = _search_all(exact, queries)
    exact_stats = latency_stats(seconds)
    single = latency_stats(_search_all(exact, queries, threads=1)[1])
    section.add(
        f"{label}: FAISS exact search, top 10 (query vector given)",
        f"{fmt_latency(exact_stats)} (1 thread: p50 {single['p50_ms']:.1f} ms)",
        "FaissVectorStore only: SQLite + lexical are not written at this scale"
        + (f" (~{n / write_rate / 60:.1f} min at the measured rate)" if write_rate else ""),
    )
    projected = (
        f"; SQLite projected {sqlite_per_chunk * n / 2**30:.1f} GiB" if sqlite_per_chunk else ""
    )
    section.add(
        f"{label}: FAISS exact RSS delta / on disk",
        f"{fmt_bytes(rss1 - rss0)} / {fmt_bytes(size)} ({size / n:.0f} B/chunk)",
        f"vectors generated in {gen_s:.1f} s, added in {build_s:.1f} s{projected}",
    )
    del exact
    gc.collect()
    ann = _compare_ann(section, label, ids, vectors, queries, exact_results, single, plan, builds)
    data = {
        "chunks": n,
        "faiss_only": True,
        "generate_s": gen_s,
        "exact_build_s": build_s,
        "exact_latency": exact_stats,
        "exact_latency_1_thread": single,
        "exact_rss_delta": rss1 - rss0,
        "exact_bytes": size,
        "sqlite_bytes_projected": sqlite_per_chunk * n if sqlite_per_chunk else None,
        "ann": ann,
    }
    return section, data


def bench_worst_case(n: int, plan: Plan) -> tuple[Section, dict[str, Any]]:
    """ANN recall on structureless uniform random vectors and queries: the lower bound."""
    from rag.store.faiss import FaissVectorStore

    label = _label(n)
    log(f"{label}: uniform random vectors (worst case for ANN)")
    section = Section("search")
    vectors = random_unit_vectors(n, DIM, seed=11)
    queries = random_unit_vectors(plan.queries, DIM, seed=12)
    ids = np.arange(n, dtype=np.int64)
    exact = FaissVectorStore.build(ids, vectors, "exact")
    exact_results, _ = _search_all(exact, queries, threads=1)
    data: dict[str, Any] = {"chunks": n}
    recalls = []
    for kind in ("hnsw", "ivf"):
        store = FaissVectorStore.build(ids, vectors, kind)
        results, seconds = _search_all(store, queries, threads=1)
        recall = recall_at_k(exact_results, results)
        data[kind] = {"recall_at_10": recall, "latency": latency_stats(seconds)}
        recalls.append(f"{kind.upper()} {recall:.3f}")
    section.add(
        f"{label}: ANN recall@10 on uniform random vectors",
        ", ".join(recalls),
        "worst case: no neighbourhood structure at all (real embeddings lie in between)",
    )
    return section, data


def _threads_note(one_ms: float, default_ms: float) -> str:
    if one_ms * 2 < default_ms:
        return (
            "1 thread is faster: busy-waiting OpenMP threads lose to other processes on a "
            "shared CPU (OMP_WAIT_POLICY=passive avoids it)"
        )
    return "one query at a time; no large difference in this run"


def single_thread_faiss(store: Any, queries: FloatArray) -> dict[str, Any]:
    """Exact search latency with FAISS limited to one OpenMP thread."""
    from rag.store.faiss import faiss

    _search_all(store, queries[:5], threads=1)
    _, seconds = _search_all(store, queries, threads=1)
    return {"default_threads": int(faiss.omp_get_max_threads()), "latency": latency_stats(seconds)}


def query_embedding_cost(repeats: int = 3) -> dict[str, Any]:
    """Latency of embedding one question with the real model (torch), after warm-up;
    with torch's default thread count and with one thread."""
    import json

    import torch

    from rag.config import DEFAULT_EMBEDDING_MODEL
    from rag.embedding.embedder import SentenceTransformerEmbedder

    questions = [
        json.loads(line)["question"] for line in DEV_QUESTIONS.read_text("utf-8").splitlines()
    ]
    embedder = SentenceTransformerEmbedder(DEFAULT_EMBEDDING_MODEL, model_dir=MODEL_DIR)
    embedder.embed_queries(questions[:3])
    out: dict[str, Any] = {"default_threads": torch.get_num_threads()}
    default = torch.get_num_threads()
    for key, threads in (("default", default), ("one_thread", 1)):
        torch.set_num_threads(threads)
        embedder.embed_queries(questions[:2])
        seconds = [timed(embedder.embed_queries, [q])[1] for _ in range(repeats) for q in questions]
        out[key] = latency_stats(seconds)
    torch.set_num_threads(default)
    return out


def run(quick: bool = False) -> list[Section]:
    plan = QUICK_PLAN if quick else PLAN
    # ``python -m bench --max-build-s S`` (passed down by the runner) widens the budget.
    if os.environ.get("BENCH_MAX_BUILD_S"):
        plan = replace(plan, max_build_s=float(os.environ["BENCH_MAX_BUILD_S"]))
    section = Section("search")
    builds: dict[str, tuple[int, float]] = {}
    sqlite_per_chunk: float | None = None
    write_rate: float | None = None
    hybrid_p50: dict[str, float] = {}
    for n in plan.full_scales:
        part, data = bench_full(n, plan, builds)
        section.rows.extend(part.rows)
        section.data[_label(n)] = data
        sqlite_per_chunk = data["sqlite_bytes"] / n
        write_rate = n / data["write"]["total_s"]
        hybrid_p50[_label(n)] = data["latency"]["hybrid"]["p50_ms"]
        gc.collect()
    part, data = bench_worst_case(plan.full_scales[0], plan)
    section.rows.extend(part.rows)
    section.data["uniform_worst_case"] = data
    for n in plan.faiss_scales:
        part, data = bench_faiss_only(n, plan, builds, sqlite_per_chunk, write_rate)
        section.rows.extend(part.rows)
        section.data[_label(n)] = data
        gc.collect()
    log("query embedding with the real model")
    embed = query_embedding_cost(1 if quick else 3)
    section.data["query_embedding"] = embed
    default = embed["default"]
    estimate = ", ".join(f"{k} {default['p50_ms'] + v:.0f} ms" for k, v in hybrid_p50.items())
    section.add(
        "embedding one query (real model, torch fp32)",
        fmt_latency(default),
        f"+ hybrid search p50 = end-to-end estimate: {estimate}",
    )
    section.add(
        f"embedding one query, torch 1 thread vs the default {embed['default_threads']}",
        f"p50 {embed['one_thread']['p50_ms']:.1f} ms vs {default['p50_ms']:.1f} ms",
        _threads_note(embed["one_thread"]["p50_ms"], default["p50_ms"]),
    )
    return [section]
