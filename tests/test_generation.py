"""LiteLLMChatModel against real OpenAI-compatible servers on loopback (never a hosted API).

The scripted server decides what comes back (errors, slow first tokens, broken streams);
llama.cpp with SmolLM2-135M is a real model behind the real llama.cpp HTTP server.
"""

from __future__ import annotations

import socket
import time

import pytest
from llm_servers import Reply, ScriptedLLMServer

from rag.answer.generation import LiteLLMChatModel, Usage
from rag.errors import GenerationError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MESSAGES = [{"role": "user", "content": "Hallo?"}]
SECRET = "sk-test-do-not-log-1234567890"


def model(server: ScriptedLLMServer, **kwargs: object) -> LiteLLMChatModel:
    options: dict[str, object] = {"api_base": server.url, "timeout_s": 10.0, "retries": 0}
    options.update(kwargs)
    return LiteLLMChatModel("openai/main", **options)  # type: ignore[arg-type]


def test_complete_returns_text_usage_and_sends_max_tokens(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(text="Antwort [1].", usage=(40, 7)))
    llm = model(scripted_llm, max_tokens=33, temperature=0.0)
    assert llm.complete(MESSAGES) == "Antwort [1]."
    assert llm.last_usage == Usage(prompt_tokens=40, completion_tokens=7)
    assert llm.last_model == "openai/main"
    (body,) = scripted_llm.requests
    assert body["max_tokens"] == 33
    assert body["temperature"] == 0.0
    assert body["messages"] == MESSAGES


def test_stream_yields_pieces_and_usage(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(chunks=("Die ", "Antwort [", "1", "]."), usage=(9, 4)))
    llm = model(scripted_llm)
    pieces = list(llm.stream(MESSAGES))
    assert "".join(pieces) == "Die Antwort [1]."
    assert len(pieces) >= 3
    assert llm.last_usage == Usage(prompt_tokens=9, completion_tokens=4)
    assert scripted_llm.requests[0]["stream"] is True
    assert scripted_llm.requests[0]["max_tokens"] == 512


def test_sdk_retries_are_off_and_ours_count(scripted_llm: ScriptedLLMServer) -> None:
    """One 500 then success: with retries=1 exactly two requests (the SDK would add more)."""
    scripted_llm.script("main", Reply(status=500), Reply(text="ok"))
    assert model(scripted_llm, retries=1).complete(MESSAGES) == "ok"
    assert len(scripted_llm.requests) == 2


def test_no_retry_means_one_request(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(status=503))
    with pytest.raises(GenerationError, match="503"):
        model(scripted_llm, retries=0).complete(MESSAGES)
    assert len(scripted_llm.requests) == 1


def test_fallback_model_answers_when_the_main_one_fails(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(status=500))
    scripted_llm.script("backup", Reply(text="vom Ersatz"))
    llm = model(scripted_llm, retries=1, fallbacks=["openai/backup"])
    assert llm.complete(MESSAGES) == "vom Ersatz"
    assert llm.last_model == "openai/backup"
    assert [r["model"] for r in scripted_llm.requests] == ["main", "main", "backup"]


def test_stream_falls_back_before_the_first_piece(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(status=502))
    scripted_llm.script("backup", Reply(text="gestreamt"))
    llm = model(scripted_llm, fallbacks=["openai/backup"])
    assert "".join(llm.stream(MESSAGES)) == "gestreamt"
    assert llm.last_model == "openai/backup"


def test_client_errors_are_not_retried(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(status=400))
    scripted_llm.script("backup", Reply(text="ok"))
    llm = model(scripted_llm, retries=3, fallbacks=["openai/backup"])
    assert llm.complete(MESSAGES) == "ok"
    assert [r["model"] for r in scripted_llm.requests] == ["main", "backup"]


def test_slow_first_token_hits_the_total_deadline(scripted_llm: ScriptedLLMServer) -> None:
    delay = 30.0
    scripted_llm.script("main", Reply(text="zu spät", first_token_delay=delay))
    llm = model(scripted_llm, timeout_s=1.0, retries=2, fallbacks=["openai/main"])
    started = time.monotonic()
    with pytest.raises(GenerationError, match="time budget"):
        llm.complete(MESSAGES)
    with pytest.raises(GenerationError, match="time budget"):
        list(llm.stream(MESSAGES))
    # Neither call waited for the server; no retry started after the budget was spent.
    assert time.monotonic() - started < delay
    assert len(scripted_llm.requests) == 2


def test_trickling_stream_hits_the_total_deadline(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(text="x" * 400, chunk_delay=0.2))  # ~20 s in total
    llm = model(scripted_llm, timeout_s=1.5)
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(GenerationError):
        for piece in llm.stream(MESSAGES):
            received.append(piece)
    assert time.monotonic() - started < 20
    assert received  # pieces arrived, but the answer did not finish in the budget


def test_broken_stream_after_text_is_not_retried(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(text="abcdefghijklmnop", break_after=2))
    scripted_llm.script("backup", Reply(text="nie"))
    llm = model(scripted_llm, retries=2, fallbacks=["openai/backup"])
    received: list[str] = []
    with pytest.raises(GenerationError):
        for piece in llm.stream(MESSAGES):
            received.append(piece)
    assert "".join(received) == "abcdefgh"
    assert [r["model"] for r in scripted_llm.requests] == ["main"]


def test_api_key_is_sent_but_never_shown(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script("main", Reply(status=401))
    llm = model(scripted_llm, api_key=SECRET)
    with pytest.raises(GenerationError) as info:
        llm.complete(MESSAGES)
    assert scripted_llm.headers[0]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(info.value)
    assert SECRET not in repr(llm)


def test_unreachable_server_gives_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = LiteLLMChatModel("openai/x", api_base=f"http://127.0.0.1:{port}/v1", timeout_s=5)
    with pytest.raises(GenerationError, match="RAG_LLM_API_BASE"):
        llm.complete(MESSAGES)


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        LiteLLMChatModel("")
    with pytest.raises(ValueError):
        LiteLLMChatModel("openai/x", timeout_s=0)


# -- a real model: SmolLM2-135M-Instruct in llama.cpp's server --------------------------


def smollm(url: str, **kwargs: object) -> LiteLLMChatModel:
    options: dict[str, object] = {"api_base": url, "timeout_s": 60.0, "max_tokens": 12}
    options.update(kwargs)
    return LiteLLMChatModel("openai/smollm2", **options)  # type: ignore[arg-type]


def test_smollm2_answers_with_usage(smollm2_url: str) -> None:
    llm = smollm(smollm2_url)
    text = llm.complete([{"role": "user", "content": "What is the capital of France?"}])
    assert text.strip()
    assert llm.last_usage is not None
    assert llm.last_usage.prompt_tokens > 5
    assert 0 < llm.last_usage.completion_tokens <= 12


def test_smollm2_streams(smollm2_url: str) -> None:
    llm = smollm(smollm2_url)
    pieces = list(llm.stream([{"role": "user", "content": "Count from one to ten."}]))
    assert len(pieces) > 2
    assert "".join(pieces).strip()
    assert llm.last_usage is not None and llm.last_usage.completion_tokens <= 12


def test_smollm2_generation_is_cut_by_the_deadline(smollm2_url: str) -> None:
    """400 tokens take seconds on one thread; a 0.3 s budget must end the call."""
    llm = smollm(smollm2_url, timeout_s=0.3, max_tokens=400)
    prompt = [{"role": "user", "content": "Write a very long story about a dragon."}]
    with pytest.raises(GenerationError, match="time budget"):
        "".join(llm.stream(prompt))
