"""``GET /v1/passages/{chunk_id}``: what a citation link opens (HTML, or JSON on request)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ServiceDep
from api.passage_page import CSP, render_passage
from api.routes import COMMON_ERRORS, responses
from api.schemas import PassageView, Span
from rag.service import RagService
from rag.types import Chunk, Document

router = APIRouter(prefix="/v1", tags=["passages"], responses=COMMON_ERRORS)

# Chunk ids are below 2**53 (safe in JavaScript); larger values cannot exist.
MAX_CHUNK_ID = 2**53 - 1


def _wants_json(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _load(service: RagService, chunk_id: int) -> tuple[Chunk, Document]:
    chunk = service.get_chunk(chunk_id)
    return chunk, service.get_document(chunk.doc_id)


_START = (
    "Quote start (document offset); `start` and `end` highlight the quote when "
    "start < end <= the document's length, otherwise the passage shows without one."
)


@router.get(
    "/passages/{chunk_id}",
    response_model=PassageView,
    responses={
        200: {
            "description": "The document with the passage (and quote) highlighted.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **responses(404),
    },
)
async def get_passage(
    request: Request,
    service: ServiceDep,
    chunk_id: Annotated[int, Path(ge=0, le=MAX_CHUNK_ID)],
    start: Annotated[int | None, Query(ge=0, description=_START)] = None,
    end: Annotated[int | None, Query(ge=0, description="Quote end (document offset).")] = None,
    format: Annotated[
        Literal["html", "json"] | None, Query(description="Default: by Accept.")
    ] = None,
    token: Annotated[str | None, Query(description="Link signature (set by this server).")] = None,
) -> PassageView | HTMLResponse:
    """The passage in its document; ``start``/``end`` highlight a quote inside it."""
    chunk, document = await run_in_threadpool(_load, service, chunk_id)
    quote: tuple[int, int] | None = None
    # A link is not an edit: a range that does not fit the document just highlights nothing.
    if start is not None and end is not None and start < end <= len(document.text):
        quote = (start, end)
    if _wants_json(request, format):
        return PassageView(
            chunk_id=chunk.chunk_id,
            doc_id=document.doc_id,
            title=document.title,
            url=document.url,
            published=document.published,
            source=document.source,
            text=document.text,
            passage=Span(start=chunk.start, end=chunk.end, text=chunk.text),
            quote=Span(start=quote[0], end=quote[1], text=document.text[quote[0] : quote[1]])
            if quote
            else None,
        )
    lang = "en" if request.headers.get("accept-language", "").lower().startswith("en") else "de"
    page = render_passage(document, chunk, quote, lang=lang)
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
