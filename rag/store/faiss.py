"""``FaissVectorStore``: the embedded ``VectorStore`` (see ``rag.store.base``).

The store maps integer chunk ids to unit vectors and answers inner-product (cosine)
top-k queries, optionally restricted to a set of allowed ids. It is derived data: the
SQLite store holds every vector and can rebuild it at any time.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rag.errors import IndexCorruptError
from rag.types import FloatArray

# faiss's SWIG stubs cover little of its API (no SearchParametersHNSW, no `sel=`): use it untyped.
faiss: Any = importlib.import_module("faiss")

IdArray = npt.NDArray[np.int64]
IndexKind = Literal["exact", "hnsw", "ivf"]


class ReadWriteLock:
    """Many readers at once or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def choose_kind(setting: str, count: int, threshold: int) -> IndexKind:
    """Resolve the ``ann`` setting: ``auto`` is exact below ``threshold`` chunks, HNSW above."""
    if setting == "auto":
        return "hnsw" if count >= threshold else "exact"
    if setting not in ("exact", "hnsw", "ivf"):
        raise ValueError(f"unknown index kind {setting!r}; use auto, exact, hnsw or ivf")
    return setting  # type: ignore[return-value]


class FaissVectorStore:
    """FAISS ``IndexIDMap2`` over inner product: exact (flat), HNSW or IVF.

    Searches run in parallel under a read lock; ``add``/``remove`` (one writer at a time:
    the Index serialises them) take the write lock only for the FAISS call itself, and a
    HNSW/IVF removal builds its replacement outside the lock and swaps it in.
    """

    follows_documents = True  # derived: the SQLite store holds every vector

    HNSW_M = 32
    HNSW_EF_CONSTRUCTION = 80
    HNSW_EF_SEARCH = 128
    IVF_NPROBE = 16

    def __init__(self, dimension: int, kind: IndexKind = "exact") -> None:
        self.dimension = dimension
        self.kind: IndexKind = kind
        self._index = self._new_index(dimension, kind)
        self._rw = ReadWriteLock()

    # -- construction -------------------------------------------------------------
    def _new_index(self, dimension: int, kind: IndexKind) -> Any:
        if kind == "exact":
            base = faiss.IndexFlatIP(dimension)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dimension, self.HNSW_M, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = self.HNSW_EF_CONSTRUCTION
        else:
            # IVF needs training data; it is trained on the first batch added (see add()).
            quantizer = faiss.IndexFlatIP(dimension)
            base = faiss.IndexIVFFlat(quantizer, dimension, 1, faiss.METRIC_INNER_PRODUCT)
        return faiss.IndexIDMap2(base)

    @classmethod
    def build(
        cls, ids: Sequence[int] | IdArray, vectors: FloatArray, kind: IndexKind = "exact"
    ) -> FaissVectorStore:
        """A store holding exactly these vectors (vectors must be L2-normalised)."""
        store = cls(vectors.shape[1] if vectors.ndim == 2 and len(vectors) else 0, kind)
        if len(vectors):
            store.add(ids, vectors)
        return store

    def adopt(self, other: FaissVectorStore) -> None:
        """Take over ``other``'s index (a loaded snapshot or a rebuild) in place."""
        with self._rw.write():
            self.dimension, self.kind, self._index = other.dimension, other.kind, other._index
            self._quantizer = getattr(other, "_quantizer", None)

    # -- mutation -----------------------------------------------------------------
    def add(self, ids: Sequence[int] | IdArray, vectors: FloatArray) -> None:
        """Add vectors under the given ids (ids must not be present yet)."""
        if len(vectors) == 0:
            return
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._rw.write():
            if self.dimension == 0:
                self.dimension = x.shape[1]
                self._index = self._new_index(self.dimension, self.kind)
            if x.shape[1] != self.dimension:
                raise ValueError(
                    f"vector dimension {x.shape[1]} != index dimension {self.dimension}"
                )
            base = faiss.downcast_index(self._index.index)
            if isinstance(base, faiss.IndexIVFFlat) and not base.is_trained:
                self._train_ivf(x)
            self._index.add_with_ids(x, np.asarray(ids, dtype=np.int64))

    def _train_ivf(self, x: FloatArray) -> None:
        # ~sqrt(n) lists is the usual rule; rebuild (rag index rebuild) retrains on all data.
        nlist = max(1, min(4096, int(np.sqrt(len(x)))))
        quantizer = faiss.IndexFlatIP(self.dimension)
        base = faiss.IndexIVFFlat(quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        base.train(x)
        base.nprobe = min(self.IVF_NPROBE, nlist)
        base.make_direct_map()  # lets reconstruct work (used when rebuilding after removals)
        self._index = faiss.IndexIDMap2(base)
        self._quantizer = quantizer  # keep the Python wrapper alive as long as the index

    def remove(self, ids: Sequence[int] | IdArray) -> None:
        """Remove ids (unknown ones are ignored); HNSW and IVF cannot delete, so they rebuild."""
        if len(ids) == 0 or len(self) == 0:
            return
        drop = np.asarray(ids, dtype=np.int64)
        if self.kind != "exact":
            with self._rw.read():
                keep_ids = self.ids()
                keep_ids = keep_ids[~np.isin(keep_ids, drop)]
                vectors = self._reconstruct(keep_ids)
            rebuilt = FaissVectorStore(self.dimension, self.kind)
            rebuilt.add(keep_ids, vectors)
            self.adopt(rebuilt)
            return
        with self._rw.write():
            self._index.remove_ids(faiss.IDSelectorBatch(drop))

    # -- queries ------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> IdArray:
        """Every id in the index, in insertion order."""
        ids: IdArray = faiss.vector_to_array(self._index.id_map).astype(np.int64)  # a copy
        return ids

    def _reconstruct(self, ids: IdArray) -> FloatArray:
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        for row, id_ in enumerate(ids):
            out[row] = self._index.reconstruct(int(id_))
        return out

    def search(
        self, query: FloatArray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k ``(id, score)`` pairs, best first; ``allowed`` restricts the candidates."""
        if len(self) == 0 or k <= 0 or (allowed is not None and not allowed):
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        k = min(k, len(self))
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(
                    sel=selector, efSearch=max(self.HNSW_EF_SEARCH, k)
                )
            elif self.kind == "ivf":
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self.IVF_NPROBE)
            else:
                params = faiss.SearchParameters(sel=selector)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.HNSW_EF_SEARCH, k))
        # One query needs one thread. FAISS brings its own OpenMP runtime beside torch's: a
        # team of two wakes threads that then spin against the next forward pass (about
        # 2 ms a search here, docs/speed.md). The setting is per thread in libgomp, so
        # the writer's bulk HNSW adds keep their threads.
        faiss.omp_set_num_threads(1)
        with self._rw.read():
            scores, ids = self._index.search(q, k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    # -- persistence --------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The index serialised by FAISS (its own format: no pickle)."""
        with self._rw.read():
            return bytes(faiss.serialize_index(self._index))

    def save(self, path: Path) -> str:
        """Write atomically (temp file, fsync, rename); returns the file's sha256."""
        data = self.to_bytes()
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: Path, *, expected_sha256: str | None = None) -> FaissVectorStore:
        """Read a saved index; raises IndexCorruptError when it is truncated or altered."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IndexCorruptError(f"cannot read FAISS index {path.name}: {exc}") from exc
        if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
            raise IndexCorruptError(f"FAISS index {path.name} does not match its checksum")
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexCorruptError(f"FAISS index {path.name} is damaged: {exc}") from exc
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexCorruptError(f"FAISS index {path.name} is not an IndexIDMap2")
        base = faiss.downcast_index(index.index)
        kind: IndexKind = (
            "hnsw"
            if isinstance(base, faiss.IndexHNSW)
            else "ivf"
            if isinstance(base, faiss.IndexIVF)
            else "exact"
        )
        store = cls(int(index.d), kind)
        store._index = index
        return store
