"""OpenAI's wire shapes for chat completions, embeddings and models (the subset we serve).

Requests ignore unknown fields on purpose, unlike the native API: OpenAI clients and chat
frontends send many optional parameters (``temperature``, ``tools``, ``metadata`` ...), and
refusing them would break those clients.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool

from api.schemas import CleanStr, FiltersIn, TopK, whole_number

CORPUS_MODEL = "rag-corpus"
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit per request


class LenientModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(LenientModel):
    type: str
    text: CleanStr | None = None


class ChatMessageIn(LenientModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: CleanStr | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))


class StreamOptions(LenientModel):
    include_usage: StrictBool = False


class ResponseFormat(LenientModel):
    type: str = Field("text", description="`json_object` or `json_schema` mark a task reply.")
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(LenientModel):
    """``POST /v1/chat/completions``: the last user message is the question."""

    model: str = Field(CORPUS_MODEL, description="Any name; the corpus answers.")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=200)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Strict(), Field(ge=1, le=1), BeforeValidator(whole_number)] | None = Field(
        None, description="Only one choice is produced."
    )
    response_format: ResponseFormat | None = None
    # Extensions (ignored by OpenAI, honoured here).
    top_k: TopK | None = None
    filters: FiltersIn | None = None


class UrlCitation(BaseModel):
    start_index: int = Field(description="Offset of the [n] marker in the content.")
    end_index: int = Field(description="Offset just after the marker (content[start:end]).")
    url: str
    title: str


class Annotation(BaseModel):
    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitation


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None
    annotations: list[Annotation] = Field(default_factory=list)


class Choice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: Literal["stop", "length"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix time in seconds.")
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    annotations: list[Annotation] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class EmbeddingRequest(LenientModel):
    """``POST /v1/embeddings``."""

    input: (
        CleanStr | Annotated[list[CleanStr], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    ) = Field(description=f"A text or a list of 1 to {MAX_EMBEDDING_INPUTS} texts.")
    model: str = Field("", description="Any name; the index's embedding model is used.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Strict(), Field(ge=1), BeforeValidator(whole_number)] | None = None
    # Extension: e5-style models embed questions and passages differently.
    input_type: Literal["query", "passage"] = Field(
        "passage", description="`query` for search questions, `passage` for documents."
    )


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of float32 LE.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def pin_dimensions(openapi: dict[str, Any], dimension: int) -> None:
    """State in the OpenAPI document that ``dimensions`` can only be the model's dimension."""
    props = openapi["components"]["schemas"]["EmbeddingRequest"]["properties"]
    props["dimensions"] = {
        "anyOf": [
            {"type": "integer", "minimum": dimension, "maximum": dimension},
            {"type": "null"},
        ],
        "description": f"Only this model's dimension ({dimension}); omit it for the same result.",
        "title": "Dimensions",
    }
