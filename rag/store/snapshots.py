"""FAISS start-up snapshots of the embedded index, kept in step with the SQLite truth.

Files in the index directory::

    faiss-<gen>-<sha16>.index  FAISS snapshot of generation <gen>; a start-up cache only

On open, the newest snapshot that verifies is loaded and patched up to the stored chunk
ids (or the index is rebuilt from the stored vectors when every file is damaged); after a
run that changed something, a new snapshot replaces the old ones.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np

from rag.errors import IndexCorruptError
from rag.store.base import DocumentStore
from rag.store.faiss import FaissVectorStore, IndexKind, choose_kind
from rag.types import FloatArray

log = logging.getLogger(__name__)

_FAISS_FILE = re.compile(r"^faiss-(\d+)-([0-9a-f]{16})\.index$")


class FaissSnapshots:
    """Loads, patches, re-kinds and saves the FAISS index of one index directory."""

    def __init__(
        self,
        directory: Path,
        vectors: FaissVectorStore,
        store: DocumentStore,
        *,
        ann: str = "auto",
        ann_threshold: int = 200_000,
        db_name: str = "index.sqlite3",
    ) -> None:
        self.directory = directory
        self.vectors = vectors
        self.store = store
        self.ann = ann
        self.ann_threshold = ann_threshold
        self.db_name = db_name
        self.notes: list[str] = []

    def files(self) -> list[tuple[int, str, Path]]:
        found = []
        for path in self.directory.glob("faiss-*.index"):
            match = _FAISS_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), match.group(2), path))
        return sorted(found, reverse=True)

    def load(self) -> None:
        """Load the newest snapshot that verifies, then patch it up to the stored vectors."""
        generation = self.store.generation()
        for gen, sha16, path in self.files():
            if gen > generation:
                continue  # written by a writer whose commit never happened? ignore
            try:
                loaded = FaissVectorStore.load(path)
                if hashlib.sha256(path.read_bytes()).hexdigest()[:16] != sha16:
                    raise IndexCorruptError(f"{path.name} does not match its checksum")
            except IndexCorruptError as exc:
                note = f"FAISS file damaged ({exc}); rebuilt from SQLite"
                log.warning(note)
                self.notes.append(note)
                continue
            self.vectors.adopt(loaded)
            break
        changed = self.sync()
        wanted = choose_kind(self.ann, len(self.vectors), self.ann_threshold)
        if wanted != self.vectors.kind:
            self.rebuild(wanted)
        elif changed or not self.files():
            self.save()

    def sync(self) -> bool:
        """Make the FAISS ids equal to the stored chunk ids; True if anything changed."""
        with self.store.reading():  # ids and vectors from one commit
            truth = np.asarray(self.store.all_chunk_ids(), dtype=np.int64)
            have = self.vectors.ids()
            extra = np.setdiff1d(have, truth, assume_unique=True)
            missing = np.setdiff1d(truth, have, assume_unique=True)
            vecs = self.store.embeddings_for([int(i) for i in missing])
        if len(extra):
            self.vectors.remove(extra)
        if vecs:
            self.vectors.add(list(vecs), np.stack(list(vecs.values())))
        return bool(len(extra) or len(missing))

    def save(self) -> None:
        generation = self.store.generation()
        data = self.vectors.to_bytes()
        sha = hashlib.sha256(data).hexdigest()[:16]
        path = self.directory / f"faiss-{generation}-{sha}.index"
        self.vectors.save(path)
        for _, _, old in self.files():
            if old != path:
                old.unlink(missing_ok=True)

    def rebuild(self, kind: IndexKind | None = None) -> None:
        """Rebuild the FAISS index from the stored vectors."""
        kind = kind or choose_kind(self.ann, self.store.counts()[1], self.ann_threshold)
        ids: list[int] = []
        parts: list[FloatArray] = []
        for batch_ids, batch_vecs in self.store.iter_embeddings():
            ids.extend(batch_ids)
            parts.append(batch_vecs)
        if parts:
            self.vectors.adopt(FaissVectorStore.build(ids, np.concatenate(parts), kind))
        else:
            self.vectors.adopt(FaissVectorStore(self.vectors.dimension, kind))
        self.save()

    def settle(self, changed: bool) -> None:
        """After a write run: switch exact/HNSW at the threshold, or save a new snapshot."""
        wanted = choose_kind(self.ann, len(self.vectors), self.ann_threshold)
        if wanted != self.vectors.kind:
            self.rebuild(wanted)
        elif changed:
            self.save()

    def sizes(self) -> tuple[int, int]:
        """Bytes of the SQLite files and of the FAISS snapshots."""
        sqlite_bytes = sum(
            p.stat().st_size for p in self.directory.glob(self.db_name + "*") if p.is_file()
        )
        return sqlite_bytes, sum(p.stat().st_size for _, _, p in self.files())
