"""Window vectors from the chunk's own forward pass: late chunking and a forked pass.

Embedding every sentence window as its own text costs a forward pass per window (about
nine per 200-token chunk, 2.2 times the chunk's tokens). Two cheaper ways:

- late: the encoder's token states of the whole chunk already hold each sentence, read in
  the context of its neighbours; mean-pooling a span's states gives its vector for the
  price of the chunk's own pass. The context blurs the windows into the chunk.
- forked: the pass forks at ``FORK_LAYER``. The full-attention branch gives the chunk
  vector; in the other, each sentence's tokens attend only to their own sentence and the
  prefix (special tokens, prompt, headline), as if the sentence stood alone with its
  headline, and the windows are pooled from it. Cost: 1 + (layers - FORK_LAYER) / layers
  passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from rag.embedding.base import unit_rows
from rag.types import FloatArray

__all__ = [
    "DEFAULT_WINDOW_VECTORS",
    "FORK_LAYER",
    "WINDOW_VECTORS",
    "Span",
    "WindowVectors",
    "pool_spans",
    "sentence_ids",
    "span_tokens",
]

Span = tuple[int, int]

# How an index makes sentence-window vectors: "separate" embeds each window as a text of
# its own, "late" and "forked" pool them from the chunk's own pass. "forked" keeps the dev
# splits within the speed goals' quality tolerance of "separate" at 1.33 chunk passes
# instead of about 3.4 (docs/speed.md).
WindowVectors = Literal["forked", "separate", "late"]
WINDOW_VECTORS: tuple[WindowVectors, ...] = get_args(WindowVectors)
DEFAULT_WINDOW_VECTORS: WindowVectors = "forked"
# The layer (of e5-small's 12) where the forked pass splits: the latest one that kept both
# dev splits (docs/speed.md).
FORK_LAYER = 8


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


def sentence_ids(offsets: Sequence[Span], sentences: Sequence[Span]) -> npt.NDArray[np.intp]:
    """Per token, the index of the sentence its characters overlap; -1 for the prefix.

    The prefix is every token outside the sentences: special tokens, prompt, headline.
    """
    ids = np.full(len(offsets), -1, dtype=np.intp)
    for k, span in enumerate(sentences):
        tokens = span_tokens(offsets, span)
        ids[tokens[ids[tokens] < 0]] = k  # a token on a border stays with the first sentence
    return ids


def pool_spans(
    states: FloatArray,
    offsets: Sequence[Span],
    spans: Sequence[Span],
    always: npt.NDArray[np.intp] | None = None,
) -> FloatArray:
    """L2-normalised mean of ``states`` over each span's tokens, one row per span.

    ``always`` are tokens every span also pools (the forked pass adds the prefix, which a
    window embedded as its own text has too). A span with no token (cut off by the
    model's length limit) gets the mean of all states, i.e. the passage's own vector.
    """
    if len(states) != len(offsets):
        raise ValueError(f"{len(states)} token states but {len(offsets)} token offsets")
    extra = np.zeros(0, dtype=np.intp) if always is None else always
    out = np.empty((len(spans), states.shape[1]), dtype=np.float32)
    for row, span in enumerate(spans):
        tokens = span_tokens(offsets, span)
        if len(tokens):
            out[row] = states[np.concatenate([tokens, extra])].mean(axis=0)
        else:
            out[row] = states.mean(axis=0)
    return unit_rows(out)
