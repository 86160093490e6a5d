"""Support checks: does the cited passage back the statement, and which sentence to quote.

``check_citations`` builds a ``Citation`` per number: the passage sentence that best
supports the statements citing it (exact offsets into the original document) and a
support verdict from embedding similarity plus lexical overlap.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer.markers import Statement
from rag.cache import BoundedCache, per_chunk
from rag.embedding.base import Embedder
from rag.text.analysis import GermanAnalyzer, detect_language
from rag.text.lexicon import CLOSERS
from rag.text.sentences import split_sentences
from rag.types import Chunk, Citation, FloatArray, Hit

__all__ = [
    "PassageSentences",
    "SentenceBank",
    "SupportThresholds",
    "check_citations",
    "content_terms",
    "lexical_overlap",
]


@dataclass(frozen=True)
class SupportThresholds:
    """How a statement is checked against the passage it cites.

    Same language: ``score = (1 - lexical_weight) * cosine + lexical_weight * overlap
    + relative_weight * (cosine - median)``. ``cosine`` is the best claim-sentence
    similarity in the cited passage, ``overlap`` the share of the claim's terms found in
    it, ``median`` the median of that best cosine over all given passages (it removes
    the per-claim baseline of the embedding model).

    Claim and passage in different languages (an English answer over German text):
    terms cannot match, so ``score = cosine + cross_lingual_relative_weight *
    (cosine - median) - cross_lingual_offset``; the offset puts it on the same scale.

    ``supported`` means ``score >= min_score``. Defaults: see ``rag.answer.answerer``.
    """

    min_score: float = 0.75
    lexical_weight: float = 0.3
    relative_weight: float = 1.0
    cross_lingual_relative_weight: float = 2.0
    cross_lingual_offset: float = 0.11


_analyzer = GermanAnalyzer()
_analyzer_lock = threading.Lock()


def content_terms(text: str, *, query: bool) -> set[str]:
    """Stemmed content terms (``query``: an English text keeps names and numbers only)."""
    with _analyzer_lock:  # the Snowball stemmer object is not documented thread-safe
        return set(_analyzer.analyze_query(text) if query else _analyzer.analyze(text))


def lexical_overlap(claim: str, evidence: str) -> float:
    """Share of the claim's content terms (stemmed, compounds split) found in the evidence.

    English claims keep only names and numbers (``analyze_query``), which is what can match
    German evidence literally. A claim without content terms scores 0.
    """
    wanted = content_terms(claim, query=True)
    if not wanted:
        return 0.0
    return len(wanted & content_terms(evidence, query=False)) / len(wanted)


_LEADING_JUNK = " \t\r\n#*_>\u2022-\u2013\u2014|"  # bullets, dashes, markdown
_TRAILING_JUNK = " \t\r\n*_|"


@dataclass(frozen=True)
class PassageSentences:
    """Sentence spans of one chunk (offsets into ``chunk.text``) and their vectors."""

    spans: tuple[tuple[int, int], ...]
    vectors: FloatArray
    quotable: tuple[bool, ...]  # a real sentence, not a heading or a fragment


def _tidy(text: str, start: int, end: int) -> tuple[int, int]:
    """Trim markdown bullets/emphasis from a span's ends so the quote reads cleanly."""
    while start < end and text[start] in _LEADING_JUNK:
        start += 1
    while end > start and text[end - 1] in _TRAILING_JUNK:
        end -= 1
    return start, end


class SentenceBank:
    """Sentence spans and embeddings per chunk, cached by ``chunk_id`` (chunks are immutable)."""

    def __init__(self, embedder: Embedder, *, max_chunks: int = 4096) -> None:
        self._embedder = embedder
        self._cache: BoundedCache[int, PassageSentences] = BoundedCache(max_chunks)

    def get(self, chunks: Sequence[Chunk]) -> list[PassageSentences]:
        """Sentences of each chunk; missing ones are embedded in one batch."""
        found = per_chunk(chunks, self._cache, self._embed)
        assert found is not None  # ``_embed`` always gives entries
        return found

    def _embed(self, chunks: list[Chunk]) -> list[PassageSentences]:
        span_lists = []
        texts: list[str] = []
        for chunk in chunks:
            spans = []
            for start, end in split_sentences(chunk.text):
                start, end = _tidy(chunk.text, start, end)
                if start < end:
                    spans.append((start, end))
            if not spans:
                spans = [(0, len(chunk.text))]
            span_lists.append(spans)
            texts.extend(chunk.text[s:e] for s, e in spans)
        vectors = self._embedder.embed_passages(texts) if texts else None
        entries = []
        row = 0
        for chunk, spans in zip(chunks, span_lists, strict=True):
            assert vectors is not None
            block = np.asarray(vectors[row : row + len(spans)], dtype=np.float32)
            row += len(spans)
            quotable = tuple(_is_quotable(chunk.text, s, e) for s, e in spans)
            entries.append(PassageSentences(tuple(spans), block, quotable))
        return entries


