from __future__ import annotations

import pytest

from rag.text.analysis import (
    GermanAnalyzer,
    candidate_parts,
    detect_language,
    fold,
    seam_split,
    split_compound,
    tokenize,
)


@pytest.fixture(scope="module")
def analyzer() -> GermanAnalyzer:
    return GermanAnalyzer()


def test_compound_matches_its_head_and_the_ascii_spelling(analyzer: GermanAnalyzer) -> None:
    compound = set(analyzer.analyze("Präsidentschaftswahlen"))
    assert set(analyzer.analyze("Wahlen")) <= compound
    assert set(analyzer.analyze("Präsidentschaft")) <= compound
    # umlaut written as "ae", singular: the exact stem is shared
    assert (
        analyzer.analyze("praesidentschaftswahl")[0]
        == analyzer.analyze("Präsidentschaftswahlen")[0]
    )
    # the compound's own stem comes first, so an exact match scores on every term
    assert analyzer.analyze("Präsidentschaftswahlen")[0] == "prasidentschaftswahl"


def test_without_decompounding_the_head_does_not_match(analyzer: GermanAnalyzer) -> None:
    plain = GermanAnalyzer(decompound=False)
    assert not set(plain.analyze("Präsidentschaftswahlen")) & set(plain.analyze("Wahlen"))


def test_folding_umlauts_eszett_and_case() -> None:
    assert fold("Straße") == "strasse"
    assert fold("ÄÖÜäöüé") == "aouaoue"
    a = GermanAnalyzer()
    assert a.analyze("STRASSE") == a.analyze("Straße")
    assert a.analyze("Häuser") == a.analyze("Haeuser") == a.analyze("Haus")
    unfolded = GermanAnalyzer(fold=False, stem=False, decompound=False)
    assert unfolded.analyze("Straße") == ["straße"]


def test_stop_words_are_dropped_only_when_asked() -> None:
    text = "Der Präsident und die Regierung sind nicht in Berlin"
    with_stop = GermanAnalyzer().analyze(text)
    assert with_stop == ["prasident", "regier", "berlin"]
    without = GermanAnalyzer(stopwords=False).analyze(text)
    assert {"der", "und", "die", "nicht", "in"} <= set(without)


def test_stemming_conflates_inflections() -> None:
    a = GermanAnalyzer()
    assert a.analyze("Verhandlungen")[0] == a.analyze("Verhandlung")[0]
    assert GermanAnalyzer(stem=False).analyze("Verhandlungen") == ["verhandlungen"]


def test_tokenize_numbers_and_underscores() -> None:
    assert tokenize("2.000 Soldaten, 1,5 Mio. am 12.03.2025") == [
        "2000",
        "Soldaten",
        "1",
        "5",
        "Mio",
        "am",
        "12",
        "03",
        "2025",
    ]
    assert tokenize("FC_Barcelona") == ["FC", "Barcelona"]


def test_seam_split_cuts_after_suffix_and_linking_s() -> None:
    assert seam_split("wirtschaftspolitik") == ["wirtschaft", "politik"]
    assert seam_split("sicherheitsratsbeschluss") == ["sicherheit", "ratsbeschluss"]
    assert seam_split("universitatsklinik") == ["universitat", "klinik"]
    # no seam: the suffix is followed by too little, or there is no linking s
    assert seam_split("regierungs") == ["regierungs"]
    assert seam_split("tatsache") == ["tatsache"]


def test_split_compound_uses_known_words_and_linking_elements() -> None:
    known = {"migranten": 5, "anteil": 9, "bundestag": 3, "wahl": 7, "verstandnis": 50}
    assert split_compound("migrantenanteil", lambda w: known.get(w, 0)) == [
        "migranten",
        "anteil",
    ]
    # linking -s- between known parts
    assert split_compound("bundestagswahl", lambda w: known.get(w, 0)) == ["bundestag", "wahl"]
    # a frequent whole word is kept even if it could be split
    known |= {"vers": 1, "tandnis": 1}
    assert split_compound("verstandnis", lambda w: known.get(w, 0)) == ["verstandnis"]
    assert split_compound("unbekanntwort", lambda w: known.get(w, 0)) == ["unbekanntwort"]


def test_candidate_parts_cover_what_split_compound_asks() -> None:
    asked: set[str] = set()

    def frequency(part: str) -> int:
        asked.add(part)
        return 1

    split_compound("bundestagswahlen", frequency)
    assert asked <= candidate_parts("bundestagswahlen")


def test_query_splitting_with_a_vocabulary(analyzer: GermanAnalyzer) -> None:
    vocabulary = {"migrant": 4, "anteil": 8}

    def lookup(terms: object) -> dict[str, int]:
        return {t: vocabulary[t] for t in terms if t in vocabulary}  # type: ignore[attr-defined]

    words = analyzer.words("Migrantenanteil")
    assert analyzer.terms(words) == ["migrantenanteil"]  # no seam, no vocabulary
    assert analyzer.terms(words, vocabulary=lookup) == ["migrantenanteil", "migrant", "anteil"]
    # a word the index knows is analysed exactly as at indexing time
    vocabulary["migrantenanteil"] = 1
    assert analyzer.terms(words, vocabulary=lookup) == ["migrantenanteil"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Was sagte Putin im März 2025 über die Ukraine?", "de"),
        ("Wie viele Einwohner hat Thüringen?", "de"),
        ("Wer ist der Präsident?", "de"),
        ("What did Putin say about Ukraine in March 2025?", "en"),
        ("How many people live in Thuringia?", "en"),
        ("Who is the president of the United States?", "en"),
        ('Wann erschien "The Life of Pablo"?', "de"),  # quoted titles do not count
        ("Was berichtet „The Guardian“ über den Gipfel?", "de"),
        ('What did "Die Zeit" report about the summit?', "en"),
        ("Putin Trump 2025", "de"),  # no evidence either way: German
        ("", "de"),
        ("2018", "de"),
        ("Hallo", "de"),
        # py3langid's first guesses, corrected by the stop words (XQuAD dev questions)
        ("What did Lady Gaga sing?", "en"),  # Javanese first
        ("What are malum prohibitum considerations?", "en"),  # Latin first
        # any other language
        ("¿Dónde se reunieron Trump y Putin en julio de 2018?", "es"),
        ("¿Cuántos habitantes tiene Alemania?", "es"),
        ("Где встретились Трамп и Путин в июле 2018 года?", "ru"),
        ("Почему изменились отношения между Вашингтоном и Москвой?", "ru"),
        ("Qui a gagné le Super Bowl 50 ?", "fr"),  # "a" is an English stop word
        ("Où Trump et Poutine se sont-ils rencontrés en juillet 2018 ?", "fr"),
        ("Dove si sono incontrati Trump e Putin nel luglio 2018?", "it"),
        ("Chi ha vinto il Super Bowl 50?", "it"),
        ("Waar ontmoetten Trump en Poetin elkaar in juli 2018?", "nl"),
        ('¿Cuándo salió "The Life of Pablo"?', "es"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_english_queries_keep_only_literal_matches(analyzer: GermanAnalyzer) -> None:
    terms = analyzer.analyze_query("What did Putin say about the NATO summit in March 2025?")
    assert terms == ["putin", "nato", "march", "2025"]
    # the same words in German keep their content words
    german = analyzer.analyze_query("Was sagte Putin über den NATO-Gipfel im März 2025?")
    assert {"putin", "nato", "gipfel", "2025"} <= set(german)
