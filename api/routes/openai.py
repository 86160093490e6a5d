"""OpenAI-compatible endpoints: models, chat completions (streamed or not), embeddings."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.chat_tasks import ChatTask, fallback_reply, recognise
from api.deps import Links, LinksDep, Runtime, RuntimeDep, ServiceDep, SettingsDep
from api.errors import rag_error_status, scrub_paths
from api.openai_compat import (
    ASK_FOR_QUESTION,
    ChunkWriter,
    annotations_for,
    completion,
    cut_note,
    new_completion_id,
    retrieval_question,
    sources_section,
    split_conversation,
)
from api.openai_schemas import (
    CORPUS_MODEL,
    ChatCompletion,
    ChatCompletionRequest,
    EmbeddingItem,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    Usage,
)
from api.routes import COMMON_ERRORS, event_stream, responses
from api.routes.ask import SSE_HEADERS, first_and_rest
from rag.errors import RagError
from rag.service import RagService
from rag.types import Answer, AnswerEvent, Citation, CitationsEvent, DeltaEvent, DoneEvent

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai"], responses=COMMON_ERRORS)

_STARTED = int(time.time())


def _cards(service: RagService) -> list[ModelCard]:
    return [
        ModelCard(id=CORPUS_MODEL, created=_STARTED, owned_by="rag"),
        ModelCard(id=service.embedding_model_name, created=_STARTED, owned_by="rag"),
    ]


@router.get("/models", response_model=ModelList)
async def list_models(service: ServiceDep) -> ModelList:
    """The corpus as a chat model (chat frontends offer every listed model for chatting)."""
    return ModelList(data=_cards(service)[:1])


@router.get("/models/{model_id:path}", response_model=ModelCard, responses=responses(404))
async def get_model(model_id: str, service: ServiceDep) -> ModelCard:
    """The chat model, or the embedding model that ``/v1/embeddings`` serves."""
    for card in _cards(service):
        if card.id == model_id:
            return card
    raise HTTPException(404, f"no model {model_id!r}; GET /v1/models lists them")


def _usage(service: RagService, prompt: Sequence[str], completion_text: str) -> Usage:
    count = service.embedder.count_tokens
    prompt_tokens = sum(count(t) for t in prompt if t)
    completion_tokens = count(completion_text) if completion_text else 0
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: event_stream(
            "A chat completion; with `stream: true` `data:` lines of chat.completion.chunk "
            "objects, then `data: [DONE]`."
        ),
        **responses(502),
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    service: ServiceDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    links: LinksDep,
) -> ChatCompletion | StreamingResponse:
    """Answer the last user message; earlier turns are history. Citations are annotations.

    A client's background task (title, tags, follow-ups, a JSON reply) runs no retrieval:
    it goes to the LLM unchanged, or without one gets a reply in the shape it asks for.
    """
    task = recognise(
        [(m.role, m.text()) for m in body.messages],
        body.response_format.model_dump() if body.response_format else None,
    )
    question, history = split_conversation(body.messages)
    if task is not None or not question:
        return await _task_reply(body, task, service)
    # Retrieval (and the answer's sentence choice) uses at most max_question_chars.
    used = retrieval_question(question, settings.max_question_chars)
    kwargs: dict[str, Any] = {
        "top_k": min(body.top_k or settings.top_k, settings.max_top_k),
        "filters": body.filters.to_filters() if body.filters else None,
        "history": history,
    }
    prompt = [question, *(t.content for t in history)]
    if not body.stream:
        answer: Answer = await run_in_threadpool(service.ask, used, **kwargs)
        runtime.metrics.observe_timings(answer.timings_ms, abstained=answer.abstained)
        usage = await run_in_threadpool(_usage, service, prompt, answer.text)
        return completion(
            completion_id=new_completion_id(),
            model=body.model,
            text=answer.text,
            citations=answer.citations,
            language=answer.language,
            link=links.passage,
            usage=usage,
            note=cut_note(question, used, answer.language),
        )
    events = await first_and_rest(service.ask_stream(used, **kwargs))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    writer = ChunkWriter(new_completion_id(), body.model, include_usage=include_usage)
    stream = _answer_stream(events, writer, service, runtime, links, prompt, (question, used))
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def _answer_stream(
    events: AsyncIterator[AnswerEvent],
    writer: ChunkWriter,
    service: RagService,
    runtime: Runtime,
    links: Links,
    prompt: Sequence[str],
    question_used: tuple[str, str],
) -> AsyncIterator[str]:
    yield writer.start()
    parts: list[str] = []
    citations: Sequence[Citation] = ()
    final: Answer | None = None
    try:
        async for event in events:
            if isinstance(event, DeltaEvent) and event.text:
                parts.append(event.text)
                yield writer.delta(event.text)
            elif isinstance(event, CitationsEvent):
                citations = event.citations
            elif isinstance(event, DoneEvent):
                final = event.answer
    except RagError as exc:
        _, kind = rag_error_status(exc)
        log.warning("streamed chat completion failed: %s", exc)
        for line in writer.error(kind, scrub_paths(str(exc))):
            yield line
        return
    text = "".join(parts)
    if final is not None:
        runtime.metrics.observe_timings(final.timings_ms, abstained=final.abstained)
        citations = final.citations or citations
        if not text and final.text:  # an answer that came without deltas
            text = final.text
            yield writer.delta(text)
    language = final.language if final is not None else "en"
    for line in writer.sources(citations, links.passage):
        yield line
    section = sources_section(citations, language, links.passage)
    if section:
        # Offsets refer to the content as streamed, which starts with the answer text.
        yield writer.delta(section, annotations_for(text, citations, links.passage))
    note = cut_note(*question_used, language)
    if note:
        yield writer.delta(note)
    usage = await run_in_threadpool(_usage, service, prompt, text + section + note)
    for line in writer.finish(usage):
        yield line


async def _task_reply(
    body: ChatCompletionRequest, task: ChatTask | None, service: RagService
) -> ChatCompletion | StreamingResponse:
    """A background task's reply: the LLM's (messages unchanged) or the shape asked for.

    Without a task (no user text at all) the reply asks for a question.
    """
    messages = [(m.role, m.text()) for m in body.messages]
    if task is None:
        text = ASK_FOR_QUESTION
    elif service.chat_model is not None:
        chat = [{"role": r, "content": t} for r, t in messages if r in _LLM_ROLES]
        text = await run_in_threadpool(service.chat_model.complete, chat)
    else:
        text = fallback_reply(task)
    usage = await run_in_threadpool(_usage, service, [t for _, t in messages], text)
    if not body.stream:
        return completion(
            completion_id=new_completion_id(),
            model=body.model,
            text=text,
            citations=(),
            language="en",
            link=_no_link,
            usage=usage,
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    writer = ChunkWriter(new_completion_id(), body.model, include_usage=include_usage)

    async def stream() -> AsyncIterator[str]:
        yield writer.start()
        yield writer.delta(text)
        for line in writer.finish(usage):
            yield line

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


_LLM_ROLES = {"system", "developer", "user", "assistant"}


def _no_link(chunk_id: int, start: int | None, end: int | None) -> str:
    return ""


@router.post("/embeddings", response_model=EmbeddingResponse)
async def embeddings(body: EmbeddingRequest, service: ServiceDep) -> EmbeddingResponse:
    """Vectors of the index's embedding model (L2-normalised float32)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    dimension = service.embedder.identity.dimension
    if body.dimensions is not None and body.dimensions != dimension:
        raise HTTPException(
            422, f"dimensions: this model only returns {dimension} dimensions; omit the field"
        )
    vectors = await run_in_threadpool(service.embed, texts, kind=body.input_type)
    tokens = await run_in_threadpool(lambda: sum(service.embedder.count_tokens(t) for t in texts))
    data: list[EmbeddingItem] = []
    for i, vector in enumerate(vectors):
        values = np.asarray(vector, dtype="<f4")
        encoded: list[float] | str = (
            base64.b64encode(values.tobytes()).decode("ascii")
            if body.encoding_format == "base64"
            else [float(x) for x in values]
        )
        data.append(EmbeddingItem(index=i, embedding=encoded))
    return EmbeddingResponse(
        data=data,
        model=service.embedding_model_name,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
