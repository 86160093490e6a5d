"""Citation markers parsed in code (also when split across stream chunks), renumbered, checked."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rag.answer.markers import CitationStream, MarkerParser, Statement, statements_for
from rag.answer.support import SentenceBank, check_citations, lexical_overlap
from rag.testing import FakeEmbedder
from rag.types import Chunk, Hit

ROOT = Path(__file__).resolve().parents[1]
DEV = Path(__file__).resolve().parents[1] / "eval" / "data" / "dev" / "dev.jsonl"


def render(raw: str, passages: int, pieces: list[str] | None = None) -> CitationStream:
    stream = CitationStream(passages)
    shown = "".join(stream.feed(p) for p in (pieces if pieces is not None else [raw]))
    shown += stream.finish()
    assert shown == stream.text  # what was streamed is exactly the final text
    return stream


@pytest.mark.parametrize(
    ("raw", "numbers"),
    [
        ("a [1] b", [(1,)]),
        ("a [1, 3] b", [(1, 3)]),
        ("a [1,3;2] b", [(1, 3, 2)]),
        ("a [2-4] b", [(2, 3, 4)]),
        ("a [2\u20134] b", [(2, 3, 4)]),
        ("a 【2】 b", [(2,)]),
        ("a 【4†source】 b", [(4,)]),
        ("a [Quelle 2] b", [(2,)]),
        ("a [Source 1][3] b", [(1,), (3,)]),
    ],
)
def test_parser_finds_marker_forms(raw: str, numbers: list[tuple[int, ...]]) -> None:
    parser = MarkerParser()
    segments = parser.feed(raw) + parser.flush()
    assert [s for s in segments if isinstance(s, tuple)] == numbers
    assert "".join(s for s in segments if isinstance(s, str)) == "a  b"


@pytest.mark.parametrize("raw", ["[2025]", "[a]", "[]", "[1 2]", "[sic]", "[1-", "[Quellen"])
def test_parser_leaves_non_markers_as_text(raw: str) -> None:
    parser = MarkerParser()
    segments = parser.feed(raw) + parser.flush()
    assert segments == [raw]


def test_markers_split_at_every_position_give_the_same_answer() -> None:
    raw = "Putin kam 2000 [3, 1]. Gut [9] und [2-3]. Auch 【2】 sowie [Quelle 1]. Jahr [2025]."
    whole = render(raw, 3)
    assert whole.text == ("Putin kam 2000 [1][2]. Gut und [1][3]. Auch [3] sowie [2]. Jahr [2025].")
    for cut in range(1, len(raw)):
        assert render(raw, 3, [raw[:cut], raw[cut:]]).text == whole.text, cut
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(raw)), rng.randint(2, 12)))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        assert render(raw, 3, pieces).text == whole.text


def test_renumbering_by_first_appearance() -> None:
    stream = render("A [3]. B [1]. C [3][1].", 3)
    assert stream.text == "A [1]. B [2]. C [1][2]."
    assert stream.cited == [2, 0]  # new number n cites passage cited[n - 1] (0-based)


def test_group_is_written_as_single_markers_in_number_order() -> None:
    assert render("A [3, 1].", 3).text == "A [1][2]."
    assert render("A [1]. B [3, 1].", 3).text == "A [1]. B [1][2]."


def test_invalid_markers_are_dropped_with_their_blank() -> None:
    stream = render("Erstens [0]. Zweitens [4], drittens [2] [7] Ende.", 3)
    assert stream.text == "Erstens. Zweitens, drittens [1] Ende."
    assert stream.dropped == 3
    assert stream.cited == [1]


def test_held_back_partial_marker_is_released() -> None:
    stream = CitationStream(3)
    assert stream.feed("Wert [") == "Wert"
    assert stream.feed("1") == ""
    assert stream.feed("] weiter") == " [1] weiter"
    assert stream.feed(" und [") == " und"
    assert stream.finish() == " ["  # an unfinished marker at the end is plain text


def test_long_bracket_text_is_not_held_back() -> None:
    stream = CitationStream(3)
    shown = stream.feed("[" + "1" * 3 + "0" * 60)
    assert shown.startswith("[1110")


def test_statements_attach_markers_to_the_sentence_they_follow() -> None:
    stream = render("Erster Satz. [1] Zweiter Satz [2]. Dritter Satz ohne.", 2)
    statements = statements_for(stream.clean_text, stream.uses)
    assert statements == [
        Statement("Erster Satz.", (1,)),
        Statement("Zweiter Satz.", (2,)),
    ]


def _hit(doc_text: str, start: int, end: int, chunk_id: int) -> Hit:
    chunk = Chunk(chunk_id, "doc", 0, start, end, doc_text[start:end])
    return Hit(chunk=chunk, score=1.0, title="Titel", url="https://example.org/a")


DOC = (
    "# Titel\n\nEinleitung ohne Bezug. Die Beziehungen sind auf einem Tiefpunkt angelangt. "
    "Danach folgt etwas anderes.\n\nDer Gipfel findet im Juli in Helsinki statt. "
    "Die Delegationen reisen am Montag an."
)


def test_quote_offsets_point_into_the_original_document() -> None:
    first = DOC.index("Einleitung")
    second = DOC.index("Der Gipfel")
    hits = [
        _hit(DOC, first, second - 2, 11),
        _hit(DOC, second, len(DOC), 22),
    ]
    stream = render(
        "Die Beziehungen sind auf einem Tiefpunkt angelangt [1]. Der Gipfel ist in Helsinki [2].",
        2,
    )
    embedder = FakeEmbedder()
    citations = check_citations(
        statements_for(stream.clean_text, stream.uses),
        stream.cited,
        hits,
        embedder,
        SentenceBank(embedder),
    )
    assert [c.number for c in citations] == [1, 2]
    assert [c.chunk_id for c in citations] == [11, 22]
    assert citations[0].quote == "Die Beziehungen sind auf einem Tiefpunkt angelangt."
    assert citations[1].quote == "Der Gipfel findet im Juli in Helsinki statt."
    for citation in citations:
        assert DOC[citation.start : citation.end] == citation.quote
        assert citation.supported
        assert citation.title == "Titel" and citation.url == "https://example.org/a"


def test_unrelated_statement_is_not_supported() -> None:
    hits = [_hit(DOC, DOC.index("Der Gipfel"), len(DOC), 1), _hit(DOC, 0, 40, 2)]
    embedder = FakeEmbedder()
    citations = check_citations(
        [Statement("Die Inflation in Japan stieg kräftig.", (1,))],
        [0],
        hits,
        embedder,
        SentenceBank(embedder),
    )
    assert not citations[0].supported
    assert DOC[citations[0].start : citations[0].end] == citations[0].quote


def test_every_statement_citing_a_passage_must_be_supported() -> None:
    hits = [_hit(DOC, DOC.index("Der Gipfel"), len(DOC), 1)]
    embedder = FakeEmbedder()
    good = Statement("Der Gipfel findet im Juli in Helsinki statt.", (1,))
    bad = Statement("Die Inflation in Japan stieg kräftig.", (1,))
    alone = check_citations([good], [0], hits, embedder, SentenceBank(embedder))[0]
    both = check_citations([good, bad], [0], hits, embedder, SentenceBank(embedder))[0]
    assert alone.supported and not both.supported
    assert both.score < alone.score
    assert both.quote == "Der Gipfel findet im Juli in Helsinki statt."  # the best match's


def test_headings_and_fragments_are_not_quoted() -> None:
    text = "Zwischentitel ohne Punkt\nDer eigentliche Satz mit Inhalt steht hier."
    embedder = FakeEmbedder()
    entry = SentenceBank(embedder).get([Chunk(1, "d", 0, 0, len(text), text)])[0]
    quotable = [text[s:e] for (s, e), ok in zip(entry.spans, entry.quotable, strict=True) if ok]
    assert quotable == ["Der eigentliche Satz mit Inhalt steht hier."]


def test_lexical_overlap_uses_stems_and_ignores_stop_words() -> None:
    assert lexical_overlap("die Beziehungen", "Beziehung zwischen Staaten") == 1.0
    assert lexical_overlap("Tiefpunkt der Beziehungen", "Ein Höhepunkt") == 0.0
    assert lexical_overlap("und oder", "irgendwas") == 0.0


def _dev_rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()]


def _paragraph_hits() -> list[Hit]:
    """Corpus passages from a blank-line split (what the calibration used)."""
    hits = []
    for path in sorted((ROOT / "corpus").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        start = 0
        for para in text.split("\n\n"):
            s = text.index(para, start) if para else start
            start = s + len(para)
            stripped = para.strip()
            if len(stripped.split()) < 8 or stripped.startswith("|"):
                continue
            s += para.index(stripped)
            chunk = Chunk(len(hits) + 1, path.stem, len(hits), s, s + len(stripped), stripped)
            hits.append(Hit(chunk=chunk, score=0.0, title=path.stem))
    return hits


@pytest.mark.slow
def test_support_check_separates_gold_passages_on_dev(embedder) -> None:  # type: ignore[no-untyped-def]
    """Reference answers are supported by the passage with the gold quote, mostly not by
    others; quotes are exact substrings of the documents."""
    hits = _paragraph_hits()
    docs = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "corpus").glob("*.txt")}
    bank = SentenceBank(embedder)
    rng = random.Random(3)
    gold_ok = gold_total = other_ok = other_total = 0
    for row in _dev_rows():
        if not row["gold"] or row["type"] == "boilerplate_trap":
            continue
        quotes = [(g["doc"], g["quote"]) for g in row["gold"]]  # type: ignore[attr-defined]
        gold = [
            h for h in hits if any(h.chunk.doc_id == d and q in h.chunk.text for d, q in quotes)
        ]
        others = [h for h in hits if h not in gold]
        given = gold + rng.sample(others, 2)
        for index, hit in enumerate(given):
            citation = check_citations(
                [Statement(str(row["answer"]), (1,))], [index], given, embedder, bank
            )[0]
            assert docs[citation.doc_id][citation.start : citation.end] == citation.quote
            if hit in gold:
                gold_total += 1
                gold_ok += citation.supported
            else:
                other_total += 1
                other_ok += citation.supported
    assert gold_total >= 12
    assert gold_ok / gold_total >= 0.8
    assert other_ok / other_total <= 0.1
