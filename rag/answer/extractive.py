"""Extractive answers: the passage sentences that best answer the question, with ``[n]``.

Used when no LLM is configured. Every sentence of the retrieved passages is scored against
the question: embedding cosine plus a small share of IDF-weighted term overlap (rare
question terms such as names decide between near-equal cosines). The best one or two
(from different passages) are quoted verbatim, so each citation is supported by
construction and its ``quote`` is exactly the sentence shown. A multi-part question
("Wie …, und was …?") adds the best sentence for each part (``question_parts``).
Questions that ask for a kind of value (``rag.retrieve.answer_types``: an amount, a count, a date,
a quoted term, a specific name) only accept sentences that hold one; if none of the
relevant sentences does, the answer abstains rather than quote something beside the
point. An English question naming something that no passage spells or translates
(``unmatched_names``) abstains as well: the passages are about something else."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from rag.answer.support import PassageSentences, SentenceBank, content_terms
from rag.embedding.base import Embedder, near_duplicate
from rag.retrieve.answer_types import (
    AnswerType,
    QuestionFocus,
    expected_answer_type,
    has_answer_type,
    question_focus,
    time_specificity,
)
from rag.retrieve.question_parts import question_parts
from rag.text.analysis import detect_language, tokenize
from rag.text.lexicon import CLOSERS, name_key
from rag.types import Citation, Hit

__all__ = [
    "AnswerType",
    "ScoredSentence",
    "compose_extractive",
    "expected_answer_type",
    "has_answer_type",
    "merge_parts",
    "name_variants",
    "question_names",
    "question_parts",
    "score_sentences",
    "select_sentences",
    "unmatched_names",
]


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
    query = embedder.embed_queries([question])[0]
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
    matches = [{t: _term_match(t, terms) for t in wanted} for *_, terms in found]
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


def _term_match(term: str, terms: set[str]) -> float:
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


def _focus_for(focus: QuestionFocus, question_lang: str, sentence: str) -> QuestionFocus:
    """The asked noun only matches text in the question's language."""
    if (
        focus.kind != "stance"
        and focus.noun is not None
        and detect_language(sentence) != question_lang
    ):
        return replace(focus, noun=None)
    return focus


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
    time_weight: float = 0.0,
    aliases: frozenset[str] = frozenset(),
) -> list[ScoredSentence]:
    """The sentences to quote: the best, plus others within ``margin`` of it.

    When the question asks for a value (``rag.retrieve.answer_types``), only sentences that hold
    one and score within ``type_margin`` of the best count; an empty list means none
    does. For "when" questions ``time_weight`` per level of ``time_specificity`` prefers
    a full date over a bare year. ``aliases``: how the passages spell the holder of a
    ``stance`` question (``name_variants``).
    """
    if not scored:
        return []
    best = scored[0].score
    pool = list(scored)
    focus = replace(question_focus(question), aliases=aliases)
    if focus.kind is not None:
        lang = detect_language(question)
        pool = []
        for s in scored:
            text = hits[s.hit_index].chunk.text[s.start : s.end]
            if s.score >= best - type_margin and has_answer_type(
                text, _focus_for(focus, lang, text)
            ):
                bonus = time_weight * time_specificity(text) if focus.kind == "time" else 0.0
                pool.append(replace(s, score=s.score + bonus))
        if not pool and focus.kind == "current":
            pool = list(scored)  # a preference: the best sentence still answers
        if not pool:
            return []
        pool.sort(key=lambda s: -s.score)
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
        if s.hit_index in entries and _repeats(s, chosen, lambda c: entries.get(c.hit_index)):
            continue  # the same statement twice (near-duplicate passages)
        chosen.append(s)
        chars += length
    return chosen


def _repeats(
    s: ScoredSentence,
    chosen: Sequence[ScoredSentence],
    sentences_of: Callable[[ScoredSentence], PassageSentences | None],
) -> bool:
    """True when a chosen sentence says the same as ``s`` (near-duplicate passages)."""
    own = sentences_of(s)
    if own is None:
        return False
    vec = own.vectors[s.vector_index]
    for c in chosen:
        other = sentences_of(c)
        if other is not None and near_duplicate(other.vectors[c.vector_index], vec):
            return True
    return False


def merge_parts(
    chosen: Sequence[ScoredSentence],
    extra: Sequence[ScoredSentence],
    hits: Sequence[Hit],
    bank: SentenceBank,
    *,
    max_sentences: int,
) -> list[ScoredSentence]:
    """``chosen`` plus the best sentence per question part, one per passage, in rank order."""
    out = list(chosen)
    for s in extra:
        if len(out) >= max_sentences:
            break
        if any(c.hit_index == s.hit_index for c in out):
            continue
        if _repeats(s, out, lambda c: bank.get([hits[c.hit_index].chunk])[0]):
            continue
        out.append(s)
    return out


