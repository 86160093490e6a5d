"""Request and response shapes of the native API (separate from the library's types)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
)

from rag.types import Answer, Citation, Filters, Hit, Location, Turn

if TYPE_CHECKING:
    from rag.store.index import IngestReport

# ---------------------------------------------------------------------------------------
# Input text


def clean_text(value: str) -> str:
    """Replace lone surrogates (valid JSON, invalid Unicode) so storage and models never choke."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _iso_date_text(value: object) -> object:
    # Lax pydantic would read 0 as 1970-01-01; a date must be written as one.
    if not isinstance(value, str | date):
        raise ValueError("use an ISO date string like 2025-02-12")
    return value


CleanStr = Annotated[str, AfterValidator(clean_text)]
# "Not only whitespace" as a pattern, so the OpenAPI schema says it too.
# Written out so that every regex engine agrees (ECMA's \s lacks U+0085, Python's strip()
# also removes U+001C-U+001F): one character that is neither blank nor a separator.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
# A letter (any script): text without one is only numbers and punctuation, i.e. page chrome.
HAS_LETTER = r"[^\W\d_]"
Question = Annotated[str, Field(min_length=1, pattern=NOT_BLANK), AfterValidator(clean_text)]
IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]


class StrictModel(BaseModel):
    """Requests: unknown fields are errors (a typo should not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class FiltersIn(StrictModel):
    """Restrict retrieval; the fields combine with AND."""

    doc_ids: list[CleanStr] = Field(
        default_factory=list, max_length=1000, description="Only these documents."
    )
    sources: list[CleanStr] = Field(
        default_factory=list, max_length=100, description="Only these publishers/sites."
    )
    published_from: IsoDate | None = Field(None, description="Published on or after (ISO date).")
    # A range that ends before it starts is valid and matches nothing, like an unknown doc id.
    published_to: IsoDate | None = Field(None, description="Published on or before (ISO date).")

    def to_filters(self) -> Filters:
        return Filters(
            doc_ids=tuple(self.doc_ids),
            sources=tuple(self.sources),
            published_from=self.published_from.isoformat() if self.published_from else None,
            published_to=self.published_to.isoformat() if self.published_to else None,
        )


class TurnIn(StrictModel):
    role: Literal["user", "assistant"]
    content: CleanStr = Field(max_length=50_000)

    def to_turn(self) -> Turn:
        return Turn(role=self.role, content=self.content)


def whole_number(value: object) -> object:
    # JSON Schema's "integer" includes 18.0; strings and booleans stay errors (StrictInt).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Constraints go before the validator: after it they would leave the OpenAPI schema.
TopK = Annotated[
    int,
    Strict(),
    Field(ge=1, le=50, description="Passages to retrieve (capped by RAG_MAX_TOP_K)."),
    BeforeValidator(whole_number),
]


class AskRequest(StrictModel):
    question: Question = Field(
        description="The question, German or English.",
        examples=["Wann war das erste Telefonat zwischen Trump und Putin?"],
    )
    top_k: TopK = 5
    filters: FiltersIn | None = None
    history: list[TurnIn] = Field(
        default_factory=list, max_length=50, description="Earlier turns, oldest first."
    )
    stream: StrictBool = Field(
        False, description="Send server-sent events: passages, delta*, citations, done."
    )


class SearchRequest(StrictModel):
    query: Question = Field(description="Search text.", examples=["Gipfeltreffen Trump Putin"])
    top_k: TopK = 5
    filters: FiltersIn | None = None


class DocumentCreate(StrictModel):
    """One document as JSON; ``text`` is kept verbatim (citation offsets point into it)."""

    id: CleanStr = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\s\x00-\x1f\x85](?:[^\x00-\x1f]*[^\s\x00-\x1f\x85])?$",
        description="Unique id; no control characters, no blanks at either end.",
    )
    text: CleanStr = Field(
        min_length=1,
        pattern=HAS_LETTER,
        description="The article text; a text of only numbers, links or page chrome is refused.",
    )
    title: CleanStr | None = Field(None, max_length=1000)
    url: CleanStr | None = Field(None, max_length=2000)
    published: IsoDate | None = None
    source: CleanStr | None = Field(None, max_length=200)


# ---------------------------------------------------------------------------------------
# Output


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    """Every error of this API."""

    error: ErrorDetail


class LocationOut(BaseModel):
    doc_id: str
    chunk_id: int
    start: int
    end: int
    title: str

    @classmethod
    def of(cls, loc: Location) -> LocationOut:
        return cls(
            doc_id=loc.doc_id, chunk_id=loc.chunk_id, start=loc.start, end=loc.end, title=loc.title
        )


class PassageOut(BaseModel):
    """A retrieved passage; ``start``/``end`` are offsets into the document's original text."""

    chunk_id: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    url: str | None = None
    published: str | None = None
    source: str | None = None
    dense_score: float | None = None
    lexical_score: float | None = None
    duplicates: list[LocationOut] = Field(default_factory=list)
    passage_url: str = Field(description="This server's view of the passage in its document.")

    @classmethod
    def of(cls, hit: Hit, link: Callable[[int, int | None, int | None], str]) -> PassageOut:
        c = hit.chunk
        return cls(
            chunk_id=c.chunk_id,
            doc_id=c.doc_id,
            title=hit.title,
            start=c.start,
            end=c.end,
            text=c.text,
            score=hit.score,
            url=hit.url,
            published=hit.published,
            source=hit.source,
            dense_score=hit.dense_score,
            lexical_score=hit.lexical_score,
            duplicates=[LocationOut.of(d) for d in hit.duplicates],
            passage_url=link(c.chunk_id, None, None),
        )


