"""The HTTP API's routes: questions, search, documents, passages, OpenAI shapes, operations."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app

QUESTION = "Wann war das erste Telefonat zwischen Trump und Putin?"  # the README's example
ANSWERED = "Worüber sprachen Trump und Putin im März 2025 außer der Ukraine noch?"


@pytest.fixture(scope="module")
def client(api_fake_service: Any, api_settings: Any) -> Iterator[TestClient]:
    """A client of the app on the shared read-only FakeEmbedder service."""
    with TestClient(create_app(api_fake_service, api_settings())) as test_client:
        yield test_client


@pytest.fixture
def writable(make_api_service: Any, api_settings: Any) -> Iterator[TestClient]:
    """A client of an app on a fresh service that tests may change."""
    with TestClient(create_app(make_api_service(), api_settings())) as test_client:
        yield test_client


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def document_texts(client: TestClient | httpx.Client) -> dict[str, str]:
    listing = client.get("/v1/documents").json()
    return {
        d["id"]: client.get(f"/v1/documents/{d['id']}").json()["text"] for d in listing["documents"]
    }


def check_answer(body: dict[str, Any], texts: dict[str, str]) -> None:
    """Offsets of passages and citations select their text in the original document."""
    assert set(body["timings_ms"]) >= {"retrieve", "generate", "total"}
    assert body["passages"], "expected retrieved passages"
    for p in body["passages"]:
        assert texts[p["doc_id"]][p["start"] : p["end"]] == p["text"]
    for c in body["citations"]:
        assert texts[c["doc_id"]][c["start"] : c["end"]] == c["quote"]
        assert f"[{c['number']}]" in body["answer"]
        assert f"/v1/passages/{c['chunk_id']}?start={c['start']}&end={c['end']}" in c["passage_url"]
    if body["abstained"]:
        assert body["message"] == body["answer"] and body["reason"]
    else:
        assert body["message"] is None


# ---------------------------------------------------------------------------------------
# Questions


def test_ask_returns_answer_with_offsets(client: TestClient) -> None:
    response = client.post("/v1/ask", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"embedding": "fake", "llm": "extractive"}
    assert len(body["passages"]) <= 3
    check_answer(body, document_texts(client))


def test_ask_streams_passages_deltas_citations_done(client: TestClient) -> None:
    response = client.post("/v1/ask", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "passages" and names[-1] == "done"
    assert "citations" in names and names.index("citations") == len(names) - 2
    assert set(names[1:-2]) <= {"delta"}
    done = events[-1][1]
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed == done["answer"]
    assert events[0][1]["passages"] == done["passages"]
    check_answer(done, document_texts(client))


def test_top_k_is_capped_and_filters_apply(
    api_fake_service: Any, api_settings: Any, client: TestClient
) -> None:
    with TestClient(create_app(api_fake_service, api_settings(max_top_k=2))) as capped:
        body = capped.post("/v1/search", json={"query": "Trump Putin", "top_k": 10}).json()
        assert 0 < len(body["passages"]) <= 2
    doc_id = sorted(document_texts(client))[2]
    body = client.post(
        "/v1/ask", json={"question": QUESTION, "filters": {"doc_ids": [doc_id]}}
    ).json()
    assert body["passages"] and {p["doc_id"] for p in body["passages"]} == {doc_id}


def test_search_ranks_passages(client: TestClient) -> None:
    body = client.post("/v1/search", json={"query": "Nord Stream 2 Investoren", "top_k": 4}).json()
    scores = [p["score"] for p in body["passages"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    assert body["query"] == "Nord Stream 2 Investoren" and body["timings_ms"]["retrieve"] > 0


def test_history_is_accepted(client: TestClient) -> None:
    history = [
        {"role": "user", "content": "Wer ist Putin?"},
        {"role": "assistant", "content": "Der russische Präsident [1]."},
    ]
    response = client.post("/v1/ask", json={"question": "Und Trump?", "history": history})
    assert response.status_code == 200 and response.json()["standalone_question"]


# ---------------------------------------------------------------------------------------
# Documents and passages


def test_list_and_read_documents(client: TestClient, api_corpus: list[Any]) -> None:
    listing = client.get("/v1/documents").json()
    assert listing["total"] == len(api_corpus) == len(listing["documents"])
    first = listing["documents"][0]
    detail = client.get(f"/v1/documents/{first['id']}").json()
    assert detail["title"] == first["title"] and len(detail["chunks"]) == first["chunks"]
    assert len(detail["text"]) == first["chars"]
    for chunk in detail["chunks"]:
        assert detail["text"][chunk["start"] : chunk["end"]] == chunk["text"]
    page = client.get("/v1/documents", params={"offset": 1, "limit": 2}).json()
    assert [d["id"] for d in page["documents"]] == [d["id"] for d in listing["documents"][1:3]]


def test_add_search_and_delete_a_json_document(writable: TestClient) -> None:
    doc = {
        "id": "neu/1",
        "title": "Zebrastreifen in Quakenbrück",
        "text": "Der Stadtrat von Quakenbrück beschloss neue Zebrastreifen.\n\nSie kosten viel.",
        "published": "2025-03-01",
        "source": "lokal.example",
    }
    added = writable.post("/v1/documents", json=doc)
    assert added.status_code == 201 and added.json()["added"] == ["neu/1"]
    found = writable.post("/v1/search", json={"query": "Quakenbrück Zebrastreifen"}).json()
    assert found["passages"][0]["doc_id"] == "neu/1"
    again = writable.post("/v1/documents", json=doc)
    assert again.status_code == 200 and again.json()["unchanged"] == ["neu/1"]
    detail = writable.get("/v1/documents/neu/1").json()
    assert detail["text"] == doc["text"] and detail["published"] == "2025-03-01"
    assert writable.delete("/v1/documents/neu/1").json() == {"deleted": "neu/1"}
    assert writable.get("/v1/documents/neu/1").status_code == 404
    assert writable.delete("/v1/documents/neu/1").status_code == 404
    gone = writable.post("/v1/search", json={"query": "Quakenbrück Zebrastreifen"}).json()
    assert all(p["doc_id"] != "neu/1" for p in gone["passages"])


def test_upload_files(writable: TestClient) -> None:
    jsonl = "\n".join(
        json.dumps({"id": f"j{i}", "title": f"Titel {i}", "text": f"Ein Text über Thema {i}."})
        for i in range(3)
    )
    files = [
        ("file", ("notiz.md", "# Notiz\n\nWalrosse mögen Muscheln.".encode(), "text/markdown")),
        ("file", ("sammlung.jsonl", jsonl.encode(), "application/jsonl")),
    ]
    response = writable.post("/v1/documents", files=files)
    assert response.status_code == 201, response.text
    assert sorted(response.json()["added"]) == ["j0", "j1", "j2", "notiz"]
    hits = writable.post("/v1/search", json={"query": "Walrosse Muscheln"}).json()["passages"]
    assert hits[0]["doc_id"] == "notiz"
    bad = writable.post("/v1/documents", files={"file": ("scan.pdf", b"%PDF-1.4", "x/y")})
    assert bad.status_code == 422 and "unsupported" in bad.json()["error"]["message"]
    empty = writable.post("/v1/documents", data={"note": "no file"})
    assert empty.status_code in (415, 422)
    wrong = writable.post("/v1/documents", content=b"text", headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415
    unknown = writable.post("/v1/documents", json={"id": "x", "text": "t", "author": "me"})
    assert unknown.status_code == 422 and "author" in unknown.json()["error"]["message"]


def test_passage_view_html_and_json(client: TestClient) -> None:
    hit = client.post("/v1/search", json={"query": QUESTION, "top_k": 1}).json()["passages"][0]
    start = hit["start"] + 5
    end = start + 20
    url = f"/v1/passages/{hit['chunk_id']}?start={start}&end={end}"
    view = client.get(f"{url}&format=json").json()
    assert view["passage"] == {"start": hit["start"], "end": hit["end"], "text": hit["text"]}
    assert view["quote"]["text"] == view["text"][start:end] == hit["text"][5:25]
    page = client.get(url, headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert '<mark id="quote">' in page.text and 'class="passage"' in page.text
    # A range that does not fit (reversed, empty, one offset, past the end) highlights nothing.
    for query in ("start=9&end=3", "start=0&end=0", "end=7", f"start=0&end={10**9}"):
        view = client.get(f"/v1/passages/{hit['chunk_id']}?{query}&format=json").json()
        assert view["quote"] is None and view["passage"]["text"] == hit["text"]
    assert client.get("/v1/passages/12345").status_code == 404
    assert client.get(f"/v1/passages/{2**60}").status_code == 422


def test_passage_page_escapes_document_content(writable: TestClient) -> None:
    doc = {
        "id": "xss",
        "title": "<script>alert(1)</script>",
        "text": "Harmlos <img src=x onerror=alert(2)> und mehr Text hier.",
        "url": "javascript:alert(3)",
    }
    assert writable.post("/v1/documents", json=doc).status_code == 201
    chunk = writable.get("/v1/documents/xss").json()["chunks"][0]
    page = writable.get(f"/v1/passages/{chunk['chunk_id']}").text
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "javascript:" not in page


# ---------------------------------------------------------------------------------------
# OpenAI shapes through the app (the official client is in test_openai_compat.py)


def test_chat_completion_and_errors(client: TestClient) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}], "seed": 1}
    result = client.post("/v1/chat/completions", json=body).json()
    assert result["object"] == "chat.completion" and result["model"] == "gpt-4o"
    content = result["choices"][0]["message"]["content"]
    for item in result["choices"][0]["message"]["annotations"]:
        span = item["url_citation"]
        assert content[span["start_index"] : span["end_index"]].startswith("[")
    no_user = {"messages": [{"role": "assistant", "content": "Hallo"}]}
    asked = client.post("/v1/chat/completions", json=no_user).json()  # nothing to retrieve for
    assert asked["choices"][0]["message"]["content"].startswith("Ask a question")
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422


def test_embeddings_shapes(client: TestClient) -> None:
    result = client.post("/v1/embeddings", json={"input": ["a b", "c"], "model": "x"}).json()
    assert [d["index"] for d in result["data"]] == [0, 1]
    assert len(result["data"][0]["embedding"]) == 64 and result["model"] == "fake"
    packed = client.post("/v1/embeddings", json={"input": "a b", "encoding_format": "base64"})
    assert isinstance(packed.json()["data"][0]["embedding"], str)
    wrong = client.post("/v1/embeddings", json={"input": "a", "dimensions": 3})
    assert wrong.status_code == 422 and "64" in wrong.json()["error"]["message"]
    assert client.post("/v1/embeddings", json={"input": []}).status_code == 422


# ---------------------------------------------------------------------------------------
# Operations and the page


def test_health_ready_and_metrics(client: TestClient, api_corpus: list[Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["documents"] == len(api_corpus)
    client.post("/v1/ask", json={"question": QUESTION})
    text = client.get("/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/v1/ask",status="200"}' in text
    assert f"rag_index_documents {float(len(api_corpus))}" in text
    assert "rag_retrieval_duration_seconds_count" in text
    assert "rag_generation_duration_seconds_count" in text
    assert 'route="<unmatched>"' not in text or "/v1/nothing" not in text


def test_public_url_is_used_for_links(api_fake_service: Any, api_settings: Any) -> None:
    settings = api_settings(public_url="https://rag.example.org/base/")
    with TestClient(create_app(api_fake_service, settings)) as app_client:
        body = app_client.post("/v1/search", json={"query": "Trump"}).json()
    assert body["passages"][0]["passage_url"].startswith(
        "https://rag.example.org/base/v1/passages/"
    )


def test_chat_page_and_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "/static/app.js" in page.text and 'href="/docs"' in page.text
    assert "text/javascript" in client.get("/static/app.js").headers["content-type"]
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------------------
# End to end: real embedding model, real server, the README's curl example


@pytest.mark.slow
def test_readme_curl_example(api_live_url: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed; the README's examples need it")
    command = [
        curl,
        "-s",
        f"{api_live_url}/v1/ask",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"question": "Wann war das erste Telefonat zwischen Trump und Putin?"}',
    ]
    output = subprocess.run(command, capture_output=True, check=True, timeout=120).stdout
    body = json.loads(output)
    assert body["model"]["embedding"] != "fake"
    with httpx.Client(base_url=api_live_url) as http:
        check_answer(body, document_texts(http))
    # The README's example is answered (whether with the date: tests/test_answering.py).
    assert not body["abstained"] and body["citations"]


@pytest.mark.slow
def test_live_stream_with_real_model(api_live_url: str) -> None:
    with httpx.Client(base_url=api_live_url, timeout=120) as http:
        response = http.post("/v1/ask", json={"question": ANSWERED, "stream": True})
        events = parse_sse(response.text)
        done = events[-1][1]
        assert events[0][0] == "passages" and events[-1][0] == "done"
        assert not done["abstained"] and any("März 2025" in c["quote"] for c in done["citations"])
        assert "".join(d["text"] for n, d in events if n == "delta") == done["answer"]
        check_answer(done, document_texts(http))


# ---------------------------------------------------------------------------------------
# With an LLM: a scripted OpenAI-compatible server on loopback


@pytest.mark.slow
def test_llm_answer_streams_and_llm_failures_map_to_502(
    scripted_llm: Any, tmp_path: Any, api_corpus: list[Any], api_settings: Any
) -> None:
    from llm_servers import Reply

    from rag.answer.generation import LiteLLMChatModel
    from rag.service import RagService
    from rag.testing import FakeEmbedder

    chat = LiteLLMChatModel(
        "openai/scripted", api_base=scripted_llm.url, api_key="k", retries=0, timeout_s=20
    )
    service = RagService(tmp_path, FakeEmbedder(), chat).open()
    service.add_documents(api_corpus)
    sentence = (
        "Die Themen des Gesprächs umfassten neben der Ukraine auch den Nahen Osten, Energie, "
        "künstliche Intelligenz und wirtschaftliche Beziehungen"
    )
    scripted_llm.script("scripted", Reply(text=f"{sentence} [1]."))
    # The fake embedder only scores shared words: the question repeats the sentence, so the
    # passage is relevant enough to call the LLM.
    question = f"{sentence}?"
    request = {
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "top_k": 1,
        "filters": {"doc_ids": ["002_4f089928bdc79d71"]},
    }
    with TestClient(create_app(service, api_settings())) as client:
        lines = client.post("/v1/chat/completions", json=request).text.split("\n\n")
        chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert lines[-2] == "data: [DONE]"
        pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
        content = "".join(p for p in pieces if p)
        assert len([p for p in pieces if p]) > 2, "the answer should arrive in pieces"
        annotations = [
            a
            for c in chunks
            if c["choices"]
            for a in c["choices"][0]["delta"].get("annotations", [])
        ]
        assert annotations and content.startswith(sentence)
        for a in annotations:
            span = a["url_citation"]
            assert content[span["start_index"] : span["end_index"]] == "[1]"

        answer = client.post("/v1/ask", json={"question": question, "top_k": 1}).json()
        assert answer["model"]["llm"] == "openai/scripted"

        scripted_llm.script("scripted", Reply(status=500))
        failed = client.post("/v1/ask", json={"question": question})
        assert failed.status_code == 502 and failed.json()["error"]["type"] == "generation_failed"
        streamed = parse_sse(
            client.post("/v1/ask", json={"question": question, "stream": True}).text
        )
        assert streamed[0][0] == "passages" and streamed[-1][0] == "error"
        chat_lines = client.post("/v1/chat/completions", json=request).text
        assert '"generation_failed"' in chat_lines and chat_lines.endswith("data: [DONE]\n\n")
    service.close()