# Capitalised English words that are no names: sentence openers and nationality adjectives
# ("German minister"), which German text writes in lower case ("deutsche").
_DEMONYM = re.compile(r"(?:an|ish|ese|ch|i)$")
_FUNCTION_WORDS = (
    "i what which who whom whose when where why how is are was were do does did the a an in on "
    "at of for to and or mr mrs ms dr"
)
_ENGLISH_FUNCTION = frozenset(_FUNCTION_WORDS.split())


def question_names(question: str) -> list[str]:
    """Names in an English question: capitalised words inside the sentence.

    Neighbouring ones form one name ("White House", "United States"). German capitalises
    every noun, so German questions yield none.
    """
    if detect_language(question) != "en":
        return []
    names: list[str] = []
    run: list[str] = []
    previous_end = -1
    for i, match in enumerate(re.finditer(r"[^\W\d_]+(?:['\u2019]s)?", question)):
        word = re.sub(r"['\u2019]s$", "", match.group())
        is_name = (
            i > 0
            and word[:1].isupper()
            and word.lower() not in _ENGLISH_FUNCTION
            # "German", "Russian", "British", "Chinese"…: adjectives, not names
            and not (_DEMONYM.search(word.lower()) and not word.isupper())
        )
        adjacent = question[previous_end : match.start()] == " "
        if run and not (is_name and adjacent):
            names.append(" ".join(run))
            run = []
        if is_name:
            run.append(word)
            # "Putin's offer": a possessive ends the name
            previous_end = -1 if match.group() != word else match.end()
    if run:
        names.append(" ".join(run))
    return list(dict.fromkeys(names))


def _capitalised(tokens: Sequence[Sequence[str]]) -> list[str]:
    """The distinct capitalised words of tokenised passages, sorted."""
    return sorted({w for ts in tokens for w in ts if w[:1].isupper()})


def name_variants(
    name: str, hits: Sequence[Hit], embedder: Embedder, *, min_cosine: float
) -> frozenset[str]:
    """First five folded letters of the passage words that translate ``name``.

    "Moscow" -> {"moska"} when the passages say "Moskau" (cosine as in ``unmatched_names``).
    """
    words = _capitalised([tokenize(hit.chunk.text) for hit in hits])
    if not words:
        return frozenset()
    vectors = embedder.embed_queries([name, *words])
    sims = vectors[1:] @ vectors[0]
    return frozenset(name_key(w) for w, s in zip(words, sims, strict=True) if s >= min_cosine)


def unmatched_names(
    names: Sequence[str],
    hits: Sequence[Hit],
    embedder: Embedder,
    *,
    min_cosine: float,
    phrase_min_cosine: float | None = None,
) -> list[str]:
    """The ``names`` that no word of the passages spells or translates.

    A name matches a passage word with the same first five (folded) letters ("Kremlin"
    and "Kreml"), else one whose embedding is at least ``min_cosine`` close: the
    multilingual model puts exonyms next to each other ("Moscow"/"Moskau" 0.94), while
    different names of the same kind stay below ("China"/"Japan" 0.89). A name of several
    words matches when one of its words is spelled in the passages, or when it is
    ``phrase_min_cosine`` close to a passage word or pair of capitalised words ("White
    House"/"Weißen Haus" 0.89, "United States"/"Vereinigten Staaten" 0.95; "White
    House"/"Oval Office" 0.86).
    """
    if not names:
        return []
    tokens = [tokenize(hit.chunk.text) for hit in hits]
    words = _capitalised(tokens)
    folded = {name_key(w) for w in words}
    missing = [n for n in names if not any(name_key(p) in folded for p in n.split())]
    if not missing or not words:
        return missing
    vectors = embedder.embed_queries([*missing, *words])
    names_vecs = vectors[: len(missing)]
    best = (names_vecs @ vectors[len(missing) :].T).max(axis=1)
    unmatched = [n for n, b in zip(missing, best, strict=True) if float(b) < min_cosine]
    if not any(" " in n for n in unmatched):
        return unmatched
    pairs = sorted(
        {
            f"{a} {b}"
            for ts in tokens
            for a, b in itertools.pairwise(ts)
            if a[:1].isupper() and b[:1].isupper()
        }
    )
    if pairs:  # only the pairs are new: the names and words are embedded above
        best = np.maximum(best, (names_vecs @ embedder.embed_queries(pairs).T).max(axis=1))
    floor = min_cosine if phrase_min_cosine is None else phrase_min_cosine
    return [
        n
        for n, b in zip(missing, best, strict=True)
        if n in unmatched and not (" " in n and float(b) >= floor)
    ]


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
