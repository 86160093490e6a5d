"""Tests of the German-aware sentence splitter."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.text.sentences import split_sentences

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Peskow sagte am 18. November, dass es gut sei. Dann ging er.",
            ["Peskow sagte am 18. November, dass es gut sei.", "Dann ging er."],
        ),
        (
            "Im 2. Weltkrieg war das so. Am 20. Januar 2025 beginnt es.",
            ["Im 2. Weltkrieg war das so.", "Am 20. Januar 2025 beginnt es."],
        ),
        (
            "Das gilt z. B. für Äpfel, u. a. auch Birnen. Dr. Müller kam bzw. ging.",
            ["Das gilt z. B. für Äpfel, u. a. auch Birnen.", "Dr. Müller kam bzw. ging."],
        ),
        (
            "Es waren ca. 20.000 Leute. Nr. 5 ist da. St. Petersburg liegt am Meer.",
            ["Es waren ca. 20.000 Leute.", "Nr. 5 ist da.", "St. Petersburg liegt am Meer."],
        ),
        (
            "Äpfel, Birnen etc. sind Obst. Proteste in Washington, D.C. begleitet es.",
            ["Äpfel, Birnen etc. sind Obst.", "Proteste in Washington, D.C. begleitet es."],
        ),
        (
            "Die Seite www.t-online.de berichtet. Mehr bei edition.cnn.com heute.",
            ["Die Seite www.t-online.de berichtet.", "Mehr bei edition.cnn.com heute."],
        ),
        (
            "Er sagte: „Das ist gut.“ Dann ging er. Wirklich? Ja! Und dann … nichts. Gut... Ok.",
            [
                "Er sagte: „Das ist gut.“",
                "Dann ging er.",
                "Wirklich?",
                "Ja!",
                "Und dann … nichts.",
                "Gut...",
                "Ok.",
            ],
        ),
        ("„America First!“, nicht leicht. Ende.", ["„America First!“, nicht leicht.", "Ende."]),
        (
            'He said "It is fine." Then he left. Mr. Smith met the U.S. President in Jan. 2024.',
            [
                'He said "It is fine."',
                "Then he left.",
                "Mr. Smith met the U.S. President in Jan. 2024.",
            ],
        ),
        (
            "Die Inflation lag 2008. Danach sank sie.",
            ["Die Inflation lag 2008.", "Danach sank sie."],
        ),
    ],
)
def test_split_sentences_german_and_english(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_headings_and_lines_are_separate_sentences() -> None:
    text = "## Hintergrund\n\nDie Lage ist ernst.\nKommentar (0)\n\nMagazin\n05.11.2024\n26 Min."
    assert sentences(text) == [
        "## Hintergrund",
        "Die Lage ist ernst.",
        "Kommentar (0)",
        "Magazin",
        "05.11.2024",
        "26 Min.",
    ]


def test_paragraph_broken_inside_a_sentence_stays_one_sentence() -> None:
    text = "Ein Bericht hebt hervor, dass es\n\nBestrebungen gibt. Danach mehr."
    assert sentences(text) == [
        "Ein Bericht hebt hervor, dass es\n\nBestrebungen gibt.",
        "Danach mehr.",
    ]


def test_empty_and_whitespace_only() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t ") == []


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.stem[:3])
def test_spans_are_ordered_trimmed_and_cover_all_text(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spans = split_sentences(text)
    assert len(spans) > 5
    covered = 0
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end
        piece = text[start:end]
        assert piece == piece.strip()
        assert text[previous_end:start].strip() == ""  # nothing but whitespace is skipped
        covered += end - start
        previous_end = end
    assert text[previous_end:].strip() == ""
    assert covered > 0.95 * len(text.strip())


def test_a_clause_broken_by_a_blank_line_stays_one_sentence() -> None:
    text = (
        "Reaktionen aus Moskau\n\nMoskau, das die verbalen Auseinandersetzungen im Weißen\n\n"
        "Haus mit Freude zur Kenntnis nahm, erwartet nun mehr.\n\n"
        "Ein neuer, radikaler Abschnitt in den Beziehungen\n\nDer Text beginnt."
    )
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Reaktionen aus Moskau",
        "Moskau, das die verbalen Auseinandersetzungen im Weißen\n\n"
        "Haus mit Freude zur Kenntnis nahm, erwartet nun mehr.",
        "Ein neuer, radikaler Abschnitt in den Beziehungen",
        "Der Text beginnt.",
    ]
