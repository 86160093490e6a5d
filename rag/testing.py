"""Deterministic fakes for unit tests of the logic around the real parts."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from rag.answer.selector import CROSS_LINGUAL, SAME_LANGUAGE, Logistic, SelectorWeights
from rag.errors import DocumentNotFoundError, GenerationError
from rag.store.base import DocumentMeta, StoredDocument, text_key
from rag.store.lexical import SCORE_DECIMALS
from rag.text.analysis import GermanAnalyzer
from rag.types import Chunk, Document, EmbedderIdentity, FloatArray

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
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        sentences: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> tuple[FloatArray, list[FloatArray]]:
        """A span's vector is that of its words (no context: the fake has no encoder, so
        late and forked windows are the same)."""
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


class InMemoryDocumentStore:
    """A ``DocumentStore`` in dicts; ``begin`` copies the tables, ``rollback`` restores them.

    ``tables`` is shared with ``InMemoryLexicalStore`` so postings roll back with chunks.
    Values are replaced, never mutated, so a shallow copy per table is a snapshot.
    """

    def __init__(self) -> None:
        self.tables: dict[str, dict[Any, Any]] = {
            name: {} for name in ("meta", "docs", "chunks", "vectors", "windows", "lex")
        }
        self._saved: dict[str, dict[Any, Any]] | None = None

    def begin(self) -> None:
        self._saved = {name: dict(table) for name, table in self.tables.items()}

    def commit(self) -> int:
        generation = self.generation() + 1
        self.tables["meta"]["generation"] = generation
        self._saved = None
        return generation

    def rollback(self) -> None:
        if self._saved is not None:
            self.tables, self._saved = self._saved, None

    def reading(self) -> AbstractContextManager[None]:
        return nullcontext()

    def generation(self) -> int:
        return int(self.tables["meta"].get("generation", 0))

    def close(self) -> None:
        pass

    def embedder_identity(self) -> EmbedderIdentity | None:
        value = self.tables["meta"].get("embedder")
        return value if isinstance(value, EmbedderIdentity) else None

    def set_embedder_identity(self, identity: EmbedderIdentity) -> None:
        self.tables["meta"]["embedder"] = identity

    def get_meta(self, key: str) -> object | None:
        return self.tables["meta"].get(key)

    def set_meta(self, key: str, value: object) -> None:
        self.tables["meta"][key] = value

    def content_hash(self, doc_id: str) -> str | None:
        found = self.tables["docs"].get(doc_id)
        return None if found is None else str(found[1])

    def content_hashes(self) -> dict[str, str]:
        return {d: h for d, (_, h) in self.tables["docs"].items()}

    def put_document(self, doc: Document, content_sha256: str) -> None:
        self.tables["docs"][doc.doc_id] = (doc, content_sha256)

    def delete_document(self, doc_id: str) -> list[int]:
        ids = self.chunk_ids_of(doc_id)
        for name in ("chunks", "vectors", "windows"):
            self.tables[name] = {k: v for k, v in self.tables[name].items() if k not in ids}
        self.tables["docs"].pop(doc_id, None)
        return ids

    def get_document(self, doc_id: str) -> Document:
        if doc_id not in self.tables["docs"]:
            raise DocumentNotFoundError(f"no document with id {doc_id!r}")
        return self.tables["docs"][doc_id][0]  # type: ignore[no-any-return]

    def documents(self) -> list[StoredDocument]:
        return [
            StoredDocument(doc, h, len(self.chunk_ids_of(d)))
            for d, (doc, h) in sorted(self.tables["docs"].items())
        ]

    def doc_ids(self) -> list[str]:
        return sorted(self.tables["docs"])

    def document_meta(self, doc_ids: Iterable[str]) -> dict[str, DocumentMeta]:
        docs = [self.tables["docs"][d][0] for d in set(doc_ids) if d in self.tables["docs"]]
        return {d.doc_id: DocumentMeta(d.title, d.url, d.published, d.source) for d in docs}

    def put_chunks(self, chunks: Sequence[Chunk], vectors: FloatArray) -> None:
        for chunk, vec in zip(chunks, vectors, strict=True):
            self.tables["chunks"][chunk.chunk_id] = chunk
            self.tables["vectors"][chunk.chunk_id] = np.asarray(vec, dtype=np.float32)

    def put_windows(self, windows: dict[int, FloatArray]) -> None:
        self.tables["windows"].update({c: v for c, v in windows.items() if len(v)})

    def windows_for(self, chunk_ids: Sequence[int], dimension: int) -> dict[int, FloatArray]:
        return {c: self.tables["windows"][c] for c in chunk_ids if c in self.tables["windows"]}

    def embeddings_for(self, chunk_ids: Sequence[int]) -> dict[int, FloatArray]:
        return {c: self.tables["vectors"][c] for c in chunk_ids if c in self.tables["vectors"]}

    def iter_embeddings(self, batch: int = 10_000) -> Iterator[tuple[list[int], FloatArray]]:
        ids = self.all_chunk_ids()
        for at in range(0, len(ids), batch):
            part = ids[at : at + batch]
            yield part, np.stack([self.tables["vectors"][c] for c in part])

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        return [c.chunk_id for c in self.chunks_of(doc_id)]

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        found = [c for c in self.tables["chunks"].values() if c.doc_id == doc_id]
        return sorted(found, key=lambda c: c.ordinal)

    def get_chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        return {c: self.tables["chunks"][c] for c in chunk_ids if c in self.tables["chunks"]}

    def duplicates_of(self, chunk_ids: Sequence[int]) -> dict[int, list[Chunk]]:
        out: dict[int, list[Chunk]] = {}
        chunks = self.tables["chunks"]
        for cid in chunk_ids:
            if cid in chunks:
                key = text_key(chunks[cid].text)
                twins = [
                    c for c in chunks.values() if c.chunk_id != cid and text_key(c.text) == key
                ]
                if twins:
                    out[cid] = sorted(twins, key=lambda c: (c.doc_id, c.ordinal))
        return out

    def all_chunk_ids(self) -> list[int]:
        return sorted(self.tables["chunks"])

    def chunk_ids_matching(
        self,
        *,
        doc_ids: Sequence[str] = (),
        sources: Sequence[str] = (),
        published_from: str | None = None,
        published_to: str | None = None,
    ) -> set[int]:
        def keep(doc: Document) -> bool:
            date = doc.published
            return (
                (not doc_ids or doc.doc_id in doc_ids)
                and (not sources or doc.source in sources)
                and (not published_from or (date is not None and date >= published_from))
                and (not published_to or (date is not None and date <= published_to))
            )

        docs = self.tables["docs"]
        return {c.chunk_id for c in self.tables["chunks"].values() if keep(docs[c.doc_id][0])}

    def counts(self) -> tuple[int, int]:
        return len(self.tables["docs"]), len(self.tables["chunks"])


class InMemoryLexicalStore:
    """A ``LexicalStore`` over ``InMemoryDocumentStore.tables``: BM25 recomputed per query."""

    def __init__(self, store: InMemoryDocumentStore, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.store = store
        self.analyzer = GermanAnalyzer()
        self.k1, self.b = k1, b

    @property
    def _docs(self) -> dict[int, Counter[str]]:
        return self.store.tables["lex"]

    def add(self, items: Sequence[tuple[int, str]]) -> None:
        for cid, text in items:
            self._docs[int(cid)] = Counter(self.analyzer.analyze(text))

    def remove(self, chunk_ids: Sequence[int]) -> None:
        for cid in chunk_ids:
            self._docs.pop(int(cid), None)

    def vocabulary(self, terms: Collection[str]) -> Mapping[str, int]:
        df = Counter(t for tf in self._docs.values() for t in tf if t in terms)
        return dict(df)

    def search(
        self, query: str, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        docs = self._docs
        if k <= 0 or not docs or (allowed is not None and not allowed):
            return []
        weights = Counter(
            self.analyzer.terms(self.analyzer.query_words(query), vocabulary=self.vocabulary)
        )
        df = self.vocabulary(set(weights))
        n, avg = len(docs), sum(sum(tf.values()) for tf in docs.values()) / len(docs)
        scores: dict[int, float] = {}
        for cid, tf in docs.items():
            if allowed is not None and cid not in allowed:
                continue
            norm = self.k1 * (1 - self.b + self.b * sum(tf.values()) / avg)
            score = sum(
                w
                * math.log1p((n - df[t] + 0.5) / (df[t] + 0.5))
                * tf[t]
                * (self.k1 + 1)
                / (tf[t] + norm)
                for t, w in weights.items()
                if t in tf
            )
            if score > 0:
                scores[cid] = round(score, SCORE_DECIMALS)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]

    def __len__(self) -> int:
        return len(self._docs)


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
        thresholds={SAME_LANGUAGE: 0.5, CROSS_LINGUAL: 0.5},
    )
