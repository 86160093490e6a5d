"""Protection in front of the routes: body size limit, API keys, rate limit per client.

These are plain ASGI middlewares so they act before FastAPI reads a body: an oversized
upload is refused from its ``Content-Length`` (or while it streams in), and a request
without a valid key never gets parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

# Reachable without a key: the chat page, its assets, health probes and the API docs.
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/static/",)
_PASSAGE_PATH = re.compile(r"^/v1/passages/(\d+)$")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path == "/favicon.ico"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: from Content-Length at once, else while reading."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body too large; the limit is {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                response = error_response(400, "invalid Content-Length header")
                await response(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                # Answer without reading the body; the server closes the connection.
                response = error_response(413, self._too_large(), headers={"Connection": "close"})
                await response(scope, receive, send)
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body parsing; handlers answer 413.
                    raise HTTPException(413, self._too_large())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            response = error_response(413, str(exc.detail), headers={"Connection": "close"})
            await response(scope, receive, send)


# The limit when none is set: a person in a chat frontend sends a few requests a minute, so
# 120 only stops floods; scripts on the server's own machine are not limited unless keys are set.
DEFAULT_RATE_LIMIT = 120
_LOOPBACK = ("127.", "::1", "localhost")


def rate_policy(per_minute: int | None, has_keys: bool) -> tuple[int, bool]:
    """(requests per minute, whether loopback clients count too) for a configured limit."""
    if per_minute is None:
        return DEFAULT_RATE_LIMIT, has_keys
    return per_minute, True


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per client: ``per_minute`` requests, refilled continuously.

    With ``workers`` API processes each holds ``1/workers`` of the bucket and its refill, so
    all together allow ``per_minute`` (at least one burst request per worker); a client whose
    requests crowd onto one worker is limited a little early (connections are spread by the
    kernel, not evenly).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute / workers)  # at least one request fits
        self.rate = per_minute / 60.0 / workers
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def hit(self, client: str) -> float:
        """Take one token; returns 0 if allowed, else the seconds until one is available."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._prune(now)
            bucket = self._buckets[client] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket has refilled (they are indistinguishable from new ones)."""
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_clients:  # all busy: drop the oldest half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[
                : self.max_clients // 2
            ]:
                del self._buckets[key]


class PassageSigner:
    """Signs citation links so they open without a key (a browser tab sends no header)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._secrets = [hashlib.sha256(b"passage-link:" + k.encode()).digest() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._secrets)

    def _sign(self, secret: bytes, chunk_id: int, start: int | None, end: int | None) -> str:
        message = f"{chunk_id}:{'' if start is None else start}:{'' if end is None else end}"
        return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, chunk_id: int, start: int | None = None, end: int | None = None) -> str | None:
        return self._sign(self._secrets[0], chunk_id, start, end) if self._secrets else None

    def verify(self, path: str, query_string: str) -> bool:
        match = _PASSAGE_PATH.match(path)
        if match is None:
            return False
        query = parse_qs(query_string)
        token = query.get("token", [""])[0]
        try:
            start = int(query["start"][0]) if "start" in query else None
            end = int(query["end"][0]) if "end" in query else None
        except ValueError:
            return False
        chunk_id = int(match.group(1))
        return any(
            hmac.compare_digest(token, self._sign(s, chunk_id, start, end)) for s in self._secrets
        )


class AccessMiddleware:
    """Bearer API keys (when configured) and the per-client rate limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Sequence[str],
        limiter: RateLimiter | None,
        signer: PassageSigner,
        limit_loopback: bool = True,
    ) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.limiter = limiter
        self.limit_loopback = limit_loopback
        self.signer = signer

    def _key_ok(self, token: str | None) -> bool:
        if token is None:
            return False
        given = token.encode()
        # Compare with every key so timing does not reveal which one almost matched.
        return sum(hmac.compare_digest(given, k) for k in self.keys) > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or is_public(path):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if self.keys and not self._key_ok(token):
            signed = scope["method"] in ("GET", "HEAD") and self.signer.verify(
                path, scope.get("query_string", b"").decode("latin-1")
            )
            if not signed:
                message = (
                    "invalid API key"
                    if token
                    else "missing API key; send 'Authorization: Bearer KEY'"
                )
                response = error_response(401, message, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        host = str((scope.get("client") or ("unknown", 0))[0])
        if self.limiter is not None and (self.limit_loopback or not host.startswith(_LOOPBACK)):
            if token is not None and self.keys:
                client = "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
            else:
                client = "ip:" + host
            wait = self.limiter.hit(client)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                response = error_response(
                    429,
                    f"rate limit of {self.limiter.per_minute} requests per minute exceeded; "
                    f"retry in {retry} s (the server's RAG_RATE_LIMIT_PER_MINUTE sets the "
                    "limit, 0 turns it off)",
                    headers={"Retry-After": str(retry)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
