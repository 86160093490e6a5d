"""Character classes and word lists of German and English news text, defined once."""

from __future__ import annotations

import re

from rag.text.analysis import fold

__all__ = ["CLOSERS", "MONTHS", "MONTHS_PATTERN", "MONTH_NUMBERS", "name_key", "quoted_pattern"]

# Closing quotes and brackets that may follow a sentence's final mark (escapes: ruff flags
# typographic quotes as ambiguous).
CLOSERS = "\"'\u201c\u201d\u00bb\u00ab\u2019\u2018)]"

# Month names in German (with Austrian "Jänner") and English; "april", "august",
# "september", "november" are spelled alike.
MONTHS = frozenset(
    (
        *("januar", "jänner", "februar", "märz", "april", "mai", "juni", "juli", "august"),
        *("september", "oktober", "november", "dezember"),
        *("january", "february", "march", "may", "june", "july", "october", "december"),
    )
)
# Month abbreviations as dates write them ("7. Nov. 2024", "Jän 2023") -> month number.
MONTH_NUMBERS = {
    "jan": 1, "jän": 1, "feb": 2, "mär": 3, "mar": 3, "apr": 4, "mai": 5, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "okt": 10, "oct": 10, "nov": 11, "dez": 12, "dec": 12,
}  # fmt: skip
# For finding dates in running text: English "may" is mostly the verb, so it is left out.
MONTHS_PATTERN = "|".join(sorted(MONTHS - {"may"}, key=lambda m: (-len(m), m)))

# Opening quote -> the closing characters it pairs with („…“ German, “…” English, »…«, «…»).
_QUOTE_PAIRS = (
    ('"', '"'),
    ("\u201e", '\u201c\u201d"'),
    ("\u201c", '\u201d"'),
    ("»", "«"),
    ("«", "»"),
)


def quoted_pattern(min_chars: int = 0, max_chars: int | None = None) -> re.Pattern[str]:
    """A regex for a quoted phrase of ``min_chars`` to ``max_chars`` characters."""
    length = f"{{{min_chars},{'' if max_chars is None else max_chars}}}"
    alternatives = [
        f"{re.escape(o)}[^{re.escape(c)}]{length}[{re.escape(c)}]" for o, c in _QUOTE_PAIRS
    ]
    return re.compile("|".join(alternatives))


def name_key(word: str) -> str:
    """The first five folded letters: a name and its inflected or translated spelling
    share them ("Kremlin"/"Kreml", "Moskau"/"Moskaus"), while different names rarely do."""
    return fold(word)[:5]
