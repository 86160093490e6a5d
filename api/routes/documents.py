"""Documents: list, read (text and chunks), add (JSON or file upload), delete."""

from __future__ import annotations

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
from rag.ingest.loaders import document_from_text, documents_from_upload
from rag.service import RagService
from rag.types import Document

router = APIRouter(prefix="/v1", tags=["documents"], responses=COMMON_ERRORS)

MAX_FILES = 100
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
                        {"type": "array", "items": single, "maxItems": MAX_JSON_DOCUMENTS},
                    ]
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Files: .txt, .md, .html or .jsonl (a document a line).",
                        }
                    },
                    "required": ["file"],
                }
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


async def _documents_from_form(request: Request) -> list[Document]:
    form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    try:
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not uploads:
            raise HTTPException(422, "file: attach at least one file in the form field 'file'")
        found: list[Document] = []
        for upload in uploads:
            data = await upload.read()
            name = upload.filename or "upload.txt"
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
