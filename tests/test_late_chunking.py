"""Late chunking: window vectors pooled from the chunk's own forward pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.embedding.late import pool_spans, sentence_ids, span_tokens
from rag.errors import ConfigError
from rag.ingest.loaders import load_documents
from rag.store.factory import is_fresh, open_index
from rag.store.passages import embedding_text, sentence_spans, window_spans, window_texts
from rag.testing import FakeEmbedder
from rag.types import Chunk

CORPUS = Path(__file__).resolve().parents[1] / "corpus"

GERMAN = (
    "Österreichs Bundeskanzler sagte: „Die Gespräche über Zölle sind schwierig.“ "
    "Der Außenminister widersprach ihm öffentlich. "
    "Später hieß es, man habe sich über 'Grundsätze' geeinigt – ohne Details. "  # noqa: RUF001
    "Die Börse in Zürich reagierte kaum."
)


def make_chunk(text: str, context: str = "") -> Chunk:
    return Chunk(
        chunk_id=1, doc_id="d", ordinal=0, start=0, end=len(text), text=text, context=context
    )


def three_chunks() -> list[Chunk]:
    """Four sentences with a headline, two sentences, and one (which has no windows)."""
    return [
        make_chunk(GERMAN, context="Handelsstreit"),
        make_chunk("Ein kurzer Satz. Und noch einer über Äpfel."),
        make_chunk("Nur ein Satz ohne Fenster."),
    ]


def each_question_finds_its_sentence(embedder, windows: np.ndarray) -> bool:  # type: ignore[no-untyped-def]
    """A question about one sentence of GERMAN scores that sentence's window best."""
    questions = [
        "Was sagte der Bundeskanzler über Zölle?",
        "Wer widersprach dem Bundeskanzler?",
        "Worüber hat man sich geeinigt?",
        "Wie reagierte die Börse in Zürich?",
    ]
    scores = windows[:4] @ embedder.embed_queries(questions).T
    return bool(np.argmax(scores, axis=0).tolist() == [0, 1, 2, 3])


def test_span_tokens_skip_specials_and_the_next_sentences_space() -> None:
    # <s> "▁Eins" "▁ist" "." "▁Zwei" "." </s> over "Eins ist. Zwei."
    offsets = [(0, 0), (0, 4), (4, 8), (8, 9), (9, 14), (14, 15), (0, 0)]
    assert span_tokens(offsets, (0, 9)).tolist() == [1, 2, 3]
    # the token with the space before "Zwei" belongs to the second sentence only
    assert span_tokens(offsets, (10, 15)).tolist() == [4, 5]


def test_pool_spans_means_and_normalises_with_a_fallback_for_lost_spans() -> None:
    states = np.array([[9, 9], [1, 0], [0, 1], [3, 0], [9, 9]], dtype=np.float32)
    offsets = [(0, 0), (0, 2), (2, 4), (4, 6), (0, 0)]
    pooled = pool_spans(states, offsets, [(0, 4), (4, 6), (50, 60)])
    assert np.allclose(pooled[0], [2**-0.5, 2**-0.5])
    assert np.allclose(pooled[1], [1, 0])
    whole = states.mean(axis=0)
    assert np.allclose(pooled[2], whole / np.linalg.norm(whole))  # span past the truncation
    with pytest.raises(ValueError, match="token offsets"):
        pool_spans(states, offsets[:2], [(0, 1)])


def test_sentence_ids_leave_the_prefix_and_specials_at_minus_one() -> None:
    # <s> "▁Titel" "▁Eins" "." "▁Zwei" "." </s> over "Titel\nEins. Zwei."
    offsets = [(0, 0), (0, 5), (5, 10), (10, 11), (11, 16), (16, 17), (0, 0)]
    assert sentence_ids(offsets, [(6, 11), (12, 17)]).tolist() == [-1, -1, 0, 0, 1, 1, -1]
    states = np.eye(7, dtype=np.float32)
    prefix = np.array([0, 1, 6])
    pooled = pool_spans(states, offsets, [(6, 11)], always=prefix)
    assert np.allclose(pooled[0], np.isin(np.arange(7), [0, 1, 2, 3, 6]) / np.sqrt(5))


def test_window_spans_point_into_the_embedded_text() -> None:
    chunk = make_chunk(GERMAN, context="Handelsstreit")
    text = embedding_text(chunk)
    spans = window_spans(chunk)
    assert len(spans) == 4 + 3  # four sentences alone, three neighbouring pairs
    assert text[spans[0][0] : spans[0][1]].startswith("Österreichs Bundeskanzler")
    assert text[spans[0][0] : spans[0][1]].endswith("schwierig.“")
    assert [f"Handelsstreit\n{text[a:b]}" for a, b in spans] == window_texts(chunk)


