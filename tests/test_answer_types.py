"""What a question asks for, and whether a sentence provides it."""

from __future__ import annotations

import pytest

from rag.retrieve.answer_types import (
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


@pytest.mark.parametrize(
    ("question", "holder"),
    [
        ("What is China's official position on the rapprochement?", "China"),
        ("What was the view of Poland on the talks?", "Poland"),
        ("Wie steht Polen zu den Gesprächen?", "Polen"),
        ("Was ist die Haltung Chinas zu den Gesprächen?", "Chinas"),
    ],
)
def test_stance_questions_name_their_holder(question: str, holder: str) -> None:
    focus = question_focus(question)
    assert (focus.kind, focus.noun) == ("stance", holder)


def test_no_stance_without_a_holder() -> None:
    assert expected_answer_type("Wie steht es um die Beziehungen?") != "stance"
    # reactions are told with any verb: no saying word required
    assert expected_answer_type("Wie reagierte Moskau auf den Streit?") is None
    assert expected_answer_type("Which minister welcomed Putin's willingness?") is None


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("China erklärte, es begrüße die Annäherung beider Staaten.", True),
        ("Laut Peking ist die Annäherung kein Grund zur Sorge.", False),  # holder not named
        ("Russland könnte in einem Konflikt mit China ein Verbündeter sein.", False),
        ("Ein Sprecher sagte nichts; viel später und ganz woanders ging es um China.", False),
        ("Die chinesische Regierung und China selbst kritisierten die Pläne.", True),
    ],
)
def test_stance_needs_a_saying_word_next_to_the_holder(sentence: str, ok: bool) -> None:
    focus = question_focus("What is China's official position on the rapprochement?")
    assert has_answer_type(sentence, focus) is ok


def test_stance_holder_may_be_named_in_the_passage_language() -> None:
    from dataclasses import replace

    focus = question_focus("What is Moscow's position on the quarrel?")
    sentence = "Moskau zeigt sich optimistisch und reagiert auf die Entwicklungen."
    assert not has_answer_type(sentence, focus)
    assert has_answer_type(sentence, replace(focus, aliases=frozenset({"moska"})))


def test_current_state_questions_prefer_present_tense_markers() -> None:
    focus = question_focus("Wie steht es derzeit um die diplomatischen Beziehungen?")
    assert focus.kind == "current"
    assert has_answer_type("Die Beziehungen sind derzeit auf einem Tiefpunkt.", focus)
    assert not has_answer_type("Die Beziehungen waren 2017 gut.", focus)


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
