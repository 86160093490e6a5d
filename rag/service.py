"""``RagService``: connects embedder, index, retriever and answerer; what the API and CLI use."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from rag.answer.answerer import Answerer
from rag.answer.generation import ChatModel, LiteLLMChatModel
from rag.config import Settings
from rag.embedding.base import Embedder
from rag.embedding.embedder import SentenceTransformerEmbedder
from rag.embedding.late import DEFAULT_WINDOW_VECTORS, WindowVectors
from rag.errors import DocumentNotFoundError
from rag.ingest.loaders import Skipped
from rag.retrieve.alignment import TokenBank
from rag.retrieve.retriever import FusionConfig, Mode, Retriever
from rag.store.factory import open_index
from rag.store.index import Index, IndexStats, IngestReport
from rag.types import (
    Answer,
    AnswerEvent,
    Chunk,
    Document,
    DoneEvent,
    Filters,
    FloatArray,
    Hit,
    PassagesEvent,
    Turn,
)


@dataclass(frozen=True)
class DocumentInfo:
    """A document's metadata for listings (no text)."""

    doc_id: str
    title: str
    url: str | None
    published: str | None
    source: str | None
    sources: tuple[str, ...]
    chunks: int
    chars: int


@dataclass(frozen=True)
class _Retrieval:
    started: float  # perf_counter() when the question arrived
    standalone: str  # the question, condensed with the history
    hits: list[Hit]
    retrieve_ms: float


