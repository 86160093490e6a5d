"""Chat-model seam: the ``ChatModel`` protocol and its litellm implementation.

``LiteLLMChatModel`` takes any litellm model string (``ollama/llama3.1``,
``openai/gpt-4o-mini``, or ``openai/<name>`` plus ``api_base`` for any OpenAI-compatible
server). Reliability is ours, not the SDK's:

* one total deadline (``timeout_s``) covers every attempt, retry and fallback, and is
  enforced by waiting on a worker thread, so a server that hangs or trickles tokens cannot
  hold a request longer (the HTTP client's own timeout is per read, not per answer);
* the OpenAI SDK inside litellm would retry twice on its own and litellm may retry too:
  both are switched off (``max_retries=0``, ``num_retries=0``) and ``retries`` counts here;
* transient errors (timeouts, connection errors, 408/409/429/5xx) are retried, then the
  next of ``fallbacks`` is tried; a stream that already produced text is never retried;
* ``max_tokens`` is always sent; keys are never logged and are scrubbed from messages.

litellm is imported on first use (about 6 s), with ``LITELLM_LOCAL_MODEL_COST_MAP=True``
so it does not fetch its price list from the internet.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Protocol, TypeVar

from rag.errors import GenerationError

__all__ = ["ChatModel", "LiteLLMChatModel", "Usage"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ChatModel(Protocol):
    """Turns chat messages into text, whole or streamed."""

    name: str

    def complete(self, messages: list[dict[str, str]]) -> str: ...

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]: ...


@dataclass(frozen=True)
class Usage:
    """Token counts the server reported for one answer."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_litellm: ModuleType | None = None
_import_lock = threading.Lock()


def _import_litellm() -> ModuleType:
    global _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True  # its hints would go to stdout per error
            litellm.telemetry = False
            _litellm = litellm
        return _litellm


_TRANSIENT_STATUS = {408, 409, 425, 429}
_HTTP_GRACE_S = 1.0
_SECRET_PATTERNS = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+)")


class _DeadlineExceeded(Exception):
    pass


class _AttemptError(Exception):
    """One failed attempt: ``transient`` says whether retrying the same model may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class LiteLLMChatModel:
    """Any litellm model, with a total deadline, retries and fallback models."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        fallbacks: Sequence[str] = (),
        timeout_s: float = 60.0,
        retries: int = 1,
        max_tokens: int = 512,
        temperature: float = 0.0,
    ) -> None:
        if not model:
            raise ValueError("model must be a litellm model string, e.g. 'ollama/llama3.1'")
        if timeout_s <= 0 or retries < 0 or max_tokens < 1:
            raise ValueError("timeout_s must be > 0, retries >= 0 and max_tokens >= 1")
        self.name = model
        self.models = (model, *fallbacks)
        self.api_base = api_base
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._local = threading.local()

    def __repr__(self) -> str:  # never show the key
        return f"LiteLLMChatModel(model={self.name!r}, api_base={self.api_base!r})"

    @property
    def last_usage(self) -> Usage | None:
        """Usage of this thread's last successful call (``None`` if the server sent none)."""
        usage: Usage | None = getattr(self._local, "usage", None)
        return usage

    @property
    def last_model(self) -> str:
        """The model (main or fallback) that produced this thread's last answer."""
        model: str = getattr(self._local, "model", self.name)
        return model

    # -- public API -------------------------------------------------------------------

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The whole reply; raises ``GenerationError`` when every model failed."""
        _import_litellm()  # seconds on first use: not part of the answer's budget
        deadline = time.monotonic() + self.timeout_s
        errors: list[str] = []
        skip: set[str] = set()
        for model, attempt in self._attempts(skip):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                errors.append("no time left in the time budget for another attempt")
                break
            try:
                response = _run_with_deadline(
                    partial(self._call, model, messages, remaining, stream=False), deadline
                )
                text = _message_text(response)
            except _DeadlineExceeded:
                errors.append(f"{model}: no reply within the time budget")
                break
            except _AttemptError as exc:
                errors.append(f"{model}: {exc}")
                self._log_failure(model, attempt, exc)
                if not exc.transient:
                    skip.add(model)
                self._pause(attempt, deadline)
                continue
            self._record(model, getattr(response, "usage", None))
            return text
        raise self._give_up(errors)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Reply pieces as they arrive; retries and fallbacks only before the first piece."""
        _import_litellm()
        deadline = time.monotonic() + self.timeout_s
        errors: list[str] = []
        skip: set[str] = set()
        for model, attempt in self._attempts(skip):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                errors.append("no time left in the time budget for another attempt")
                break
            pieces = _ThreadedStream(
                partial(self._call, model, messages, remaining, stream=True), self._classify
            )
            produced = False
            usage: Any = None
            try:
                for kind, value in pieces.items(deadline):
                    if kind == "usage":
                        usage = value
                    elif value:
                        produced = True
                        yield value
            except _DeadlineExceeded:
                errors.append(f"{model}: the answer did not finish within the time budget")
                break
            except _AttemptError as exc:
                errors.append(f"{model}: {exc}")
                self._log_failure(model, attempt, exc)
                if produced:
                    break  # text already went out; a retry would repeat it
                if not exc.transient:
                    skip.add(model)
                self._pause(attempt, deadline)
                continue
            finally:
                pieces.close()
            self._record(model, usage)
            return
        raise self._give_up(errors)

    # -- internals --------------------------------------------------------------------

    def _attempts(self, skip: set[str]) -> Iterator[tuple[str, int]]:
        """(model, attempt) pairs: each model up to ``retries + 1`` times, unless it failed
        permanently (bad request, auth; the caller adds it to ``skip``): then the next one."""
        for model in self.models:
            for attempt in range(self.retries + 1):
                if model in skip:
                    break
                yield model, attempt

    def _kwargs(self, model: str, timeout: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "timeout": timeout,
            "max_retries": 0,  # the OpenAI SDK's own retries would blow the budget
            "num_retries": 0,  # so would litellm's
            "drop_params": True,  # providers without e.g. stream_options just skip it
        }
        if self.api_base and _provider(model) == _provider(self.name):
            kwargs["api_base"] = self.api_base
            # OpenAI-compatible servers often need no key, but the SDK insists on one; never
            # fall back to OPENAI_API_KEY for a custom base (it would go to that server).
            kwargs["api_key"] = self._api_key or "no-key"
        elif self._api_key and model == self.name:
            kwargs["api_key"] = self._api_key
        return kwargs

    def _call(
        self, model: str, messages: list[dict[str, str]], timeout: float, *, stream: bool
    ) -> Any:
        litellm = _import_litellm()
        # The HTTP timeout sits a little past our deadline, so the deadline (checked by the
        # waiting thread) is what ends an attempt and the abandoned thread ends soon after.
        kwargs = self._kwargs(model, timeout + _HTTP_GRACE_S)
        if stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
        try:
            return litellm.completion(messages=messages, **kwargs)
        except Exception as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: Exception) -> _AttemptError:
        litellm = _import_litellm()
        status = getattr(exc, "status_code", None)
        transient = isinstance(
            exc,
            litellm.Timeout
            | litellm.APIConnectionError
            | litellm.RateLimitError
            | litellm.ServiceUnavailableError
            | litellm.InternalServerError
            | litellm.BadGatewayError,
        ) or (isinstance(status, int) and (status >= 500 or status in _TRANSIENT_STATUS))
        name = type(exc).__name__
        detail = self._scrub(str(exc).splitlines()[0] if str(exc) else "")[:300]
        label = f"{name} (HTTP {status})" if isinstance(status, int) else name
        return _AttemptError(f"{label}: {detail}" if detail else label, transient=transient)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return _SECRET_PATTERNS.sub("***", text)

    def _pause(self, attempt: int, deadline: float) -> None:
        """A short backoff that never eats the rest of the budget."""
        delay = min(0.25 * (2**attempt), 2.0, max(0.0, (deadline - time.monotonic()) / 4))
        time.sleep(delay)

    def _log_failure(self, model: str, attempt: int, exc: _AttemptError) -> None:
        log.warning("LLM %s attempt %d failed: %s", model, attempt + 1, exc)

    def _record(self, model: str, usage: Any) -> None:
        self._local.model = model
        self._local.usage = _usage(usage)

    def _give_up(self, errors: list[str]) -> GenerationError:
        summary = "; ".join(errors) if errors else "no attempt fitted in the time budget"
        return GenerationError(
            f"The language model failed ({summary}). Check RAG_LLM_MODEL / RAG_LLM_API_BASE, "
            f"that the server is up, or raise RAG_LLM_TIMEOUT_S (now {self.timeout_s:g} s)."
        )


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


