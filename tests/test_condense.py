"""Follow-ups become standalone questions: by the LLM when configured, by a rule otherwise."""

from __future__ import annotations

import pytest

from rag.answer.condense import condense_question, needs_context, salient_terms
from rag.testing import FakeChatModel
from rag.types import Turn

HISTORY = [
    Turn("user", "Worüber sprachen Trump und Putin im März 2025 außer der Ukraine noch?"),
    Turn("assistant", "Über den Nahen Osten und Energie [1]."),
]


@pytest.mark.parametrize(
    "question",
    ["Und wann war das?", "Was hat er gesagt?", "Und Selenskyj?", "When did she say that?"],
)
def test_follow_ups_need_context(question: str) -> None:
    assert needs_context(question)


@pytest.mark.parametrize(
    "question",
    [
        "Wie viel Geld umfasste das letzte Militärhilfepaket für Kiew?",
        "Which German minister welcomed Putin's willingness to negotiate?",
        "Wann treffen sich die US-Diplomaten in Riad?",
    ],
)
def test_standalone_questions_do_not(question: str) -> None:
    assert not needs_context(question)


def test_rule_prepends_salient_words_of_the_last_user_turn() -> None:
    standalone = condense_question("Und wann war das?", HISTORY)
    assert standalone.endswith(": Und wann war das?")
    for word in ("Trump", "Putin", "März", "2025", "Ukraine"):
        assert word in standalone
    assert "Worüber" not in standalone and "außer" not in standalone


def test_standalone_question_is_kept() -> None:
    question = "Wann treffen sich die US-Diplomaten in Riad?"
    assert condense_question(question, HISTORY) == question


def test_without_history_nothing_changes() -> None:
    assert condense_question("Und wann war das?", []) == "Und wann war das?"


def test_a_follow_up_of_a_follow_up_borrows_from_earlier_turns() -> None:
    history = [*HISTORY, Turn("user", "Und wann?"), Turn("assistant", "Im März [1].")]
    standalone = condense_question("Wer war dabei?", history)
    assert "Trump" in standalone and "Putin" in standalone


def test_salient_terms_prefer_names_and_numbers_in_german() -> None:
    terms = salient_terms("Worüber sprachen Trump und Putin im März 2025?")
    assert terms == ["Trump", "Putin", "März", "2025"]
    assert salient_terms("Which German minister welcomed it?") == ["German", "minister", "welcomed"]


def test_llm_rewrites_when_configured() -> None:
    llm = FakeChatModel('Standalone question: "Wann sprachen Trump und Putin im März 2025?"\n')
    standalone = condense_question("Und wann war das?", HISTORY, llm)
    assert standalone == "Wann sprachen Trump und Putin im März 2025?"
    (messages,) = llm.calls
    assert "Und wann war das?" in messages[-1]["content"]


def test_llm_failure_or_ramble_falls_back_to_the_rule() -> None:
    broken = FakeChatModel(error="server down")
    assert condense_question("Und wann war das?", HISTORY, broken).endswith(": Und wann war das?")
    rambling = FakeChatModel("x" * 2000)
    assert condense_question("Und wann war das?", HISTORY, rambling).endswith("war das?")