class RagService:
    """The whole pipeline behind one object; cheap to construct, ``open()`` loads everything."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder,
        chat_model: ChatModel | None = None,
        *,
        mode: Mode = "hybrid",
        ann: str = "auto",
        ann_threshold: int = 200_000,
        max_tokens: int = 200,
        max_top_k: int = 50,
        database_url: str | None = None,
        window_vectors: WindowVectors = DEFAULT_WINDOW_VECTORS,
        rerank: bool = True,
    ) -> None:
        self.index_dir = index_dir
        self.rerank = rerank
        self.window_vectors: WindowVectors = window_vectors
        self.database_url = database_url
        self.embedder = embedder
        self.chat_model = chat_model
        self.mode: Mode = mode
        self.ann = ann
        self.ann_threshold = ann_threshold
        self.max_tokens = max_tokens
        self.max_top_k = max_top_k
        self._index: Index | None = None
        self._retriever: Retriever | None = None
        self._answerer: Answerer | None = None
        # Opening and closing, and writes, one at a time; searches and reads run in parallel
        # (per-thread SQLite connections, FAISS under a read-write lock, see rag.store).
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RagService:
        embedder = SentenceTransformerEmbedder(
            settings.embedding_model,
            model_dir=settings.model_dir,
            backend=settings.embedding_backend,
            batch_size=settings.embedding_batch_size,
            threads=settings.embedding_threads,
            precision=settings.embedding_precision,
        )
        chat: ChatModel | None = None
        if settings.llm_model:
            chat = LiteLLMChatModel(
                settings.llm_model,
                api_base=settings.llm_api_base,
                api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
                fallbacks=settings.llm_fallback_models,
                timeout_s=settings.llm_timeout_s,
                retries=settings.llm_retries,
                max_tokens=settings.llm_max_tokens,
                temperature=settings.llm_temperature,
            )
        return cls(
            settings.index_dir,
            embedder,
            chat,
            mode=settings.retrieval_mode,
            ann=settings.ann,
            ann_threshold=settings.ann_threshold,
            max_tokens=settings.chunk_max_tokens,
            max_top_k=settings.max_top_k,
            database_url=(
                settings.database_url.get_secret_value() if settings.database_url else None
            ),
            window_vectors=settings.window_vectors,
            rerank=settings.rerank,
        )

    # -- life cycle ---------------------------------------------------------------
    def open(self) -> RagService:
        """Load the models and the index (creating an empty index if there is none)."""
        with self._lock:
            if self._index is None:
                self._index = open_index(
                    self.index_dir,
                    self.embedder,
                    ann=self.ann,
                    ann_threshold=self.ann_threshold,
                    max_tokens=self.max_tokens,
                    database_url=self.database_url,
                    window_vectors=self.window_vectors,
                )
                tokens = TokenBank(self.embedder)  # one cache of token states for both
                fusion = FusionConfig()
                if not self.rerank:
                    fusion = replace(fusion, rerank_weight_de=0.0, rerank_weight_en=0.0)
                self._retriever = Retriever(
                    self._index, mode=self.mode, fusion=fusion, tokens=tokens
                )
                self._answerer = Answerer(self.embedder, self.chat_model, tokens=tokens)
        return self

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
            self._index = self._retriever = self._answerer = None

    @property
    def ready(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> Index:
        if self._index is None:
            self.open()
        assert self._index is not None
        return self._index

    @property
    def retriever(self) -> Retriever:
        self.index  # noqa: B018 - opens on first use
        assert self._retriever is not None
        return self._retriever

    @property
    def answerer(self) -> Answerer:
        self.index  # noqa: B018 - opens on first use
        assert self._answerer is not None
        return self._answerer

    @property
    def embedding_model_name(self) -> str:
        return self.embedder.identity.name

    @property
    def llm_name(self) -> str:
        return self.chat_model.name if self.chat_model is not None else "extractive"

    # -- questions ----------------------------------------------------------------
    def _top_k(self, top_k: int) -> int:
        return max(1, min(top_k, self.max_top_k))

    def search(self, query: str, *, top_k: int = 5, filters: Filters | None = None) -> list[Hit]:
        index = self.index
        with index.store.reading():  # one snapshot for the search's several reads
            return self.retriever.search(query, self._top_k(top_k), filters)

    def _retrieve(
        self, question: str, top_k: int, filters: Filters | None, history: Sequence[Turn]
    ) -> _Retrieval:
        """The preamble of every answer: condense a follow-up, then search for it."""
        started = time.perf_counter()
        standalone = self.answerer.condense(question, history) if history else question
        t0 = time.perf_counter()
        hits = self.search(standalone, top_k=top_k, filters=filters)
        return _Retrieval(started, standalone, hits, (time.perf_counter() - t0) * 1000)

    @staticmethod
    def _finish(answer: Answer, retrieval: _Retrieval) -> Answer:
        timings = dict(answer.timings_ms)
        timings["retrieve"] = retrieval.retrieve_ms
        timings["total"] = (time.perf_counter() - retrieval.started) * 1000
        return replace(answer, standalone_question=retrieval.standalone, timings_ms=timings)

    def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        filters: Filters | None = None,
        history: Sequence[Turn] = (),
    ) -> Answer:
        """Retrieve for the (condensed) question and answer it with checked citations."""
        retrieval = self._retrieve(question, top_k, filters, history)
        answer = self.answerer.answer(question, retrieval.hits, history=history)
        return self._finish(answer, retrieval)

    def ask_stream(
        self,
        question: str,
        *,
        top_k: int = 5,
        filters: Filters | None = None,
        history: Sequence[Turn] = (),
    ) -> Iterator[AnswerEvent]:
        """Like ``ask`` but yields passages, answer deltas, citations and the final answer."""
        retrieval = self._retrieve(question, top_k, filters, history)
        for event in self.answerer.stream(question, retrieval.hits, history=history):
            if isinstance(event, PassagesEvent):
                event = replace(event, standalone_question=retrieval.standalone)
            elif isinstance(event, DoneEvent):
                event = DoneEvent(self._finish(event.answer, retrieval))
            yield event

    def embed(
        self, texts: Sequence[str], *, kind: Literal["query", "passage"] = "passage"
    ) -> FloatArray:
        if kind == "query":
            return self.embedder.embed_queries(texts)
        return self.embedder.embed_passages(texts)

    # -- documents ----------------------------------------------------------------
    def add_documents(
        self,
        docs: Sequence[Document | Skipped],
    ) -> IngestReport:
        """Ingest documents; they are searchable when this returns."""
        with self._write_lock:
            return self.index.ingest(docs)

    def delete_document(self, doc_id: str) -> None:
        with self._write_lock:
            self.index.delete([doc_id])

    def list_documents(self) -> list[DocumentInfo]:
        self.index.refresh()
        return [
            DocumentInfo(
                doc_id=d.document.doc_id,
                title=d.document.title,
                url=d.document.url,
                published=d.document.published,
                source=d.document.source,
                sources=d.document.sources,
                chunks=d.chunk_count,
                chars=len(d.document.text),
            )
            for d in self.index.documents()
        ]

    def get_document(self, doc_id: str) -> Document:
        return self.index.store.get_document(doc_id)

    def get_chunks(self, doc_id: str) -> list[Chunk]:
        store = self.index.store
        with store.reading():
            store.get_document(doc_id)  # raises DocumentNotFoundError
            return store.chunks_of(doc_id)

    def get_chunk(self, chunk_id: int) -> Chunk:
        chunk = self.index.store.get_chunks([chunk_id]).get(chunk_id)
        if chunk is None:
            raise DocumentNotFoundError(f"no passage with id {chunk_id}")
        return chunk

    def stats(self) -> IndexStats:
        store = self.index.store
        with store.reading():
            return self.index.stats()
