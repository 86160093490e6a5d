"""``POST /v1/ask`` (JSON or server-sent events) and ``POST /v1/search``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from api.deps import LinksDep, RuntimeDep, ServiceDep, SettingsDep
from api.errors import error_body, rag_error_status, scrub_paths
from api.routes import COMMON_ERRORS, event_stream, responses
from api.schemas import (
    AskRequest,
    AskResponse,
    CitationOut,
    PassageOut,
    SearchRequest,
    SearchResponse,
    Timings,
)
from rag.config import Settings
from rag.errors import RagError
from rag.types import AnswerEvent, CitationsEvent, DeltaEvent, DoneEvent, PassagesEvent

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["questions"], responses=COMMON_ERRORS)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def check_length(text: str, settings: Settings, field: str) -> None:
    """422 for a question over ``max_question_chars`` (a per-deployment limit)."""
    limit = settings.max_question_chars
    if len(text) > limit:
        raise HTTPException(
            422, f"{field}: too long ({len(text)} characters); shorten it to at most {limit}"
        )


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def first_and_rest(events: Iterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
    """Pull the first event now, so errors before any output still get their HTTP status."""
    first = await run_in_threadpool(next, events, None)

    async def chained() -> AsyncIterator[AnswerEvent]:
        if first is not None:
            yield first
        async for event in iterate_in_threadpool(events):
            yield event

    return chained()


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={
        200: event_stream(
            "The answer; with `stream: true` server-sent events: `passages`, `delta`*, "
            "`citations`, `done` (the whole answer, as without streaming), or `error`.",
            ["passages", "delta", "citations", "done", "error"],
        ),
        **responses(502),
    },
)
async def ask(
    body: AskRequest,
    service: ServiceDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    links: LinksDep,
) -> AskResponse | StreamingResponse:
    """Answer a question from the corpus with checked citations."""
    check_length(body.question, settings, "question")
    kwargs: dict[str, Any] = {
        "top_k": min(body.top_k, settings.max_top_k),
        "filters": body.filters.to_filters() if body.filters else None,
        "history": [t.to_turn() for t in body.history],
    }
    if not body.stream:
        answer = await run_in_threadpool(service.ask, body.question, **kwargs)
        runtime.metrics.observe_timings(answer.timings_ms, abstained=answer.abstained)
        return AskResponse.of(answer, runtime.model_info(), links.passage)

    events = await first_and_rest(service.ask_stream(body.question, **kwargs))

    async def stream() -> AsyncIterator[str]:
        try:
            async for event in events:
                if isinstance(event, PassagesEvent):
                    passages = [
                        PassageOut.of(h, links.passage).model_dump() for h in event.passages
                    ]
                    yield sse(
                        "passages",
                        {"passages": passages, "standalone_question": event.standalone_question},
                    )
                elif isinstance(event, DeltaEvent):
                    yield sse("delta", {"text": event.text})
                elif isinstance(event, CitationsEvent):
                    cites = [CitationOut.of(c, links.passage).model_dump() for c in event.citations]
                    yield sse("citations", {"citations": cites})
                elif isinstance(event, DoneEvent):
                    answer = event.answer
                    runtime.metrics.observe_timings(answer.timings_ms, abstained=answer.abstained)
                    done = AskResponse.of(answer, runtime.model_info(), links.passage)
                    yield sse("done", done.model_dump(mode="json"))
        except RagError as exc:
            # Headers are sent already: report the failure as the stream's last event.
            _, kind = rag_error_status(exc)
            log.warning("streamed answer failed: %s", exc)
            yield sse("error", error_body(kind, scrub_paths(str(exc))))
        except Exception:
            log.exception("streamed answer failed")
            yield sse("error", error_body("server_error", "internal server error"))

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/search", response_model=SearchResponse)
async def search(
    body: SearchRequest,
    service: ServiceDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    links: LinksDep,
) -> SearchResponse:
    """Ranked passages for a query, without an answer."""
    check_length(body.query, settings, "query")
    started = time.perf_counter()
    hits = await run_in_threadpool(
        service.search,
        body.query,
        top_k=min(body.top_k, settings.max_top_k),
        filters=body.filters.to_filters() if body.filters else None,
    )
    retrieve_ms = (time.perf_counter() - started) * 1000
    runtime.metrics.observe_timings({"retrieve": retrieve_ms})
    return SearchResponse(
        query=body.query,
        passages=[PassageOut.of(h, links.passage) for h in hits],
        timings_ms=Timings(retrieve=retrieve_ms, total=retrieve_ms),
    )
