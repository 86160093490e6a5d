"""What a question asks for, and whether a sentence provides it."""

from __future__ import annotations

import pytest

from rag.answer_types import (
    expected_answer_type,
    has_answer_type,
    question_focus,
    time_specificity,
)


def test_focus_finds_the_counted_and_the_asked_noun() -> None:
    count = question_focus("Wie viele Leserkommentare gibt es zu dem Beitrag?")
    assert count.kind == "count" and count.noun is not None
    which = question_focus("Welche amerikanischen Investoren sollen konkret beteiligt werden?")
    assert which.kind == "specific" and which.noun is not None
    assert question_focus("Wer hat das gesagt?").kind is None


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("Zu dem Beitrag gibt es 3 Kommentare.", True),  # head of the compound
        ("Es gab drei neue Leserkommentare.", True),
        ("Peskow sagte das am 18. November.", False),  # a date is no count
        ("Im Jahr 2017 gab es Kommentare.", False),
        ("Es kamen 20 Delegationen.", False),  # a count of something else
    ],
)
def test_count_must_count_the_asked_noun(sentence: str, ok: bool) -> None:
    focus = question_focus("Wie viele Leserkommentare gibt es?")
    assert has_answer_type(sentence, focus) is ok


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("Es gibt Bestrebungen, US-Investoren in die Wiederinbetriebnahme einzubinden.", False),
        ("Investoren wie ExxonMobil sollen beteiligt werden.", True),
        ("Die Investoren Warren Buffett und andere sollen beteiligt werden.", True),
        ("Laut Financial Times gibt es Pläne. Nichts weiter über Geldgeber.", False),
    ],
)
def test_specific_question_needs_a_name_next_to_the_noun(sentence: str, ok: bool) -> None:
    focus = question_focus("Welche amerikanischen Investoren sollen konkret beteiligt werden?")
    assert has_answer_type(sentence, focus) is ok


def test_term_question_needs_a_quoted_term() -> None:
    assert expected_answer_type("Unter welchem Motto steht die Politik?") == "term"
    assert has_answer_type("Er spricht von einer „speziellen Militärkampagne“.", "term")
    assert not has_answer_type("Er spricht von einem Krieg.", "term")


def test_time_specificity_orders_dates() -> None:
    levels = [
        time_specificity(s)
        for s in (
            "Es geschah am 28. Januar 2017.",
            "Es geschah im Juli.",
            "Es geschah 2017.",
            "Es geschah bald.",
            "Es geschah.",
        )
    ]
    assert levels == sorted(levels, reverse=True) and levels[0] > levels[1] > levels[2]
    assert levels[-1] == 0.0
