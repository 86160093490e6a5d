"""Token alignment of a question with passage sentences (late interaction).

A sentence vector is one cosine away from the question: a sentence on the right topic that
lacks the name, year or place the question asks about scores nearly as high as the one
that holds it. Here each question word's tokens are matched with their most similar token
of the sentence (the encoder's token states, as in ColBERT's MaxSim), and the mean over the
question's tokens says how much of the question the sentence restates, word by word and
across languages. The layer was chosen on XQuAD dev (docs/tuning.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from rag.embedding.base import Embedder, TokenEmbedder, TokenStates
from rag.types import Chunk, Hit

__all__ = ["ALIGNMENT_LAYER", "TokenBank", "alignments"]

ALIGNMENT_LAYER = 10  # of e5-small's 12


class TokenBank:
    """Passage token states at ``ALIGNMENT_LAYER``, cached by ``chunk_id`` (chunks are
    immutable): the same passages answer many questions, and a pass over five of them
    costs about 90 ms on two cores (docs/speed.md). Kept in float16, about 150 KB a chunk."""

    def __init__(self, embedder: Embedder, *, max_chunks: int = 512) -> None:
        self.embedder = embedder
        self._max = max_chunks
        self._cache: OrderedDict[int, TokenStates] = OrderedDict()
        self._lock = threading.Lock()

    def question(self, text: str) -> TokenStates | None:
        """The question's token states (query prompt); None without token states."""
        if not isinstance(self.embedder, TokenEmbedder):
            return None
        states = self.embedder.token_states([text], query=True, layers=(ALIGNMENT_LAYER,))
        return None if states is None else states[0]

    def passages(self, chunks: Sequence[Chunk]) -> list[TokenStates] | None:
        """Each chunk's token states; missing ones in one pass; None without token states."""
        if not isinstance(self.embedder, TokenEmbedder):
            return None
        with self._lock:
            found = {c.chunk_id: self._cache.get(c.chunk_id) for c in chunks}
        missing = [c for c in chunks if found[c.chunk_id] is None]
        if missing:
            fresh = self.embedder.token_states(
                [c.text for c in missing], query=False, layers=(ALIGNMENT_LAYER,)
            )
            if fresh is None:
                return None
            with self._lock:
                for chunk, states in zip(missing, fresh, strict=True):
                    small = {k: v.astype(np.float16) for k, v in states.layers.items()}
                    found[chunk.chunk_id] = self._cache[chunk.chunk_id] = TokenStates(
                        states.offsets, small
                    )
                    while len(self._cache) > self._max:
                        self._cache.popitem(last=False)
        out = []
        for chunk in chunks:
            kept = found[chunk.chunk_id]
            assert kept is not None
            out.append(kept)
        return out


def alignments(
    question: str, hits: Sequence[Hit], spans: Sequence[tuple[int, int, int]], bank: TokenBank
) -> list[float] | None:
    """Per span ``(hit index, start, end)`` of a passage text its alignment with the
    question; None when the embedder has no token states."""
    asked = bank.question(question)
    if asked is None:
        return None
    words = [
        i for i, (a, b) in enumerate(asked.offsets) if any(ch.isalnum() for ch in question[a:b])
    ]
    if not words or not hits:
        return [0.0] * len(spans)
    passages = bank.passages([h.chunk for h in hits])
    if passages is None:
        return None
    wanted = asked.layers[ALIGNMENT_LAYER][words]
    # einsum, not a BLAS matmul: OpenBLAS threads spin on after a product and then slowed
    # the next question's forward pass from 15 to 80-90 ms on two cores (docs/speed.md).
    similar = [
        np.einsum("td,qd->tq", p.layers[ALIGNMENT_LAYER].astype(np.float32), wanted)
        for p in passages
    ]
    out = []
    for h, start, end in spans:
        offsets = passages[h].offsets
        # A word's first token starts at the space before it: its end places it.
        inside = (offsets[:, 1] > start) & (offsets[:, 1] <= end)
        out.append(float(similar[h][inside].max(axis=0).mean()) if inside.any() else 0.0)
    return out
