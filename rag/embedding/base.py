"""The embedding seam: what every embedder offers the stages above it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rag.types import EmbedderIdentity, FloatArray

__all__ = ["NEAR_DUPLICATE_COSINE", "Embedder", "SpanEmbedder", "near_duplicate", "unit_rows"]

# Two normalised vectors this close say the same thing: syndicated copies of a passage, or
# one sentence repeated across articles (e5-small puts such pairs at 0.98-1.0).
NEAR_DUPLICATE_COSINE = 0.97


class Embedder(Protocol):
    """Turns queries and passages into L2-normalised float32 vectors."""

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed_queries(self, texts: Sequence[str]) -> FloatArray: ...

    def embed_passages(self, texts: Sequence[str]) -> FloatArray: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class SpanEmbedder(Embedder, Protocol):
    """An embedder that also returns vectors of character spans of each passage."""

    def embed_passage_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        sentences: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> tuple[FloatArray, list[FloatArray]]: ...


def near_duplicate(a: FloatArray, b: FloatArray) -> bool:
    """True when two normalised vectors say the same thing."""
    return float(np.dot(a, b)) >= NEAR_DUPLICATE_COSINE


def unit_rows(vectors: FloatArray) -> FloatArray:
    """``vectors`` with every row scaled to length 1 (an all-zero row stays zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
