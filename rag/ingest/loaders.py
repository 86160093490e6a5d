"""Load documents from files, directories, uploads and plain text.

Formats: ``.txt`` and ``.md`` (the text as is), ``.html``/``.htm`` (main content extracted by
trafilatura; the extracted text is the document text) and ``.jsonl`` (one document per line with
``id``, ``title``, ``text``, ``url``, ``published``, ``source``). ``Document.text`` is never
altered after decoding: chunk offsets point into it. Metadata the caller does not give is taken
from the text by ``rag.ingest.cleaning.clean``.

Text files are read as UTF-8 (a BOM is dropped); bytes that are not UTF-8 are read as
Windows-1252 when that yields printable text, since older German pages use it. Files with NUL
bytes are binary and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from rag.errors import IngestError
from rag.ingest.cleaning import clean
from rag.ingest.dates import parse_date
from rag.types import Document

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LoadResult",
    "Skipped",
    "document_from_text",
    "documents_from_upload",
    "iter_documents",
    "list_files",
    "load_documents",
    "load_file",
]

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".jsonl"})
_MAX_ID_LENGTH = 200
_CONTROL_OK = frozenset("\t\n\r\f")


@dataclass(frozen=True)
class Skipped:
    """A file (or a line of a ``.jsonl`` file: ``path:line``) that was not loaded, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class LoadResult:
    """The documents that loaded and the inputs that were skipped."""

    documents: list[Document]
    skipped: list[Skipped]


def load_documents(paths: Sequence[Path]) -> LoadResult:
    """Load files and directories (recursively, in sorted order); report what was skipped."""
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for item in iter_documents(paths):
        if isinstance(item, Skipped):
            skipped.append(item)
        else:
            documents.append(item)
    return LoadResult(documents, skipped)


def iter_documents(paths: Sequence[Path]) -> Iterator[Document | Skipped]:
    """Stream documents (and skips) from files and directories, like ``load_documents``.

    Files in directories with an unsupported suffix, and hidden files, are ignored silently;
    a file named explicitly with an unsupported suffix is reported. A ``doc_id`` seen before
    (two files with the same stem) is reported and skipped.
    """
    seen: dict[str, str] = {}
    for path in paths:
        for file, explicit in _expand(Path(path)):
            for location, item in _load_file(file, explicit):
                if isinstance(item, Document):
                    if item.doc_id in seen:
                        first = seen[item.doc_id]
                        item = Skipped(location, f"duplicate doc_id {item.doc_id!r} (as {first})")
                    else:
                        seen[item.doc_id] = location
                yield item


