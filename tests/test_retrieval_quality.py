"""Sentence-window vectors: stored with their chunk, kept consistent, and used for ranking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.ingest.loaders import document_from_text, load_documents
from rag.retrieve.retriever import FusionConfig, Retriever
from rag.store.factory import open_index
from rag.store.index import window_texts
from rag.testing import FakeEmbedder
from rag.types import Chunk

NO_WINDOWS = FusionConfig(chunk_weight_de=1.0, chunk_weight_en=1.0)  # chunk vectors only

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
DEV = Path(__file__).resolve().parents[1] / "eval" / "data" / "dev" / "dev.jsonl"

FILLER = (
    "Orkan Wiese Fluss Berg. Lampe Tisch Stuhl Fenster Boden. Kaffee Zucker Milch Tasse. "
    "Regen Schnee Nebel Wolke Sturm. Auto Zug Schiff Rad Bus. Hund Katze Maus Pferd Kuh. "
    "Rot Gelb Blau Schwarz Weiss. Nadel Faden Schere Knopf Stoff."
)


def make_chunk(text: str, context: str = "") -> Chunk:
    return Chunk(
        chunk_id=1, doc_id="d", ordinal=0, start=0, end=len(text), text=text, context=context
    )


def test_windows_cover_runs_of_sentences_with_the_headline() -> None:
    chunk = make_chunk("Eins ist hier. Zwei ist da. Drei ist dort.", context="Titel")
    texts = window_texts(chunk)
    assert all(t.startswith("Titel\n") for t in texts)
    bodies = [t.removeprefix("Titel\n") for t in texts]
    # every sentence alone and every pair of neighbours
    assert "Zwei ist da." in bodies
    assert "Eins ist hier. Zwei ist da." in bodies
    assert "Zwei ist da. Drei ist dort." in bodies
    assert "Eins ist hier. Zwei ist da. Drei ist dort." not in bodies
    assert window_texts(make_chunk("Nur ein Satz hier.")) == []


def test_windows_are_stored_with_chunks_and_go_with_them(tmp_path: Path) -> None:
    shutil.copytree(CORPUS, tmp_path / "corpus")
    index = open_index(tmp_path / "idx", FakeEmbedder())
    index.ingest(load_documents([tmp_path / "corpus"]).documents)
    doc = "002_4f089928bdc79d71"
    ids = index.store.chunk_ids_of(doc)
    chunks = index.store.get_chunks(ids)
    windows = index.store.windows_for(ids, 64)
    for cid in ids:
        expected = len(window_texts(chunks[cid]))
        assert (windows[cid].shape[0] if cid in windows else 0) == expected
    assert windows, "long news paragraphs have several sentences"
    # a changed document re-uses the stored windows of its unchanged paragraphs
    path = tmp_path / "corpus" / f"{doc}.txt"
    path.write_text(path.read_text("utf-8") + "\n\nEin neuer Absatz. Er hat zwei Sätze.\n", "utf-8")
    report = index.ingest(load_documents([tmp_path / "corpus"]).documents)
    assert report.chunks_reused >= 1
    kept = [c for c in index.store.chunk_ids_of(doc) if c in windows]
    assert kept
    again = index.store.windows_for(kept, 64)
    for cid in kept:
        assert np.array_equal(again[cid], windows[cid])
    index.delete([doc])
    assert index.store.windows_for(ids, 64) == {}
    count = index.store.conn.execute("SELECT count(*) FROM chunk_windows").fetchone()[0]
    assert count == sum(
        len(window_texts(c)) > 0
        for c in index.store.get_chunks(index.store.all_chunk_ids()).values()
    )
    index.close()


def test_a_fact_in_one_sentence_of_a_long_passage_is_found(tmp_path: Path) -> None:
    index = open_index(tmp_path / "idx", FakeEmbedder())
    index.ingest(
        [
            document_from_text("long", f"Alpha Beta Gamma Delta. {FILLER}", title="Eins"),
            document_from_text("short", "Alpha Beta Gamma Epsilon Zeta.", title="Zwei"),
        ]
    )
    query = "alpha beta gamma delta"
    plain = Retriever(index, mode="dense", fusion=NO_WINDOWS)
    windowed = Retriever(index, mode="dense")
    assert plain.search(query, top_k=2)[0].chunk.doc_id == "short"
    assert windowed.search(query, top_k=2)[0].chunk.doc_id == "long"
    index.close()


@pytest.mark.slow
def test_windows_lift_dev_recall_on_the_real_model(api_real_service) -> None:  # type: ignore[no-untyped-def]
    """On the demo corpus, window scoring finds more gold passages in the top 5."""
    index = api_real_service.index
    questions = [json.loads(x) for x in DEV.read_text("utf-8").splitlines() if x]
    questions = [q for q in questions if q["gold"] and q["type"] != "boilerplate_trap"]

    def found(retriever: Retriever) -> int:
        n = 0
        for q in questions:
            texts = [h.chunk.text for h in retriever.search(q["question"], top_k=5)]
            n += all(any(g["quote"] in t for t in texts) for g in q["gold"])
        return n

    plain = found(Retriever(index, mode="dense", fusion=NO_WINDOWS))
    windowed = found(Retriever(index, mode="dense"))
    assert windowed > plain
