"""What a question asks for, and whether a sentence holds it (no model involved).

* ``asked_kind`` / ``holds_kind``: the question word asks for a time ("wann", "when"), a
  count ("wie viele", "how many"), a place ("wo", "where") or a person ("wer", "who"), and a
  sentence holds a date, a number, a place after a preposition, or a two-word name. Both are
  features of the answer sentence selector (``rag.answer.selector``), whose fitted weights
  decide how much they count.
* ``expected_answer_type`` and ``quoted_terms``: retrieval interleaves the passages quoting
  the term closest to a question that asks for a designation ("Wie nennt …?").
* ``is_question``: a message with a question mark or a question word near its start.
"""

from __future__ import annotations

import re
from typing import Literal

from rag.text.lexicon import MONTHS_PATTERN, quoted_pattern

__all__ = [
    "AnswerType",
    "Kind",
    "asked_kind",
    "expected_answer_type",
    "holds_kind",
    "is_question",
    "quoted_terms",
    "time_specificity",
]

AnswerType = Literal["money", "count", "time", "term"]

_TYPE_PATTERNS: tuple[tuple[AnswerType, re.Pattern[str]], ...] = (
    (
        "money",
        re.compile(
            r"\b(wie ?viel geld|wie teuer|welche summe|welcher betrag|wie hoch (?:war|ist|sind|"
            r"waren) (?:die|der) (?:summe|betrag|kosten)|how much money|what amount|how much "
            r"(?:did|does|do|will|would) .{0,40}cost)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "time",
        re.compile(
            r"\b(wann|seit wann|bis wann|ab wann|(?:in|ab|seit|bis) welchem jahr|welches jahr|"
            r"welchem monat|an welchem tag|when|since when|what year|which year|what date|"
            r"what time)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "count",
        re.compile(
            r"\b(wie ?viele?|how many|how much|wie hoch|wie groß|wie lange|what percentage|"
            r"wie alt|how old|how long)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "term",
        re.compile(
            r"\b(wie (?:nennt|nannte|nennen|bezeichnet|bezeichnete|bezeichnen)|unter welchem "
            r"(?:motto|namen|slogan|schlagwort)|welchen (?:begriff|ausdruck|namen)|what (?:does|"
            r"did|do) .{1,60} call|what (?:term|word|slogan|motto)|under what (?:motto|slogan))\b",
            re.IGNORECASE,
        ),
    ),
)
_NUMBER_WORDS = (
    r"zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|zwanzig|dreißig|hundert|"
    r"tausend|dutzend|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|hundred|"
    r"thousand|dozen"
)
_VAGUE_TIME = re.compile(
    r"\b(?:woche|monat|jahr|tag|morgen|gestern|heute|bald|demnächst|kürzlich|ende|anfang|"
    r"mitte|frühjahr|sommer|herbst|winter|week|month|year|day|today|tomorrow|yesterday|soon|"
    r"recently)",
    re.IGNORECASE,
)
_FULL_DATE = re.compile(
    rf"\b\d{{1,2}}\.\s*(?:{MONTHS_PATTERN})\b|\b\d{{1,2}}\.\d{{1,2}}\.\d{{2,4}}\b|"
    rf"\b(?:{MONTHS_PATTERN})\s+\d{{1,2}}(?:st|nd|rd|th)?\b",
    re.IGNORECASE,
)
_MONTH = re.compile(rf"\b(?:{MONTHS_PATTERN})\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d(?:er)?\b")
# Numbers that are part of a date are no count: "am 18. November", "im Jahr 2017".
_DATE_NUMBER = re.compile(
    rf"\b\d{{1,2}}\.\s*(?:{MONTHS_PATTERN})\b|\b\d{{1,2}}\.\d{{1,2}}\.(?:\d{{2,4}})?|"
    r"\b(?:1[89]|20)\d\d(?:er)?\b",
    re.IGNORECASE,
)
_COUNT = re.compile(rf"\b\d+(?:[.,]\d+)*\b|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE)
_QUOTED = quoted_pattern(2, 80)


def expected_answer_type(question: str) -> AnswerType | None:
    """What kind of value the question asks for, if it clearly asks for one."""
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(question):
            return kind
    return None


def _counts(sentence: str) -> bool:
    """A number that is no part of a date."""
    dates = [m.span() for m in _DATE_NUMBER.finditer(sentence)]
    return any(
        not any(s <= match.start() < e for s, e in dates) for match in _COUNT.finditer(sentence)
    )


def quoted_terms(text: str) -> list[str]:
    """The quoted phrases of ``text`` without their quotation marks ("„America First!“")."""
    return [m.group()[1:-1].strip() for m in _QUOTED.finditer(text)]


def time_specificity(sentence: str) -> float:
    """How precisely ``sentence`` dates something: 3 full date, 2 month, 1 year, 0.5 vague."""
    if _FULL_DATE.search(sentence):
        return 3.0
    if _MONTH.search(sentence):
        return 2.0
    if _YEAR.search(sentence) or re.search(r"\d", sentence):
        return 1.0
    return 0.5 if _VAGUE_TIME.search(sentence) else 0.0


# -- the kind of value a question asks for (a feature of ``rag.answer.selector``) ----------
Kind = Literal["time", "count", "place", "person"]
_ASKS: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (
        "time",
        re.compile(
            r"\b(wann|in welchem (?:jahr|jahrhundert|monat|zeitraum)|welche[mns]? (?:jahr|datum)|"
            r"an welchem tag|when|what (?:year|date|century|time|decade)|which (?:year|century))\b",
            re.IGNORECASE,
        ),
    ),
    (
        "count",
        re.compile(
            r"\b(wie ?viele?|wie (?:hoch|groß|lange?|alt|weit|schwer|oft|breit|tief)|"
            r"how (?:many|much|long|old|far|large|big|high|often|tall)|what percentage|"
            r"welchen anteil|wie viel prozent)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "place",
        re.compile(
            r"\b(wo|woher|wohin|where|in welche[mr]? (?:stadt|land|staat|region|ort|gegend)|"
            r"(?:which|what) (?:city|country|state|region|place))\b",
            re.IGNORECASE,
        ),
    ),
    ("person", re.compile(r"\b(wer|wem|wen|wessen|who|whom|whose)\b", re.IGNORECASE)),
)
# A capitalised word after a preposition of place ("in Helsinki", "nach den USA").
_PLACE = re.compile(
    r"\b(?:in|im|nach|aus|bei|von|vom|zu|an|am|auf|at|from|near|to)\s+"
    r"(?:(?:der|dem|den|die|des|the)\s+)?[A-ZÄÖÜ][\w-]+"
)
# Two capitalised words in a row after the first word ("Jared Allen", "Nikola Tesla").
_PERSON = re.compile(r"(?<=\S)\s+[A-ZÄÖÜ][\w.-]+\s+[A-ZÄÖÜ][\w-]+")


def asked_kind(question: str) -> Kind | None:
    """The kind of value the question asks for (its question word), if any."""
    for kind, pattern in _ASKS:
        if pattern.search(question):
            return kind
    return None


def holds_kind(sentence: str, kind: Kind) -> bool:
    """Whether ``sentence`` holds a value of ``kind`` (a date, a count, a place, a name)."""
    if kind == "time":
        return time_specificity(sentence) >= 1.0
    if kind == "count":
        return _counts(sentence)
    if kind == "place":
        return bool(_PLACE.search(sentence))
    return bool(_PERSON.search(sentence))


_QUESTION_WORD = re.compile(
    r"^\W*(?:\w+\W+){0,3}?(?:wer|wen|wem|wessen|was|wann|wo|woher|wohin|wie|warum|weshalb|"
    r"wieso|welche[mnrs]?|who|whom|whose|what|when|where|why|how|which|is|are|was|were|do|"
    r"does|did|can|could|gibt|ist|sind|hat|haben|kann|können)\b",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """A question mark, or a question word among the first words ("Wann kam er", "how many")."""
    return "?" in text or bool(_QUESTION_WORD.search(text))
