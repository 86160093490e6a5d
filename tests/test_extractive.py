"""Extractive answers: best passage sentences, quoted verbatim, with [n] and exact offsets."""

from __future__ import annotations

import pytest

from rag.answer.extractive import ScoredSentence, compose_extractive
from rag.answer.selector import choose as pick
from rag.answer.selector import relation, sentence_features
from rag.answer.support import SentenceBank
from rag.retrieve.question_parts import question_parts
from rag.testing import FakeEmbedder, overlap_selector
from rag.text.analysis import detect_language
from rag.types import Chunk, Hit

DOC = (
    "Vorspann des Artikels.\n\n"
    "Wann kommt der Gipfel? Der Gipfel zwischen Trump und Putin findet im Juli in Helsinki "
    "statt. Die Delegationen reisen vorher an.\n\n"
    "Die Beziehungen zwischen Washington und Moskau sind seit Jahren angespannt. Die Gespräche "
    "über Energie gehen weiter."
)


def hits_of(doc: str = DOC) -> list[Hit]:
    out = []
    pos = 0
    for n, para in enumerate(doc.split("\n\n")):
        start = doc.index(para, pos)
        pos = start + len(para)
        chunk = Chunk(100 + n, "doc-a", n, start, pos, para)
        out.append(Hit(chunk=chunk, score=1.0, title="Gipfel", published="2025-03-01"))
    return out[1:]  # the passages a retriever might return


# The selector as fitted would need the real model's cosines; here one weight on term
# overlap ranks the sentences of the fake embedder's passages.
OVERLAP = overlap_selector()


def choose(question: str, hits: list[Hit], max_sentences: int = 2) -> tuple[str, tuple]:  # type: ignore[type-arg]
    embedder = FakeEmbedder()
    cands, rows = sentence_features(question, hits, embedder, SentenceBank(embedder))
    probs = OVERLAP.probabilities(rows)
    answerable = OVERLAP.answerable_probability(rows)
    picked = pick(
        cands,
        probs,
        OVERLAP,
        answerable=answerable,
        relation=relation(rows),
        max_sentences=max_sentences,
    )
    chosen = [
        ScoredSentence(c.hit_index, c.start, c.end, float(probs[i]), c.vector_index)
        for i in picked
        for c in [cands[i]]
    ]
    language = detect_language(question)
    if not chosen:
        return "", ()
    pieces, citations = compose_extractive(chosen, hits, language=language)
    return "".join(pieces), citations


def test_best_sentence_is_quoted_with_exact_offsets() -> None:
    hits = hits_of()
    text, citations = choose("Wo findet der Gipfel zwischen Trump und Putin statt?", hits)
    assert text.startswith("Der Gipfel zwischen Trump und Putin findet im Juli in Helsinki statt.")
    assert "[1]" in text
    first = citations[0]
    assert first.number == 1 and first.supported
    assert first.chunk_id == hits[0].chunk.chunk_id
    assert DOC[first.start : first.end] == first.quote
    assert first.quote in hits[0].chunk.text
    assert first.published == "2025-03-01"


def test_questions_in_the_text_are_never_the_answer() -> None:
    _, citations = choose("Wann kommt der Gipfel?", hits_of(), max_sentences=3)
    assert all(not c.quote.endswith("?") for c in citations)


def test_one_sentence_per_passage_and_numbers_by_appearance() -> None:
    hits = hits_of()
    text, citations = choose("Gipfel Juli Beziehungen Moskau", hits, max_sentences=3)
    assert [c.number for c in citations] == list(range(1, len(citations) + 1))
    assert len({c.chunk_id for c in citations}) == len(citations)
    assert len(citations) == 2
    for citation in citations:
        assert f"[{citation.number}]" in text
        assert DOC[citation.start : citation.end] == citation.quote


def test_nothing_likely_enough_selects_nothing() -> None:
    text, citations = choose("Wie backe ich ein Sauerteigbrot?", hits_of())
    assert text == "" and citations == ()


def test_english_question_over_german_text_gets_a_lead_in() -> None:
    text, _ = choose("Where is the Gipfel with Trump and Putin?", hits_of())
    assert text.startswith("According to the sources (quoted in German): ")
    german, _ = choose("Wo ist der Gipfel mit Trump und Putin?", hits_of())
    assert not german.startswith(("According", "Laut den Quellen"))


@pytest.mark.parametrize(
    ("language", "lead_in"),
    [
        ("en", "According to the sources (quoted in German): "),
        # languages without a lead-in of their own get the English one
        ("es", "According to the sources (quoted in German): "),
        ("ru", "According to the sources (quoted in German): "),
        ("de", ""),
    ],
)
def test_quotes_in_another_language_get_a_lead_in(language: str, lead_in: str) -> None:
    hits = hits_of()
    start = hits[0].chunk.text.index("Der Gipfel")
    chosen = [ScoredSentence(0, start, hits[0].chunk.text.index(" Die Deleg"), 0.9, 1)]
    pieces, _ = compose_extractive(chosen, hits, language=language)
    assert pieces[0] == lead_in + "Der Gipfel zwischen Trump und Putin findet im Juli in " + (
        "Helsinki statt. [1]"
    )


def test_a_german_question_names_the_quoted_language_in_german() -> None:
    text = "Intro.\n\nThe summit between Trump and Putin takes place in Helsinki in July."
    hits = hits_of(text)
    chosen = [ScoredSentence(0, 0, len(hits[0].chunk.text), 0.9, 0)]
    pieces, _ = compose_extractive(chosen, hits, language="de")
    assert pieces[0].startswith("Laut den Quellen (Zitat auf Englisch): The summit")
    pieces, _ = compose_extractive(chosen, hits, language="it")
    assert pieces[0].startswith("According to the sources (quoted in English): The summit")


def test_markdown_emphasis_is_shown_plain_but_quoted_exactly() -> None:
    doc = "Einleitung.\n\nDer Gipfel findet **im Juli** in Helsinki statt, sagte er."
    hits = hits_of(doc)
    text, citations = choose("Wann findet der Gipfel in Helsinki statt?", hits)
    assert "im Juli in Helsinki" in text and "**" not in text
    assert citations[0].quote == "Der Gipfel findet **im Juli** in Helsinki statt, sagte er."
    assert doc[citations[0].start : citations[0].end] == citations[0].quote


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("Wie gut verstehen sich A und B, und welche Worte fand A dafür?", 2),
        ("Wie ging A mit B um \u2013 nach dem Telefonat und bei dem Treffen?", 2),
        ("Wo findet der Gipfel zwischen Trump und Putin statt?", 0),
        ("Wie geht es A und B?", 0),
    ],
)
def test_question_parts(question: str, parts: int) -> None:
    assert len(question_parts(question)) == parts
