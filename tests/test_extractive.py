"""Extractive answers: best passage sentences, quoted verbatim, with [n] and exact offsets."""

from __future__ import annotations

import pytest

from rag.answer.extractive import (
    compose_extractive,
    expected_answer_type,
    has_answer_type,
    question_names,
    question_parts,
    score_sentences,
    select_sentences,
    unmatched_names,
)
from rag.answer.support import SentenceBank
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
        ("Wie viele Leserkommentare gibt es?", "count"),
        ("How many soldiers?", "count"),
        ("Wie nennt der Kommentar den Krieg?", "term"),
        ("Welche Investoren sollen konkret beteiligt werden?", "specific"),
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
    assert has_answer_type("Es kamen drei Delegationen.", "count")
    assert not has_answer_type("Es kamen Delegationen.", "count")


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


def test_when_question_prefers_the_full_date_over_a_bare_year() -> None:
    doc = (
        "Einleitung.\n\nTrump und Putin telefonieren seit 2017 regelmäßig miteinander.\n\n"
        "Das erste Telefonat zwischen Trump und Putin fand am 28. Januar 2017 statt."
    )
    text, citations = choose(
        "Wann war das erste Telefonat zwischen Trump und Putin?",
        hits_of(doc),
        max_sentences=1,
        type_margin=1.0,
        time_weight=1.0,
    )
    assert "28. Januar 2017" in text and len(citations) == 1
    plain, _ = choose(
        "Wann war das erste Telefonat zwischen Trump und Putin?",
        hits_of(doc),
        max_sentences=1,
        type_margin=1.0,
    )
    assert plain  # without the weight either sentence may win, but one is chosen


def test_how_many_needs_a_count_not_a_date() -> None:
    doc = "Einleitung.\n\nDer Sprecher äußerte sich am 18. November 2024 zu den Kommentaren."
    text, _ = choose("Wie viele Kommentare gibt es zu dem Beitrag?", hits_of(doc), type_margin=1.0)
    assert text == ""
    doc = "Einleitung.\n\nZu dem Beitrag gibt es 12 Kommentare von Lesern."
    text, _ = choose("Wie viele Kommentare gibt es zu dem Beitrag?", hits_of(doc), type_margin=1.0)
    assert "12 Kommentare" in text


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


def test_question_names_are_capitalised_words_of_english_questions_only() -> None:
    assert question_names("What is China's position on Washington and Moscow?") == [
        "China",
        "Washington",
        "Moscow",
    ]
    assert question_names("Which German minister welcomed Putin's offer?") == ["Putin"]
    assert question_names("Wie steht China zu den Gesprächen in Moskau?") == []
    assert question_names("Who is the spokeswoman of the White House?") == ["White House"]
    assert question_names("Did the United States' envoy meet Putin's aide?") == [
        "United States",
        "Putin",
    ]


def test_unmatched_names_uses_spelling_then_embeddings() -> None:
    hits = hits_of()  # mentions Trump, Putin, Helsinki, Washington, Moskau
    embedder = FakeEmbedder()
    assert unmatched_names(["Putin", "Helsinkis"], hits, embedder, min_cosine=0.99) == []
    assert unmatched_names(["China"], hits, embedder, min_cosine=0.99) == ["China"]
    # With a floor every word clears, a translation would be accepted.
    assert unmatched_names(["China"], hits, embedder, min_cosine=-1.0) == []
