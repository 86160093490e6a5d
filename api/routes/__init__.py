"""Thin route handlers, one module per topic; ``responses()`` documents their errors."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorResponse

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported content type",
    422: "Invalid request: the message names the field and what to fix",
    429: "Rate limit exceeded (see Retry-After)",
    500: "Server misconfiguration (e.g. index built with another model)",
    502: "The language model failed",
    503: "Index busy or still loading (see Retry-After)",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, all with the ``ErrorResponse`` body."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


# Every protected route can answer these (middleware and validation).
COMMON_ERRORS = responses(400, 401, 413, 422, 429, 500, 503)


def event_stream(description: str, events: list[str] | None = None) -> dict[str, Any]:
    """OpenAPI entry of a text/event-stream answer; ``schema`` describes one event."""
    event: dict[str, Any] = {"type": "string"}
    if events:
        event["enum"] = events
    return {
        "description": description,
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "required": ["data"] + (["event"] if events else []),
                    "properties": {
                        "event": event,
                        "data": {"type": "string", "contentMediaType": "application/json"},
                    },
                }
            }
        },
    }
