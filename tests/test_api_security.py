"""Protection and error handling of the HTTP API: limits, keys, rate limit, CORS, error shape."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from api.errors import rag_error_status, scrub_paths, validation_message
from api.main import create_app
from api.security import DEFAULT_RATE_LIMIT, PassageSigner, RateLimiter, rate_policy
from rag.errors import (
    ConfigError,
    DocumentNotFoundError,
    GenerationError,
    IndexBusyError,
    IndexMismatchError,
    IngestError,
)
from rag.service import RagService

QUESTION = "Wann war das erste Telefonat zwischen Trump und Putin?"


@pytest.fixture
def client_for(api_settings: Any) -> Any:
    @contextmanager
    def make(service: RagService, **settings: Any) -> Iterator[TestClient]:
        app = create_app(service, api_settings(**settings))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return make


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"type", "message"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


# ---------------------------------------------------------------------------------------
# Body size


def test_body_over_limit_by_content_length_is_413(client_for: Any, api_fake_service: Any) -> None:
    with client_for(api_fake_service, max_body_bytes=2048) as client:
        body = b'{"question": "' + b"x" * 5000 + b'"}'
        error = _error(client.post("/v1/ask", content=body), 413)
        assert "2048" in error["message"]


def test_streamed_body_over_limit_is_413(client_for: Any, api_fake_service: Any) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        yield b'{"question": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    with client_for(api_fake_service, max_body_bytes=4096) as client:
        _error(client.post("/v1/ask", content=chunks()), 413)
        files = {"file": ("big.txt", b"z" * 10_000, "text/plain")}
        _error(client.post("/v1/documents", files=files), 413)


@pytest.mark.slow
def test_ten_megabyte_body_gets_413_before_it_is_sent(
    serve_api: Any, api_fake_service: Any, api_settings: Any
) -> None:
    app = create_app(api_fake_service, api_settings())
    with serve_api(app) as base_url:
        port = urlsplit(base_url).port
        assert port is not None
        # Announce 10 MB and send none of it: the answer must come anyway.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10000000\r\n\r\n"
            )
            reply = sock.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert '"request_too_large"' in reply
        # A client that sends the whole body gets the same answer.
        response = httpx.post(
            f"{base_url}/v1/ask",
            content=b"{" + b" " * 10_000_000 + b"}",
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        _error(response, 413)


# ---------------------------------------------------------------------------------------
# Validation


def test_unknown_fields_and_wrong_types_get_422_naming_the_field(
    client_for: Any, api_fake_service: Any
) -> None:
    with client_for(api_fake_service, max_question_chars=100) as client:
        error = _error(client.post("/v1/ask", json={"question": QUESTION, "topk": 3}), 422)
        assert "topk" in error["message"] and "unknown field" in error["message"]
        error = _error(client.post("/v1/ask", json={"question": QUESTION, "top_k": "many"}), 422)
        assert error["message"].startswith("top_k:") and error["param"] == "top_k"
        error = _error(client.post("/v1/ask", json={"question": QUESTION, "top_k": 51}), 422)
        assert "top_k" in error["message"] and "50" in error["message"]
        error = _error(client.post("/v1/ask", json={"question": "x" * 101}), 422)
        assert "question" in error["message"] and "100" in error["message"]
        error = _error(client.post("/v1/ask", json={"question": "   "}), 422)
        assert "question" in error["message"]
        error = _error(client.post("/v1/ask", json={}), 422)
        assert "question: field required" in error["message"]
        error = _error(
            client.post(
                "/v1/ask",
                json={"question": QUESTION, "filters": {"published_from": "gestern"}},
            ),
            422,
        )
        assert "filters.published_from" in error["message"]
        error = _error(
            client.post(
                "/v1/ask",
                json={"question": QUESTION, "history": [{"role": "system", "content": "x"}]},
            ),
            422,
        )
        assert "history[0].role" in error["message"]
        broken = client.post(
            "/v1/ask", content=b'{"question": ', headers={"Content-Type": "application/json"}
        )
        assert "invalid JSON" in _error(broken, 422)["message"]


def test_validation_message_lists_each_problem() -> None:
    message, param = validation_message(
        [
            {"loc": ("body", "filters", "doc_ids", 2), "msg": "Input should be a valid string"},
            {"loc": ("body", "extra"), "msg": "x", "type": "extra_forbidden"},
        ]
    )
    assert param == "filters.doc_ids[2]"
    assert message == (
        "filters.doc_ids[2]: Input should be a valid string; "
        "extra: unknown field; remove it (see /docs for the accepted fields)"
    )


# ---------------------------------------------------------------------------------------
# Errors


def test_unknown_route_and_method_are_json_errors(client_for: Any, api_fake_service: Any) -> None:
    with client_for(api_fake_service) as client:
        assert "no route" in _error(client.get("/v1/nothing"), 404)["message"]
        assert "GET" in _error(client.get("/v1/ask"), 405)["message"]
        error = _error(client.get("/v1/documents/no-such-doc"), 404)
        assert error["type"] == "not_found" and "no-such-doc" in error["message"]


def test_library_errors_map_to_statuses() -> None:
    assert rag_error_status(DocumentNotFoundError("x")) == (404, "not_found")
    assert rag_error_status(IndexBusyError("x"))[0] == 503
    assert rag_error_status(IngestError("x"))[0] == 422
    assert rag_error_status(GenerationError("x"))[0] == 502
    assert rag_error_status(IndexMismatchError("x"))[0] == 500
    assert rag_error_status(ConfigError("x"))[0] == 500


def test_scrub_paths_hides_server_paths() -> None:
    message = "the index in /srv/data/rag/vectors was built ... (or delete /srv/x/index.sqlite3)."
    scrubbed = scrub_paths(message)
    assert "/srv" not in scrubbed
    assert "vectors" in scrubbed and "index.sqlite3" in scrubbed
    assert scrub_paths("see https://example.org/a/b and /v1/ask") == (
        "see https://example.org/a/b and /v1/ask"
    )


class _Broken(RagService):
    """A service whose search fails unexpectedly (a bug), or with a library error."""

    def search(self, query: str, **kwargs: Any) -> Any:
        if "busy" in query:
            raise IndexBusyError("another process is writing to /var/lib/rag/index")
        raise RuntimeError("secret detail at /home/app/rag/retrieval.py line 3")


def test_unexpected_errors_hide_details(client_for: Any, tmp_path: Any) -> None:
    from rag.testing import FakeEmbedder

    service = _Broken(tmp_path, FakeEmbedder())
    with client_for(service) as client:
        error = _error(client.post("/v1/search", json={"query": "boom"}), 500)
        assert "secret" not in error["message"] and "Traceback" not in error["message"]
        busy = client.post("/v1/search", json={"query": "busy"})
        error = _error(busy, 503)
        assert busy.headers["Retry-After"] and "/var/lib" not in error["message"]
    service.close()


class _SlowOpen(RagService):
    def __init__(self, *args: Any, fail: Exception | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import threading

        self.gate = threading.Event()
        self.fail = fail

    def open(self) -> RagService:
        self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        return super().open()


def test_readyz_is_503_until_loaded(client_for: Any, tmp_path: Any) -> None:
    from rag.testing import FakeEmbedder

    service = _SlowOpen(tmp_path, FakeEmbedder())
    with client_for(service) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        service.gate.set()
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.json()["status"] == "ready" and ready.json()["model"]["embedding"] == "fake"
    service.close()


def test_failed_load_is_reported_without_paths(client_for: Any, tmp_path: Any) -> None:
    from rag.testing import FakeEmbedder

    failure = IndexMismatchError("the index in /secret/dir/vectors was built with model 'x'")
    service = _SlowOpen(tmp_path, FakeEmbedder(), fail=failure)
    service.gate.set()
    with client_for(service) as client:
        error = _error(client.post("/v1/ask", json={"question": QUESTION}), 500)
        assert error["type"] == "index_mismatch" and "/secret" not in error["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"


# ---------------------------------------------------------------------------------------
# API keys


def test_api_keys(client_for: Any, api_fake_service: Any) -> None:
    with client_for(api_fake_service, api_keys=["key-one", "key-two"]) as client:
        missing = client.post("/v1/search", json={"query": "Putin"})
        assert _error(missing, 401)["type"] == "authentication_error"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = client.post(
            "/v1/search", json={"query": "Putin"}, headers={"Authorization": "Bearer nope"}
        )
        assert "invalid" in _error(wrong, 401)["message"]
        for key in ("key-one", "key-two"):
            ok = client.post(
                "/v1/search", json={"query": "Putin"}, headers={"Authorization": f"Bearer {key}"}
            )
            assert ok.status_code == 200
        for path in ("/healthz", "/readyz", "/", "/static/app.js", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert client.get("/metrics").status_code == 401
        # The OpenAPI document declares the scheme, so /docs can send the key.
        assert "HTTPBearer" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_signed_passage_links_open_without_a_key(client_for: Any, api_fake_service: Any) -> None:
    keys = {"Authorization": "Bearer key-one"}
    with client_for(api_fake_service, api_keys=["key-one"]) as client:
        answer = client.post("/v1/search", json={"query": "Trump Putin"}, headers=keys).json()
        link = answer["passages"][0]["passage_url"]
        assert "token=" in link
        assert client.get(link).status_code == 200
        parts = urlsplit(link)
        query = parse_qs(parts.query)
        tampered = f"{parts.path}?token={query['token'][0]}&start=0&end=5"
        _error(client.get(tampered), 401)
        other_chunk = parts.path.rsplit("/", 1)[0] + "/1?token=" + query["token"][0]
        _error(client.get(other_chunk), 401)


def test_passage_signer_binds_chunk_and_span() -> None:
    signer = PassageSigner(["k"])
    token = signer.sign(7, 1, 5)
    assert token is not None
    assert signer.verify("/v1/passages/7", f"start=1&end=5&token={token}")
    assert not signer.verify("/v1/passages/7", f"start=1&end=6&token={token}")
    assert not signer.verify("/v1/passages/8", f"start=1&end=5&token={token}")
    assert not signer.verify("/v1/documents", f"token={token}")
    assert PassageSigner([]).sign(7) is None


# ---------------------------------------------------------------------------------------
# Rate limit and CORS


def test_rate_limit_per_key_with_retry_after(client_for: Any, api_fake_service: Any) -> None:
    with client_for(api_fake_service, rate_limit_per_minute=2, api_keys=["a", "b"]) as client:
        first = {"Authorization": "Bearer a"}
        second = {"Authorization": "Bearer b"}
        statuses = [client.get("/v1/models", headers=first).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = client.get("/v1/models", headers=first)
        error = _error(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1 and "2 requests" in error["message"]
        assert client.get("/v1/models", headers=second).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes are never limited


def test_default_rate_limit_spares_local_scripts_but_not_other_machines(
    serve_api: Any, api_fake_service: Any, api_settings: Any, client_for: Any
) -> None:
    assert rate_policy(None, has_keys=False) == (DEFAULT_RATE_LIMIT, False)
    assert rate_policy(None, has_keys=True) == (DEFAULT_RATE_LIMIT, True)
    assert rate_policy(0, has_keys=True) == (0, True)
    # A script over loopback (real uvicorn): more requests than the limit, none refused.
    app = create_app(api_fake_service, api_settings(rate_limit_per_minute=None))
    with serve_api(app) as base, httpx.Client(base_url=base) as http:
        statuses = {http.get("/v1/models").status_code for _ in range(DEFAULT_RATE_LIMIT + 5)}
    assert statuses == {200}
    # TestClient's peer is "testclient", i.e. not this machine: limited, and told how to change it.
    with client_for(api_fake_service, rate_limit_per_minute=None) as client:
        # The bucket refills 2 tokens a second while the loop runs: a few more may pass.
        codes = [client.get("/v1/models").status_code for _ in range(DEFAULT_RATE_LIMIT + 30)]
        assert 429 in codes and codes.index(429) >= DEFAULT_RATE_LIMIT
        assert "RAG_RATE_LIMIT_PER_MINUTE" in _error(client.get("/v1/models"), 429)["message"]
    # With API keys every client counts, loopback included.
    app = create_app(api_fake_service, api_settings(rate_limit_per_minute=None, api_keys=["k"]))
    with serve_api(app) as base, httpx.Client(base_url=base) as http:
        auth = {"Authorization": "Bearer k"}
        codes = [
            http.get("/v1/models", headers=auth).status_code for _ in range(DEFAULT_RATE_LIMIT + 30)
        ]
    assert 429 in codes and codes.index(429) >= DEFAULT_RATE_LIMIT


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.hit("c") == 0 for _ in range(60))
    wait = limiter.hit("c")
    assert wait == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.hit("c") == 0
    assert limiter.hit("other") == 0


def test_cors_headers_on_success_and_errors(client_for: Any, api_fake_service: Any) -> None:
    origin = {"Origin": "http://frontend.example"}
    with client_for(
        api_fake_service, cors_origins=["http://frontend.example"], api_keys=["k"]
    ) as client:
        preflight = client.options(
            "/v1/ask",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://frontend.example"
        denied = client.post("/v1/ask", json={"question": QUESTION}, headers=origin)
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "http://frontend.example"
        other = client.get("/healthz", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
