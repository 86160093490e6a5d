"""Extractive answers: the passage sentences that best answer the question, with ``[n]``.

Used when no LLM is configured. Every sentence of the retrieved passages is scored against
the question (embedding similarity plus the share of the question's terms it contains);
the best one or two (from different passages) are quoted verbatim, so each citation is
supported by construction and its ``quote`` is exactly the sentence shown.
Questions that ask for a number, an amount of money or a time ("Wie viel Geld …?",
"Wann …?") only accept sentences that contain one; if none of the relevant sentences
does, the answer abstains rather than quote something beside the point.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rag.analysis import detect_language
from rag.citations import CLOSERS as _CLOSERS
from rag.citations import SentenceBank, lexical_overlap
from rag.embeddings import Embedder
from rag.types import Citation, Hit

__all__ = [
    "AnswerType",
    "ScoredSentence",
    "compose_extractive",
    "expected_answer_type",
    "has_answer_type",
    "score_sentences",
    "select_sentences",
]

AnswerType = Literal["money", "number", "time"]

_TYPE_PATTERNS: tuple[tuple[AnswerType, re.Pattern[str]], ...] = (
    (
        "money",
        re.compile(
            r"\b(wie ?viel geld|wie teuer|welche summe|welcher betrag|wie hoch (?:war|ist|sind|"
            r"waren) (?:die|der) (?:summe|betrag|kosten)|how much money|what amount|how much "
            r"(?:did|does|do|will|would) .{0,40}cost)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "time",
        re.compile(
            r"\b(wann|seit wann|bis wann|ab wann|(?:in|ab|seit|bis) welchem jahr|welches jahr|"
            r"welchem monat|an welchem tag|when|since when|what year|which year|what date|"
            r"what time)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "number",
        re.compile(
            r"\b(wie ?viele?|how many|how much|wie hoch|wie groß|wie lange|what percentage|"
            r"wie alt|how old|how long)\b",
            re.IGNORECASE,
        ),
    ),
)
_NUMBER_WORDS = (
    r"zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|zwanzig|dreißig|hundert|"
    r"tausend|dutzend|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|hundred|"
    r"thousand|dozen"
)
_HAS_NUMBER = re.compile(rf"\d|\b(?:{_NUMBER_WORDS})\b|\b(?:million|milliard|billion)", re.I)
_HAS_MONEY = re.compile(
    r"[€$£]|\b(?:euro|dollar|usd|eur|rubel|pfund|franken|mrd|mio|million|milliard|billion)",
    re.IGNORECASE,
)
_HAS_TIME = re.compile(
    r"\d|\b(?:januar|jänner|februar|märz|april|mai|juni|juli|august|september|oktober|"
    r"november|dezember|january|february|march|may|june|july|october|december|woche|monat|"
    r"jahr|tag|morgen|gestern|heute|bald|demnächst|kürzlich|ende|anfang|mitte|frühjahr|"
    r"sommer|herbst|winter|week|month|year|day|today|tomorrow|yesterday|soon|recently)",
    re.IGNORECASE,
)


def _is_question(sentence: str) -> bool:
    return sentence.rstrip(_CLOSERS).endswith("?")


def expected_answer_type(question: str) -> AnswerType | None:
    """What kind of value the question asks for, if it clearly asks for one."""
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(question):
            return kind
    return None


def has_answer_type(sentence: str, kind: AnswerType) -> bool:
    """Whether ``sentence`` contains a value of the kind asked for."""
    if kind == "money":
        return bool(_HAS_MONEY.search(sentence) and _HAS_NUMBER.search(sentence))
    if kind == "time":
        return bool(_HAS_TIME.search(sentence))
    return bool(_HAS_NUMBER.search(sentence))


@dataclass(frozen=True)
class ScoredSentence:
    """A quotable sentence of a passage and how well it matches the question."""

    hit_index: int
    start: int  # offsets into ``hits[hit_index].chunk.text``
    end: int
    score: float
    vector_index: int  # row in the passage's sentence vectors (for near-duplicate checks)


def score_sentences(
    question: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    bank: SentenceBank,
    *,
    lexical_weight: float = 0.0,
) -> list[ScoredSentence]:
    """Every quotable sentence of ``hits``, best first."""
    if not hits:
        return []
    entries = bank.get([hit.chunk for hit in hits])
    query = embedder.embed_queries([question])[0]
    scored: list[ScoredSentence] = []
    for h, (hit, entry) in enumerate(zip(hits, entries, strict=True)):
        cosines = entry.vectors @ query
        for k, (start, end) in enumerate(entry.spans):
            if not entry.quotable[k] or _is_question(hit.chunk.text[start:end]):
                continue  # a question in the text (often a headline) answers nothing
            overlap = lexical_overlap(question, hit.chunk.text[start:end])
            score = (1.0 - lexical_weight) * float(cosines[k]) + lexical_weight * overlap
            scored.append(ScoredSentence(h, start, end, score, k))
    scored.sort(key=lambda s: -s.score)
    return scored


def select_sentences(
    question: str,
    scored: Sequence[ScoredSentence],
    hits: Sequence[Hit],
    bank: SentenceBank,
    *,
    max_sentences: int = 2,
    margin: float = 0.02,
    type_margin: float = 0.06,
    max_chars: int = 600,
) -> list[ScoredSentence]:
    """The sentences to quote: the best, plus others within ``margin`` of it.

    When the question asks for a number/amount/time, only sentences that contain one and
    score within ``type_margin`` of the best count; an empty list means none does.
    """
    if not scored:
        return []
    best = scored[0].score
    pool = list(scored)
    kind = expected_answer_type(question)
    if kind is not None:
        pool = [
            s
            for s in pool
            if s.score >= best - type_margin
            and has_answer_type(hits[s.hit_index].chunk.text[s.start : s.end], kind)
        ]
        if not pool:
            return []
        best = pool[0].score
    entries = {h: bank.get([hits[h].chunk])[0] for h in {s.hit_index for s in pool[:10]}}
    chosen: list[ScoredSentence] = []
    chars = 0
    for s in pool:
        if len(chosen) >= max_sentences or s.score < best - margin:
            break
        length = s.end - s.start
        if chosen and chars + length > max_chars:
            continue
        if any(c.hit_index == s.hit_index for c in chosen):
            continue  # one sentence per passage: each citation's quote is exactly what is shown
        vec = entries[s.hit_index].vectors[s.vector_index] if s.hit_index in entries else None
        if vec is not None and any(
            c.hit_index in entries
            and float(np.dot(entries[c.hit_index].vectors[c.vector_index], vec)) > 0.97
            for c in chosen
        ):
            continue  # the same statement twice (near-duplicate passages)
        chosen.append(s)
        chars += length
    return chosen


LEAD_INS = {"en": "According to the sources:", "de": "Laut den Quellen:"}


def _display(text: str) -> str:
    """A quoted sentence as shown in the answer: one line, no markdown emphasis."""
    return " ".join(text.replace("**", "").replace("__", "").split())


def compose_extractive(
    chosen: Sequence[ScoredSentence], hits: Sequence[Hit], *, language: str
) -> tuple[str, tuple[Citation, ...]]:
    """Answer text with ``[n]`` after each quoted sentence, and the matching citations.

    Numbers follow first appearance; a lead-in in the question's language frames
    sentences quoted in another language ("According to the sources: …").
    """
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    parts: list[str] = []
    foreign = False
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
        foreign = foreign or detect_language(quote) != language
        parts.append(f"{_display(quote)} [{numbers[s.hit_index]}]")
    text = " ".join(parts)
    if foreign:
        text = f"{LEAD_INS.get(language, LEAD_INS['en'])} {text}"
    return text, tuple(citations)
