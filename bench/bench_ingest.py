"""Ingestion throughput: end to end with the real model, and everything but embedding at 10k.

Embedding 10k chunks at ~17 passages/s takes ~10 minutes on this machine, more than the
whole bench budget allows, so the run is split in two and the total is projected:

1. end to end on a sample of up to ~500 chunks (fewer when a probe shows the machine is too
   busy to embed them in ~1 minute): real loader (``.jsonl``), cleaning, chunking, the
   real embedding model, SQLite, lexical postings and FAISS (``Index.ingest``);
2. the same pipeline on ~10k chunks with ``RandomEmbedder`` in place of the model (it keeps
   the real tokenizer, so the chunks are the same), with the time of each stage.

Projected 10k total = (2) + 10k x the per-chunk embedding time measured in (1). The text
is the GermanQuAD passages (real German Wikipedia prose), copied under new ids for (2).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import GERMANQUAD_CORPUS, MODEL_DIR, Section, log, rss_bytes, timed
from bench.synthetic import FloatArray, RandomEmbedder

SAMPLE_CHUNKS = 500
FULL_CHUNKS = 10_000
E2E_BUDGET_S = 75.0  # the end-to-end sample is sized to embed in about this long


class TimedEmbedder:
    """Wraps an embedder and adds up the seconds spent embedding passages."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.passages = 0

    @property
    def identity(self) -> Any:
        return self.inner.identity

    def embed_queries(self, texts: Sequence[str]) -> FloatArray:
        vectors: FloatArray = self.inner.embed_queries(texts)
        return vectors

    def embed_passages(self, texts: Sequence[str]) -> FloatArray:
        start = time.perf_counter()
        vectors: FloatArray = self.inner.embed_passages(texts)
        self.seconds += time.perf_counter() - start
        self.passages += len(texts)
        return vectors

    def count_tokens(self, text: str) -> int:
        count: int = self.inner.count_tokens(text)
        return count


def _records() -> list[dict[str, str]]:
    lines = GERMANQUAD_CORPUS.read_text("utf-8").splitlines()
    out = []
    for line in lines:
        rec = json.loads(line)
        # ``title`` is empty in the source; its first line is the article name.
        title = rec.get("title") or rec["text"].split("\n", 1)[0].replace("_", " ")
        out.append({"id": rec["id"], "title": title, "text": rec["text"]})
    return out


def _chunk_counts(records: list[dict[str, str]], count_tokens: Any) -> tuple[list[int], list[int]]:
    """Chunks and embedded passages per record, exactly as ingest will cut them.

    Passages are the chunks plus, where the index embeds them, their sentence windows.
    """
    import rag.store.index
    from rag.ingest.chunking import chunk_document
    from rag.types import Document

    windows = getattr(rag.store.index, "window_texts", None)
    chunks, passages = [], []
    for r in records:
        cs = chunk_document(Document(r["id"], r["text"], title=r["title"]), count_tokens)
        chunks.append(len(cs))
        passages.append(len(cs) + (sum(len(windows(c)) for c in cs) if windows else 0))
    return chunks, passages


