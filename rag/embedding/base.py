"""The embedding seam: what every embedder offers the stages above it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rag.types import EmbedderIdentity, FloatArray

__all__ = ["Embedder"]


class Embedder(Protocol):
    """Turns queries and passages into L2-normalised float32 vectors."""

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed_queries(self, texts: Sequence[str]) -> FloatArray: ...

    def embed_passages(self, texts: Sequence[str]) -> FloatArray: ...

    def count_tokens(self, text: str) -> int: ...