def _message_text(response: Any) -> str:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise _AttemptError("the reply had no message", transient=True) from exc
    return str(content or "")


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


def _run_with_deadline(call: Callable[[], T], deadline: float) -> T:
    """Run ``call`` in a daemon thread and stop waiting at ``deadline``.

    The abandoned thread ends on its own: its HTTP timeout is the remaining budget.
    """
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def work() -> None:
        try:
            box.put((True, call()))
        except BaseException as exc:  # handed to the waiting thread, re-raised there
            box.put((False, exc))

    threading.Thread(target=work, name="llm-call", daemon=True).start()
    try:
        ok, value = box.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise _DeadlineExceeded from None
    if not ok:
        raise value
    result: T = value
    return result


class _ThreadedStream:
    """Reads a litellm stream on a daemon thread so the consumer can enforce a deadline."""

    def __init__(self, start: Callable[[], Any], classify: Callable[[Exception], Any]) -> None:
        self._classify = classify
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.name = "llm-stream"
        self._thread.start()

    def _run(self, start: Callable[[], Any]) -> None:
        try:
            self._response = start()
            for chunk in self._response:
                if self._stop.is_set():
                    break
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self._queue.put(("usage", usage))
                choices = getattr(chunk, "choices", None) or []
                text = (
                    getattr(getattr(choices[0], "delta", None), "content", None)
                    if choices
                    else None
                )
                if text:
                    self._queue.put(("text", text))
            self._queue.put(("end", None))
        except BaseException as exc:  # re-raised on the consumer's thread
            self._queue.put(("error", exc))

    def items(self, deadline: float) -> Iterator[tuple[str, Any]]:
        while True:
            try:
                kind, value = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise _DeadlineExceeded from None
            if kind == "end":
                return
            if kind == "error":
                if isinstance(value, _AttemptError):
                    raise value
                if isinstance(value, Exception):
                    raise self._classify(value) from value
                raise value
            yield kind, value

    def close(self) -> None:
        """Stop reading; closing the HTTP response unblocks a pending read where possible."""
        self._stop.set()
        inner = getattr(self._response, "completion_stream", None)
        for obj in (inner, self._response):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # best effort from another thread
                    log.debug("closing the LLM stream failed: %s", type(exc).__name__)
