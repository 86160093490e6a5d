"""Copy an index into another store without embedding again (e.g. embedded -> PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from rag.store.index import EmbeddedDocument, Index, IngestReport, Progress


def stored_documents(source: Index) -> Iterator[EmbeddedDocument]:
    """Every document of ``source`` with its stored chunks, vectors and window vectors."""
    dim = source.embedder.identity.dimension
    no_windows = np.zeros((0, dim), dtype=np.float32)
    for doc_id in source.store.doc_ids():
        with source.store.reading():
            document = source.store.get_document(doc_id)
            chunks = source.store.chunks_of(doc_id)
            ids = [c.chunk_id for c in chunks]
            vectors = source.store.embeddings_for(ids)
            windows = source.store.windows_for(ids, dim)
        yield EmbeddedDocument(
            document=document,
            chunks=tuple(chunks),
            vectors=tuple(vectors[i] for i in ids),
            windows=tuple(windows.get(i, no_windows) for i in ids),
        )


def copy_index(
    source: Index, target: Index, *, on_progress: Callable[[Progress], None] | None = None
) -> IngestReport:
    """Write every document of ``source`` into ``target`` as stored (unchanged ones skipped)."""
    return target.ingest(stored_documents(source), on_progress=on_progress)
