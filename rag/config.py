"""One ``Settings`` object, read from ``RAG_*`` environment variables and ``.env``.

Only the CLI and the API build it (``get_settings()``); library code takes plain arguments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag.embedding.late import DEFAULT_WINDOW_VECTORS, WindowVectors

DEFAULT_EMBEDDING_MODEL = "intfloat/multilingual-e5-small"


def _split_csv(value: object) -> object:
    """Accept ``a,b`` as well as a JSON list in environment variables."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service; the README has a table of them."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # Storage
    index_dir: Path = Field(Path("vectors"), description="Where the index (SQLite + FAISS) lives.")
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://… puts the index in PostgreSQL with pgvector instead of"
        " `index_dir` (shared by API workers and concurrent ingests).",
    )
    corpus_dir: Path = Field(Path("corpus"), description="Documents `make serve` ingests.")
    model_dir: Path = Field(
        Path("vectors/models"), description="Cache of converted/exported embedding models."
    )

    # Embedding
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL, description="sentence-transformers model name or local folder."
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="Inference backend of the embedding model."
    )
    embedding_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Matmul precision of the torch backend: `auto` is bf16 where the CPU has "
        "bf16 hardware (AMX, AVX-512 BF16), else fp32.",
    )
    embedding_batch_size: int = Field(32, ge=1, le=1024, description="Passages per batch.")
    embedding_threads: int = Field(
        0, ge=0, le=256, description="Threads of one embedding forward pass; 0 = the runtime's."
    )
    window_vectors: WindowVectors = Field(
        DEFAULT_WINDOW_VECTORS,
        description="Sentence-window vectors: `forked` pools them from a branch of the chunk's "
        "pass where each sentence sees only itself and the headline, `separate` embeds each "
        "window as a text of its own, `late` pools them from the chunk's pass; a change "
        "re-embeds on the next ingest.",
    )
    chunk_max_tokens: int = Field(
        200, ge=32, le=500, description="Upper bound of a passage in model tokens."
    )

    # Retrieval
    top_k: int = Field(5, ge=1, le=50, description="Passages retrieved by default.")
    max_top_k: int = Field(50, ge=1, le=1000, description="Cap on top_k in requests.")
    retrieval_mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="Which retrievers answer a query."
    )
    ann: Literal["auto", "exact", "hnsw", "ivf"] = Field(
        "auto", description="FAISS index kind; auto uses HNSW above `ann_threshold` chunks."
    )
    ann_threshold: int = Field(
        200_000, ge=1, description="Chunk count above which `ann=auto` builds HNSW."
    )
    rerank: bool = Field(
        True,
        description="Re-rank the first 10 passages of questions in other languages than "
        "German by token alignment with the question (docs/tuning.md); about 4 ms a search.",
    )

    # Generation
    llm_model: str = Field(
        "", description="litellm model string, e.g. `ollama/llama3.1`; empty = extractive."
    )
    llm_api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server.")
    llm_api_key: SecretStr | None = Field(
        None, description="Key for `llm_api_base`; provider keys come from their own env vars."
    )
    llm_fallback_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Models tried in order when the main one fails."
    )
    llm_timeout_s: float = Field(
        60.0, gt=0, description="Total time budget of one LLM answer, retries included."
    )
    llm_retries: int = Field(1, ge=0, le=5, description="Retries per model on transient errors.")
    llm_max_tokens: int = Field(512, ge=16, le=8192, description="Cap on generated tokens.")
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")

    # HTTP
    host: str = Field("127.0.0.1", description="Address `rag serve` binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port `rag serve` binds.")
    public_url: str | None = Field(
        None, description="Base URL used in citation links; default: the request's own URL."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Bearer keys; empty = no authentication."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS, e.g. `http://localhost:3000`."
    )
    max_body_bytes: int = Field(
        5_000_000, ge=1024, description="Largest request body (uploads included)."
    )
    max_question_chars: int = Field(2000, ge=10, description="Longest accepted question.")
    rate_limit_per_minute: int | None = Field(
        None,
        ge=0,
        description=(
            "Requests per minute per key (or client); 0 = unlimited; unset = 120 for clients "
            "on other machines and, once `RAG_API_KEYS` is set, for every client."
        ),
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes of `rag serve`; above 1 needs a shared (PostgreSQL) index.",
    )

    @field_validator("llm_fallback_models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