class CitationOut(BaseModel):
    """A checked citation: ``quote == document.text[start:end]``."""

    number: int = Field(description="The marker [n] in the answer text.")
    doc_id: str
    chunk_id: int
    title: str
    quote: str
    start: int
    end: int
    score: float
    supported: bool
    url: str | None = Field(None, description="The document's original URL, if known.")
    source: str | None = None
    published: str | None = None
    passage_url: str = Field(description="Opens the cited paragraph, quote highlighted.")

    @classmethod
    def of(cls, c: Citation, link: Callable[[int, int | None, int | None], str]) -> CitationOut:
        return cls(
            number=c.number,
            doc_id=c.doc_id,
            chunk_id=c.chunk_id,
            title=c.title,
            quote=c.quote,
            start=c.start,
            end=c.end,
            score=c.score,
            supported=c.supported,
            url=c.url,
            source=c.source,
            published=c.published,
            passage_url=link(c.chunk_id, c.start, c.end),
        )


class ModelInfo(BaseModel):
    embedding: str
    llm: str


class Timings(BaseModel):
    """Milliseconds per stage; further stages may appear."""

    model_config = ConfigDict(extra="allow")

    retrieve: float = 0.0
    generate: float = 0.0
    total: float = 0.0


class AskResponse(BaseModel):
    answer: str = Field(description="Answer text with [n] markers (or the abstention message).")
    abstained: bool
    reason: Literal["no_passages", "low_relevance", "unsupported"] | None = None
    message: str | None = Field(None, description="Why nothing was answered, when abstained.")
    language: str
    standalone_question: str = Field(description="The question as retrieved (history resolved).")
    citations: list[CitationOut]
    passages: list[PassageOut]
    model: ModelInfo
    timings_ms: Timings

    @classmethod
    def of(
        cls, answer: Answer, model: ModelInfo, link: Callable[[int, int | None, int | None], str]
    ) -> AskResponse:
        timings: dict[str, Any] = {"retrieve": 0.0, "generate": 0.0, "total": 0.0}
        timings.update(answer.timings_ms)
        return cls(
            answer=answer.text,
            abstained=answer.abstained,
            reason=answer.reason,
            message=answer.text if answer.abstained else None,
            language=answer.language,
            standalone_question=answer.standalone_question or answer.question,
            citations=[CitationOut.of(c, link) for c in answer.citations],
            passages=[PassageOut.of(h, link) for h in answer.passages],
            model=model,
            timings_ms=Timings(**timings),
        )


class SearchResponse(BaseModel):
    query: str
    passages: list[PassageOut]
    timings_ms: Timings


class DocumentSummary(BaseModel):
    id: str
    title: str
    url: str | None
    published: str | None
    source: str | None
    sources: list[str]
    chunks: int
    chars: int


class DocumentList(BaseModel):
    documents: list[DocumentSummary]
    total: int
    offset: int
    limit: int


class ChunkOut(BaseModel):
    chunk_id: int
    ordinal: int
    start: int
    end: int
    text: str


class DocumentDetail(BaseModel):
    id: str
    title: str
    url: str | None
    published: str | None
    source: str | None
    sources: list[str]
    text: str = Field(description="The original text; chunk offsets point into it.")
    chunks: list[ChunkOut]


class SkippedOut(BaseModel):
    path: str
    reason: str


class IngestResult(BaseModel):
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    skipped: list[SkippedOut]
    chunks_embedded: int
    chunks_reused: int
    chunks_total: int
    seconds: float

    @classmethod
    def of(cls, report: IngestReport) -> IngestResult:
        return cls(
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            skipped=[SkippedOut(path=s.path, reason=s.reason) for s in report.skipped],
            chunks_embedded=report.chunks_embedded,
            chunks_reused=report.chunks_reused,
            chunks_total=report.chunks_total,
            seconds=report.seconds,
        )


class DeleteResult(BaseModel):
    deleted: str


class Span(BaseModel):
    start: int
    end: int
    text: str


class PassageView(BaseModel):
    """A passage in its document; what a citation link opens (JSON form)."""

    chunk_id: int
    doc_id: str
    title: str
    url: str | None
    published: str | None
    source: str | None
    text: str = Field(description="The whole document text.")
    passage: Span
    quote: Span | None = Field(None, description="The highlighted quote, if start/end were given.")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed"]
    documents: int | None = None
    chunks: int | None = None
    model: ModelInfo | None = None
    message: str | None = None
