"""Tests of document loading (rag.ingest.loaders): formats, directories, skips, uploads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import IngestError
from rag.ingest.loaders import (
    LoadResult,
    Skipped,
    document_from_text,
    documents_from_upload,
    iter_documents,
    load_documents,
)
from rag.types import Document

DATA = Path(__file__).resolve().parent / "data"
DOCS = DATA / "docs"
CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def by_id(result: LoadResult) -> dict[str, Document]:
    return {doc.doc_id: doc for doc in result.documents}


def test_directory_tree_loads_every_supported_format_in_sorted_order() -> None:
    result = load_documents([DOCS])
    assert result.skipped == []  # ignored.csv inside a directory is ignored silently
    assert [d.doc_id for d in result.documents] == ["article", "feed-1", "feed-2", "page", "notes"]
    assert [Path(d.path or "").name for d in result.documents] == [
        "article.txt",
        "feed.jsonl",
        "feed.jsonl",
        "page.html",
        "notes.md",
    ]


def test_txt_is_kept_verbatim_with_metadata_from_the_page() -> None:
    (doc,) = load_documents([DOCS / "article.txt"]).documents
    assert doc.text == (DOCS / "article.txt").read_text(encoding="utf-8")
    assert doc.doc_id == "article"
    assert doc.title == "Stadtrat beschließt neuen Radweg am Fluss"
    assert doc.published == "2025-03-12"
    assert doc.source == "stadtanzeiger-beispiel.de"


def test_markdown_front_matter_gives_title_and_date() -> None:
    (doc,) = load_documents([DOCS / "notes.md"]).documents
    assert (doc.title, doc.published) == ("Notizen zur Energiewende", "2024-05-02")
    assert doc.text.startswith("---\ntitle:")


def test_html_main_content_is_extracted() -> None:
    (doc,) = load_documents([DOCS / "nested" / "page.html"]).documents
    assert doc.title == "Hafen erhält neue Kräne"
    assert doc.published == "2024-10-15"
    assert doc.source == "Beispiel-Zeitung"
    assert "drei neue Containerkräne" in doc.text
    assert "„Das ist ein wichtiger Schritt.“" in doc.text
    for chrome in ("Startseite", "Impressum", "<p>", "Sport"):
        assert chrome not in doc.text
    assert "\n\nInvestition in die Zukunft\n\n" in doc.text  # paragraphs stay apart


def test_jsonl_fields_become_metadata() -> None:
    docs = by_id(load_documents([DOCS / "nested" / "deeper" / "feed.jsonl"]))
    first, second = docs["feed-1"], docs["feed-2"]
    assert first.title == "Museum verlängert Öffnungszeiten"
    assert (first.url, first.published, first.source) == (
        "https://example.org/museum",
        "2024-09-01",
        "example.org",
    )
    assert first.text.startswith("Museum verlängert Öffnungszeiten\n\nDas Stadtmuseum")
    assert second.published == "2024-10-01"  # "01.10.2024" normalised
    assert second.url is None


def test_bad_files_are_reported_and_the_rest_loads(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Ein guter Text mit Inhalt.", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "garbage.md").write_bytes(b"\x81\x8d\x8f\x90\x9d" * 4)
    (tmp_path / "latin1.txt").write_bytes("Grüße aus Köln, schöne Straße.".encode("cp1252"))
    (tmp_path / "lines.jsonl").write_text(
        '{"id": "ok", "text": "Gültige Zeile."}\n'
        "{kaputt\n"
        '{"id": "no-text", "title": "Ohne Text"}\n'
        '["keine", "Objekt"]\n'
        '{"id": "ok", "text": "Doppelte ID."}\n',
        encoding="utf-8",
    )
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.txt").write_text("versteckt", encoding="utf-8")
    result = load_documents([tmp_path])
    assert [d.doc_id for d in result.documents] == ["good", "latin1", "ok"]
    assert by_id(result)["latin1"].text == "Grüße aus Köln, schöne Straße."
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == {
        "binary.txt",
        "garbage.md",
        "lines.jsonl:2",
        "lines.jsonl:3",
        "lines.jsonl:4",
        "lines.jsonl:5",
    }
    assert "NUL" in reasons["binary.txt"]
    assert "not UTF-8" in reasons["garbage.md"] and "0x81" in reasons["garbage.md"]
    assert "invalid JSON" in reasons["lines.jsonl:2"]
    assert "'text'" in reasons["lines.jsonl:3"]
    assert "object" in reasons["lines.jsonl:4"]
    assert "duplicate doc_id 'ok'" in reasons["lines.jsonl:5"]


def test_explicit_paths_report_unsupported_missing_and_duplicate(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("a,b\n", encoding="utf-8")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "same.txt").write_text("Erster Text.", encoding="utf-8")
    (tmp_path / "b" / "same.txt").write_text("Zweiter Text.", encoding="utf-8")
    paths = [tmp_path / "table.csv", tmp_path / "missing.txt", tmp_path / "a", tmp_path / "b"]
    result = load_documents(paths)
    assert [d.text for d in result.documents] == ["Erster Text."]
    assert [(Path(s.path).name, s.reason.split(" (")[0]) for s in result.skipped] == [
        ("table.csv", "unsupported file type"),
        ("missing.txt", "cannot read: No such file or directory"),
        ("same.txt", "duplicate doc_id 'same'"),
    ]


def test_iter_documents_streams_the_same_items() -> None:
    items = list(iter_documents([DOCS, CORPUS]))
    result = load_documents([DOCS, CORPUS])
    assert [i for i in items if isinstance(i, Document)] == result.documents
    assert [i for i in items if isinstance(i, Skipped)] == result.skipped
    assert len(result.documents) == 10


def test_corpus_metadata() -> None:
    docs = {d.doc_id[:3]: d for d in load_documents([CORPUS]).documents}
    assert docs["000"].title == (
        "Wiedervereinigung der Supermächte? Trump und Putin treffen sich bald!"
    )
    assert docs["001"].title == (
        "Putin offen für Gespräch mit Trump: Neue Hoffnung für diplomatische Beziehungen?"
    )
    assert docs["001"].published == "2024-11-07"
    assert "www.rosenheim24.de" in docs["002"].sources
    assert "edition.cnn.com" in docs["003"].sources
    for doc in docs.values():
        assert doc.text == Path(doc.path or "").read_text(encoding="utf-8")
        assert doc.doc_id == Path(doc.path or "").stem


def test_documents_from_upload_accepts_each_format() -> None:
    (txt,) = documents_from_upload("../../etc/bericht.txt", b"Ein Bericht.")
    assert (txt.doc_id, txt.text, txt.path) == ("bericht", "Ein Bericht.", None)
    html = (DOCS / "nested" / "page.html").read_bytes()
    (page,) = documents_from_upload("seite.HTML", html)
    assert page.doc_id == "seite" and page.title == "Hafen erhält neue Kräne"
    feed = (DOCS / "nested" / "deeper" / "feed.jsonl").read_bytes()
    assert [d.doc_id for d in documents_from_upload("feed.jsonl", feed)] == ["feed-1", "feed-2"]


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("bild.png", b"\x89PNG", "unsupported file type '.png'"),
        ("leer.txt", b"  \n", "is empty"),
        ("binär.txt", b"abc\x00def", "NUL"),
        ("kaputt.md", b"\x81\x8d\x8f\x90", "not UTF-8"),
        ("seite.html", b"<html><body><nav>Menu</nav></body></html>", "no article text"),
        ("daten.jsonl", b'{"id": "a", "text": "x"}\n{nope\n', "line 2: invalid JSON"),
        ("daten.jsonl", b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate"),
        ("daten.jsonl", b'{"id": "a", "text": ""}\n', "line 1: field 'text'"),
        ("daten.jsonl", json.dumps({"id": "a", "text": 3.5}).encode(), "must be a string"),
    ],
)
def test_documents_from_upload_rejects_bad_input(filename: str, data: bytes, message: str) -> None:
    with pytest.raises(IngestError, match=message.replace("(", r"\(")):
        documents_from_upload(filename, data)


def test_document_from_text_extracts_missing_metadata_and_keeps_given() -> None:
    text = (
        "Menü\n07.11.2024\n\nEine Schlagzeile\n\nDer Text des Artikels.\n\nQuellen\n\n• example.com"
    )
    doc = document_from_text("d1", text)
    assert doc.text == text
    assert (doc.title, doc.published, doc.sources) == (
        "Eine Schlagzeile",
        "2024-11-07",
        ("example.com",),
    )
    given = document_from_text(
        "d2",
        text,
        title="Eigener Titel",
        url="https://x.test/a",
        published="2023-01-02",
        source="x",
    )
    assert (given.title, given.url, given.published, given.source) == (
        "Eigener Titel",
        "https://x.test/a",
        "2023-01-02",
        "x",
    )


@pytest.mark.parametrize(
    ("doc_id", "text", "published", "message"),
    [
        ("", "Text.", None, "id is empty"),
        ("a\nb", "Text.", None, "invalid"),
        ("x" * 201, "Text.", None, "invalid"),
        ("ok", "   ", None, "has no text"),
        ("ok", "Menü\nSuche\n07.11.2024", None, "no article text"),
        ("ok", "Text.", "gestern", "not a date"),
    ],
)
def test_document_from_text_rejects_bad_input(
    doc_id: str, text: str, published: str | None, message: str
) -> None:
    with pytest.raises(IngestError, match=message):
        document_from_text(doc_id, text, published=published)
