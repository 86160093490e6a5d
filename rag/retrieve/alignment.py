"""Token alignment of a question with passages and their sentences (late interaction).

A sentence or passage vector is one cosine away from the question: text on the right topic
that lacks the name, year or place the question asks about scores nearly as high as text
that holds it. Here each question token (with a letter or digit) is matched with its most
similar token of the passage or sentence (the encoder's token states, as in ColBERT's
MaxSim), and the mean over the question's tokens says how much of the question the text
restates, word by word and across languages. The retriever re-ranks its first passages by
it for questions in other languages than German, and the answer selector scores sentences
with it. The layer was chosen on XQuAD dev (docs/tuning.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.cache import BoundedCache, per_chunk
from rag.embedding.base import Embedder, TokenEmbedder, TokenStates
from rag.types import Chunk, FloatArray

__all__ = ["ALIGNMENT_LAYER", "TokenBank"]

ALIGNMENT_LAYER = 10  # of e5-small's 12


class TokenBank:
    """Token states at ``ALIGNMENT_LAYER`` of questions (by text) and passages (by
    ``chunk_id``; chunks are immutable), cached: the same passages answer many questions,
    and a pass over five of them costs about 90 ms on two cores (docs/speed.md). Passage
    states are kept in float16, about 150 KB a chunk. Shared by the retriever and the
    answerer, it also keeps the vectors of recently searched questions, so the answer does
    not embed its question again."""

    def __init__(self, embedder: Embedder, *, max_chunks: int = 512) -> None:
        self.embedder = embedder
        self._cache: BoundedCache[int, TokenStates] = BoundedCache(max_chunks)
        self._questions: BoundedCache[str, FloatArray] = BoundedCache(64)
        self._vectors: BoundedCache[str, FloatArray] = BoundedCache(64)

    def remember_vector(self, text: str, vector: FloatArray) -> None:
        """Keep the query vector a search embedded ``text`` to."""
        self._vectors.put(text, vector)

    def vector(self, text: str) -> FloatArray | None:
        """The query vector of a recent search for ``text``, if any."""
        return self._vectors.get(text)

    def question(self, text: str) -> FloatArray | None:
        """The states of the question's word tokens (query prompt); None without token
        states."""
        kept = self._questions.get(text)
        if kept is not None:
            return kept
        if not isinstance(self.embedder, TokenEmbedder):
            return None
        states = self.embedder.token_states([text], query=True, layers=(ALIGNMENT_LAYER,))
        if states is None:
            return None
        words = [
            i for i, (a, b) in enumerate(states[0].offsets) if any(c.isalnum() for c in text[a:b])
        ]
        rows = np.ascontiguousarray(states[0].layers[ALIGNMENT_LAYER][words], dtype=np.float32)
        self._questions.put(text, rows)
        return rows

    def passages(self, chunks: Sequence[Chunk]) -> list[TokenStates] | None:
        """Each chunk's token states; missing ones in one pass; None without token states."""
        return per_chunk(chunks, self._cache, self._embed)

    def _embed(self, chunks: list[Chunk]) -> list[TokenStates] | None:
        if not isinstance(self.embedder, TokenEmbedder):
            return None
        fresh = self.embedder.token_states(
            [c.text for c in chunks], query=False, layers=(ALIGNMENT_LAYER,)
        )
        if fresh is None:
            return None
        return [
            TokenStates(s.offsets, {k: v.astype(np.float16) for k, v in s.layers.items()})
            for s in fresh
        ]

    def passage_alignments(self, question: str, chunks: Sequence[Chunk]) -> list[float] | None:
        """Each chunk's alignment with the question; None without token states."""
        similar = self._similarities(question, chunks)
        if similar is None:
            return None
        return [float(s.max(axis=0).mean()) if s.size else 0.0 for s, _ in similar]

    def span_alignments(
        self, question: str, chunks: Sequence[Chunk], spans: Sequence[tuple[int, int, int]]
    ) -> list[float] | None:
        """Per span ``(chunk index, start, end)`` of a chunk's text its alignment with the
        question; None without token states."""
        similar = self._similarities(question, chunks)
        if similar is None:
            return None
        out = []
        for h, start, end in spans:
            sims, offsets = similar[h]
            # A word's first token starts at the space before it: its end places it.
            inside = (offsets[:, 1] > start) & (offsets[:, 1] <= end)
            out.append(
                float(sims[inside].max(axis=0).mean()) if inside.any() and sims.size else 0.0
            )
        return out

    def _similarities(
        self, question: str, chunks: Sequence[Chunk]
    ) -> list[tuple[FloatArray, np.ndarray]] | None:
        """Per chunk, the cosines of its tokens (rows) with the question's and its offsets."""
        asked = self.question(question)
        if asked is None:
            return None
        passages = self.passages(chunks) if chunks else []
        if passages is None:
            return None
        # einsum, not a BLAS matmul: OpenBLAS threads spin on after a product and then
        # slowed the next question's forward pass from 15 to 80-90 ms on two cores
        # (docs/speed.md).
        return [
            (
                np.einsum("td,qd->tq", p.layers[ALIGNMENT_LAYER].astype(np.float32), asked),
                p.offsets,
            )
            for p in passages
        ]
