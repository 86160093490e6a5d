"""Recognising chat frontends' background tasks and answering them without an LLM."""

from __future__ import annotations

import json

import pytest

from api.chat_tasks import fallback_reply, recognise, title_from

QUESTION = "Wann telefonierten Trump und Putin zum ersten Mal im Jahr 2025?"
ANSWER = "Am 12. Februar 2025 [1].\n\n**Quellen:**\n- [1] [Titel](http://x): „Zitat“"


def _history_prompt(instruction: str, output: str, *, tags: bool = True) -> str:
    """A task prompt in the common layout: instruction, output shape, quoted history."""
    history = f"USER: {QUESTION}\nASSISTANT: {ANSWER}"
    if tags:
        history = f"<chat_history>\n{history}\n</chat_history>"
    return f"### Task:\n{instruction}\n### Output:\n{output}\n### Chat History:\n{history}"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            'JSON format: { "title": "your concise title here" }',
            {"title": "Wann telefonierten Trump und Putin"},
        ),
        ('JSON format: { "tags": ["tag1", "tag2", "tag3"] }', {"tags": []}),
        ('JSON format: { "follow_ups": ["Question 1?", "Question 2?"] }', {"follow_ups": []}),
        ('Respond in JSON: { "queries": ["query1", "query2"] }', {"queries": []}),
        # Placeholders that are not JSON still give the keys and their kinds.
        ('Return JSON like {"title": <short title>, "tags": [<tag>, ...]}', None),
    ],
)
def test_json_task_over_quoted_history_gets_the_requested_shape(
    output: str, expected: dict[str, object] | None
) -> None:
    prompt = _history_prompt("Summarise the conversation.", output)
    task = recognise([("user", prompt)])
    assert task is not None and task.wants_json and task.question == QUESTION
    reply = json.loads(fallback_reply(task))
    if expected is None:
        assert set(reply) == {"title", "tags"} and reply["tags"] == []
        assert reply["title"] == title_from(QUESTION)
    else:
        assert reply == expected


def test_plain_title_prompt_over_a_labelled_transcript() -> None:
    # A title request without JSON, the history as labelled lines (no tags).
    prompt = (
        "Write a concise title of five words or less for this conversation; reply with "
        f"the title only.\n\nUser: {QUESTION}\nAI: {ANSWER}"
    )
    task = recognise([("user", prompt)])
    assert task is not None and not task.wants_json
    assert fallback_reply(task) == "Wann telefonierten Trump und Putin"


def test_system_message_asking_for_json_and_response_format() -> None:
    system = 'Answer only with JSON of the form {"sentiment": "positive", "score": 0.5}.'
    task = recognise([("system", system), ("user", "Das Treffen war ein Erfolg.")])
    assert task is not None
    assert json.loads(fallback_reply(task)) == {
        "sentiment": "Das Treffen war ein Erfolg",
        "score": 0,
    }
    task = recognise([("user", "Gib mir Stichworte.")], {"type": "json_object"})
    assert task is not None and fallback_reply(task) == "{}"
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "tags": {"type": "array"}},
    }
    task = recognise(
        [("user", "Titel?")],
        {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
    )
    assert task is not None and json.loads(fallback_reply(task)) == {"title": "Titel", "tags": []}


@pytest.mark.parametrize(
    "messages",
    [
        [("user", QUESTION)],
        [("user", "Was bedeutet JSON in dem Artikel über Datenformate?")],
        # A quoted sentence with one speaker label is a question, not a transcript.
        [("user", 'Wer sagte: "Wir wollen Frieden"? Putin: so stand es im Artikel.')],
        [("system", "Du bist hilfreich."), ("user", QUESTION)],
        [("user", "Erste Frage?"), ("assistant", ANSWER), ("user", "Und danach?")],
        [("user", QUESTION + "\n\n" + "Langer eingefügter Text. " * 300)],
    ],
)
def test_questions_are_not_tasks(messages: list[tuple[str, str]]) -> None:
    assert recognise(messages) is None
    assert recognise(messages, {"type": "text"}) is None


def test_title_from_question() -> None:
    assert title_from("  Wie geht es?  ") == "Wie geht es"
    assert title_from("") == "Chat"
