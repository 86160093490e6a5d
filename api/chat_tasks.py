"""Chat frontends' background tasks: requests that are not questions about the corpus.

Open WebUI, LibreChat and similar clients send their title, tag, follow-up and query
prompts to the same model as the chat. Such a request is recognised by general signals,
not by one client's wording:

- ``response_format`` asks for ``json_object`` or ``json_schema``;
- a system/developer message or the final user message asks for JSON and shows the object
  to return (``{ "title": ... }``);
- the final user message is an instruction over a quoted chat history: a
  ``<chat_history>`` (or ``<conversation>``) block, or at least two lines that start with
  a speaker label (``USER:``, ``ASSISTANT:``, ``User:``, ``AI:`` ...).

With an LLM such a request goes to it unchanged. Without one, ``fallback_reply`` answers in
the shape asked for: a title taken from the user's last quoted question for string fields
and plain-text requests, empty lists for list fields (tags, follow-ups, queries).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Speaker labels that transcripts of a chat put at the start of a line.
_SPEAKER = re.compile(
    r"^\s*(USER|ASSISTANT|User|Assistant|AI|Human|Bot|SYSTEM|System|Benutzer|Nutzer)\s*:\s?",
    re.MULTILINE,
)
_USER_LABELS = {"user", "human", "benutzer", "nutzer"}
_HISTORY_BLOCK = re.compile(r"<(chat_history|conversation|chat)>(.*?)</\1>", re.DOTALL)
_JSON_WORD = re.compile(r"\bJSON\b", re.IGNORECASE)
# The first object literal that starts with a quoted key: the shape the prompt asks for.
_OBJECT_START = re.compile(r"\{\s*\"[^\"\n]{1,40}\"\s*:")
_KEY_VALUE = re.compile(r"\"([^\"\n]{1,40})\"\s*:\s*(\S)")
# A generated title keeps the first words of the question; clients ask for 2-5 words.
TITLE_WORDS = 5


@dataclass(frozen=True)
class ChatTask:
    """A recognised background request and the reply shape it asks for."""

    wants_json: bool
    # Top-level keys of the requested object and the JSON type of each value.
    fields: Mapping[str, str] = field(default_factory=dict)
    # The user's question in the quoted history (or the final message when none is quoted).
    question: str = ""


def _speaker_turns(text: str) -> list[tuple[str, str]]:
    """(label, content) of each speaker-labelled part of a transcript."""
    marks = list(_SPEAKER.finditer(text))
    turns = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        turns.append((mark.group(1).lower(), text[mark.end() : end].strip()))
    return turns


def _quoted_history(text: str) -> str | None:
    block = _HISTORY_BLOCK.search(text)
    if block is not None:
        return block.group(2)
    if len(_speaker_turns(text)) >= 2:
        return text
    return None


def _object_shape(text: str) -> dict[str, str] | None:
    """Keys and value types of the first JSON object literal shown in ``text``."""
    start = _OBJECT_START.search(text)
    if start is None:
        return None
    depth = 0
    for end in range(start.start(), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            literal = text[start.start() : end + 1]
            break
    else:
        literal = text[start.start() :]
    try:
        parsed = json.loads(literal)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return {key: _json_type(value) for key, value in parsed.items()}
    # Placeholders that are not JSON ({ "title": <title> }): read keys and first characters.
    found: dict[str, str] = {}
    for key, first in _KEY_VALUE.findall(literal):
        kind = "number" if first.isdigit() or first == "-" else "string"
        found.setdefault(key, {"[": "array", "{": "object"}.get(first, kind))
    return found or None


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "number" if value is not None else "string"


def _schema_fields(response_format: Mapping[str, Any] | None) -> dict[str, str]:
    schema = ((response_format or {}).get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {
        str(k): str(v.get("type", "string")) if isinstance(v, dict) else "string"
        for k, v in properties.items()
    }


def recognise(
    messages: Sequence[tuple[str, str]], response_format: Mapping[str, Any] | None = None
) -> ChatTask | None:
    """The background task these (role, text) messages ask for, or None for a question."""
    if not messages:
        return None
    final_role, final = messages[-1]
    history = _quoted_history(final) if final_role == "user" else None
    question = _last_user_turn(history) if history is not None else final.strip()
    format_type = (response_format or {}).get("type")
    shape = _shape_in(messages)
    if format_type in ("json_object", "json_schema"):
        fields = _schema_fields(response_format) or shape or {}
        return ChatTask(wants_json=True, fields=fields, question=question)
    if shape is not None:
        return ChatTask(wants_json=True, fields=shape, question=question)
    if history is not None:
        return ChatTask(wants_json=False, question=question)
    return None


def _shape_in(messages: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """The object shape a system/developer message or the final message asks for in JSON."""
    candidates = [text for role, text in messages if role in ("system", "developer")]
    candidates.append(messages[-1][1])
    for text in candidates:
        instruction = _HISTORY_BLOCK.sub("", text)  # a quoted chat may mention JSON itself
        if _JSON_WORD.search(instruction):
            shape = _object_shape(instruction)
            if shape is not None:
                return shape
    return None


def _last_user_turn(history: str) -> str:
    turns = _speaker_turns(history)
    users = [content for label, content in turns if label in _USER_LABELS and content]
    if users:
        return users[-1]
    return turns[0][1] if turns else history.strip()


def title_from(question: str) -> str:
    """A short title: the first words of the question, without closing punctuation."""
    words = question.split()[:TITLE_WORDS]
    return " ".join(words).rstrip("?!.,;:") or "Chat"


_EMPTY: dict[str, object] = {"array": [], "object": {}, "number": 0, "integer": 0}


def fallback_reply(task: ChatTask) -> str:
    """The reply without an LLM: a title, or the requested object with empty lists."""
    title = title_from(task.question)
    if not task.wants_json:
        return title
    values = {
        key: _EMPTY.get(kind, False if kind == "boolean" else title)
        for key, kind in task.fields.items()
    }
    return json.dumps(values, ensure_ascii=False)
