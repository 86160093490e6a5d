"""Late chunking: vectors of a passage's text spans pooled from its one forward pass.

Embedding every sentence window as its own text costs a forward pass per window (about
nine per 200-token chunk). The encoder's token states of the whole chunk already hold each
sentence, read in the context of its neighbours: mean-pooling the states of a span's
tokens and normalising gives the span's vector for the price of the chunk's own pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from rag.types import FloatArray

__all__ = [
    "DEFAULT_WINDOW_VECTORS",
    "WINDOW_VECTORS",
    "Span",
    "WindowVectors",
    "pool_spans",
    "span_tokens",
]

Span = tuple[int, int]

# How an index makes sentence-window vectors: "late" pools them from the chunk's own
# forward pass, "separate" embeds each window as a text of its own. The default is the
# better one on the dev splits (docs/speed.md).
WindowVectors = Literal["separate", "late"]
WINDOW_VECTORS: tuple[WindowVectors, ...] = get_args(WindowVectors)
DEFAULT_WINDOW_VECTORS: WindowVectors = "separate"


def span_tokens(offsets: Sequence[Span], span: Span) -> npt.NDArray[np.intp]:
    """Indices of the tokens whose characters overlap ``span`` (``[start, end)``).

    ``offsets`` are the tokenizer's character offsets per token; special tokens have an
    empty ``(0, 0)`` offset and never count. A token that starts with the space before a
    span's first word overlaps the span, one that starts with the space after its last
    character does not.
    """
    start, end = span
    return np.asarray(
        [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start],
        dtype=np.intp,
    )


def pool_spans(states: FloatArray, offsets: Sequence[Span], spans: Sequence[Span]) -> FloatArray:
    """L2-normalised mean of ``states`` over each span's tokens, one row per span.

    A span with no token (cut off by the model's length limit) gets the mean of all
    states, i.e. the passage's own vector.
    """
    if len(states) != len(offsets):
        raise ValueError(f"{len(states)} token states but {len(offsets)} token offsets")
    out = np.empty((len(spans), states.shape[1]), dtype=np.float32)
    for row, span in enumerate(spans):
        tokens = span_tokens(offsets, span)
        out[row] = states[tokens].mean(axis=0) if len(tokens) else states.mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)
