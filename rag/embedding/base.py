"""The embedding seam: what every embedder offers the stages above it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rag.types import EmbedderIdentity, FloatArray

__all__ = [
    "NEAR_DUPLICATE_COSINE",
    "Embedder",
    "SpanEmbedder",
    "TokenEmbedder",
    "TokenStates",
    "near_duplicate",
    "unit_rows",
]

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


@dataclass(frozen=True)
class TokenStates:
    """One text's token states: ``layers[layer]`` holds a unit row per token, ``offsets`` each
    token's character span in the text (prompt and special tokens left out)."""

    offsets: npt.NDArray[np.intp]
    layers: dict[int, npt.NDArray[np.floating[Any]]]  # float32, or float16 where cached


@runtime_checkable
class TokenEmbedder(Embedder, Protocol):
    """An embedder that can also return the encoder's token states at given layers."""

    def token_states(
        self, texts: Sequence[str], *, query: bool, layers: Sequence[int]
    ) -> list[TokenStates] | None:
        """Per text its ``TokenStates`` (query or passage prompt); None where the backend
        cannot expose its layers."""
        ...


def near_duplicate(a: FloatArray, b: FloatArray) -> bool:
    """True when two normalised vectors say the same thing."""
    return float(np.dot(a, b)) >= NEAR_DUPLICATE_COSINE


def unit_rows(vectors: FloatArray) -> FloatArray:
    """``vectors`` with every row scaled to length 1 (an all-zero row stays zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
