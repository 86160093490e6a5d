"""Answers in OpenAI's chat-completion shape: ``[n]`` markers carry ``url_citation`` annotations.

Each annotation's ``start_index``/``end_index`` select the marker in the content
(``content[start:end] == "[n]"``) and its ``url`` opens the cited paragraph on this server.
A markdown source list is appended for frontends that ignore annotations.

Streams also carry one chunk per citation with no choices and an extra ``event`` field
(``{"type": "source", "data": {...}}``): Open WebUI emits such events as they come and shows
each as a source chip whose pop-up holds the quote, under the document's title. Other
clients ignore the field (the official ``openai`` client keeps it in ``model_extra``).
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
# Markdown and math delimiters, written as character references: a backslash escape
# (\\[1\\]) is what Open WebUI's math renderer reads as display math.
_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>|$~]")
_QUOTE_CHARS = 200
_PARTS = {"de": ("ihre Fragen", "Anfang und Ende"), "en": ("its questions", "start and end")}
# A sentence that asks: from the last sentence end (or line start) up to a question mark.
_ASKED = re.compile(r"[^.!?\n]*\?")
# The reply to a conversation without user text (no retrieval runs).
ASK_FOR_QUESTION = "Ask a question about the documents, e.g. who said what and when."
_NOTES = {
    "de": "_Die Nachricht hat {total} Zeichen; gesucht wurde mit {kept} davon: {part}._",
    "en": "_The message has {total} characters; the search used {kept} of them: {part}._",
}


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
    return _MD_SPECIAL.sub(lambda m: f"&#{ord(m.group(0))};", " ".join(text.split()))


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
        line = f"- [{c.number}] [{title}]({link(c.chunk_id, c.start, c.end)})"
        if meta:
            line += f" ({_md(meta)})"
        if quote:
            line += f": {opening}{_md(quote)}{closing}"
        lines.append(line + "\n")
    return "".join(lines).rstrip("\n")


_SOURCES_TAIL = re.compile(r"\n\n\*\*(?:Quellen|Sources):\*\*\n.*\Z", re.DOTALL)
_NOTE_TAIL = re.compile(
    "\n\n(?:" + "|".join(re.escape(n.split("{")[0]) for n in _NOTES.values()) + ").*\\Z",
    re.DOTALL,
)


def strip_sources(content: str) -> str:
    """Remove the source list and note we appended from an assistant turn sent back as history."""
    return _SOURCES_TAIL.sub("", _NOTE_TAIL.sub("", content))


def retrieval_question(question: str, limit: int) -> str:
    """The question part of a message over ``limit`` characters.

    Its sentences ending in "?" when there are any and they fit (a pasted text rarely asks);
    otherwise its start and its end at word boundaries, where the ask usually is.
    """
    if len(question) <= limit:
        return question
    asked = " ".join(m.group(0).strip() for m in _ASKED.finditer(question) if m.group(0).strip())
    if asked and len(asked) <= limit:
        return asked
    half = max(1, (limit - 3) // 2)
    head = question[:half].rsplit(None, 1)[0] if " " in question[:half] else question[:half]
    tail = question[-half:].split(None, 1)[-1] if " " in question[-half:] else question[-half:]
    return f"{head} … {tail}"


def cut_note(question: str, used: str, language: str) -> str:
    """The line appended to a reply whose question was cut for retrieval ("" when it was not)."""
    if used == question:
        return ""
    lang = language if language in _NOTES else "en"
    part = _PARTS[lang][1 if " … " in used else 0]
    return "\n\n" + _NOTES[lang].format(total=len(question), kept=len(used), part=part)


def source_event(citation: Citation, link: Link) -> dict[str, object]:
    """Open WebUI's source event for one citation: the chip's pop-up shows the quote."""
    url = link(citation.chunk_id, citation.start, citation.end)
    title = citation.title or citation.doc_id
    return {
        "type": "source",
        "data": {
            "source": {"id": url, "name": title, "url": url},
            "document": [" ".join(citation.quote.split())],
            # ``external`` keeps the title as the chip's name instead of the URL.
            "metadata": [{"source": url, "name": title, "external": True}],
        },
    }


def split_conversation(messages: Sequence[ChatMessageIn]) -> tuple[str, list[Turn]]:
    """The last user message with text is the question; earlier user/assistant turns are history.

    Messages after it (tool results, an assistant's partial reply) add nothing to a corpus
    question. Without any user text the question is "" (the caller asks for one).
    """
    last = max(
        (i for i, m in enumerate(messages) if m.role == "user" and m.text().strip()), default=-1
    )
    if last < 0:
        return "", []
    history: list[Turn] = []
    for message in messages[:last]:
        text = message.text().strip()
        if message.role == "user" and text:
            history.append(Turn("user", text))
        elif message.role == "assistant" and text:
            history.append(Turn("assistant", strip_sources(text)))
    return messages[last].text().strip(), history


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
    note: str = "",
) -> ChatCompletion:
    """A non-streamed chat completion for an answer (``note`` goes after the sources)."""
    content = text + sources_section(citations, language, link) + note
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

    def sources(self, citations: Sequence[Citation], link: Link) -> Iterable[str]:
        """One choice-less chunk per cited source, in number order, with Open WebUI's event."""
        seen: set[int] = set()
        for citation in sorted(citations, key=lambda c: c.number):
            if citation.number in seen:
                continue
            seen.add(citation.number)
            payload = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "event": source_event(citation, link),
            }
            yield f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def finish(self, usage: Usage) -> Iterable[str]:
        yield self._chunk([ChunkChoice(delta=Delta(), finish_reason="stop")])
        if self.include_usage:
            yield self._chunk([], usage=usage)
        yield "data: [DONE]\n\n"

    def error(self, error_type: str, message: str) -> Iterable[str]:
        body = {"error": {"type": error_type, "message": message}}
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
