"""What an ingest did, how far it got, and what the index holds (reported to users)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.ingest.loaders import Skipped
from rag.types import EmbedderIdentity


@dataclass
class IngestReport:
    """What an ingest did; printed by ``rag ingest`` and returned by the API."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted, "
            f"{len(self.skipped)} skipped; {self.chunks_embedded} chunks embedded, "
            f"{self.chunks_reused} reused, {self.chunks_total} chunks written "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Progress:
    """Ingest progress, reported after every batch (committed, or unchanged and skipped)."""

    documents: int
    chunks: int
    committed_doc_ids: tuple[str, ...]
    generation: int


@dataclass(frozen=True)
class IndexStats:
    """Counts and sizes reported by ``rag index stats`` and the metrics endpoint."""

    documents: int
    chunks: int
    generation: int
    embedder: EmbedderIdentity | None
    index_kind: str
    sqlite_bytes: int
    faiss_bytes: int
    notes: tuple[str, ...] = ()
    database_bytes: int = 0  # the PostgreSQL database, when the index lives there
