"""OpenAI-compatible formatting (unit) and the official ``openai`` client against a live server."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from openai.types.chat import ChatCompletionChunk as OpenAIChunk

from api.openai_compat import (
    MARKER,
    ChunkWriter,
    annotations_for,
    completion,
    sources_section,
    split_conversation,
    strip_sources,
)
from api.openai_schemas import ChatMessageIn, Usage
from rag.types import Citation


def _citation(number: int, chunk_id: int, title: str = "Titel", quote: str = "Zitat") -> Citation:
    return Citation(
        number=number,
        doc_id=f"doc-{chunk_id}",
        chunk_id=chunk_id,
        title=title,
        quote=quote,
        start=10 * number,
        end=10 * number + len(quote),
        score=0.8,
        supported=True,
        source="example.org",
        published="2025-02-12",
    )


def _link(chunk_id: int, start: int | None, end: int | None) -> str:
    return f"http://test/v1/passages/{chunk_id}?start={start}&end={end}"


CITES = (_citation(1, 111), _citation(2, 222, title="Zweiter [Teil]"))


def test_annotations_select_the_markers_they_cite() -> None:
    text = "Trump telefonierte mit Putin [1]. Danach sprach er mit Selenskyj [2][1]."
    annotations = annotations_for(text, CITES, _link)
    assert len(annotations) == 3
    for a in annotations:
        marker = text[a.url_citation.start_index : a.url_citation.end_index]
        number = int(MARKER.fullmatch(marker).group(1))  # type: ignore[union-attr]
        cited = next(c for c in CITES if c.number == number)
        assert a.type == "url_citation"
        assert a.url_citation.url == _link(cited.chunk_id, cited.start, cited.end)
        assert a.url_citation.title == cited.title


def test_grouped_marker_gets_one_annotation_per_number_and_unknown_numbers_none() -> None:
    text = "Beides stimmt [1, 2], das nicht [7]."
    annotations = annotations_for(text, CITES, _link)
    spans = {(a.url_citation.start_index, a.url_citation.end_index) for a in annotations}
    assert len(annotations) == 2
    assert spans == {(text.index("[1, 2]"), text.index("[1, 2]") + len("[1, 2]"))}


def test_sources_section_language_escaping_and_round_trip() -> None:
    long_quote = "Wort " * 100
    cites = (*CITES, _citation(3, 333, quote=long_quote))
    german = sources_section(cites, "de", _link)
    english = sources_section(cites, "en", _link)
    assert german.startswith("\n\n**Quellen:**\n") and english.startswith("\n\n**Sources:**\n")
    assert "Zweiter \\[Teil\\]" in german  # brackets in titles cannot form markdown links
    assert _link(222, 20, 20 + len("Zitat")) in german
    assert "„Zitat“" in german and "“Zitat”" in english
    assert len(german.splitlines()[-1]) < 400  # long quotes are cut
    assert sources_section((), "de", _link) == ""
    answer = "Antwort [1]."
    assert strip_sources(answer + german) == answer


def test_split_conversation_uses_last_user_message_and_cleans_history() -> None:
    previous = "Frühere Antwort [1]." + sources_section(CITES, "de", _link)
    messages = [
        ChatMessageIn(role="system", content="Sei hilfreich."),
        ChatMessageIn(role="user", content="Erste Frage?"),
        ChatMessageIn(role="assistant", content=previous),
        ChatMessageIn(role="user", content=[{"type": "text", "text": "Und dann?"}]),  # type: ignore[list-item]
    ]
    question, history = split_conversation(messages)
    assert question == "Und dann?"
    assert [(t.role, t.content) for t in history] == [
        ("user", "Erste Frage?"),
        ("assistant", "Frühere Antwort [1]."),
    ]
    with pytest.raises(ValueError, match="last message"):
        split_conversation(messages[:3])


def test_completion_matches_openai_schema() -> None:
    text = "Am 12. Februar 2025 telefonierten sie [1]."
    result = completion(
        completion_id="chatcmpl-x",
        model="rag-corpus",
        text=text,
        citations=CITES[:1],
        language="de",
        link=_link,
        usage=Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8),
    )
    parsed = OpenAIChatCompletion.model_validate(result.model_dump())
    message = parsed.choices[0].message
    assert message.content is not None and message.content.startswith(text)
    assert "**Quellen:**" in message.content
    (annotation,) = message.annotations or []
    span = annotation.url_citation
    assert message.content[span.start_index : span.end_index] == "[1]"
    assert isinstance(parsed.created, int) and parsed.choices[0].finish_reason == "stop"


def test_chunk_writer_frames_and_usage() -> None:
    writer = ChunkWriter("chatcmpl-y", "any-model", include_usage=True)
    lines = [
        writer.start(),
        writer.delta("Hallo [1]"),
        *writer.finish(Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)),
    ]
    assert all(line.startswith("data: ") and line.endswith("\n\n") for line in lines)
    assert lines[-1] == "data: [DONE]\n\n"
    chunks = [OpenAIChunk.model_validate(json.loads(line[6:])) for line in lines[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.content == "Hallo [1]"
    assert chunks[2].choices[0].finish_reason == "stop"
    assert chunks[3].choices == [] and chunks[3].usage is not None
    assert chunks[3].usage.total_tokens == 3
    assert all(c.id == "chatcmpl-y" and c.created == chunks[0].created for c in chunks)
    assert json.loads(lines[1][6:])["usage"] is None  # explicit null before the usage chunk


# ---------------------------------------------------------------------------------------
# The official client against a live server (real embedder, demo corpus)

# A question the extractive answerer answers from the demo corpus.
QUESTION = "Worüber sprachen Trump und Putin im März 2025 außer der Ukraine noch?"


def _check_annotations(content: str, annotations: list[dict[str, object]], base: str) -> None:
    assert annotations, "expected url_citation annotations"
    for item in annotations:
        assert item["type"] == "url_citation"
        cite = item["url_citation"]
        assert isinstance(cite, dict)
        marker = content[cite["start_index"] : cite["end_index"]]
        assert MARKER.fullmatch(marker), marker
        assert cite["url"].startswith(f"{base}/v1/passages/")
        assert cite["title"]


@pytest.mark.slow
def test_openai_client_chat_completion(api_live_url: str) -> None:
    client = OpenAI(base_url=f"{api_live_url}/v1", api_key="unused")
    result = client.chat.completions.create(
        model="whatever-model", messages=[{"role": "user", "content": QUESTION}]
    )
    assert result.object == "chat.completion" and result.model == "whatever-model"
    message = result.choices[0].message
    assert message.content and "**Quellen:**" in message.content
    annotations = [a.model_dump() for a in message.annotations or []]
    _check_annotations(message.content, annotations, api_live_url)
    assert result.usage is not None and result.usage.total_tokens > 0
    # The annotation's link opens the cited paragraph with the quote highlighted.
    page = httpx.get(annotations[0]["url_citation"]["url"])  # type: ignore[index]
    assert page.status_code == 200 and "<mark" in page.text


@pytest.mark.slow
def test_openai_client_streamed_chat_completion(api_live_url: str) -> None:
    client = OpenAI(base_url=f"{api_live_url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="rag-corpus",
        messages=[
            {"role": "user", "content": "Hallo"},
            {"role": "assistant", "content": "Wie kann ich helfen?"},
            {"role": "user", "content": QUESTION},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    content = ""
    annotations: list[dict[str, object]] = []
    finish = None
    usage = None
    ids = set()
    for chunk in stream:
        ids.add(chunk.id)
        usage = chunk.usage or usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            extra = choice.delta.model_extra or {}
            annotations.extend(extra.get("annotations") or [])
            finish = choice.finish_reason or finish
    assert len(ids) == 1 and finish == "stop" and usage is not None
    assert "**Quellen:**" in content
    _check_annotations(content, annotations, api_live_url)


@pytest.mark.slow
def test_openai_client_models_and_embeddings(api_live_url: str) -> None:
    client = OpenAI(base_url=f"{api_live_url}/v1", api_key="unused")
    ids = [m.id for m in client.models.list()]
    assert "rag-corpus" in ids
    # The client asks for base64 by default and decodes it; floats on request.
    result = client.embeddings.create(model="any", input=["Trump", "Putin telefoniert"])
    floats = client.embeddings.create(model="any", input="Trump", encoding_format="float")
    assert [d.index for d in result.data] == [0, 1]
    first = result.data[0].embedding
    assert len(first) == len(floats.data[0].embedding) > 0
    assert first == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert sum(x * x for x in first) == pytest.approx(1.0, abs=1e-3)
    assert result.usage.prompt_tokens > 0


def test_marker_regex_matches_what_the_citation_renderer_emits() -> None:
    assert [m.group(0) for m in MARKER.finditer("a [1][2] b [3, 4] c [x]")] == [
        "[1]",
        "[2]",
        "[3, 4]",
    ]
    assert not re.search(MARKER, "[]")
