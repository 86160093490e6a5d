"""What a question asks for and whether a sentence holds it (selector features, retrieval)."""

from __future__ import annotations

import pytest

from rag.retrieve.answer_types import (
    asked_kind,
    expected_answer_type,
    holds_kind,
    is_question,
    quoted_terms,
    time_specificity,
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Wann wurde die Universität gegründet?", "time"),
        ("In welchem Jahr endete der Krieg?", "time"),
        ("When did the Super Bowl take place?", "time"),
        ("Wie viele Punkte gab die Verteidigung ab?", "count"),
        ("How many sacks did Jared Allen have?", "count"),
        ("Wo trafen sich Trump und Putin?", "place"),
        ("In which city was the game played?", "place"),
        ("Wer hatte die meisten Sacks?", "person"),
        ("Who won Super Bowl XLIX?", "person"),
        ("Was ist ein Gen?", None),
    ],
)
def test_asked_kind_follows_the_question_word(question: str, kind: str | None) -> None:
    assert asked_kind(question) == kind


@pytest.mark.parametrize(
    ("sentence", "kind", "holds"),
    [
        ("Das Treffen fand im Juli 2018 statt.", "time", True),
        ("Das Treffen fand bald statt.", "time", False),
        ("Allen kam auf 136 Sacks.", "count", True),
        ("Es geschah am 18. November 2024.", "count", False),  # a date is no count
        ("Das Spiel fand in Santa Clara statt.", "place", True),
        ("Das Spiel war spannend.", "place", False),
        ("Den Rekord hält Jared Allen.", "person", True),
        ("Den Rekord hält er.", "person", False),
    ],
)
def test_holds_kind(sentence: str, kind: str, holds: bool) -> None:
    assert holds_kind(sentence, kind) is holds  # type: ignore[arg-type]


def test_is_question_needs_a_question_mark_or_word() -> None:
    assert is_question("Wann kam er") and is_question("Sag mir, wer gewann")
    assert is_question("Trump Putin?")
    assert not is_question("Hallo") and not is_question("Danke, das war gut")


def test_designation_questions_and_quoted_terms_for_retrieval() -> None:
    assert expected_answer_type("Wie nennt der Kommentar den Krieg?") == "term"
    assert expected_answer_type("Wann sollen sich die Diplomaten treffen?") == "time"
    assert quoted_terms("Er sprach von einer „speziellen Militärkampagne“.") == [
        "speziellen Militärkampagne"
    ]


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
