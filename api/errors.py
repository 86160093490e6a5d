"""One JSON error shape for every failure, and the handlers that produce it.

Every error body is ``{"error": {"type", "message", "param"?}}`` (OpenAI's shape, so OpenAI
clients show our messages). Library errors map to status codes here, in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from rag.errors import (
    ConfigError,
    DocumentNotFoundError,
    GenerationError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IngestError,
    RagError,
)

log = logging.getLogger(__name__)

# status, error type; the first matching class wins (subclasses before bases).
_RAG_ERRORS: tuple[tuple[type[RagError], int, str], ...] = (
    (DocumentNotFoundError, 404, "not_found"),
    (IndexBusyError, 503, "index_busy"),
    (IngestError, 422, "invalid_document"),
    (GenerationError, 502, "generation_failed"),
    (IndexNotFoundError, 503, "index_not_ready"),
    (IndexMismatchError, 500, "index_mismatch"),
    (IndexCorruptError, 500, "index_corrupt"),
    (ConfigError, 500, "config_error"),
)

_HTTP_TYPES = {
    400: "invalid_request",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}

# An absolute file path (two or more components, not an API path like /v1/ask) in a message:
# the server's file layout stays private.
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?!v1/)(?:[^\s/'\"`]+/)+([^\s/'\"`]*)")


def scrub_paths(message: str) -> str:
    """Replace absolute file paths by their last component."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "…", message)


def error_body(error_type: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if param is not None:
        error["param"] = param
    return {"error": error}


def error_response(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON response every failure of this API is sent as."""
    kind = error_type or _HTTP_TYPES.get(status, "server_error" if status >= 500 else "error")
    return JSONResponse(error_body(kind, message, param), status_code=status, headers=headers)


def rag_error_status(exc: RagError) -> tuple[int, str]:
    for cls, status, kind in _RAG_ERRORS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "server_error"


def _location(loc: Sequence[int | str]) -> str:
    """``("body", "filters", "doc_ids", 0)`` -> ``filters.doc_ids[0]``."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or str(loc[0] if loc else "body")


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """A readable message saying which fields are wrong and how to fix them."""
    lines = []
    for err in errors[:10]:
        where = _location(err.get("loc", ()))
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid value"))
        if kind == "extra_forbidden":
            msg = "unknown field; remove it (see /docs for the accepted fields)"
        elif kind == "missing":
            msg = "field required"
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == r"\S":
            msg = "must contain text, not only whitespace"
        elif kind == "json_invalid":
            where = "body"
            msg = f"invalid JSON ({err.get('ctx', {}).get('error', 'syntax error')})"
        lines.append(f"{where}: {msg}")
    if len(errors) > 10:
        lines.append(f"... and {len(errors) - 10} more")
    first = _location(errors[0].get("loc", ())) if errors else None
    return "; ".join(lines) or "invalid request", first


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param = validation_message(exc.errors())
    return error_response(422, message, param=param)


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path}; see /docs for the endpoints"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette lists the methods of the first matching route only; list them all.
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, detail, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts for this request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "\x00"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _rag_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagError)
    status, kind = rag_error_status(exc)
    if status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    headers = {"Retry-After": "5"} if status == 503 else None
    return error_response(status, scrub_paths(str(exc)), error_type=kind, headers=headers)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's ServerErrorMiddleware calls this (and re-raises for the server's log).
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through ``error_response``."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(RagError, _rag_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
