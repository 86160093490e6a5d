"""Bulk ingest on Ray: load, clean and chunk as Ray Data tasks, embed on an actor pool.

The pipeline is ``files -> flat_map(load + clean) -> map(chunk) -> map_batches(embed)``; each
embedding actor loads the model once from the folder the driver resolved (so no actor looks
anything up on a hub). The driver reads the embedded documents in order and writes them through
``Index.ingest`` as ``EmbeddedDocument``s, so batching, transactions, replacement of changed
documents and progress are those of the in-process path, on whatever store the Index has.
Chunks and windows are embedded by ``rag.store.passages.embed_chunks``, the function the Index
itself uses, so both paths store the same vectors.

Rows travel as pickled bytes: documents, chunks and variable-sized window arrays need no
Arrow schema that way.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from rag.embedding.embedder import SentenceTransformerEmbedder
from rag.embedding.late import WindowVectors
from rag.errors import ConfigError, IndexMismatchError
from rag.ingest.chunking import chunk_document
from rag.ingest.loaders import Skipped, list_files, load_file
from rag.store.index import (
    PROCESSING_VERSION,
    EmbeddedDocument,
    Index,
    IngestReport,
    Progress,
    content_hash,
    embed_chunks,
    window_vectors_of,
)
from rag.types import Chunk, Document

__all__ = ["RayOptions", "RayThroughput", "ingest_on_ray"]


@dataclass(frozen=True)
class RayOptions:
    """How to run: where Ray is, how many embedding actors and how many documents a batch."""

    address: str | None = None  # None: start a local Ray for this run
    actors: int = 1
    batch_docs: int = 16
    cpus_per_actor: int = 1  # also the actor's torch threads
    local_cpus: int | None = None  # a local Ray's CPUs; None = all of this machine
    # A local Ray's shared-memory object store; batches of documents are small.
    object_store_bytes: int = 256 * 1024**2
    quiet: bool = False


@dataclass(frozen=True)
class RayThroughput:
    """What the Ray run did per second; printed by ``rag ingest --ray``."""

    documents: int
    chunks: int
    vectors: int  # chunk vectors plus sentence-window vectors
    start_s: float  # connecting to (or starting) Ray
    seconds: float  # the pipeline, from the first task to the last write
    actors: int
    batch_docs: int

    def summary(self) -> str:
        per_s = max(self.seconds, 1e-9)
        return (
            f"ray: {self.actors} embedding actor(s), batches of {self.batch_docs} documents: "
            f"{self.documents} documents, {self.chunks} chunks, {self.vectors} vectors in "
            f"{self.seconds:.1f} s = {self.documents / per_s:.2f} documents/s, "
            f"{self.chunks / per_s:.1f} chunks/s, {self.vectors / per_s:.1f} vectors/s "
            f"(Ray start {self.start_s:.1f} s)"
        )


# -- the stages (run in Ray workers) ----------------------------------------------------
def _load(row: dict[str, Any]) -> list[dict[str, bytes]]:
    items = load_file(Path(row["path"]), bool(row["explicit"]))
    return [{"item": pickle.dumps(item)} for item in items]


_COUNTERS: dict[str, Callable[[str], int]] = {}


def _chunk(
    row: dict[str, Any], *, model_path: str, max_tokens: int, unchanged: dict[str, str]
) -> dict[str, bytes]:
    """A document becomes ``(document, chunks)``; skips and unchanged documents pass as is."""
    item = pickle.loads(row["item"])
    if isinstance(item, Skipped) or unchanged.get(item.doc_id) == content_hash(item):
        return {"item": row["item"]}
    if model_path not in _COUNTERS:  # the tokenizer once per worker process
        _COUNTERS[model_path] = SentenceTransformerEmbedder(model_path).count_tokens
    chunks = chunk_document(item, _COUNTERS[model_path], max_tokens=max_tokens)
    return {"item": pickle.dumps((item, chunks))}


class _EmbedActor:
    """One model per actor; embeds a batch of chunked documents in one ``embed_chunks`` call."""

    def __init__(
        self,
        model_path: str,
        model_dir: str,
        backend: str,
        precision: str,
        threads: int,
        windows: str,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.embedder = SentenceTransformerEmbedder(
            model_path, model_dir=Path(model_dir), backend=backend, precision=precision
        )
        self.weights = self.embedder.identity.weights_sha256
        self.windows = cast(WindowVectors, windows)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(raw) for raw in batch["item"]]
        chunked: list[tuple[Document, list[Chunk]]] = [i for i in items if isinstance(i, tuple)]
        chunks = [c for _, cs in chunked for c in cs]
        vecs, wins = embed_chunks(self.embedder, chunks, self.windows)
        out: list[bytes] = []
        at = 0
        for item in items:
            if not isinstance(item, tuple):
                out.append(pickle.dumps(item))
                continue
            doc, chunks = item
            end = at + len(chunks)
            embedded = EmbeddedDocument(
                doc, tuple(chunks), tuple(vecs[at:end]), tuple(wins[at:end])
            )
            out.append(pickle.dumps(embedded))
            at = end
        return {"item": np.array(out, dtype=object), "weights": np.array([self.weights] * len(out))}


# -- the driver ---------------------------------------------------------------------------
def _connect(options: RayOptions) -> bool:
    """Connect to ``options.address`` or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    # Workers import this package from here (a cluster gets a copy), not a stale install.
    runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
    if options.address:
        ray.init(address=options.address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(
            num_cpus=options.local_cpus,
            include_dashboard=False,
            object_store_memory=options.object_store_bytes,
            runtime_env=runtime_env,
            log_to_driver=False,
        )
    return True


def _check_cpus(options: RayOptions, cpus: float) -> None:
    """The actors must leave a CPU to the loading tasks, or Ray waits for one forever."""
    wanted = options.actors * options.cpus_per_actor
    if wanted >= cpus:
        raise ConfigError(
            f"{options.actors} embedding actor(s) x {options.cpus_per_actor} CPU take all "
            f"{cpus:g} CPUs of the Ray cluster, and loading and chunking need one too: "
            f"use --ray-actors {max(1, int(cpus - 1) // options.cpus_per_actor)} or fewer "
            "(or a cluster with more CPUs)"
        )


def _unchanged(index: Index) -> dict[str, str]:
    """Content hashes of stored documents that a run may skip (none after a version change)."""
    if (
        index.store.get_meta("processing_version") != PROCESSING_VERSION
        or window_vectors_of(index.store) != index.window_vectors
    ):
        return {}
    return index.store.content_hashes()


def _pipeline(
    index: Index, paths: Sequence[Path], options: RayOptions, model: tuple[str, str, str, str]
) -> Any:
    """The lazy Ray dataset of ingest items.

    ``model`` is (folder, model_dir, backend, precision).
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the same order as the in-process path
    ctx.enable_progress_bars = not options.quiet
    files = [{"path": str(p), "explicit": e} for p, e in list_files(paths)]
    if not files:
        return None
    ds: Any = ray.data.from_items(files, override_num_blocks=len(files))
    # Streaming re-blocking: a big .jsonl file is one load task, but its documents should
    # reach every actor, a batch at a time.
    ds = ds.flat_map(_load).repartition(target_num_rows_per_block=options.batch_docs)
    ds = ds.map(
        _chunk,
        fn_kwargs={
            "model_path": model[0],
            "max_tokens": index.max_tokens,
            "unchanged": _unchanged(index),
        },
    )
    return ds.map_batches(
        _EmbedActor,
        fn_constructor_kwargs={
            "model_path": model[0],
            "model_dir": model[1],
            "backend": model[2],
            "precision": model[3],
            "threads": options.cpus_per_actor,
            "windows": index.window_vectors,  # separate or late, as the Index embeds them
        },
        batch_size=options.batch_docs,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.cpus_per_actor,
    )


def ingest_on_ray(
    index: Index,
    paths: Sequence[Path],
    options: RayOptions,
    *,
    model_path: Path,
    model_dir: Path,
    backend: str = "torch",
    precision: str = "auto",
    prune: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[IngestReport, RayThroughput]:
    """Ingest ``paths`` into ``index`` with the Ray pipeline.

    ``model_path`` is the folder of the index's model (checked by weights digest on every
    batch), ``model_dir`` the cache of exported models; both must be readable by every node.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "`--ray` needs Ray Data: pip install 'rag-citations[ray]' (or `ray[data]`)"
        ) from exc
    started = time.perf_counter()
    started_ray = _connect(options)
    start_s = time.perf_counter() - started
    counts = {"documents": 0, "chunks": 0, "vectors": 0}
    expected = index.embedder.identity.weights_sha256

    def items(ds: Any) -> Iterator[Document | EmbeddedDocument | Skipped]:
        for row in [] if ds is None else ds.iter_rows():
            if row["weights"] != expected:
                raise IndexMismatchError(
                    f"the Ray workers' model in {model_path} (weights {row['weights'][:12]}) is "
                    f"not the index's (weights {expected[:12]}); pass the index's model folder"
                )
            item = pickle.loads(row["item"])
            if isinstance(item, EmbeddedDocument):
                counts["documents"] += 1
                counts["chunks"] += len(item.chunks)
                counts["vectors"] += len(item.chunks) + sum(len(w) for w in item.windows)
            yield item

    try:
        _check_cpus(options, float(ray.cluster_resources().get("CPU", 0)))  # type: ignore[no-untyped-call]
        begun = time.perf_counter()
        ds = _pipeline(index, paths, options, (str(model_path), str(model_dir), backend, precision))
        report = index.ingest(
            items(ds), batch_docs=options.batch_docs, prune=prune, on_progress=on_progress
        )
        seconds = time.perf_counter() - begun
    finally:
        if started_ray:
            ray.shutdown()
    return report, RayThroughput(
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors=counts["vectors"],
        start_s=start_s,
        seconds=seconds,
        actors=options.actors,
        batch_docs=options.batch_docs,
    )
