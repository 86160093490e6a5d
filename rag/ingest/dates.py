"""Publication dates as pages write them ("7. November 2024", "07.11.2024", "Nov 7, 2024")."""

from __future__ import annotations

import datetime as dt
import re

from rag.text.lexicon import MONTH_NUMBERS

__all__ = ["parse_date"]

_MONTH = r"(?P<mon>[A-Za-zÄÖÜäöü]{3,9})\.?"
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(?P<d>\d{1,2})\.\s?(?P<m>\d{1,2})\.\s?(?P<y>\d{4})(?!\d)"),
    re.compile(r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?!\d)"),
    re.compile(rf"(?<!\d)(?P<d>\d{{1,2}})\.?\s+{_MONTH}\s+(?P<y>\d{{4}})(?!\d)"),
    re.compile(rf"\b{_MONTH}\s+(?P<d>\d{{1,2}}),?\s+(?P<y>\d{{4}})(?!\d)"),
)


def parse_date(value: str) -> str | None:
    """The first calendar date in ``value`` as ISO ``YYYY-MM-DD``, or None.

    Understands ``07.11.2024``, ``2024-11-07(T...)``, ``7. November 2024`` and
    ``November 7, 2024``.
    """
    found: list[tuple[int, str]] = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(value):
            iso = _to_iso(match)
            if iso is not None:
                found.append((match.start(), iso))
                break
    return min(found)[1] if found else None


def _to_iso(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    mon = groups.get("mon")
    month = MONTH_NUMBERS.get(mon[:3].lower()) if mon else int(groups["m"])
    if month is None:
        return None
    try:
        return dt.date(int(groups["y"]), month, int(groups["d"])).isoformat()
    except ValueError:
        return None
