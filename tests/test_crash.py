"""Crash safety with real processes: SIGKILL an ingest at random moments, 30 times."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.store.factory import open_index
from rag.store.index import Index
from rag.testing import FakeEmbedder

N_DOCS = 120
BATCH = 8
KILLS = 30
WORDS = [
    "Regierung", "Verhandlungen", "Gipfel", "Beziehungen", "Moskau", "Washington",
    "Sanktionen", "Energie", "Wirtschaft", "Frieden", "Gespräch", "Delegation", "Kreml",
    "Ministerium", "Abkommen", "Bündnis",
]  # fmt: skip


def write_corpus(folder: Path, version: int) -> None:
    """N_DOCS small articles; ``version`` changes every text so each run replaces them all."""
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N_DOCS):
        paragraphs = []
        for p in range(3):
            words = " ".join(rng.choice(WORDS) for _ in range(25))
            paragraphs.append(f"Absatz {p} von Artikel {i} in Fassung {version}: {words}.")
        text = f"Artikel {i:03d} Fassung {version}\n\n" + "\n\n".join(paragraphs) + "\n"
        (folder / f"doc{i:03d}.txt").write_text(text, encoding="utf-8")


def doc_versions(index: Index) -> dict[str, int]:
    out = {}
    for stored in index.documents():
        head = stored.document.text.split("\n", 1)[0]
        out[stored.document.doc_id] = int(head.rsplit(" ", 1)[1])
    return out


def check_consistent(index: Index) -> None:
    faiss_ids = set(index.vectors.ids().tolist())
    sqlite_ids = set(index.store.all_chunk_ids())
    assert faiss_ids == sqlite_ids
    assert len(index.lexical) == len(sqlite_ids)
    # Every id a search returns resolves to a stored chunk.
    q = index.embedder.embed_queries(["Verhandlungen Moskau"])[0]
    hits = index.dense_search(q, 20)
    assert {cid for cid, _ in hits} <= sqlite_ids


@pytest.mark.slow
def test_sigkill_during_ingest_keeps_last_committed_state(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    order = [f"doc{i:03d}" for i in range(N_DOCS)]
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    versions: dict[str, int] = {}
    kills_done = 0
    for run in range(KILLS):
        corpus = tmp_path / f"corpus{run % 2}"
        if not corpus.exists():
            write_corpus(corpus, run % 2)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.helpers.crash_ingest",
                str(corpus),
                str(index_dir),
                str(BATCH),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        # Kill after a random number of committed batches (sometimes before the first).
        target = rng.randint(0, N_DOCS // BATCH - 1)
        committed = 0
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while committed < target * BATCH and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            committed = event.get("documents", committed)
        time.sleep(rng.random() * 0.05)  # land anywhere inside the next batch
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills_done += 1
        rest, _ = proc.communicate(timeout=30)
        for line in rest.splitlines():
            committed = json.loads(line).get("documents", committed)

        index = open_index(index_dir, FakeEmbedder())
        try:
            check_consistent(index)
            got = doc_versions(index)
        finally:
            index.close()
        # Documents are ingested in order, in batches of BATCH: everything up to the last
        # reported commit has the new version, the batch in flight landed all or nothing,
        # and everything after it is exactly as before this run.
        new = run % 2
        done = min(committed, N_DOCS)
        assert done % BATCH == 0 or done == N_DOCS
        in_flight = order[done : done + BATCH]
        for doc_id in order[:done]:
            assert got.get(doc_id) == new
        flight_new = [got.get(d) == new for d in in_flight]
        flight_old = [got.get(d) == versions.get(d) for d in in_flight]
        assert all(flight_new) or all(flight_old)
        for doc_id in order[done + BATCH :]:
            assert got.get(doc_id) == versions.get(doc_id)
        versions = dict(got)
    assert kills_done >= KILLS * 0.8  # most runs really were killed mid-ingest


def test_rollback_on_error_leaves_previous_state(tmp_path: Path) -> None:
    """An exception mid-batch (e.g. the embedder failing) commits nothing of that batch."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 0)
    index = open_index(tmp_path / "index", FakeEmbedder())
    from rag.ingest.loaders import iter_documents

    index.ingest(iter_documents([corpus]), batch_docs=BATCH)
    before = doc_versions(index)
    write_corpus(corpus, 1)

    class Boom(FakeEmbedder):
        calls = 0

        def embed_passages(self, texts):  # type: ignore[no-untyped-def]
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("embedding backend died")
            return super().embed_passages(texts)

        def embed_passage_spans(self, texts, spans, sentences=None):  # type: ignore[no-untyped-def]
            self.embed_passages([])  # counts the call (and fails the third)
            return super().embed_passage_spans(texts, spans, sentences)

    index.embedder = Boom()
    with pytest.raises(RuntimeError):
        index.ingest(iter_documents([corpus]), batch_docs=BATCH)
    index.close()
    reopened = open_index(tmp_path / "index", FakeEmbedder())
    after = doc_versions(reopened)
    changed = [d for d in after if after[d] != before[d]]
    assert len(changed) == 2 * BATCH  # the two batches before the failure
    check_consistent(reopened)
    assert np.isfinite(reopened.vectors.ids()).all()
    reopened.close()
