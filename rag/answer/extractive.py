"""Extractive answers: passage sentences quoted verbatim, with ``[n]`` after each.

Used when no LLM is configured. ``score_sentences`` lists every quotable sentence of the
retrieved passages with its embedding cosine and IDF-weighted term overlap with the question;
the selector (``rag.answer.selector``) decides which to quote. ``compose_extractive`` writes
the answer: each sentence exactly as the passage has it (so each citation is supported by
construction and its ``quote`` is what is shown), and a lead-in in the question's language
when the quotes are in another one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answer.support import SentenceBank, content_terms
from rag.embedding.base import Embedder
from rag.text.analysis import detect_language
from rag.text.language import language_name
from rag.text.lexicon import CLOSERS
from rag.types import Citation, FloatArray, Hit

__all__ = ["LEAD_INS", "ScoredSentence", "compose_extractive", "score_sentences", "term_match"]


def _is_question(sentence: str) -> bool:
    return sentence.rstrip(CLOSERS + "*_ ").endswith("?")


@dataclass(frozen=True)
class ScoredSentence:
    """A quotable sentence of a passage and how well it matches the question."""

    hit_index: int
    start: int  # offsets into ``hits[hit_index].chunk.text``
    end: int
    score: float  # what selection ranks by (see ``score_sentences``)
    vector_index: int  # row in the passage's sentence vectors (for near-duplicate checks)
    cosine: float = 0.0  # embedding similarity alone (what the relevance floor compares)
    overlap: float = 0.0  # IDF-weighted share of the question's terms in the sentence


def score_sentences(
    question: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    bank: SentenceBank,
    *,
    lexical_weight: float = 0.0,
    rank_weight: float = 0.0,
    query_vector: FloatArray | None = None,
) -> list[ScoredSentence]:
    """Every quotable sentence of ``hits``, best first.

    ``score = cosine + lexical_weight * overlap - rank_weight * passage_rank``. ``overlap``
    weights each question term by its inverse frequency among the candidate sentences:
    terms that every sentence repeats ("USA", "Russland" in a corpus about both) say
    little, the rare ones ("gegenseitig", a name) decide between near-equal cosines.
    """
    if not hits:
        return []
    entries = bank.get([hit.chunk for hit in hits])
    query = embedder.embed_queries([question])[0] if query_vector is None else query_vector
    found: list[tuple[int, int, int, int, float, set[str]]] = []
    for h, (hit, entry) in enumerate(zip(hits, entries, strict=True)):
        cosines = entry.vectors @ query
        for k, (start, end) in enumerate(entry.spans):
            text = hit.chunk.text[start:end]
            if not entry.quotable[k] or _is_question(text):
                continue  # a question in the text (often a headline) answers nothing
            found.append((h, k, start, end, float(cosines[k]), content_terms(text, query=False)))
    wanted = content_terms(question, query=True)
    n = len(found)
    matches = [{t: term_match(t, terms) for t in wanted} for *_, terms in found]
    # Terms no candidate holds cannot tell candidates apart: they stay out of the total.
    idf = {
        t: math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        for t in wanted
        for df in [sum(1.0 for m in matches if m[t] > 0)]
        if df > 0
    }
    total = sum(idf.values())
    scored: list[ScoredSentence] = []
    for (h, k, start, end, cosine, _terms), match in zip(found, matches, strict=True):
        overlap = sum(idf[t] * match[t] for t in idf) / total if total else 0.0
        score = cosine + lexical_weight * overlap - rank_weight * h
        scored.append(ScoredSentence(h, start, end, score, k, cosine, overlap))
    scored.sort(key=lambda s: -s.score)
    return scored


PARTIAL_MATCH = 0.5  # credit for a term that only shares its beginning with a sentence term
MIN_SHARED_PREFIX = 6


def term_match(term: str, terms: set[str]) -> float:
    """1 for the stem itself; ``PARTIAL_MATCH`` for a shared word start.

    German derives and compounds freely: "wahr" / "Wahrnehmung", "Telefonat" /
    "Telefonkontakt". A stem of four or more letters that begins a sentence term, or six
    shared first letters, count half.
    """
    if term in terms:
        return 1.0
    for other in terms:
        short, long = sorted((term, other), key=len)
        if len(short) >= 4 and long.startswith(short):
            return PARTIAL_MATCH
        if (
            term[:MIN_SHARED_PREFIX] == other[:MIN_SHARED_PREFIX]
            and min(len(term), len(other)) >= MIN_SHARED_PREFIX
        ):
            return PARTIAL_MATCH
    return 0.0


# Lead-in for quotes in another language than the question's: the quote stays as the source
# wrote it (that is what the citation proves), and the lead-in says so; in English for a
# question in a language without its own lead-in.
LEAD_INS = {
    "en": "According to the sources (quoted in {language}):",
    "de": "Laut den Quellen (Zitat auf {language}):",
}
# The quoted language's name in the lead-in's language (English names: ``language_name``).
_GERMAN_NAMES = {"de": "Deutsch", "en": "Englisch"}


def _display(text: str) -> str:
    """A quoted sentence as shown in the answer: one line, no markdown emphasis."""
    return " ".join(text.replace("**", "").replace("__", "").split())


def compose_extractive(
    chosen: Sequence[ScoredSentence], hits: Sequence[Hit], *, language: str
) -> tuple[list[str], tuple[Citation, ...]]:
    """The answer in pieces (one per quoted sentence, ``[n]`` after each) and its citations.

    ``"".join(pieces)`` is the answer text. Numbers follow first appearance; a lead-in in
    the question's language frames sentences quoted in another language.
    """
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    parts: list[str] = []
    quoted_in: set[str] = set()
    for s in chosen:
        hit = hits[s.hit_index]
        quote = hit.chunk.text[s.start : s.end]
        if s.hit_index not in numbers:
            numbers[s.hit_index] = len(numbers) + 1
            citations.append(
                Citation(
                    number=numbers[s.hit_index],
                    doc_id=hit.chunk.doc_id,
                    chunk_id=hit.chunk.chunk_id,
                    title=hit.title,
                    quote=quote,
                    start=hit.chunk.start + s.start,
                    end=hit.chunk.start + s.end,
                    score=round(s.score, 4),
                    supported=True,  # the statement is the quote itself
                    url=hit.url,
                    source=hit.source,
                    published=hit.published,
                )
            )
        quoted_in.add(detect_language(quote))
        parts.append(f"{_display(quote)} [{numbers[s.hit_index]}]")
    pieces = [("" if i == 0 else " ") + p for i, p in enumerate(parts)]
    foreign = sorted(quoted_in - {language})
    if foreign and pieces:
        lead = LEAD_INS.get(language, LEAD_INS["en"])
        name = _GERMAN_NAMES.get(foreign[0]) if language == "de" else None
        pieces[0] = lead.format(language=name or language_name(foreign[0])) + " " + pieces[0]
    return pieces, tuple(citations)
