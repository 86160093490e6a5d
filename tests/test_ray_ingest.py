"""Bulk ingest on Ray (rag.ray_ingest) and the Index's pre-embedded documents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexMismatchError
from rag.ingest.chunking import chunk_document
from rag.ingest.loaders import iter_documents
from rag.store.factory import open_index
from rag.store.index import EmbeddedDocument, Index, embed_chunks
from rag.testing import FakeEmbedder
from rag.types import Document

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MODELS = Path(__file__).resolve().parents[1] / "vectors" / "models"


def _stored(index: Index) -> dict[int, tuple[str, int, int, str]]:
    return {
        c.chunk_id: (c.doc_id, c.start, c.end, c.text)
        for doc_id in index.store.doc_ids()
        for c in index.store.chunks_of(doc_id)
    }


def _doc(doc_id: str) -> Document:
    text = f"Erster Satz über {doc_id}. Zweiter Satz mit mehr Inhalt. Dritter Satz zum Schluss."
    return Document(doc_id=doc_id, text=text, title=doc_id)


def _embedded(doc: Document, embedder: FakeEmbedder) -> EmbeddedDocument:
    chunks = chunk_document(doc, lambda t: len(t.split()), max_tokens=200)
    vecs, wins = embed_chunks(embedder, chunks)
    return EmbeddedDocument(doc, tuple(chunks), tuple(vecs), tuple(wins))


def test_pre_embedded_documents_are_stored_like_embedded_ones(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    docs = [_doc("a"), _doc("b")]
    plain = open_index(tmp_path / "plain", embedder)
    plain.ingest(docs)
    given = open_index(tmp_path / "given", embedder)
    report = given.ingest([_embedded(docs[0], embedder), docs[1]])
    assert report.added == ["a", "b"]
    assert report.chunks_embedded == report.chunks_total == plain.store.counts()[1]
    assert _stored(given) == _stored(plain)
    ids = list(_stored(plain))
    for cid, vec in plain.store.embeddings_for(ids).items():
        assert np.array_equal(given.store.embeddings_for([cid])[cid], vec)
    assert {k: v.shape for k, v in given.store.windows_for(ids, 64).items()} == {
        k: v.shape for k, v in plain.store.windows_for(ids, 64).items()
    }
    assert len(given.dense_search(embedder.embed_queries(["Erster Satz über a"])[0], 5)) > 0


def test_pre_embedded_vectors_of_another_dimension_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    index = open_index(tmp_path / "ix", FakeEmbedder(64))
    wrong = _embedded(_doc("a"), FakeEmbedder(32))
    with pytest.raises(IndexMismatchError, match="dimension 32"):
        index.ingest([wrong])
    assert index.store.counts() == (0, 0)


@pytest.mark.slow
def test_ray_ingest_matches_the_in_process_path(tmp_path: Path, embedder, embedder_model_path):
    from rag.ray_ingest import RayOptions, ingest_on_ray

    src = tmp_path / "src"
    src.mkdir()
    for path in sorted(CORPUS.glob("*.txt"))[:2]:
        shutil.copy(path, src / path.name)
    lines = [
        json.dumps(
            {"id": "j1", "title": "Kurz", "text": "Ein Satz. Noch ein Satz. Und ein dritter."}
        ),
        "{not json",
        json.dumps({"id": "j2", "text": "Berlin ist die Hauptstadt. Sie liegt an der Spree."}),
    ]
    (src / "more.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    local = open_index(tmp_path / "local", embedder)
    expected = local.ingest(iter_documents([src]))
    remote = open_index(tmp_path / "ray", embedder)
    progress = []
    report, throughput = ingest_on_ray(
        remote,
        [src],
        RayOptions(actors=1, batch_docs=2, local_cpus=2, quiet=True),
        model_path=embedder_model_path,
        model_dir=MODELS,
        on_progress=progress.append,
    )

    assert sorted(report.added) == sorted(expected.added) and len(report.added) == 4
    assert [s.path for s in report.skipped] == [s.path for s in expected.skipped]
    assert _stored(remote) == _stored(local)
    ids = list(_stored(local))
    dim = embedder.identity.dimension
    for name, fetch in (
        ("chunk", lambda ix: ix.store.embeddings_for(ids)),
        ("window", lambda ix: ix.store.windows_for(ids, dim)),
    ):
        mine, theirs = fetch(remote), fetch(local)
        assert mine.keys() == theirs.keys(), name
        for cid, vecs in theirs.items():
            a, b = np.atleast_2d(mine[cid]), np.atleast_2d(vecs)
            assert a.shape == b.shape, name
            assert (np.sum(a * b, axis=1) >= 0.9999).all(), (name, cid)
    assert sum(len(v) for v in remote.store.windows_for(ids, dim).values()) > 0
    # Progress after every committed batch of two documents, and a throughput report.
    assert [p.documents for p in progress] == [2, 4]
    assert (throughput.documents, throughput.chunks) == (4, report.chunks_total)
    assert throughput.vectors > throughput.chunks
    assert "chunks/s" in throughput.summary() and throughput.seconds > 0


def test_actors_must_leave_a_cpu_for_loading() -> None:
    from rag.errors import ConfigError
    from rag.ray_ingest import RayOptions, _check_cpus

    _check_cpus(RayOptions(actors=1), 2.0)
    with pytest.raises(ConfigError, match="--ray-actors 1 or fewer"):
        _check_cpus(RayOptions(actors=2), 2.0)
