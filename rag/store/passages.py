"""What the embedder sees of a chunk: its text with the headline, and its sentence windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rag.embedding.base import Embedder, SpanEmbedder
from rag.embedding.late import DEFAULT_WINDOW_VECTORS, WindowVectors
from rag.text.sentences import split_sentences
from rag.types import Chunk, Document, FloatArray


def embedding_text(chunk: Chunk) -> str:
    """What the embedder sees: the headline as context, then the passage."""
    if chunk.context and not chunk.text.startswith(chunk.context):
        return f"{chunk.context}\n{chunk.text}"
    return chunk.text


WINDOW_SIZES = (1, 2)  # sentences per window (docs/tuning.md)


def window_spans(chunk: Chunk, sizes: Sequence[int] = WINDOW_SIZES) -> list[tuple[int, int]]:
    """Character spans, in ``embedding_text(chunk)``, of runs of ``sizes`` sentences.

    One sentence's fact is diluted in the vector of a 200-token passage, so the retriever
    also scores a chunk by its best window. A run as long as the chunk is left out (the
    chunk's own vector covers it); a one-sentence chunk has no windows.
    """
    spans = sentence_spans(chunk)
    return [
        (spans[i][0], spans[i + size - 1][1])
        for size in sizes
        if size < len(spans)
        for i in range(len(spans) - size + 1)
    ]


def sentence_spans(chunk: Chunk) -> list[tuple[int, int]]:
    """Character spans, in ``embedding_text(chunk)``, of the chunk's sentences."""
    shift = len(embedding_text(chunk)) - len(chunk.text)
    return [(shift + a, shift + b) for a, b in split_sentences(chunk.text)]


def window_texts(chunk: Chunk, sizes: Sequence[int] = WINDOW_SIZES) -> list[str]:
    """The windows of ``window_spans`` as texts of their own, each with the headline."""
    prefix = f"{chunk.context}\n" if chunk.context else ""
    text = embedding_text(chunk)
    return [prefix + text[a:b] for a, b in window_spans(chunk, sizes)]


def embed_chunks(
    embedder: Embedder,
    chunks: Sequence[Chunk],
    window_vectors: WindowVectors = DEFAULT_WINDOW_VECTORS,
) -> tuple[list[FloatArray], list[FloatArray]]:
    """Each chunk's vector and its windows' vectors (one array per chunk, possibly empty).

    The one place chunks are embedded: ``Index.ingest`` and the Ray bulk ingest both call it,
    so the two paths store identical vectors. ``"late"`` and ``"forked"`` pool the windows
    from the chunk's own pass where the embedder can (``SpanEmbedder``).
    """
    texts = [embedding_text(c) for c in chunks]
    if window_vectors != "separate" and isinstance(embedder, SpanEmbedder):
        sentences = [sentence_spans(c) for c in chunks] if window_vectors == "forked" else None
        vectors, pooled = embedder.embed_passage_spans(
            texts, [window_spans(c) for c in chunks], sentences
        )
        return list(vectors), pooled
    wins = [window_texts(c) for c in chunks]
    # One call: the embedder batches chunks and windows together.
    vecs = embedder.embed_passages(texts + [t for w in wins for t in w])
    windows: list[FloatArray] = []
    at = len(chunks)
    for win in wins:
        windows.append(vecs[at : at + len(win)])
        at += len(win)
    return list(vecs[: len(chunks)]), windows


@dataclass(frozen=True)
class EmbeddedDocument:
    """A document chunked and embedded elsewhere (e.g. on Ray), ready for ``Index.ingest``.

    ``vectors[i]`` and ``windows[i]`` are what ``embed_chunks`` returns for ``chunks[i]``;
    the Index writes them as they are (it checks only the vector dimension).
    """

    document: Document
    chunks: tuple[Chunk, ...]
    vectors: tuple[FloatArray, ...]
    windows: tuple[FloatArray, ...]
