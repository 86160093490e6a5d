"""Synthetic German-like text and unit vectors for benchmarking at 10k-1M chunks.

Embedding a million passages with the real model would take hours here, so the scale
benchmarks store generated text next to generated vectors. The text has what lexical
search is sensitive to: a Zipf-distributed vocabulary, German function words (stop words),
capitalised nouns, compounds and sentence punctuation. The vectors mix random "topic"
directions (``TopicVectors``): uniformly random vectors in 384 dimensions are all nearly
orthogonal (cosine 0 +- 0.05), so their nearest neighbours are meaningless and ANN recall
on them is a worst case, not a forecast for real embeddings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rag.ingest.chunking import chunk_id_for
from rag.types import Chunk, Document, EmbedderIdentity

FloatArray = npt.NDArray[np.float32]

# Common German words; most are on the stop list, which is the point (they dominate text).
_FUNCTION_WORDS = [
    "der",
    "die",
    "das",
    "und",
    "in",
    "den",
    "von",
    "zu",
    "mit",
    "sich",
    "des",
    "auf",
    "für",
    "ist",
    "im",
    "dem",
    "nicht",
    "ein",
    "eine",
    "als",
    "auch",
    "es",
    "an",
    "werden",
    "aus",
    "er",
    "hat",
    "dass",
    "sie",
    "nach",
    "wird",
    "bei",
    "einer",
    "um",
    "am",
    "sind",
    "noch",
    "wie",
    "einem",
    "über",
    "einen",
    "so",
    "zum",
    "war",
    "haben",
    "nur",
    "oder",
    "aber",
    "vor",
    "zur",
    "bis",
    "mehr",
    "durch",
    "man",
    "sein",
    "wurde",
    "sei",
    "hatte",
    "kann",
    "gegen",
    "vom",
    "schon",
    "wenn",
    "habe",
    "seine",
    "ihre",
    "dann",
    "unter",
    "wir",
    "soll",
    "ich",
    "eines",
    "jahr",
    "zwei",
]
_ONSETS = [
    "b",
    "br",
    "d",
    "dr",
    "f",
    "fl",
    "fr",
    "g",
    "gr",
    "h",
    "k",
    "kl",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pf",
    "pr",
    "r",
    "s",
    "sch",
    "schl",
    "schm",
    "schn",
    "schw",
    "sp",
    "spr",
    "st",
    "str",
    "t",
    "tr",
    "w",
    "z",
    "zw",
]
_VOWELS = ["a", "e", "i", "o", "u", "ä", "ö", "ü", "au", "ei", "eu", "ie"]
_CODAS = [
    "-",
    "-",
    "-",
    "n",
    "r",
    "s",
    "t",
    "l",
    "m",
    "ch",
    "ck",
    "ng",
    "nd",
    "nt",
    "rt",
    "st",
    "ß",
]
_NOUN_SUFFIXES = ["ung", "heit", "keit", "schaft", "ion", "tät", "nis", "tum", "ment"]
_ADJ_SUFFIXES = ["ig", "lich", "isch", "bar", "sam"]
_VERB_SUFFIXES = ["en", "ten", "ern", "eln", "t", "et"]
_CITIES = [
    "Berlin",
    "Hamburg",
    "München",
    "Köln",
    "Frankfurt",
    "Stuttgart",
    "Leipzig",
    "Dresden",
    "Wien",
    "Bern",
]


def _syllable(rng: np.random.Generator) -> str:
    coda = _CODAS[rng.integers(len(_CODAS))]
    return (
        _ONSETS[rng.integers(len(_ONSETS))]
        + _VOWELS[rng.integers(len(_VOWELS))]
        + ("" if coda == "-" else coda)
    )


def _stem(rng: np.random.Generator) -> str:
    return "".join(_syllable(rng) for _ in range(int(rng.integers(1, 3))))


def build_vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """``size`` distinct made-up words: nouns (capitalised, some compounds), verbs, adjectives."""
    words: list[str] = []
    seen: set[str] = set()
    nouns: list[str] = []  # simple nouns only, so compounds have two parts
    while len(words) < size:
        kind = rng.random()
        if kind < 0.45:
            word = (_stem(rng) + _NOUN_SUFFIXES[rng.integers(len(_NOUN_SUFFIXES))]).capitalize()
            if nouns and rng.random() < 0.25:  # Fugen-s compounds: "Regierungs|chef"
                word = nouns[rng.integers(len(nouns))] + "s" + word.lower()
            else:
                nouns.append(word)
        elif kind < 0.75:
            word = _stem(rng) + _VERB_SUFFIXES[rng.integers(len(_VERB_SUFFIXES))]
        else:
            word = _stem(rng) + _ADJ_SUFFIXES[rng.integers(len(_ADJ_SUFFIXES))]
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class GermanLikeText:
    """Deterministic generator of German-looking sentences, paragraphs and queries."""

    def __init__(self, seed: int = 0, vocabulary_size: int = 20_000, zipf_s: float = 1.05):
        self.rng = np.random.default_rng(seed)
        content = build_vocabulary(vocabulary_size, self.rng)
        self.words = np.asarray(list(_FUNCTION_WORDS) + content + _CITIES, dtype=object)
        # Zipf ranks with the function words first: they are the most frequent words.
        ranks = np.arange(1, len(self.words) + 1, dtype=np.float64)
        weights = ranks**-zipf_s
        self._cdf = np.cumsum(weights / weights.sum())
        self._n_function = len(_FUNCTION_WORDS)

    def _word_ids(self, n: int) -> npt.NDArray[np.int64]:
        ids = np.searchsorted(self._cdf, self.rng.random(n), side="right")
        return np.minimum(ids, len(self.words) - 1).astype(np.int64)

    def sentence(self, length: int | None = None) -> str:
        n = int(length if length is not None else self.rng.integers(6, 22))
        words = list(self.words[self._word_ids(n)])
        if self.rng.random() < 0.3:  # numbers and years, as in news text
            words.insert(int(self.rng.integers(len(words))), str(int(self.rng.integers(2, 2030))))
        words[0] = str(words[0])[:1].upper() + str(words[0])[1:]
        if n > 8 and self.rng.random() < 0.5:
            cut = int(self.rng.integers(3, n - 3))
            words[cut] = f"{words[cut]},"
        return " ".join(words) + ("." if self.rng.random() < 0.93 else "?")

    def paragraph(self, sentences: int | None = None) -> str:
        """About 40-130 words, like a news paragraph (~130 model tokens)."""
        n = int(sentences if sentences is not None else self.rng.integers(3, 7))
        return " ".join(self.sentence() for _ in range(n))

    def title(self) -> str:
        return self.sentence(int(self.rng.integers(4, 10))).rstrip(".?")

    def query_from(self, passage: str, words: int = 5) -> str:
        """A keyword query made of content words taken from ``passage`` (never empty)."""
        function = set(_FUNCTION_WORDS)
        content = [
            w.strip(",.?") for w in passage.split() if w.lower().strip(",.?") not in function
        ]
        if not content:
            return passage.split()[0]
        picks = self.rng.choice(len(content), size=min(words, len(content)), replace=False)
        return " ".join(content[i] for i in sorted(picks))


@dataclass(frozen=True)
class SyntheticBatch:
    """Documents and their chunks (offsets valid: ``doc.text[c.start:c.end] == c.text``)."""

    documents: list[Document]
    chunks: list[Chunk]


def synthetic_batches(
    n_chunks: int,
    *,
    chunks_per_doc: int = 10,
    batch_chunks: int = 5_000,
    seed: int = 0,
    text: GermanLikeText | None = None,
) -> Iterator[SyntheticBatch]:
    """``n_chunks`` chunks in documents of ``chunks_per_doc`` paragraphs, in batches.

    Chunks are made directly (one paragraph each), bypassing the chunker, so that a
    million of them can be written in minutes; ids come from ``chunk_id_for`` as usual.
    """
    gen = text or GermanLikeText(seed)
    made = 0
    doc_no = 0
    while made < n_chunks:
        docs: list[Document] = []
        chunks: list[Chunk] = []
        while len(chunks) < batch_chunks and made < n_chunks:
            count = min(chunks_per_doc, n_chunks - made)
            doc_id = f"syn-{seed}-{doc_no:07d}"
            title = gen.title()
            paragraphs = [gen.paragraph() for _ in range(count)]
            body = f"{title}\n\n" + "\n\n".join(paragraphs)
            doc = Document(
                doc_id=doc_id,
                text=body,
                title=title,
                url=f"https://example.invalid/{doc_id}",
                published=f"20{10 + doc_no % 15:02d}-{1 + doc_no % 12:02d}-{1 + doc_no % 28:02d}",
                source=("tagesblatt.de", "morgenpost.at", "abendzeitung.ch")[doc_no % 3],
            )
            start = len(title) + 2
            for ordinal, para in enumerate(paragraphs):
                chunks.append(
                    Chunk(
                        chunk_id=chunk_id_for(doc_id, para),
                        doc_id=doc_id,
                        ordinal=ordinal,
                        start=start,
                        end=start + len(para),
                        text=para,
                        context=title,
                    )
                )
                start += len(para) + 2
            docs.append(doc)
            made += count
            doc_no += 1
        yield SyntheticBatch(docs, chunks)


class TopicVectors:
    """Unit vectors mixing a few random "topic" directions, plus isotropic noise.

    Each vector is a Dirichlet-weighted mix of ``per_vector`` of the ``topics`` directions
    plus Gaussian noise of norm ~``noise``, normalised. With one topic per vector it is a
    plain cluster model, where every ANN index finds all neighbours (recall 1.0); mixing
    three topics with noise 1.25 makes neighbourhoods overlap the way real embeddings do
    (HNSW/IVF recall around 0.9 here). Uniform random vectors (``random_unit_vectors``)
    are the structureless worst case.
    """

    def __init__(
        self,
        dim: int,
        topics: int,
        *,
        per_vector: int = 3,
        noise: float = 1.25,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.per_vector = per_vector
        self.noise = noise
        rng = np.random.default_rng(seed)
        self.topics = normalize(rng.standard_normal((topics, dim), dtype=np.float32))

    def sample(self, n: int, rng: np.random.Generator, batch: int = 50_000) -> FloatArray:
        """``n`` L2-normalised float32 vectors (built in batches to bound memory)."""
        out = np.empty((n, self.dim), dtype=np.float32)
        for lo in range(0, n, batch):
            m = min(batch, n - lo)
            which = rng.integers(len(self.topics), size=(m, self.per_vector))
            weights = rng.dirichlet(np.full(self.per_vector, 0.5), size=m).astype(np.float32)
            part = rng.standard_normal((m, self.dim), dtype=np.float32)
            part *= np.float32(self.noise / np.sqrt(self.dim))
            for j in range(self.per_vector):
                part += weights[:, j : j + 1] * self.topics[which[:, j]]
            out[lo : lo + m] = normalize(part)
        return out


def normalize(x: FloatArray) -> FloatArray:
    """Rows scaled to unit length (in place when ``x`` is float32)."""
    x = np.asarray(x, dtype=np.float32)
    # einsum: np.linalg.norm is ~50x slower on big float32 arrays here.
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x


def random_unit_vectors(n: int, dim: int, seed: int = 0) -> FloatArray:
    """Uniformly random unit vectors (no neighbourhood structure at all)."""
    rng = np.random.default_rng(seed)
    return normalize(rng.standard_normal((n, dim), dtype=np.float32))


class RandomEmbedder:
    """An ``Embedder`` that returns random unit vectors instantly.

    It stands in for the model where a benchmark measures everything but embedding;
    ``count_tokens`` can be the real tokenizer's, so chunking stays exactly as in production.
    """

    def __init__(
        self,
        dimension: int = 384,
        *,
        count_tokens: Callable[[str], int] | None = None,
        seed: int = 0,
    ) -> None:
        self._identity = EmbedderIdentity(
            name="synthetic-random", dimension=dimension, weights_sha256="none"
        )
        self._count = count_tokens or (lambda text: len(text.split()))
        self._rng = np.random.default_rng(seed)
        self.seconds = 0.0  # time spent "embedding", to subtract from pipeline timings

    @property
    def identity(self) -> EmbedderIdentity:
        return self._identity

    def _vectors(self, texts: Sequence[str]) -> FloatArray:
        start = time.perf_counter()
        out = normalize(
            self._rng.standard_normal((len(texts), self._identity.dimension), dtype=np.float32)
        )
        self.seconds += time.perf_counter() - start
        return out

    def embed_queries(self, texts: Sequence[str]) -> FloatArray:
        return self._vectors(texts)

    def embed_passages(self, texts: Sequence[str]) -> FloatArray:
        return self._vectors(texts)

    def count_tokens(self, text: str) -> int:
        return self._count(text)