@pytest.mark.slow
def test_span_tokens_cover_exactly_the_german_sentences(embedder) -> None:
    """Offsets of the model's tokenizer map umlauts, ß and quotes to the right sentence."""
    chunk = make_chunk(GERMAN, context="Handelsstreit")
    text = embedding_text(chunk)
    tokenizer = embedder._st.tokenizer
    encoded = tokenizer(text, return_offsets_mapping=True)
    for a, b in window_spans(chunk, sizes=(1,)):
        ids = [encoded["input_ids"][i] for i in span_tokens(encoded["offset_mapping"], (a, b))]
        assert tokenizer.decode(ids).strip() == text[a:b]


@pytest.mark.slow
def test_one_pass_gives_the_chunk_vector_and_windows_close_to_separate_ones(embedder) -> None:
    chunks = three_chunks()
    texts = [embedding_text(c) for c in chunks]
    vectors, windows = embedder.embed_passage_spans(texts, [window_spans(c) for c in chunks])
    assert vectors.dtype == np.float32
    assert np.allclose((vectors * embedder.embed_passages(texts)).sum(axis=1), 1.0, atol=1e-4)
    assert [len(w) for w in windows] == [len(window_spans(c)) for c in chunks] == [7, 2, 0]
    late = np.concatenate(windows)
    assert np.allclose(np.linalg.norm(late, axis=1), 1.0, atol=1e-5)
    separate = embedder.embed_passages([t for c in chunks for t in window_texts(c)])
    cosines = (late * separate).sum(axis=1)
    # The same sentences, read in the context of their neighbours: close, not the same.
    assert cosines.min() > 0.8
    assert cosines.max() < 0.999
    assert each_question_finds_its_sentence(embedder, windows[0])


@pytest.mark.slow
def test_forked_pass_gives_the_chunk_vector_and_windows_nearer_separate_ones(embedder) -> None:
    chunks = three_chunks()
    texts = [embedding_text(c) for c in chunks]
    spans = [window_spans(c) for c in chunks]
    vectors, forked = embedder.embed_passage_spans(
        texts, spans, [sentence_spans(c) for c in chunks]
    )
    assert np.allclose((vectors * embedder.embed_passages(texts)).sum(axis=1), 1.0, atol=1e-4)
    assert [len(w) for w in forked] == [7, 2, 0]
    _, late = embedder.embed_passage_spans(texts, spans)
    separate = embedder.embed_passages([t for c in chunks for t in window_texts(c)])
    near_forked = (np.concatenate(forked) * separate).sum(axis=1)
    near_late = (np.concatenate(late) * separate).sum(axis=1)
    # Each sentence read alone with its headline, as a separately embedded window is.
    assert near_forked.mean() > near_late.mean() + 0.01
    assert near_forked.min() > 0.9
    assert each_question_finds_its_sentence(embedder, forked[0])


def test_forked_windows_need_a_torch_encoder(tmp_path: Path) -> None:
    from rag.embedding.embedder import SentenceTransformerEmbedder

    onnx = SentenceTransformerEmbedder(model_dir=tmp_path, backend="onnx")
    with pytest.raises(ConfigError, match="RAG_WINDOW_VECTORS=separate"):
        onnx._encoder()


def test_changing_how_windows_are_made_re_embeds_the_index(tmp_path: Path) -> None:
    shutil.copytree(CORPUS, tmp_path / "corpus")
    docs = load_documents([tmp_path / "corpus"]).documents
    index = open_index(tmp_path / "idx", FakeEmbedder(), window_vectors="separate")
    index.ingest(docs)
    index.close()
    assert is_fresh(tmp_path / "idx", docs, "separate")
    assert not is_fresh(tmp_path / "idx", docs, "late")
    index = open_index(tmp_path / "idx", FakeEmbedder(), window_vectors="late")
    report = index.ingest(docs)
    assert report.chunks_reused == 0
    assert report.chunks_embedded == report.chunks_total > 0
    assert index.store.get_meta("window_vectors") == "late"
    index.close()
    assert is_fresh(tmp_path / "idx", docs, "late")
    with pytest.raises(ValueError, match="window_vectors"):
        open_index(tmp_path / "idx", FakeEmbedder(), window_vectors="sometimes")  # type: ignore[arg-type]
