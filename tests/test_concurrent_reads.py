"""Searches from several threads while ingests commit: every result is one consistent snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

from rag.ingest.chunking import chunk_document
from rag.service import RagService
from rag.testing import FakeEmbedder
from rag.types import Document

VERSIONS = 12
READERS = 4


def versioned(version: int) -> Document:
    """The document the writer keeps replacing; each version has its own sentences."""
    text = " ".join(
        f"Der Zeiger im Abschnitt {part} steht auf Stand {version}. "
        f"Die Messung {part} wurde mit Stand {version} protokolliert."
        for part in range(4)
    )
    return Document(doc_id="wechsel", text=text, title="Zeigerstand")


def added(version: int) -> Document:
    return Document(
        doc_id=f"neu-{version}",
        text=f"Ein weiterer Bericht zum Zeiger, Nummer {version}, nennt keinen Stand.",
        title=f"Bericht {version}",
    )


def test_searches_run_during_ingest_and_see_old_or_new(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    service = RagService(tmp_path / "idx", embedder).open()
    service.add_documents([versioned(0)])
    # Every (chunk id, text) any snapshot can hold, and the version of the replaced doc.
    known: dict[int, str] = {}
    version_of: dict[int, int] = {}
    for v in range(VERSIONS + 1):
        for doc in (versioned(v), added(v)):
            for chunk in chunk_document(doc, embedder.count_tokens, max_tokens=service.max_tokens):
                known[chunk.chunk_id] = chunk.text
                if doc.doc_id == "wechsel":
                    version_of[chunk.chunk_id] = v

    writing = threading.Event()
    writing.set()
    errors: list[BaseException] = []
    searches_during_writes = [0] * READERS

    def read(slot: int) -> None:
        try:
            while writing.is_set():
                hits = service.search("Zeiger Stand protokolliert", top_k=8)
                assert hits, "the document is always there, in one version or the other"
                versions = set()
                for hit in hits:
                    assert known[hit.chunk.chunk_id] == hit.chunk.text
                    if hit.chunk.doc_id == "wechsel":
                        versions.add(version_of[hit.chunk.chunk_id])
                assert len(versions) <= 1, f"one result mixes versions {versions}"
                for hit in hits:
                    if hit.chunk.doc_id != "wechsel":  # never replaced: must still be there
                        assert service.get_chunk(hit.chunk.chunk_id).text == hit.chunk.text
                assert any(d.doc_id == "wechsel" for d in service.list_documents())
                searches_during_writes[slot] += 1
        except BaseException as exc:
            errors.append(exc)
            writing.clear()

    readers = [threading.Thread(target=read, args=(i,)) for i in range(READERS)]
    for thread in readers:
        thread.start()
    try:
        for v in range(1, VERSIONS + 1):
            report = service.add_documents([versioned(v), added(v)])
            assert report.updated == ["wechsel"]
    finally:
        writing.clear()
        for thread in readers:
            thread.join(60)
    assert not errors, errors[0]
    assert all(n > 0 for n in searches_during_writes), searches_during_writes
    # Once the last batch has committed, every reader sees it.
    last = {
        version_of[h.chunk.chunk_id]
        for h in service.search("Zeiger Stand protokolliert", top_k=8)
        if h.chunk.doc_id == "wechsel"
    }
    assert last == {VERSIONS}
    assert len(service.list_documents()) == VERSIONS + 1
    service.close()
