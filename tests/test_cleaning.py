"""Tests of page-chrome removal and metadata extraction (rag.ingest.cleaning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.ingest.cleaning import Cleaned, clean
from rag.ingest.dates import parse_date

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
DATA = Path(__file__).resolve().parent / "data"

# Page chrome of the demo corpus that must never become a passage.
CHROME = [
    "07930-2699",
    "Kostenlose Beratung",
    "Menü",
    "Einwilligungserklärung",
    "Durch Eingabe Ihrer E-Mail-Adresse",
    "Newsletter",
    "JD Vance",
    "Wissenswertes zum Thema",
    "26 Min.",
    "Besuchen Sie uns auf",
    "Kommentar (0)",
    "Referenz",
    "Quellen gesamt",
    "Web: 4Social",
    "HamburgHelsinkiMedienRusslandUkraine",
    "| Details |",
    "edition.cnn.com",
]


def corpus_text(prefix: str) -> str:
    (path,) = CORPUS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def content_texts(text: str, cleaned: Cleaned) -> list[str]:
    return [text[start:end] for start, end in cleaned.content]


def dev_quotes() -> list[dict[str, str]]:
    lines = (DATA / "dev_quotes.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    ("prefix", "title"),
    [
        ("000", "Wiedervereinigung der Supermächte? Trump und Putin treffen sich bald!"),
        ("001", "Putin offen für Gespräch mit Trump: Neue Hoffnung für diplomatische Beziehungen?"),
        ("002", "Trump und Putin: Neueste Verhandlungen zur Beendigung des Ukraine-Kriegs!"),
        ("003", "Trumps und Selenskyjs hitziger Austausch zeigt US-Wende zu Russland"),
    ],
)
def test_headline_becomes_title_not_content(prefix: str, title: str) -> None:
    text = corpus_text(prefix)
    cleaned = clean(text)
    assert cleaned.title == title
    assert all(title not in piece for piece in content_texts(text, cleaned))


def test_repeated_headline_and_header_block_give_metadata() -> None:
    text = corpus_text("001")
    assert text.count("Putin offen für Gespräch mit Trump: Neue Hoffnung") == 2
    cleaned = clean(text)
    assert cleaned.published == "2024-11-07"  # the header's date, not the teaser's 05.11.2024
    assert text[cleaned.content[0][0] :].startswith("Inmitten der angespannten")


def test_sources_and_publisher_from_source_lists_and_footers() -> None:
    assert clean(corpus_text("000")).sources == ("unser-mitteleuropa.com", "www.bpb.de")
    assert clean(corpus_text("000")).publisher == "n-ag.de"
    assert clean(corpus_text("002")).sources == (
        "www.rosenheim24.de",
        "www.berliner-zeitung.de",
        "www.t-online.de",
    )
    cleaned_003 = clean(corpus_text("003"))
    assert cleaned_003.sources == ("edition.cnn.com",)
    assert cleaned_003.publisher == "die-nachrichten.at"


def test_article_without_headline_gets_a_title_from_its_first_sentence() -> None:
    text = corpus_text("004")
    cleaned = clean(text)
    assert cleaned.title.startswith("Russland sei bereit, die Beziehungen")
    assert len(cleaned.title) <= 110
    assert cleaned.content[0][0] == 0  # the first sentence stays content
    assert text[: cleaned.content[-1][1]].endswith("Kontakt aufnehmen?")


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.stem[:3])
def test_corpus_content_has_no_page_chrome(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    cleaned = clean(text)
    pieces = content_texts(text, cleaned)
    assert pieces
    for piece in pieces:
        assert piece == piece.strip()
        for chrome in CHROME:
            assert chrome not in piece, (chrome, piece[:80])
        # A heading left over from a source box ("Details" before "Quellen") is chrome too.
        assert "Details" not in [line.strip() for line in piece.splitlines()]
    ends = [end for _, end in cleaned.content]
    starts = [start for start, _ in cleaned.content]
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))  # ordered, disjoint


def test_gold_evidence_is_content_and_boilerplate_traps_are_not() -> None:
    for row in dev_quotes():
        text = corpus_text(row["doc"][:3])
        start = text.index(row["quote"])
        end = start + len(row["quote"])
        cleaned = clean(text)
        if row["type"] == "boilerplate_trap":
            # No content span may overlap the trap's chrome part (the quote's last line).
            chrome_start = start + row["quote"].rindex("\n") + 1
            assert all(e <= chrome_start or s >= end for s, e in cleaned.content), row["id"]
        else:
            # The quote may cross a blank line (a paragraph broken mid-sentence), so check
            # that every non-blank character of it is covered.
            covered: set[int] = set()
            for s, e in cleaned.content:
                covered.update(range(max(s, start), min(e, end)))
            missing = [i for i in range(start, end) if not text[i].isspace() and i not in covered]
            assert not missing, row["id"]


def test_navigation_teasers_and_promotion_are_removed_by_general_rules() -> None:
    text = (
        "Startseite\nWirtschaft\nSuche\n03.02.2023\n11:00 Uhr\n\n"
        "NachrichtenWirtschaftSportKultur\n\n"
        "Bäcker erhöhen die Preise\n\n"
        "Viele Bäckereien verlangen ab März mehr Geld für Brot und Brötchen. "
        "Grund sind die gestiegenen Energiekosten.\n\n"
        "Das könnte Sie auch interessieren\n\n"
        "Magazin\n01.02.2023\n5 Min.\n\n"
        "Wie teuer wird das Frühstück?\n\n"
        "Ein Überblick über die Preise. \u2013 Lesen Sie hier!\n\n"
        "Abonnieren Sie unseren Newsletter und erhalten Sie alle Nachrichten per E-Mail.\n\n"
        "12 Kommentare\n\n"
        "© 2023 Beispielverlag"
    )
    cleaned = clean(text)
    pieces = content_texts(text, cleaned)
    assert cleaned.title == "Bäcker erhöhen die Preise"
    assert cleaned.published == "2023-02-03"
    assert pieces == [
        "Viele Bäckereien verlangen ab März mehr Geld für Brot und Brötchen. "
        "Grund sind die gestiegenen Energiekosten."
    ]


def test_metadata_table_and_one_line_source_become_metadata() -> None:
    text = (
        "# Neue Brücke eröffnet\n\n"
        "Die neue Brücke über den Kanal ist seit Montag für den Verkehr freigegeben.\n\n"
        "Quelle: dpa\n\n"
        "| Details |  |\n|---|---|\n| Datum | 14.06.2022 |\n"
        "| Quellen | <ul><li>www.example-news.de</li></ul> |\n|  | https://example.org/a |\n"
    )
    cleaned = clean(text)
    assert cleaned.title == "Neue Brücke eröffnet"
    assert cleaned.published == "2022-06-14"
    assert cleaned.sources == ("dpa", "www.example-news.de", "https://example.org/a")
    assert content_texts(text, cleaned) == [
        "Die neue Brücke über den Kanal ist seit Montag für den Verkehr freigegeben."
    ]


def test_data_tables_and_subheadings_stay_content() -> None:
    text = (
        "Wahlergebnis in der Gemeinde\n\n"
        "Die Wahl brachte klare Verhältnisse.\n\n"
        "| Partei | Stimmen |\n|---|---|\n| A | 1200 |\n| B | 800 |\n\n"
        "Ausblick\n\n"
        "Der neue Rat tritt im Mai zusammen."
    )
    pieces = content_texts(text, clean(text))
    assert "| A | 1200 |" in pieces[1]
    assert pieces[2:] == ["Ausblick", "Der neue Rat tritt im Mai zusammen."]


def test_given_title_and_front_matter() -> None:
    text = "---\ntitle: Bericht\ndate: 2021-03-04\n---\n\nBericht\n\nEin kurzer Text zum Test."
    cleaned = clean(text)
    assert (cleaned.title, cleaned.published) == ("Bericht", "2021-03-04")
    assert content_texts(text, cleaned) == ["Ein kurzer Text zum Test."]
    # A given title that is a sentence (ends with ".") does not remove that sentence.
    sentence = "Das ist der erste Satz."
    text2 = f"{sentence}\n\nUnd dann folgt der zweite Absatz."
    assert content_texts(text2, clean(text2, title=sentence))[0] == sentence


def test_wikipedia_passages_keep_all_real_content() -> None:
    for line in (DATA / "germanquad_sample.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        text = record["text"]
        cleaned = clean(text, title=record["title"])
        assert cleaned.title == " ".join(record["title"].replace("_", " ").split())
        covered: set[int] = set()
        for start, end in cleaned.content:
            covered.update(range(start, end))
        body_start = text.index("\n")  # everything after the article-name line is content
        missing = [i for i in range(body_start, len(text)) if not text[i].isspace()]
        assert [i for i in missing if i not in covered] == [], record["id"]


def test_empty_text() -> None:
    assert clean("") == Cleaned(title="", published=None, sources=(), content=())
    assert clean("\n \n").content == ()


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("07.11.2024", "2024-11-07"),
        ("Stand: 7.1.2025, 16:15 Uhr", "2025-01-07"),
        ("2024-11-07T16:15:00+01:00", "2024-11-07"),
        ("am 18. November 2024", "2024-11-18"),
        ("3. Mär. 2023", "2023-03-03"),
        ("November 7, 2024", "2024-11-07"),
        ("31.02.2024", None),
        ("kein Datum", None),
    ],
)
def test_parse_date(value: str, iso: str | None) -> None:
    assert parse_date(value) == iso


def test_article_text_that_resembles_chrome_is_kept() -> None:
    text = (
        "Von Erika Beispiel\n\n"
        "Verein modernisiert seine Kommunikation\n\n"
        "Sie verschickten zuletzt einen Newsletter an alle 300 Mitglieder.\n\n"
        "Die Einwilligung der Mitglieder holte der Vorstand schriftlich ein.\n\n"
        "Kontakt zur Presse hält künftig die Geschäftsstelle."
    )
    cleaned = clean(text)
    assert cleaned.title == "Verein modernisiert seine Kommunikation"  # the byline is chrome
    assert content_texts(text, cleaned) == [
        "Sie verschickten zuletzt einen Newsletter an alle 300 Mitglieder.",
        "Die Einwilligung der Mitglieder holte der Vorstand schriftlich ein.",
        "Kontakt zur Presse hält künftig die Geschäftsstelle.",
    ]