def list_files(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """The files ``iter_documents`` reads, in its order, each with whether it was named."""
    return [item for path in paths for item in _expand(Path(path))]


def load_file(path: Path, explicit: bool) -> list[Document | Skipped]:
    """One file's documents and skips (no check for ids seen in other files)."""
    return [item for _, item in _load_file(path, explicit)]


def _expand(path: Path) -> Iterator[tuple[Path, bool]]:
    if path.is_dir():
        files = (
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        for file in sorted(files, key=lambda p: p.relative_to(path).parts):
            if file.suffix.lower() in SUPPORTED_SUFFIXES:
                yield file, False
    else:
        yield path, True


def _load_file(path: Path, explicit: bool) -> Iterator[tuple[str, Document | Skipped]]:
    """``(location, document or skip)`` for one file; location is ``path`` or ``path:line``."""
    where = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        if explicit:
            reason = "no such file or directory" if not path.exists() else "unsupported file type"
            yield where, Skipped(where, f"{reason} ({suffix or 'no suffix'})")
        return
    try:
        if suffix == ".jsonl":
            # Line by line, so that big corpora stream instead of being read whole.
            with path.open("rb") as handle:
                for line_no, result in _jsonl_records(handle, path.stem):
                    at = f"{path}:{line_no}"
                    if isinstance(result, Document):
                        yield at, _with_path(result, path)
                    else:
                        yield at, Skipped(at, result)
            return
        data = path.read_bytes()
        yield where, _with_path(_parse_single(path.stem, suffix, data), path)
    except OSError as exc:
        yield where, Skipped(where, f"cannot read: {exc.strerror or exc}")
    except IngestError as exc:
        yield where, Skipped(where, str(exc))


def _with_path(doc: Document, path: Path) -> Document:
    return Document(
        doc_id=doc.doc_id,
        text=doc.text,
        title=doc.title,
        url=doc.url,
        published=doc.published,
        source=doc.source,
        sources=doc.sources,
        path=str(path),
    )


def documents_from_upload(filename: str, data: bytes) -> list[Document]:
    """Documents from an uploaded file (txt, md, html, jsonl); bad input raises IngestError."""
    name = PurePath(filename.replace("\\", "/")).name
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        allowed = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise IngestError(f"{name!r}: unsupported file type {suffix or '(none)'!r}; use {allowed}")
    if not data.strip():
        raise IngestError(f"{name!r} is empty")
    if suffix != ".jsonl":
        return [_parse_single(PurePath(name).stem, suffix, data)]
    documents: list[Document] = []
    ids: set[str] = set()
    for line_no, result in _jsonl_records(data.splitlines(), PurePath(name).stem):
        if isinstance(result, str):
            raise IngestError(f"{name!r} line {line_no}: {result}")
        if result.doc_id in ids:
            raise IngestError(f"{name!r} line {line_no}: duplicate id {result.doc_id!r}")
        ids.add(result.doc_id)
        documents.append(result)
    if not documents:
        raise IngestError(f"{name!r} holds no documents")
    return documents


def document_from_text(
    doc_id: str,
    text: str,
    *,
    title: str | None = None,
    url: str | None = None,
    published: str | None = None,
    source: str | None = None,
) -> Document:
    """A document from plain text; metadata not given is extracted from the text."""
    doc_id = _check_id(doc_id)
    if not text.strip():
        raise IngestError(f"document {doc_id!r} has no text")
    cleaned = clean(text, title=title)
    if not cleaned.content:
        raise IngestError(
            f"document {doc_id!r} has no article text (only a headline or page chrome)"
        )
    if published and parse_date(published) is None:
        raise IngestError(f"document {doc_id!r}: published {published!r} is not a date")
    return Document(
        doc_id=doc_id,
        text=text,
        title=cleaned.title or doc_id,
        url=url or None,
        published=parse_date(published) if published else cleaned.published,
        source=source or cleaned.publisher,
        sources=cleaned.sources,
    )


def _check_id(doc_id: str) -> str:
    doc_id = doc_id.strip()
    if not doc_id:
        raise IngestError("document id is empty")
    if len(doc_id) > _MAX_ID_LENGTH or any(ord(c) < 32 for c in doc_id):
        raise IngestError(
            f"document id {doc_id[:40]!r} is invalid: at most {_MAX_ID_LENGTH} characters, "
            "no control characters"
        )
    return doc_id


def _parse_single(doc_id: str, suffix: str, data: bytes) -> Document:
    if suffix in (".html", ".htm"):
        return _from_html(doc_id, data)
    return document_from_text(doc_id, _decode(data))


def _decode(data: bytes) -> str:
    """UTF-8 text, or Windows-1252 text as a fallback; binary data raises IngestError."""
    if b"\x00" in data:
        raise IngestError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = f"not UTF-8 (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise IngestError(f"{utf8_error} and not Windows-1252 text") from None
    if any(ord(c) < 32 and c not in _CONTROL_OK for c in text):
        raise IngestError(f"{utf8_error}; control characters suggest a binary file")
    return text


def _from_html(doc_id: str, data: bytes) -> Document:
    import trafilatura  # imported late: it takes ~1 s and only HTML needs it

    if b"\x00" in data:
        raise IngestError("binary file (contains NUL bytes)")
    try:
        result = trafilatura.bare_extraction(
            data, with_metadata=True, include_comments=False, include_tables=True
        )
    except (ValueError, TypeError) as exc:  # malformed markup trafilatura cannot parse
        raise IngestError(f"cannot parse HTML: {exc}") from exc
    if result is None:
        extracted: dict[str, Any] = {}
    else:
        extracted = result if isinstance(result, dict) else result.as_dict()
    # trafilatura puts one paragraph (or heading, list item) per line; blank lines between
    # them give the cleaner and the chunker the paragraph structure of plain-text articles.
    lines = (line.strip() for line in (extracted.get("text") or "").splitlines())
    text = "\n\n".join(line for line in lines if line)
    if not text:
        raise IngestError("no article text found in the HTML page")
    date = extracted.get("date")
    return document_from_text(
        doc_id,
        text,
        title=extracted.get("title") or None,
        url=extracted.get("url") or None,
        published=date if date and parse_date(date) else None,
        source=extracted.get("sitename") or extracted.get("hostname") or None,
    )


def _jsonl_records(lines: Iterable[bytes], stem: str) -> Iterator[tuple[int, Document | str]]:
    """Each line of a JSON Lines file: a Document, or a reason why the line was skipped."""
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(_decode(raw))
        except IngestError as exc:
            yield line_no, str(exc)
            continue
        except json.JSONDecodeError as exc:
            yield line_no, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        try:
            yield line_no, _from_record(record, f"{stem}-{line_no}")
        except IngestError as exc:
            yield line_no, str(exc)


def _from_record(record: object, default_id: str) -> Document:
    if not isinstance(record, dict):
        raise IngestError("a line must be a JSON object")
    fields: dict[str, str | None] = {}
    for key in ("id", "title", "text", "url", "published", "source"):
        value = record.get(key)
        if value is not None and not isinstance(value, str | int):
            raise IngestError(f"field {key!r} must be a string")
        fields[key] = None if value is None else str(value)
    text = fields["text"]
    if not text or not text.strip():
        raise IngestError("field 'text' is missing or empty")
    published = fields["published"]
    return document_from_text(
        fields["id"] or default_id,
        text,
        title=fields["title"] or None,
        url=fields["url"],
        published=published if published and parse_date(published) else None,
        source=fields["source"],
    )
