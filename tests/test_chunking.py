"""Tests of passage cutting (rag.ingest.chunking): offsets, limits, merging, stable ids."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from rag.ingest.chunking import chunk_document, chunk_id_for
from rag.ingest.loaders import document_from_text, load_documents
from rag.types import Chunk, Document

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
DATA = Path(__file__).resolve().parent / "data"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    """Fake tokenizer for unit tests: words and punctuation marks."""
    return len(_TOKEN.findall(text))


class TokenCounter(Protocol):
    def count_tokens(self, text: str) -> int: ...


@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    result = load_documents([CORPUS])
    assert result.skipped == []
    return result.documents


def by_prefix(corpus: list[Document], prefix: str) -> Document:
    (doc,) = [d for d in corpus if d.doc_id.startswith(prefix)]
    return doc


def assert_valid(
    doc: Document, chunks: list[Chunk], limit: int, count: Callable[[str], int]
) -> None:
    assert chunks
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    previous_end = 0
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.start >= previous_end
        previous_end = chunk.end
        assert chunk.doc_id == doc.doc_id
        assert chunk.context == doc.title
        assert 0 <= chunk.chunk_id < 2**53
        assert count(chunk.text) <= limit
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_corpus_chunks_are_exact_clean_and_within_the_limit(corpus: list[Document]) -> None:
    chrome = ["07930-2699", "Newsletter", "Einwilligung", "JD Vance", "Besuchen Sie uns auf"]
    chrome += ["Kommentar (0)", "Referenz", "Quellen gesamt", "edition.cnn.com", "Menü"]
    for doc in corpus:
        chunks = chunk_document(doc, count_words)
        assert_valid(doc, chunks, 200, count_words)
        for chunk in chunks:
            assert not [c for c in chrome if c in chunk.text], (doc.doc_id, chunk.text[:60])


def test_single_block_article_gives_several_chunks(corpus: list[Document]) -> None:
    doc = by_prefix(corpus, "004")
    assert "\n\n" not in doc.text.strip()
    chunks = chunk_document(doc, count_words, max_tokens=200)
    assert len(chunks) >= 3
    assert_valid(doc, chunks, 200, count_words)
    assert chunks[-1].text.endswith("Kontakt aufnehmen?")  # the comment counter is cut off
    # Windows are cut at sentence ends and are of similar size.
    sizes = [count_words(c.text) for c in chunks]
    assert min(sizes) > max(sizes) / 2
    assert all(re.search(r"[.!?\u201c]$", c.text) for c in chunks)


@pytest.mark.parametrize("limit", [40, 80, 120])
def test_smaller_limits_are_respected(corpus: list[Document], limit: int) -> None:
    for doc in corpus:
        assert_valid(doc, chunk_document(doc, count_words, max_tokens=limit), limit, count_words)


def test_gold_quotes_lie_in_a_chunk_and_traps_in_none(corpus: list[Document]) -> None:
    chunks = {d.doc_id: chunk_document(d, count_words) for d in corpus}
    for line in (DATA / "dev_quotes.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        inside = any(row["quote"] in c.text for c in chunks[row["doc"]])
        assert inside is (row["type"] != "boilerplate_trap"), row["id"]


def test_subheadings_and_broken_paragraphs_join_the_following_text(
    corpus: list[Document],
) -> None:
    texts = [c.text for c in chunk_document(by_prefix(corpus, "001"), count_words)]
    assert any(t.startswith("Fazit\n\nObwohl die Beziehungen") for t in texts)
    assert "Fazit" not in [t.strip() for t in texts]
    texts = [c.text for c in chunk_document(by_prefix(corpus, "003"), count_words)]
    broken = [t for t in texts if "im Weißen\n\nHaus mit Freude" in t]
    assert len(broken) == 1 and broken[0].startswith("Reaktionen aus Moskau\n\nMoskau, das")


def test_a_blank_line_inside_a_sentence_does_not_cut_the_passage() -> None:
    text = (
        "Meldung\n\nZwischentitel\n\n"
        "Der Bericht, der von mehreren Zeitungen übernommen wurde, hebt ausdrücklich hervor, dass"
        "\n\nes bereits Gespräche gibt. Ein zweiter Satz folgt.\n\nEin neuer Absatz beginnt hier."
    )
    doc = document_from_text("b", text)
    texts = [c.text for c in chunk_document(doc, count_words, min_tokens=1)]
    assert texts == [
        "Zwischentitel\n\nDer Bericht, der von mehreren Zeitungen übernommen wurde, hebt "
        "ausdrücklich hervor, dass\n\nes bereits Gespräche gibt. Ein zweiter Satz folgt.",
        "Ein neuer Absatz beginnt hier.",
    ]


def test_paragraphs_are_separate_passages_and_tiny_ones_merge() -> None:
    text = (
        "Titel der Meldung\n\n"
        + "Der erste Absatz erzählt, was am Morgen geschah, und nennt alle Beteiligten. " * 3
        + "\n\nKurz.\n\n"
        + "Der zweite Absatz beschreibt die Folgen für die Stadt und die Anwohner. " * 3
    )
    doc = document_from_text("t", text)
    chunks = chunk_document(doc, count_words, max_tokens=200, min_tokens=12)
    assert len(chunks) == 2
    assert chunks[1].text.startswith("Kurz.\n\nDer zweite Absatz")  # merged with the next
    assert doc.title == "Titel der Meldung" and chunks[0].context == "Titel der Meldung"


def test_overlong_sentence_is_cut_at_clauses_then_words() -> None:
    clause = "und dann kam noch ein weiterer Teil des Satzes hinzu, "
    text = "Ein sehr langer Satz beginnt hier, " + clause * 30 + "bis er endlich endet."
    doc = document_from_text("long", text, title="Lang")
    chunks = chunk_document(doc, count_words, max_tokens=50)
    assert len(chunks) >= 7
    assert_valid(doc, chunks, 50, count_words)
    assert all(c.text.endswith(",") for c in chunks[:-1])  # clause boundaries
    words = "Wort " * 130
    doc = document_from_text("words", words.strip(), title="W")
    assert_valid(doc, chunk_document(doc, count_words, max_tokens=50), 50, count_words)


def test_a_giant_token_is_cut_by_characters() -> None:
    url = "https://example.org/" + "a" * 400
    doc = document_from_text("url", f"Siehe {url} für Details.", title="U")

    def count_chars(text: str) -> int:  # a tokenizer that splits long words into pieces
        return sum(max(1, len(w) // 10) for w in text.split())

    chunks = chunk_document(doc, count_chars, max_tokens=20, min_tokens=1)
    assert_valid(doc, chunks, 20, count_chars)
    assert "".join(c.text for c in chunks).replace(" ", "") == doc.text.replace(" ", "")


def test_chunk_ids_are_stable_and_depend_on_doc_text_and_occurrence(
    corpus: list[Document],
) -> None:
    first = [chunk_document(d, count_words) for d in corpus]
    again = [chunk_document(d, count_words) for d in load_documents([CORPUS]).documents]
    assert first == again
    a = chunk_id_for("doc", "Ein Absatz.")
    assert a == chunk_id_for("doc", "Ein Absatz.", 0) and 0 <= a < 2**53
    assert len({a, chunk_id_for("doc2", "Ein Absatz."), chunk_id_for("doc", "Ein Absatz!")}) == 3
    assert chunk_id_for("doc", "Ein Absatz.", 1) != a


def test_repeated_paragraphs_get_distinct_ids() -> None:
    paragraph = "Dieser Absatz steht zweimal im Text und ist lang genug für eine Passage."
    text = f"Überschrift\n\n{paragraph}\n\nDazwischen steht ein anderer Absatz mit Inhalt.\n\n"
    doc = document_from_text("rep", text + paragraph)
    chunks = chunk_document(doc, count_words, max_tokens=20, min_tokens=1)
    same = [c for c in chunks if c.text == paragraph]
    assert len(same) == 2
    assert same[0].chunk_id == chunk_id_for("rep", paragraph, 0)
    assert same[1].chunk_id == chunk_id_for("rep", paragraph, 1)


def test_invalid_limits_and_empty_documents() -> None:
    doc = document_from_text("x", "Ein Satz.", title="T")
    with pytest.raises(ValueError):
        chunk_document(doc, count_words, max_tokens=0)
    with pytest.raises(ValueError):
        chunk_document(doc, count_words, max_tokens=10, min_tokens=11)
    assert chunk_document(Document("e", "", title=""), count_words) == []


@pytest.mark.slow
def test_real_tokenizer_keeps_corpus_chunks_within_200_tokens(
    corpus: list[Document], embedder: TokenCounter
) -> None:
    for doc in corpus:
        chunks = chunk_document(doc, embedder.count_tokens, max_tokens=200)
        assert_valid(doc, chunks, 200, embedder.count_tokens)
        if doc.doc_id.startswith("004"):
            assert len(chunks) >= 3
