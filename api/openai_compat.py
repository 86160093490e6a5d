"""Answers in OpenAI's chat-completion shape: ``[n]`` markers carry ``url_citation`` annotations.

Each annotation's ``start_index``/``end_index`` select the marker in the content
(``content[start:end] == "[n]"``) and its ``url`` opens the cited paragraph on this server.
A markdown source list is appended for frontends that ignore annotations.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from api.openai_schemas import (
    Annotation,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessageIn,
    ChatMessageOut,
    Choice,
    ChunkChoice,
    Delta,
    UrlCitation,
    Usage,
)
from rag.types import Citation, Turn

Link = Callable[[int, int | None, int | None], str]

# "[3]" and the grouped form "[1, 2]".
MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_HEADINGS = {"de": "Quellen", "en": "Sources"}
_QUOTES = {"de": ("„", "“"), "en": ("“", "”")}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")
_QUOTE_CHARS = 200


def annotations_for(text: str, citations: Sequence[Citation], link: Link) -> list[Annotation]:
    """One ``url_citation`` per marker (and per number in a grouped marker) that has a citation."""
    by_number = {c.number: c for c in citations}
    found: list[Annotation] = []
    for match in MARKER.finditer(text):
        for part in match.group(1).split(","):
            citation = by_number.get(int(part))
            if citation is None:
                continue
            found.append(
                Annotation(
                    url_citation=UrlCitation(
                        start_index=match.start(),
                        end_index=match.end(),
                        url=link(citation.chunk_id, citation.start, citation.end),
                        title=citation.title or citation.doc_id,
                    )
                )
            )
    return found


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def sources_section(citations: Sequence[Citation], language: str, link: Link) -> str:
    """The markdown list of cited sources appended to the content ("" when none)."""
    if not citations:
        return ""
    lang = language if language in _HEADINGS else "en"
    opening, closing = _QUOTES[lang]
    lines = [f"\n\n**{_HEADINGS[lang]}:**\n"]
    seen: set[int] = set()
    for c in sorted(citations, key=lambda c: c.number):
        if c.number in seen:
            continue
        seen.add(c.number)
        meta = ", ".join(x for x in (c.source, c.published) if x)
        quote = " ".join(c.quote.split())
        if len(quote) > _QUOTE_CHARS:
            quote = quote[: _QUOTE_CHARS - 1].rstrip() + "…"
        title = _md(c.title or c.doc_id)
        line = f"- \\[{c.number}\\] [{title}]({link(c.chunk_id, c.start, c.end)})"
        if meta:
            line += f" ({_md(meta)})"
        if quote:
            line += f": {opening}{_md(quote)}{closing}"
        lines.append(line + "\n")
    return "".join(lines).rstrip("\n")


_SOURCES_TAIL = re.compile(r"\n\n\*\*(?:Quellen|Sources):\*\*\n.*\Z", re.DOTALL)


def strip_sources(content: str) -> str:
    """Remove a source list we appended earlier from an assistant turn sent back as history."""
    return _SOURCES_TAIL.sub("", content)


def split_conversation(messages: Sequence[ChatMessageIn]) -> tuple[str, list[Turn]]:
    """The last user message is the question; earlier user/assistant turns are history."""
    if not messages or messages[-1].role != "user":
        raise ValueError("the last message must have role 'user' (the question)")
    question = messages[-1].text().strip()
    if not question:
        raise ValueError("the last user message has no text")
    history: list[Turn] = []
    for message in messages[:-1]:
        text = message.text().strip()
        if message.role == "user" and text:
            history.append(Turn("user", text))
        elif message.role == "assistant" and text:
            history.append(Turn("assistant", strip_sources(text)))
    return question, history


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(
    *,
    completion_id: str,
    model: str,
    text: str,
    citations: Sequence[Citation],
    language: str,
    link: Link,
    usage: Usage,
    created: int | None = None,
) -> ChatCompletion:
    """A non-streamed chat completion for an answer."""
    content = text + sources_section(citations, language, link)
    message = ChatMessageOut(content=content, annotations=annotations_for(text, citations, link))
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()) if created is None else created,
        model=model,
        choices=[Choice(message=message)],
        usage=usage,
    )


class ChunkWriter:
    """Builds the ``data: {...}`` lines of one streamed completion."""

    def __init__(self, completion_id: str, model: str, *, include_usage: bool = False) -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def _line(self, chunk: ChatCompletionChunk) -> str:
        payload = chunk.model_dump()
        for choice in payload["choices"]:
            # Deltas carry only what changed; finish_reason stays an explicit null like OpenAI's.
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        if not self.include_usage:
            del payload["usage"]  # with include_usage OpenAI sends null until the last chunk
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        return self._line(
            ChatCompletionChunk(
                id=self.completion_id,
                created=self.created,
                model=self.model,
                choices=choices,
                usage=usage,
            )
        )

    def start(self) -> str:
        return self._chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])

    def delta(self, text: str, annotations: list[Annotation] | None = None) -> str:
        return self._chunk([ChunkChoice(delta=Delta(content=text, annotations=annotations))])

    def finish(self, usage: Usage) -> Iterable[str]:
        yield self._chunk([ChunkChoice(delta=Delta(), finish_reason="stop")])
        if self.include_usage:
            yield self._chunk([], usage=usage)
        yield "data: [DONE]\n\n"

    def error(self, error_type: str, message: str) -> Iterable[str]:
        body = {"error": {"type": error_type, "message": message}}
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
