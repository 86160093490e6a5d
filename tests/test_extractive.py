"""Extractive answers: best passage sentences, quoted verbatim, with [n] and exact offsets."""

from __future__ import annotations

import pytest

from rag.citations import SentenceBank
from rag.extractive import (
    compose_extractive,
    expected_answer_type,
    has_answer_type,
    score_sentences,
    select_sentences,
)
from rag.testing import FakeEmbedder
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


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Wie viel Geld umfasste das Paket?", "money"),
        ("How much money was approved?", "money"),
        ("Wann sollen sich die Diplomaten treffen?", "time"),
        ("Ab welchem Jahr kippte die Stimmung?", "time"),
        ("When did it happen?", "time"),
        ("Wie viele Leserkommentare gibt es?", "number"),
        ("How many soldiers?", "number"),
        ("Wer hat das gesagt?", None),
        ("Which minister welcomed it?", None),
    ],
)
def test_expected_answer_type(question: str, kind: str | None) -> None:
    assert expected_answer_type(question) == kind


def test_has_answer_type() -> None:
    assert has_answer_type("Das Paket umfasste 60 Milliarden Dollar.", "money")
    assert not has_answer_type("Das Paket wurde im Eilverfahren genehmigt.", "money")
    assert has_answer_type("Das Treffen ist für Ende der Woche angekündigt.", "time")
    assert has_answer_type("Es kamen drei Delegationen.", "number")
    assert not has_answer_type("Es kamen Delegationen.", "number")


def choose(question: str, hits: list[Hit], **kwargs: object) -> tuple[str, tuple]:  # type: ignore[type-arg]
    embedder = FakeEmbedder()
    bank = SentenceBank(embedder)
    scored = score_sentences(question, hits, embedder, bank)
    chosen = select_sentences(question, scored, hits, bank, **kwargs)  # type: ignore[arg-type]
    language = "en" if question.startswith(("Where", "What", "When")) else "de"
    return compose_extractive(chosen, hits, language=language) if chosen else ("", ())


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
    _, citations = choose("Wann kommt der Gipfel?", hits_of(), max_sentences=3, margin=1.0)
    assert all(not c.quote.endswith("?") for c in citations)


def test_one_sentence_per_passage_and_numbers_by_appearance() -> None:
    hits = hits_of()
    text, citations = choose("Gipfel Juli Beziehungen Moskau", hits, max_sentences=3, margin=1.0)
    assert [c.number for c in citations] == list(range(1, len(citations) + 1))
    assert len({c.chunk_id for c in citations}) == len(citations)
    assert len(citations) == 2
    for citation in citations:
        assert f"[{citation.number}]" in text
        assert DOC[citation.start : citation.end] == citation.quote


def test_type_mismatch_selects_nothing() -> None:
    hits = hits_of()
    text, citations = choose("Wie viel Geld kostet der Gipfel in Helsinki?", hits)
    assert text == "" and citations == ()


def test_english_question_over_german_text_gets_a_lead_in() -> None:
    text, _ = choose("Where is the Gipfel with Trump and Putin?", hits_of())
    assert text.startswith("According to the sources: ")
    german, _ = choose("Wo ist der Gipfel mit Trump und Putin?", hits_of())
    assert not german.startswith(("According", "Laut den Quellen"))


def test_markdown_emphasis_is_shown_plain_but_quoted_exactly() -> None:
    doc = "Einleitung.\n\nDer Gipfel findet **im Juli** in Helsinki statt, sagte er."
    hits = hits_of(doc)
    text, citations = choose("Wann findet der Gipfel in Helsinki statt?", hits)
    assert "im Juli in Helsinki" in text and "**" not in text
    assert citations[0].quote == "Der Gipfel findet **im Juli** in Helsinki statt, sagte er."
    assert doc[citations[0].start : citations[0].end] == citations[0].quote