def _write_jsonl(path: Path, records: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def end_to_end(model: Any, folder: Path, index_dir: Path) -> dict[str, Any]:
    """Real model, real everything: ``Index.ingest`` of the files in ``folder``."""
    from rag.ingest.loaders import iter_documents
    from rag.store.factory import open_index

    embedder = TimedEmbedder(model)
    index = open_index(index_dir, embedder)
    report, seconds = timed(index.ingest, iter_documents([folder]))
    index.close()
    return {
        "seconds": seconds,
        "chunks": report.chunks_total,
        "documents": len(report.added),
        "embed_s": embedder.seconds,
        "passages": embedder.passages,
        "chunks_per_s": report.chunks_total / seconds,
        "embed_passages_per_s": embedder.passages / embedder.seconds,
    }


def embedding_rate(model: Any, records: list[dict[str, str]]) -> float:
    """Passages/s of the model right now, on 32 chunk-sized GermanQuAD texts.

    It sizes the end-to-end sample: on a busy machine embedding can be 10x slower, and
    the sample shrinks instead of blowing the bench's time budget.
    """
    probe = [r["text"][:700] for r in records[:32]]  # ~160 tokens each, like a chunk
    model.embed_passages(probe[:4])  # warm-up
    _, seconds = timed(model.embed_passages, probe)
    return len(probe) / seconds


class _StageClock:
    """Seconds spent loading (inside the document iterator) and chunking, during ingest."""

    def __init__(self) -> None:
        self.load_s = 0.0
        self.chunk_s = 0.0

    def documents(self, items: Iterator[Any]) -> Iterator[Any]:
        while True:
            start = time.perf_counter()
            item = next(items, None)
            self.load_s += time.perf_counter() - start
            if item is None:
                return
            yield item

    def chunker(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        def timed_chunk(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.chunk_s += time.perf_counter() - start

        return timed_chunk


def without_embedding(folder: Path, index_dir: Path, count_tokens: Any) -> dict[str, Any]:
    """The pipeline with random vectors: load, clean+chunk, store, lexical, FAISS."""
    import rag.store.index
    from rag.ingest.loaders import iter_documents
    from rag.store.factory import open_index

    clock = _StageClock()
    embedder = RandomEmbedder(384, count_tokens=count_tokens)
    rss0 = rss_bytes()
    index = open_index(index_dir, embedder)
    # Instrument the stage boundaries instead of chunking twice: Index.ingest calls the
    # module-level name, so wrapping it times exactly the chunking ingest does.
    name = "chunk_document"
    original = getattr(rag.store.index, name)
    setattr(rag.store.index, name, clock.chunker(original))
    try:
        report, seconds = timed(index.ingest, clock.documents(iter_documents([folder])))
    finally:
        setattr(rag.store.index, name, original)
    rss1 = rss_bytes()
    stats = index.stats()
    index.close()
    rest = seconds - clock.load_s - clock.chunk_s - embedder.seconds
    return {
        "seconds": seconds,
        "chunks": report.chunks_total,
        "documents": len(report.added),
        "load_s": clock.load_s,
        "clean_chunk_s": clock.chunk_s,
        "random_vectors_s": embedder.seconds,
        "store_lexical_faiss_s": rest,
        "chunks_per_s": report.chunks_total / seconds,
        "rss_delta": rss1 - rss0,
        "sqlite_bytes": stats.sqlite_bytes,
        "faiss_bytes": stats.faiss_bytes,
    }


def run(quick: bool = False) -> list[Section]:
    from rag.config import DEFAULT_EMBEDDING_MODEL
    from rag.embedding.embedder import SentenceTransformerEmbedder

    full_target = 1_500 if quick else FULL_CHUNKS
    model = SentenceTransformerEmbedder(DEFAULT_EMBEDDING_MODEL, model_dir=MODEL_DIR)
    _, load_s = timed(model.load)
    records = _records()
    counts, passages = _chunk_counts(records, model.count_tokens)
    probe_rate = embedding_rate(model, records)
    passage_budget = probe_rate * (10.0 if quick else E2E_BUDGET_S)
    chunk_cap = 60 if quick else SAMPLE_CHUNKS
    section = Section("ingest")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        (work / "sample").mkdir()
        (work / "full").mkdir()
        sample: list[dict[str, str]] = []
        for rec in records:
            done = len(sample)
            if sample and (
                sum(counts[:done]) >= chunk_cap or sum(passages[:done]) >= passage_budget
            ):
                break
            sample.append(rec)
        sample_target = sum(counts[: len(sample)])
        _write_jsonl(work / "sample" / "germanquad-sample.jsonl", sample)
        copy = 0
        total = 0
        while total < full_target:
            part: list[dict[str, str]] = []
            for rec, n in zip(records, counts, strict=True):
                if total >= full_target:
                    break
                part.append({**rec, "id": f"copy{copy}-{rec['id']}"})
                total += n
            _write_jsonl(work / "full" / f"germanquad-copy{copy}.jsonl", part)
            copy += 1
        log(f"end to end with the real model on ~{sample_target} chunks")
        e2e = end_to_end(model, work / "sample", work / "index-sample")
        e2e["model_load_s"] = load_s
        e2e["probe_passages_per_s"] = probe_rate
        log(f"pipeline without embedding on ~{full_target} chunks")
        rest = without_embedding(work / "full", work / "index-full", model.count_tokens)
    per_chunk_embed = e2e["embed_s"] / e2e["chunks"]
    projected = rest["seconds"] + per_chunk_embed * rest["chunks"]
    n = rest["chunks"]
    section.add(
        f"end to end, real model ({e2e['chunks']} chunks, {e2e['documents']} GermanQuAD docs)",
        f"{e2e['chunks_per_s']:.1f} chunks/s ({e2e['seconds']:.1f} s)",
        f"embedding {e2e['embed_s']:.1f} s of it: {e2e['passages']} passages = chunks + "
        f"sentence windows ({e2e['passages'] / e2e['chunks']:.1f} per chunk) at "
        f"{e2e['embed_passages_per_s']:.1f}/s; model load {e2e['model_load_s']:.1f} s not included"
        + (
            ""
            if e2e["chunks"] >= SAMPLE_CHUNKS - 20
            else f"; sample sized to ~{E2E_BUDGET_S:.0f} s of embedding at the probed rate"
        ),
    )
    section.add(
        f"pipeline without embedding ({n} chunks, {rest['documents']} docs)",
        f"{rest['chunks_per_s']:.0f} chunks/s ({rest['seconds']:.1f} s)",
        f"load {rest['load_s']:.1f} s, clean+chunk {rest['clean_chunk_s']:.1f} s, "
        f"SQLite+lexical+FAISS {rest['store_lexical_faiss_s']:.1f} s (random vectors)",
    )
    section.add(
        f"projected end to end for {n} chunks with the real model",
        f"{projected / 60:.1f} min ({n / projected:.1f} chunks/s)",
        "projection: the pipeline without embedding + chunks x measured embedding time "
        "per chunk; not run in full (it alone would exceed the bench budget)",
    )
    section.data = {
        "end_to_end": e2e,
        "without_embedding": rest,
        "projected_total_s": projected,
        "projected_chunks": n,
    }
    return [section]
