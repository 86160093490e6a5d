"""Question answering over documents with checked citations.

Light to import: the heavy parts (models, FAISS, the service) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag.config import Settings, get_settings
from rag.errors import (
    ConfigError,
    DocumentNotFoundError,
    GenerationError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IngestError,
    RagError,
)
from rag.types import Answer, Chunk, Citation, Document, Filters, Hit, Location, Turn

if TYPE_CHECKING:
    from rag.service import RagService

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "ConfigError",
    "Document",
    "DocumentNotFoundError",
    "Filters",
    "GenerationError",
    "Hit",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IngestError",
    "Location",
    "RagError",
    "RagService",
    "Settings",
    "Turn",
    "get_settings",
]


def __getattr__(name: str) -> Any:
    if name == "RagService":
        from rag.service import RagService

        return RagService
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
