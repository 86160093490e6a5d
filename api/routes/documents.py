"""Documents: list, read (text and chunks), add (JSON or file upload), delete."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ServiceDep
from api.routes import COMMON_ERRORS, responses
from api.schemas import (
    ChunkOut,
    DeleteResult,
    DocumentCreate,
    DocumentDetail,
    DocumentList,
    DocumentSummary,
    IngestResult,
)
from rag.ingest.loaders import SUPPORTED_SUFFIXES, document_from_text, documents_from_upload
from rag.service import RagService
from rag.types import Document

router = APIRouter(prefix="/v1", tags=["documents"], responses=COMMON_ERRORS)

MAX_FILES = 100
# Content types of uploads and the file name ending each is read as, for names without one.
UPLOAD_TYPES = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/html": ".html",
    "application/x-ndjson": ".jsonl",
    "application/jsonl": ".jsonl",
}
MAX_JSON_DOCUMENTS = 1000
_JSON_DOCS: TypeAdapter[DocumentCreate | list[DocumentCreate]] = TypeAdapter(
    DocumentCreate | list[DocumentCreate]
)


def _upload_body_schema() -> dict[str, Any]:
    single = DocumentCreate.model_json_schema()
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        single,
                        {
                            "type": "array",
                            "items": single,
                            "minItems": 1,
                            "maxItems": MAX_JSON_DOCUMENTS,
                        },
                    ]
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A text file: .txt, .md, .html or .jsonl (a document "
                            "a line), known by its name or its content type; repeat the field "
                            f"for more files (up to {MAX_FILES}).",
                        }
                    },
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": ", ".join(UPLOAD_TYPES)}},
            },
        },
    }


@router.get("/documents", response_model=DocumentList)
async def list_documents(
    service: ServiceDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentList:
    """Documents in the index, in id order."""
    infos = await run_in_threadpool(service.list_documents)
    infos.sort(key=lambda d: d.doc_id)
    page = infos[offset : offset + limit]
    return DocumentList(
        documents=[
            DocumentSummary(
                id=d.doc_id,
                title=d.title,
                url=d.url,
                published=d.published,
                source=d.source,
                sources=list(d.sources),
                chunks=d.chunks,
                chars=d.chars,
            )
            for d in page
        ],
        total=len(infos),
        offset=offset,
        limit=limit,
    )


def _detail(service: RagService, doc_id: str) -> DocumentDetail:
    doc = service.get_document(doc_id)
    chunks = service.get_chunks(doc_id)
    return DocumentDetail(
        id=doc.doc_id,
        title=doc.title,
        url=doc.url,
        published=doc.published,
        source=doc.source,
        sources=list(doc.sources),
        text=doc.text,
        chunks=[
            ChunkOut(chunk_id=c.chunk_id, ordinal=c.ordinal, start=c.start, end=c.end, text=c.text)
            for c in chunks
        ],
    )


@router.get("/documents/{doc_id:path}", response_model=DocumentDetail, responses=responses(404))
async def get_document(doc_id: str, service: ServiceDep) -> DocumentDetail:
    """A document's metadata, original text and its chunks (offsets into the text)."""
    return await run_in_threadpool(_detail, service, doc_id)


async def _documents_from_json(request: Request) -> list[Document]:
    raw = await request.body()
    try:
        parsed = _JSON_DOCS.validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    items = parsed if isinstance(parsed, list) else [parsed]
    # The OpenAPI schema states both limits (minItems, maxItems); these say them in words.
    if not items:
        raise HTTPException(422, "body: send a document object or a non-empty list of them")
    if len(items) > MAX_JSON_DOCUMENTS:
        raise HTTPException(422, f"body: at most {MAX_JSON_DOCUMENTS} documents per request")
    return await run_in_threadpool(_from_json_items, items)


def _from_json_items(items: list[DocumentCreate]) -> list[Document]:
    # Extracting metadata from the text (rag.ingest.cleaning) is CPU work: off the event loop.
    return [
        document_from_text(
            d.id,
            d.text,
            title=d.title,
            url=d.url,
            published=d.published.isoformat() if d.published else None,
            source=d.source,
        )
        for d in items
    ]


def _upload_name(filename: str | None, content_type: str | None) -> str:
    """The file name, with the ending of its content type when the name has no known one."""
    name = filename or "upload"
    kind = (content_type or "").split(";")[0].strip().lower()
    if PurePath(name).suffix.lower() not in SUPPORTED_SUFFIXES and kind in UPLOAD_TYPES:
        return name + UPLOAD_TYPES[kind]
    return name


async def _documents_from_form(request: Request) -> list[Document]:
    form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    try:
        # A part without a file name but with a text content type is a file as well.
        parts = [(k, v) for k, v in form.multi_items() if k == "file" or isinstance(v, UploadFile)]
        if not parts:
            raise HTTPException(422, "file: attach at least one file in the form field 'file'")
        found: list[Document] = []
        for _, part in parts:
            if isinstance(part, UploadFile):
                data = await part.read()
                name = _upload_name(part.filename, part.content_type)
            else:
                data, name = part.encode("utf-8", "replace"), "file.txt"
            found.extend(await run_in_threadpool(documents_from_upload, name, data))
        return found
    finally:
        await form.close()


@router.post(
    "/documents",
    status_code=201,
    response_model=IngestResult,
    responses={200: {"model": IngestResult, "description": "Nothing new"}, **responses(415)},
    openapi_extra={"requestBody": _upload_body_schema()},
)
async def add_documents(request: Request, service: ServiceDep) -> JSONResponse:
    """Add or replace documents (JSON, or a multipart upload); searchable on return.

    201 when a document was added, 200 when all were updated or unchanged.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        docs = await _documents_from_json(request)
    elif content_type == "multipart/form-data":
        docs = await _documents_from_form(request)
    else:
        raise HTTPException(
            415, "send application/json (one document or a list) or multipart/form-data (files)"
        )
    report = await run_in_threadpool(service.add_documents, docs)
    if report.skipped and not (report.added or report.updated or report.unchanged):
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
        raise HTTPException(422, f"no document could be ingested: {reasons}")
    result = IngestResult.of(report)
    return JSONResponse(result.model_dump(mode="json"), status_code=201 if report.added else 200)


@router.delete("/documents/{doc_id:path}", response_model=DeleteResult, responses=responses(404))
async def delete_document(doc_id: str, service: ServiceDep) -> DeleteResult:
    """Delete a document and its passages."""
    await run_in_threadpool(service.delete_document, doc_id)
    return DeleteResult(deleted=doc_id)
