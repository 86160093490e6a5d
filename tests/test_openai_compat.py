"""OpenAI-compatible formatting (unit) and the official ``openai`` client against a live server."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from openai.types.chat import ChatCompletionChunk as OpenAIChunk

from api.openai_compat import (
    ASK_FOR_QUESTION,
    MARKER,
    ChunkWriter,
    annotations_for,
    completion,
    cut_note,
    retrieval_question,
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
    # Brackets in titles cannot form markdown links, and no backslash escape (\\[) reaches
    # a renderer that reads it as math; markers are plain [n] (a literal in markdown).
    assert "Zweiter &#91;Teil&#93;" in german and "\\" not in german
    assert "\n- [1] [Titel](" in german and "\n- [2] [Zweiter" in german
    assert _link(222, 20, 20 + len("Zitat")) in german
    assert "„Zitat“" in german and "“Zitat”" in english
    assert len(german.splitlines()[-1]) < 400  # long quotes are cut
    assert sources_section((), "de", _link) == ""
    answer = "Antwort [1]."
    assert strip_sources(answer + german) == answer


def test_sources_section_renders_markers_as_text_in_commonmark() -> None:
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render("Antwort [1]." + sources_section(CITES, "de", _link))
    assert "<li>[1] <a href=" in html and "<li>[2] <a href=" in html
    assert ">Zweiter [Teil]</a>" in html  # the character references come out as brackets
    assert "\\[" not in html


def test_source_chunks_carry_open_webui_events_in_number_order() -> None:
    writer = ChunkWriter("chatcmpl-z", "rag-corpus")
    lines = list(writer.sources([CITES[1], CITES[0], CITES[1]], _link))
    assert len(lines) == 2
    chunks = [OpenAIChunk.model_validate(json.loads(line[6:])) for line in lines]
    events = [(c.model_extra or {})["event"] for c in chunks]
    assert all(c.choices == [] and c.id == "chatcmpl-z" for c in chunks)
    for event, cited in zip(events, CITES, strict=True):
        url = _link(cited.chunk_id, cited.start, cited.end)
        assert event["type"] == "source"
        assert event["data"]["document"] == [cited.quote]
        assert event["data"]["metadata"] == [{"source": url, "name": cited.title, "external": True}]
        # The annotation of the same citation has the same URL, so the client merges them.
        assert annotations_for("[1][2]", CITES, _link)[cited.number - 1].url_citation.url == url


def test_long_questions_are_cut_for_retrieval_with_a_note() -> None:
    question = "Anfang der Frage " + "mittlerer Text " * 400 + "und zum Schluss: Wer sprach?"
    used = retrieval_question(question, 2000)
    assert len(used) <= 2000
    assert used.startswith("Anfang der Frage") and used.endswith("Wer sprach?")
    assert retrieval_question("kurz?", 2000) == "kurz?"
    # A question with a pasted text, before or after it: the asking sentences are searched.
    paste = "Ein eingefügter Satz ohne Frage. " * 200
    asked = "Wann war das erste Telefonat? Und wer rief an?"
    for message in (f"{asked}\n\n{paste}", f"{paste}\n{asked}"):
        assert retrieval_question(message, 2000) == asked
    assert "ihre Fragen" in cut_note(paste + asked, asked, "de")
    note = cut_note(question, used, "de")
    assert str(len(question)) in note and str(len(used)) in note
    assert cut_note("kurz?", "kurz?", "en") == ""
    answer = "Antwort [1]."
    assert strip_sources(answer + sources_section(CITES, "de", _link) + note) == answer
    assert strip_sources(answer + cut_note(question, used, "en")) == answer


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
    # Messages after the last user text (an assistant turn, a tool result) are not the question.
    assert split_conversation(messages[:3]) == ("Erste Frage?", [])
    assert split_conversation([*messages, ChatMessageIn(role="tool")])[0] == "Und dann?"
    assert split_conversation([messages[0], ChatMessageIn(role="user", content=" ")]) == ("", [])


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


# ---------------------------------------------------------------------------------------
# Chat frontends' background tasks, long messages and Open WebUI's source events, live

TRANSCRIPT = (
    f"<chat_history>\nUSER: {QUESTION}\nASSISTANT: Über den Nahen Osten [1].\n</chat_history>"
)
TASKS = {
    # Open WebUI's layout: a task, the JSON object to return, the quoted chat history.
    '### Task:\nGenerate a concise title.\n### Output:\nJSON format: { "title": "a title" }': {
        "title": "Worüber sprachen Trump und Putin"
    },
    'Generate 1-3 tags.\nJSON format: { "tags": ["tag1", "tag2"] }': {"tags": []},
    'Suggest follow-ups.\nJSON format: { "follow_ups": ["Question?"] }': {"follow_ups": []},
}


def _raw_stream(base: str, body: dict[str, object]) -> tuple[list[dict[str, object]], list[str]]:
    """The chunks of a streamed completion and its raw ``data:`` lines."""
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
    return chunks, lines


@pytest.mark.slow
def test_background_tasks_get_their_json_shapes_without_retrieval(api_live_url: str) -> None:
    client = OpenAI(base_url=f"{api_live_url}/v1", api_key="unused")
    for instruction, expected in TASKS.items():
        result = client.chat.completions.create(
            model="rag-corpus",
            messages=[{"role": "user", "content": f"{instruction}\n{TRANSCRIPT}"}],
        )
        message = result.choices[0].message
        assert json.loads(message.content or "") == expected
        assert not message.annotations
    # A plain-text title request over a labelled transcript, streamed.
    prompt = f"Give this conversation a short title.\n\nUser: {QUESTION}\nAI: Über Energie [1]."
    chunks, lines = _raw_stream(
        api_live_url, {"messages": [{"role": "user", "content": prompt}], "stream": True}
    )
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])  # type: ignore[index]
    assert text == "Worüber sprachen Trump und Putin" and lines[-1] == "data: [DONE]"
    # response_format asks for JSON: the object, never a corpus answer.
    result = client.chat.completions.create(
        model="rag-corpus",
        messages=[{"role": "user", "content": QUESTION}],
        response_format={"type": "json_object"},
    )
    assert json.loads(result.choices[0].message.content or "") == {}


@pytest.mark.slow
def test_long_pasted_message_is_answered_with_a_note(api_live_url: str) -> None:
    pasted = "Dies ist ein eingefügter Absatz ohne Bezug zur Frage. " * 100
    message = f"{QUESTION}\n\n{pasted}"
    assert len(message) > 5000
    client = OpenAI(base_url=f"{api_live_url}/v1", api_key="unused")
    result = client.chat.completions.create(
        model="rag-corpus", messages=[{"role": "user", "content": message}]
    )
    content = result.choices[0].message.content or ""
    assert "**Quellen:**" in content and f"{len(message.strip())} Zeichen" in content
    annotations = [a.model_dump() for a in result.choices[0].message.annotations or []]
    _check_annotations(content, annotations, api_live_url)


@pytest.mark.slow
def test_stream_sends_source_events_before_annotations_and_ends_with_done(
    api_live_url: str,
) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    chunks, lines = _raw_stream(api_live_url, body)
    assert lines[-1] == "data: [DONE]"
    events = [c["event"] for c in chunks if "event" in c]
    assert events and all(e["type"] == "source" for e in events)  # type: ignore[index]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])  # type: ignore[index]
    quotes = [e["data"]["document"][0] for e in events]  # type: ignore[index]
    for quote in quotes:
        assert quote and quote[:40] in " ".join(content.split())  # the list quotes it too
    annotated = [
        i
        for i, c in enumerate(chunks)
        if c["choices"] and c["choices"][0]["delta"].get("annotations")
    ]  # type: ignore[index]
    first_event = next(i for i, c in enumerate(chunks) if "event" in c)
    assert annotated and first_event < annotated[0]
    urls = {e["data"]["metadata"][0]["source"] for e in events}  # type: ignore[index]
    annotations = chunks[annotated[0]]["choices"][0]["delta"]["annotations"]  # type: ignore[index]
    assert {a["url_citation"]["url"] for a in annotations} <= urls
    _check_annotations(content, annotations, api_live_url)


@pytest.mark.slow
def test_conversation_without_user_text_gets_asked_for_a_question(api_live_url: str) -> None:
    for messages in ([{"role": "tool"}], [{"role": "system", "content": "Sei knapp."}]):
        reply = httpx.post(f"{api_live_url}/v1/chat/completions", json={"messages": messages})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == ASK_FOR_QUESTION


@pytest.mark.slow
def test_models_list_only_the_chat_model(api_live_url: str) -> None:
    client = OpenAI(base_url=f"{api_live_url}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["rag-corpus"]
    card = httpx.get(f"{api_live_url}/v1/models/rag-corpus").json()
    assert card["id"] == "rag-corpus"


@pytest.mark.slow
def test_tasks_go_to_the_llm_unchanged(
    serve_api: Any, scripted_llm: Any, tmp_path: Any, api_corpus: list[Any], api_settings: Any
) -> None:
    from llm_servers import Reply

    from api.main import create_app
    from rag.answer.generation import LiteLLMChatModel
    from rag.service import RagService
    from rag.testing import FakeEmbedder

    chat = LiteLLMChatModel("openai/scripted", api_base=scripted_llm.url, retries=0, timeout_s=20)
    service = RagService(tmp_path, FakeEmbedder(), chat).open()
    service.add_documents(api_corpus[:1])
    searched: list[str] = []
    search = service.search
    service.search = lambda query, **kw: searched.append(query) or search(query, **kw)  # type: ignore[method-assign]
    scripted_llm.script("scripted", Reply(text='{ "title": "Trump und Putin" }'))
    messages = [
        {"role": "system", "content": "Du bist knapp."},
        {"role": "user", "content": f"{next(iter(TASKS))}\n{TRANSCRIPT}"},
    ]
    with serve_api(create_app(service, api_settings())) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="unused")
        result = client.chat.completions.create(model="rag-corpus", messages=messages)  # type: ignore[arg-type]
    service.close()
    assert result.choices[0].message.content == '{ "title": "Trump und Putin" }'
    (sent,) = scripted_llm.requests_for("scripted")
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        (m["role"], m["content"]) for m in messages
    ]
    assert searched == []