_WORDS = re.compile(r"\w+")


_URL = re.compile(r"(?:https?://|www\.)\S+")


# Closing quotes and brackets, markdown emphasis and spaces that may follow a final mark.
_TRAILERS = CLOSERS + "*_ "


def _is_quotable(text: str, start: int, end: int) -> bool:
    """A sentence worth quoting: several words, not a table row, a link list or a heading
    (a line of its own without final punctuation, or a fragment cut off by the chunker)."""
    sentence = text[start:end]
    if len(_WORDS.findall(sentence)) < 4 or "|" in sentence[:3] or len(_URL.findall(sentence)) > 1:
        return False
    own_line = text[:start].rstrip(" \t").endswith("\n") or not text[:start].strip()
    line_end = text[end:].lstrip(" \t")
    own_line = own_line and (not line_end or line_end.startswith("\n"))
    return not own_line or sentence.rstrip(_TRAILERS)[-1:] in (".", "!", "?", "…", ":")


def _claim_score(
    claim: Statement,
    cosine: float,
    relative: float,
    text: str,
    same_language: bool,
    th: SupportThresholds,
) -> float:
    """How well a passage (``text``) supports one claim; see ``SupportThresholds``."""
    if same_language:
        overlap = lexical_overlap(claim.text, text)
        return (
            (1.0 - th.lexical_weight) * cosine
            + th.lexical_weight * overlap
            + th.relative_weight * relative
        )
    return cosine + th.cross_lingual_relative_weight * relative - th.cross_lingual_offset


def _closest_span(
    claim: Statement,
    claim_vector: FloatArray,
    entry: PassageSentences,
    text: str,
    candidates: Sequence[int],
    th: SupportThresholds,
) -> tuple[int, int]:
    """The candidate sentence closest to the claim by meaning and words."""
    cosines = entry.vectors[list(candidates)] @ claim_vector
    fit = [
        float(cosines[k]) + th.lexical_weight * lexical_overlap(claim.text, text[s:e])
        for k, (s, e) in enumerate(entry.spans[cand] for cand in candidates)
    ]
    return entry.spans[candidates[int(np.argmax(fit))]]


def _citation(
    number: int, hit: Hit, span: tuple[int, int], score: float | None, th: SupportThresholds
) -> Citation:
    start, end = span
    final = score if score is not None else 0.0
    return Citation(
        number=number,
        doc_id=hit.chunk.doc_id,
        chunk_id=hit.chunk.chunk_id,
        title=hit.title,
        quote=hit.chunk.text[start:end],
        start=hit.chunk.start + start,
        end=hit.chunk.start + end,
        score=round(final, 4),
        supported=score is not None and final >= th.min_score,
        url=hit.url,
        source=hit.source,
        published=hit.published,
    )


def check_citations(
    statements: Sequence[Statement],
    cited: Sequence[int],
    hits: Sequence[Hit],
    embedder: Embedder,
    bank: SentenceBank,
    thresholds: SupportThresholds | None = None,
) -> tuple[Citation, ...]:
    """One ``Citation`` per new number (``cited[number - 1]`` is the passage index).

    Every statement citing a passage is scored against it (``SupportThresholds``).
    ``score`` is the weakest statement's score, so ``supported`` needs all of them to
    pass; ``quote`` is the passage sentence closest (by meaning and words) to the
    best-scoring statement.
    """
    th = thresholds or SupportThresholds()
    if not cited:
        return ()
    claims = [s for s in statements if s.text.strip()]
    claim_vectors = embedder.embed_queries([s.text for s in claims]) if claims else None
    entries = bank.get([hit.chunk for hit in hits])
    passage_langs = [detect_language(hit.chunk.text) for hit in hits]
    # best[c][p]: how close claim c comes to any sentence of passage p.
    vecs = list(claim_vectors) if claim_vectors is not None else []
    best = [[float((e.vectors @ vec).max()) for e in entries] for vec in vecs]
    citations: list[Citation] = []
    for number, index in enumerate(cited, start=1):
        entry, text = entries[index], hits[index].chunk.text
        candidates = [i for i, ok in enumerate(entry.quotable) if ok] or list(
            range(len(entry.spans))
        )
        best_span = entry.spans[candidates[0]]
        best_score = -np.inf
        weakest: float | None = None
        for c, claim in enumerate(claims):
            if number not in claim.numbers:
                continue
            assert claim_vectors is not None
            cosine, relative = best[c][index], best[c][index] - float(np.median(best[c]))
            same = detect_language(claim.text) == passage_langs[index]
            score = _claim_score(claim, cosine, relative, text, same, th)
            if score > best_score:
                best_score = score
                best_span = _closest_span(claim, claim_vectors[c], entry, text, candidates, th)
            weakest = score if weakest is None else min(weakest, score)
        citations.append(_citation(number, hits[index], best_span, weakest, th))
    return tuple(citations)
