"""Deterministic fakes for unit tests of the logic around the real parts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Sequence

import numpy as np

from rag.answer.selector import Logistic, SelectorWeights
from rag.errors import GenerationError
from rag.types import EmbedderIdentity, FloatArray

_WORD = re.compile(r"\w+", re.UNICODE)


class FakeEmbedder:
    """Bag-of-hashed-words vectors: texts sharing words are close, identical texts equal.

    Each word seeds a random unit vector from SHA-256 of the lower-cased word, so the
    result is deterministic across runs and machines.
    """

    def __init__(self, dimension: int = 64) -> None:
        self._identity = EmbedderIdentity(name="fake", dimension=dimension, weights_sha256="fake")

    @property
    def identity(self) -> EmbedderIdentity:
        return self._identity

    def _word_vector(self, word: str) -> FloatArray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        vec = np.random.default_rng(seed).standard_normal(self._identity.dimension)
        return vec.astype(np.float32)

    def _embed(self, texts: Sequence[str]) -> FloatArray:
        out = np.zeros((len(texts), self._identity.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                out[i] += self._word_vector(word)
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
        return out

    def embed_queries(self, texts: Sequence[str]) -> FloatArray:
        return self._embed(texts)

    def embed_passages(self, texts: Sequence[str]) -> FloatArray:
        return self._embed(texts)

    def embed_passage_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[FloatArray, list[FloatArray]]:
        """A span's vector is that of its words (no context: the fake has no encoder)."""
        windows = [
            self._embed([text[a:b] for a, b in text_spans]).reshape(-1, self._identity.dimension)
            for text, text_spans in zip(texts, spans, strict=True)
        ]
        return self._embed(texts), windows

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))


class InMemoryVectorStore:
    """A ``VectorStore`` as a dict of vectors searched exactly (brute force)."""

    follows_documents = True

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._vectors: dict[int, FloatArray] = {}

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        for id_, vec in zip(ids, vectors, strict=True):
            self._vectors[int(id_)] = np.asarray(vec, dtype=np.float32)

    def remove(self, ids: Sequence[int]) -> None:
        for id_ in ids:
            self._vectors.pop(int(id_), None)

    def search(
        self, query: FloatArray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        scored = [
            (id_, float(vec @ query))
            for id_, vec in self._vectors.items()
            if allowed is None or id_ in allowed
        ]
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored[: max(k, 0)]

    def __len__(self) -> int:
        return len(self._vectors)


class FakeChatModel:
    """A scripted ``ChatModel``: replies with ``reply`` (or the next of ``replies``).

    ``stream`` yields ``chunks`` when given (to split markers across pieces on purpose),
    otherwise the reply in 3-character pieces. ``calls`` records every message list;
    ``error`` makes every call raise ``GenerationError``.
    """

    def __init__(
        self,
        reply: str = "",
        *,
        replies: Sequence[str] = (),
        chunks: Sequence[str] | None = None,
        error: str | None = None,
        name: str = "fake",
    ) -> None:
        self.name = name
        self._reply = reply
        self._replies = list(replies)
        self._chunks = list(chunks) if chunks is not None else None
        self._error = error
        self.calls: list[list[dict[str, str]]] = []

    def _next(self, messages: list[dict[str, str]]) -> str:
        self.calls.append([dict(m) for m in messages])
        if self._error is not None:
            raise GenerationError(self._error)
        if self._replies:
            return self._replies.pop(0)
        if self._chunks is not None:
            return "".join(self._chunks)
        return self._reply

    def complete(self, messages: list[dict[str, str]]) -> str:
        return self._next(messages)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        text = self._next(messages)
        if self._chunks is not None and text == "".join(self._chunks):
            yield from self._chunks
        else:
            yield from (text[i : i + 3] for i in range(0, len(text), 3))


# --- end FakeChatModel ---


def overlap_selector() -> SelectorWeights:
    """Selector weights for ``FakeEmbedder``, whose cosines mean nothing: sentences rank by
    term overlap, and a question is answerable when one sentence holds an eighth of its terms.
    """
    return SelectorWeights(
        sentence=Logistic(("overlap",), (0.0,), (1.0,), (8.0,), -1.0),
        answerable=Logistic(("max_coverage",), (0.0,), (1.0,), (8.0,), -1.0),
        thresholds={"de": 0.5, "en": 0.5},
    )
