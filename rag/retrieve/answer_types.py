"""What a question asks for, and whether a sentence can provide it (no model involved).

Extractive answers quote sentences; a sentence that is *about* the question but does not
hold the kind of value asked for is no answer. The checks are coarse on purpose, so they
only reject a sentence when the question is explicit:

* ``money``: "Wie viel Geld …?", "How much money …?": an amount with a currency.
* ``count``: "Wie viele X …?", "How many X …?": a number that is no date or year, and in
  a German sentence for a German question it must stand next to the counted noun X (or
  the head of a compound: "Leserkommentare" is counted by "… 3 Kommentare").
* ``time``: "Wann …?", "When …?": a date or time expression. ``time_specificity`` ranks
  them (a full date beats a month, which beats a bare year or "bald").
* ``term``: "Wie nennt …?", "Unter welchem Motto …?": the sentence must quote a term.
* ``specific``: "Welche X konkret …?", "Which specific X …?": a name next to X that the
  question does not already contain (a generic mention of X answers nothing).
* ``stance``: "What is China's position on …?", "Wie steht Polen zu …?": a sentence that
  attributes a statement or stance to the holder: the holder within a few words of a
  saying or stance word ("erklärte", "Haltung", "laut"). A sentence that merely names the
  holder ("ein Konflikt mit China") says nothing about its position.
* ``current``: "Wie steht es derzeit um …?": a preference, not a requirement, for
  sentences that describe the present state ("derzeit", "zurzeit", "currently").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rag.text.analysis import GermanAnalyzer, fold
from rag.text.lexicon import MONTHS_PATTERN, name_key, quoted_pattern

__all__ = [
    "AnswerType",
    "QuestionFocus",
    "expected_answer_type",
    "has_answer_type",
    "question_focus",
    "quoted_terms",
    "time_specificity",
]

AnswerType = Literal["money", "count", "time", "term", "specific", "stance", "current"]

# "China's (official) position", "the view of Poland", "Wie steht Polen zu",
# "Was hält Berlin von", "die Haltung Chinas": the holder is the capitalised name.
# Reactions are left out: they are told with any verb ("nahm mit Freude zur Kenntnis").
_STANCE_NOUNS_EN = r"position|stance|view|views|opinion|attitude|stand"
_STANCE_NOUNS_DE = r"Haltung|Position|Standpunkt|Meinung|Sicht|Einschätzung"
_STANCE_Q = re.compile(
    rf"\b(?P<en>[A-Z][\w-]+)['\u2019]s\s+(?:\w+\s+)?(?:{_STANCE_NOUNS_EN})\b"
    rf"|\b(?:{_STANCE_NOUNS_EN}) of (?:the )?(?P<en2>[A-Z][\w-]+)"
    r"|\b(?i:wie steht|was hält|was halten|wie positioniert)\s+"
    r"(?:(?i:der|die|das)\s+)?(?P<de>[A-ZÄÖÜ][\w-]+)"
    rf"|\b(?:{_STANCE_NOUNS_DE})\s+(?:(?:von|der|des)\s+)?(?P<de2>[A-ZÄÖÜ][\w-]+)"
)
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
    (
        "specific",
        re.compile(
            r"\b(welche[rsnm]? .{0,60}\b(?:konkret|genau|namentlich|im einzelnen)|which "
            r"(?:specific|exact|particular)|name the)\b",
            re.IGNORECASE,
        ),
    ),
    ("stance", _STANCE_Q),
    (
        "current",
        re.compile(
            r"\b(derzeit|zurzeit|gegenwärtig|momentan|aktuell|currently|at present)\b", re.I
        ),
    ),
)
# Saying and stance words (prefixes, lower case) that attribute a statement to its holder.
_STANCE_CUES = re.compile(
    r"\b(?:sag|erklär|beton|kritisi|begrüß|forder|warn|reagier|äußer|position|haltung|"
    r"standpunkt|stellungnahm|sprecher|laut\b|zufolge|lehnt|ablehn|unterstütz|bezeichn|"
    r"kündig|verurteil|teilt|mitteil|besteh|fordert|zeigt sich|hält|sieht|meint|"
    r"said|say|stat|position|stance|view|welcom|critici|reject|support|call|warn|react|"
    r"spokes|according)",
    re.IGNORECASE,
)
STANCE_WINDOW = 8  # words between the holder and a saying or stance word

_TYPE_PATTERNS_BY_KIND = dict(_TYPE_PATTERNS)


_NUMBER_WORDS = (
    r"zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|zwanzig|dreißig|hundert|"
    r"tausend|dutzend|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|hundred|"
    r"thousand|dozen"
)
_HAS_NUMBER = re.compile(rf"\d|\b(?:{_NUMBER_WORDS})\b|\b(?:million|milliard|billion)", re.I)
_HAS_MONEY = re.compile(
    r"[€$£]|\b(?:euro|dollar|usd|eur|rubel|pfund|franken|mrd|mio|million|milliard|billion)",
    re.IGNORECASE,
)
_VAGUE_TIME = re.compile(
    r"\b(?:woche|monat|jahr|tag|morgen|gestern|heute|bald|demnächst|kürzlich|ende|anfang|"
    r"mitte|frühjahr|sommer|herbst|winter|week|month|year|day|today|tomorrow|yesterday|soon|"
    r"recently)",
    re.IGNORECASE,
)
_FULL_DATE = re.compile(
    rf"\b\d{{1,2}}\.\s*(?:{MONTHS_PATTERN})\b|\b\d{{1,2}}\.\d{{1,2}}\.\d{{2,4}}\b|\b(?:{MONTHS_PATTERN})"
    r"\s+\d{1,2}(?:st|nd|rd|th)?\b",
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
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_QUOTED = quoted_pattern(2, 80)
_AFTER_COUNT_Q = re.compile(r"\b(?i:wie ?viele?|how many)\s+([\w-]+)")
_AFTER_WHICH_Q = re.compile(
    r"\b(?i:welche[rsnm]?|which(?: specific| exact| particular)?)\s+(?:[a-zäöüß]\w*\s+){0,2}"
    r"([A-ZÄÖÜ]?[\w-]+)"
)
COUNT_WINDOW = 3  # words between a number and the noun it counts ("3 neue Kommentare")
NAME_WINDOW = 6  # words between the asked noun and the name that specifies it

_stemmer = GermanAnalyzer()


@dataclass(frozen=True)
class QuestionFocus:
    """The answer type of a question and the noun it asks about (stemmed), if any."""

    kind: AnswerType | None
    noun: str | None = None
    question_words: frozenset[str] = frozenset()  # folded words of the question
    # ``stance``: first five folded letters of the passage words that name the holder in
    # another language ("moska" for "Moscow"), found by ``rag.answer.extractive.name_variants``.
    aliases: frozenset[str] = frozenset()


def expected_answer_type(question: str) -> AnswerType | None:
    """What kind of value the question asks for, if it clearly asks for one."""
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(question):
            return kind
    return None


def _stance_holder(question: str) -> str | None:
    match = _STANCE_Q.search(question)
    return next(g for g in match.groups() if g) if match else None


def _stem(word: str) -> str:
    return _stemmer.stems([fold(word.split("-")[-1])])[0]


def question_focus(question: str) -> QuestionFocus:
    """Answer type plus the asked noun ("Wie viele *Kommentare*", "Welche *Investoren*")."""
    kind = expected_answer_type(question)
    noun = None
    pattern = {"count": _AFTER_COUNT_Q, "specific": _AFTER_WHICH_Q}.get(kind or "")
    if pattern is not None and (match := pattern.search(question)):
        noun = _stem(match.group(1))
    if kind == "stance":
        noun = _stance_holder(question)  # a name: kept as written, matched by its start
    words = frozenset(fold(w) for w in _WORD.findall(question))
    return QuestionFocus(kind, noun, words)


def _same_noun(stem: str, noun: str) -> bool:
    """Equal stems, or one is the head of the other compound ("leserkommentar"/"kommentar")."""
    if stem == noun:
        return True
    short, long = sorted((stem, noun), key=len)
    return len(short) >= 4 and long.endswith(short)


def _counts(sentence: str, noun: str | None) -> bool:
    dates = [m.span() for m in _DATE_NUMBER.finditer(sentence)]
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(sentence)]
    for match in _COUNT.finditer(sentence):
        if any(s <= match.start() < e for s, e in dates):
            continue
        if noun is None:
            return True
        after = [w for s, _e, w in words if s >= match.end()][:COUNT_WINDOW]
        if any(_same_noun(_stem(w), noun) for w in after):
            return True
    return False


def _is_name(word: str, sentence_start: bool) -> bool:
    """An acronym ("CNN"), a mixed-case or alphanumeric token ("ExxonMobil", "G20")."""
    core = word.replace("-", "")
    if len(core) < 2:
        return False
    upper = sum(ch.isupper() for ch in core)
    if core.isupper() and core.isalpha():
        return True
    if any(ch.isdigit() for ch in core) and any(ch.isalpha() for ch in core):
        return True
    return upper >= 2 and not sentence_start


def _names_near(sentence: str, focus: QuestionFocus) -> bool:
    """A name the question lacks within ``NAME_WINDOW`` words of the asked noun.

    German capitalises every noun, so a single capitalised word is no evidence of a
    name; accepted are acronyms, mixed-case tokens and runs of two or more capitalised
    words ("Annalena Baerbock", "Financial Times").
    """
    words = [m.group() for m in _WORD.finditer(sentence)]
    if focus.noun is None:  # noun unknown (or in another language): a name anywhere
        anchors, window = [-1], len(words)
    else:
        anchors = [i for i, w in enumerate(words) if _same_noun(_stem(w), focus.noun)]
        window = NAME_WINDOW
    for a in anchors:
        lo, hi = max(0, a - window), min(len(words), a + window + 1)
        for i in range(lo, hi):
            w = words[i]
            if i == a or fold(w) in focus.question_words:
                continue
            if _is_name(w, i == 0):
                return True
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if (
                i > 0
                and w[:1].isupper()
                and nxt[:1].isupper()
                and i + 1 != a
                and fold(nxt) not in focus.question_words
            ):
                return True
    return False


def has_answer_type(sentence: str, kind: AnswerType | QuestionFocus) -> bool:
    """Whether ``sentence`` contains a value of the kind asked for.

    Given a ``QuestionFocus`` the count and specificity checks also look for the asked
    noun; given only the type they accept any count / never accept a specific name.
    """
    focus = kind if isinstance(kind, QuestionFocus) else QuestionFocus(kind)
    if focus.kind == "money":
        return bool(_HAS_MONEY.search(sentence) and _HAS_NUMBER.search(sentence))
    if focus.kind == "time":
        return time_specificity(sentence) > 0
    if focus.kind == "count":
        return _counts(sentence, focus.noun)
    if focus.kind == "term":
        return bool(_QUOTED.search(sentence))
    if focus.kind == "specific":
        return _names_near(sentence, focus)
    if focus.kind == "stance":
        return _attributed(sentence, focus.noun, focus.aliases)
    if focus.kind == "current":
        return bool(_TYPE_PATTERNS_BY_KIND["current"].search(sentence))
    return True


def _attributed(sentence: str, holder: str | None, aliases: frozenset[str]) -> bool:
    """A saying or stance word within ``STANCE_WINDOW`` words of the holder.

    Names match by their first five letters (folded): "China"/"Chinas", "Kremlin"/"Kreml",
    or by one of ``aliases`` (the holder's name in the passages' language).
    """
    keys = set(aliases) | ({name_key(holder)} if holder else set())
    words = [m.group() for m in _WORD.finditer(sentence)]
    anchors = [i for i, w in enumerate(words) if name_key(w) in keys]
    cues = [i for i, w in enumerate(words) if _STANCE_CUES.match(w)]
    return any(abs(a - c) <= STANCE_WINDOW for a in anchors for c in cues)


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
