"""The ONNX int8 backend: its own identity, vectors close to torch's, late chunking works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexMismatchError
from rag.store.factory import open_index
from rag.store.passages import embedding_text, window_spans
from rag.types import Chunk

EMBEDDER_MODEL_DIR = Path(__file__).resolve().parents[1] / "vectors" / "models"

TEXTS = [
    "Die Börse in Zürich reagierte kaum auf die Äußerungen des Ministers.",
    "Der Rhein ist mit 1233 Kilometern einer der längsten Flüsse Europas.",
]


@pytest.fixture(scope="module")
def int8_embedder(embedder_model_path: Path):
    from rag.embedding.embedder import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder(
        str(embedder_model_path), model_dir=EMBEDDER_MODEL_DIR, backend="onnx-int8", threads=1
    )
    model.load()  # exports and quantizes once into the model folder
    return model


@pytest.mark.slow
def test_int8_vectors_are_close_to_torch_but_have_their_own_identity(
    embedder, int8_embedder
) -> None:
    assert not int8_embedder.identity.same_model(embedder.identity)
    assert "onnx-int8" in int8_embedder.identity.source
    ours, theirs = int8_embedder.embed_passages(TEXTS), embedder.embed_passages(TEXTS)
    assert ours.dtype == np.float32
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() > 0.98
    assert cosines.max() < 0.99999  # quantized: not the same numbers
    query = int8_embedder.embed_queries(["Wie lang ist der Rhein?"])[0]
    assert int(np.argmax(ours @ query)) == 1


@pytest.mark.slow
def test_onnx_sessions_take_the_thread_count_and_do_not_spin(int8_embedder) -> None:
    model = int8_embedder._st[0].auto_model
    session = getattr(model, "session", None) or model.model
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.slow
def test_late_windows_come_from_onnx_too(int8_embedder) -> None:
    text = "Erster Satz über Äpfel. Zweiter Satz über „Birnen“. Dritter Satz."
    chunk = Chunk(chunk_id=1, doc_id="d", ordinal=0, start=0, end=len(text), text=text)
    vectors, windows = int8_embedder.embed_passage_spans(
        [embedding_text(chunk)], [window_spans(chunk)]
    )
    assert np.allclose((vectors * int8_embedder.embed_passages([text])).sum(), 1.0, atol=1e-4)
    assert windows[0].shape == (5, vectors.shape[1])


@pytest.mark.slow
def test_an_index_built_with_torch_refuses_int8_with_a_re_ingest_message(
    embedder, int8_embedder, tmp_path: Path
) -> None:
    from rag.types import Document

    index = open_index(tmp_path / "idx", embedder)
    index.ingest([Document("d1", TEXTS[0])])
    index.close()
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        open_index(tmp_path / "idx", int8_embedder)
