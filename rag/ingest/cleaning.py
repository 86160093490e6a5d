"""Separate the article from the page chrome of (German) news pages.

``clean(text)`` never changes the text: it returns the spans of article content as offsets into
it, plus the metadata the page states (headline, publication date, the sources it names and the
site in its footer). The rules are general patterns of news pages, line by line and block by
block (blocks are separated by blank lines):

- navigation and header blocks: runs of very short lines with phone numbers, dates, counters;
  menu words; category words glued together ("HamburgHelsinkiMedien...");
- newsletter, consent and other promotion addressed to the reader ("melden Sie sich ... an");
- teasers of other articles: a "Mehr zum Thema" heading or a reading time ("26 Min.") starts
  them, and headline-like blocks after it belong to them;
- source lists and metadata tables ("Quellen", "Referenz 1", "| Ort | ... |") become metadata;
- footers ("Besuchen Sie uns auf: ..."), comment counters ("Kommentar (0)");
- the headline becomes the title, repeated headline lines are dropped, and a heading left
  dangling before removed chrome (or at the end) is dropped too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from rag.ingest.dates import parse_date
from rag.text.lexicon import CLOSERS
from rag.text.sentences import split_sentences

__all__ = ["Cleaned", "clean"]


@dataclass(frozen=True)
class Cleaned:
    """What ``clean`` found: metadata and the article's content spans ``(start, end)``."""

    title: str
    published: str | None
    sources: tuple[str, ...]
    content: tuple[tuple[int, int], ...]
    publisher: str | None = None  # the site a footer names ("Besuchen Sie uns auf: x.de")


# ---------------------------------------------------------------------------- line patterns


def _full(pattern: str) -> re.Pattern[str]:
    """A whole-line pattern, case-insensitive, tolerant of markdown emphasis around it."""
    return re.compile(rf"[*_\s]*(?:{pattern})[*_\s:.!]*", re.IGNORECASE)


_BULLET = r"(?:[-*•·▪►>]\s*)?"
_DOMAIN = r"(?:https?://)?(?:[\w-]+\.)+[a-z]{2,}(?:/\S*)?"
_DOMAIN_LINE = _full(rf"{_BULLET}{_DOMAIN}")
_DOMAIN_IN = re.compile(rf"{_DOMAIN}", re.IGNORECASE)
_GLUED_WORDS = re.compile(r"(?:[A-ZÄÖÜ][a-zäöüß]+){3,}")
_PHONE = _full(r"(?:tel(?:efon)?|fax|hotline|mobil)?\.?:?\s*\+?\d[\d /()-]{4,}\d")
_META = _full(
    r"\d{1,2}\.\d{1,2}\.\d{2,4}(?:,?\s*(?:um\s*)?\d{1,2}[:.]\d{2}(?:\s*Uhr)?)?"  # date (+ time)
    r"|\d{1,2}[:.]\d{2}\s*Uhr|\d{1,2}:\d{2}"  # time
    r"|[\d.,\s+%-]+"  # a bare number ("150.000")
    r"|\d+\s*(?:Min(?:uten|\.)?|Minuten Lesezeit)(?:\s*Lesezeit)?|Lesezeit:?\s*\d+\s*Min\w*"
)
_READING_TIME = _full(r"\d+\s*Min\w*\.?(?:\s*Lesezeit)?|Lesezeit:?\s*\d+\s*Min\w*")
_COMMENTS = _full(
    r"(?:\d+\s+)?(?:Kommentare?|Leserkommentare?|Comments?)(?:\s*\(\d+\))?|Kommentieren"
)
_NAV_WORD = _full(
    r"Menü|Menu|Navigation|Suche|Search|Startseite|Home|Login|Log-?in|Anmelden|Abmelden"
    r"|Registrieren|Abo|Abonnieren|Teilen|Share|Drucken|Merken|Zurück|Nach oben|Schließen"
    r"|Impressum|Datenschutz|AGB|Kontakt|Cookie-Einstellungen|Alle Rechte vorbehalten.*|©.*"
)
_FOOTER = re.compile(
    r"[*_\s]*(?:Besuchen|Folgen|Finden)\s+Sie\s+uns(?:\s+auch)?\s+(?:auf|bei|unter)\b:?\s*",
    re.IGNORECASE,
)
_TEASER_HEADING = _full(
    r"(?:Wissenswertes|Mehr|Weiteres|Neues|Alles|Artikel) zum Thema"
    r"|Das könnte Sie (?:auch )?interessieren|Auch interessant|Lesen Sie auch|Lese-?tipps?"
    r"|(?:Weitere|Ähnliche|Verwandte|Empfohlene|Passende) (?:Artikel|Beiträge|Nachrichten|Themen)"
    r"|Meistgelesen\w*|Top-?Themen|Related (?:articles|stories)|More (?:on this|stories)"
    r"|Read (?:more|next)|Recommended"
)
_READ_MORE = re.compile(
    r"(?:^|[-\u2013\u2014>»|:]\s*)[*_]*"
    r"(?:Lesen Sie (?:hier|mehr|weiter|auch)|(?:Hier )?[Ww]eiterlesen|Mehr lesen"
    r"|Zum (?:ganzen )?Artikel|Mehr erfahren|Read more|Continue reading)"
    r"\b[^.!?]{0,80}[!.:…»]*[*_]*\s*$"
)
_PROMO_TOPIC = re.compile(
    r"\bNewsletter|\bE-Mail-Adresse|\bEinwilligung|\bDatenschutzerklärung|\babonnieren\b"
    r"|\bkostenlose[nr]? (?:Tipps|Probe|Testphase|Beratung)\b",
    re.IGNORECASE,
)
# Formal address after another word ("melden Sie", "Eingabe Ihrer"): at a sentence start,
# "Sie"/"Ihre" may just mean "they"/"their".
_FORMAL_ADDRESS = re.compile(r"\w,?\s+(?:Sie|Ihr|Ihre|Ihrer|Ihren|Ihrem)\b")
_PROMO_START = re.compile(
    r"[*_\s]*(?:Erhalten|Sichern|Holen|Abonnieren|Bestellen|Registrieren|Testen) Sie\b"
)
_BYLINE = re.compile(
    r"[*_\s]*(?:Von|By|Autor(?:in)?:?)\s+[A-ZÄÖÜ][\w.-]+(?:\s+(?:und\s+)?[A-ZÄÖÜ][\w.-]+){0,4}"
    r"[*_\s]*"
)
_SOURCE_HEADING = _full(
    r"Quellen?(?:angaben?)?|Sources?|Referenzen|References|Einzelnachweise|Weblinks"
)
_SOURCE_ONE_LINE = re.compile(r"[*_\s]*(?:Quellen?|Sources?)\s*:\s*(?P<rest>.+)", re.IGNORECASE)
_REFERENCE = _full(r"Referenz(?:en)?\s*\d*|Reference\s*\d*|Quellen gesamt")
_STATS = re.compile(r"(?:[A-Za-zÄÖÜäöü]+\s*:\s*\d+\s*){2,}")
_DATE_KEY = re.compile(
    r"[*_\s|]*(?:Veröffentlicht|Erschienen|Stand|Datum|Published|Updated|Aktualisiert)\b",
    re.IGNORECASE,
)
_TABLE_ROW = re.compile(r"\|.*\|")
_TABLE_RULE = re.compile(r"\|[\s:|-]*\|")
_META_KEYS = frozenset(
    re.findall(
        r"\S+",
        "details quellen quelle sources source ort vorfall datum autor autorin kategorie tags"
        " schlagworte veröffentlicht published rubrik ressort stand",
    )
)
_HTML_TAG = re.compile(r"<[^>]+>")
_TERMINAL = re.compile(rf"[.!?…][{re.escape(CLOSERS)}*_]*$")


# ---------------------------------------------------------------------------- model


@dataclass
class _Line:
    start: int
    end: int
    text: str
    block: int
    kind: str = ""  # why the line was removed; "" while it is content

    @property
    def kept(self) -> bool:
        return not self.kind


def _split_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    block = 0
    pos = 0
    for raw in text.split("\n"):
        stripped = raw.strip()
        if stripped:
            start = pos + (len(raw) - len(raw.lstrip()))
            lines.append(_Line(start, start + len(stripped), stripped, block))
        elif lines and lines[-1].block == block:
            block += 1
        pos += len(raw) + 1
    return lines


def _words(line: str) -> int:
    return len(line.split())


def _strip_markup(line: str) -> str:
    line = re.sub(r"^[#=\s]+|[=\s]+$", "", line)
    line = line.strip("*_ ").strip()
    if " " not in line and "_" in line:
        line = line.replace("_", " ")  # wiki article names: "FC_Barcelona"
    return " ".join(line.split())


def _norm(line: str) -> str:
    return re.sub(r"[\W_]+", " ", line).strip().casefold()


def _is_heading_like(line: str, max_words: int = 12) -> bool:
    return _words(line) <= max_words and not _TERMINAL.search(line)


# ---------------------------------------------------------------------------- cleaning


def clean(text: str, *, title: str | None = None) -> Cleaned:
    """Find the article content of ``text`` (spans into it) and the metadata the page states."""
    lines = _split_lines(text)
    meta = _Metadata()
    _front_matter(lines, meta)
    for line in lines:
        if line.kept:
            line.kind = _classify(line.text, meta)
    _tables(lines, meta)
    _sources(lines, meta)
    _nav_blocks(lines)
    headline = _headline(lines, title or meta.front_title)
    _teasers(lines)
    _dangling_headings(lines, text)
    spans = _spans(lines)
    return Cleaned(
        title=headline or _fallback_title(text, spans),
        published=meta.front_date or meta.table_date or _header_date(lines, spans),
        sources=tuple(dict.fromkeys(meta.sources)),
        content=tuple(spans),
        publisher=meta.publisher,
    )


@dataclass
class _Metadata:
    sources: list[str] = field(default_factory=list)
    publisher: str | None = None
    front_date: str | None = None
    table_date: str | None = None
    front_title: str | None = None


def _classify(line: str, meta: _Metadata) -> str:
    """Why a single line is page chrome, judged on its own; "" if it may be content."""
    footer = _FOOTER.match(line)
    if footer:
        site = _DOMAIN_IN.search(line, footer.end())
        if site and meta.publisher is None:
            meta.publisher = site.group().rstrip("*_")
        return "footer"
    if _COMMENTS.fullmatch(line):
        return "comments"
    if _READING_TIME.fullmatch(line):
        return "reading-time"
    if _TEASER_HEADING.fullmatch(line):
        return "teaser-heading"
    if _META.fullmatch(line) or _PHONE.fullmatch(line):
        return "meta"
    if _NAV_WORD.fullmatch(line) or _GLUED_WORDS.fullmatch(line):
        return "nav"
    if _BYLINE.fullmatch(line):
        return "byline"
    if _READ_MORE.search(line):
        return "read-more"
    if _PROMO_START.match(line) or (_PROMO_TOPIC.search(line) and _FORMAL_ADDRESS.search(line)):
        return "promo"
    if _REFERENCE.fullmatch(line) or _STATS.fullmatch(line):
        return "source-list"
    if _SOURCE_HEADING.fullmatch(line):
        return "source-heading"
    one_line = _SOURCE_ONE_LINE.fullmatch(line)
    if one_line and _words(one_line["rest"]) <= 8:
        meta.sources.extend(_source_items(one_line["rest"]))
        return "source-list"
    if _DATE_KEY.match(line) and _words(line) <= 8 and parse_date(line):
        meta.table_date = meta.table_date or parse_date(line)
        return "meta"
    return ""


def _source_items(cell: str) -> list[str]:
    cell = _HTML_TAG.sub(" ", cell)
    domains = [m.group().rstrip(".,;") for m in _DOMAIN_IN.finditer(cell)]
    if domains:
        return domains
    items = [part.strip(" *_•-·") for part in re.split(r"[,;]", cell)]
    return [item for item in items if item]


def _front_matter(lines: list[_Line], meta: _Metadata) -> None:
    """YAML-style front matter of markdown files (``---`` ... ``---``) is metadata."""
    if not lines or lines[0].text != "---":
        return
    for i, line in enumerate(lines[1:40], start=1):
        if line.text == "---":
            for item in lines[: i + 1]:
                item.kind = "front-matter"
                key, _, value = item.text.partition(":")
                key, value = key.strip().lower(), value.strip().strip("\"'")
                if key == "title" and value:
                    meta.front_title = value
                elif key in ("date", "published") and value:
                    meta.front_date = parse_date(value)
                elif key == "source" and value:
                    meta.publisher = value
            return


def _tables(lines: list[_Line], meta: _Metadata) -> None:
    """Markdown tables whose first column names metadata become metadata; others stay."""
    by_block: dict[int, list[_Line]] = {}
    for line in lines:
        if line.kept and _TABLE_ROW.fullmatch(line.text):
            by_block.setdefault(line.block, []).append(line)
    for rows in by_block.values():
        cells = [[c.strip(" *_") for c in row.text.strip("|").split("|")] for row in rows]
        keys = {c[0].lower() for c in cells if c and c[0]}
        if not keys & _META_KEYS:
            continue
        current = ""
        for row, row_cells in zip(rows, cells, strict=True):
            row.kind = "meta-table"
            if _TABLE_RULE.fullmatch(row.text) or not row_cells:
                continue
            current = row_cells[0].lower() or current  # an empty key continues the row above
            values = " ".join(row_cells[1:])
            if current in ("quellen", "quelle", "sources", "source"):
                meta.sources.extend(_source_items(values))
            elif current in ("datum", "veröffentlicht", "published", "stand"):
                meta.table_date = meta.table_date or parse_date(values)


def _sources(lines: list[_Line], meta: _Metadata) -> None:
    """After a "Quellen"/"Referenz" line, short items and domains are the named sources."""
    in_list = False
    for line in lines:
        if line.kind in ("source-heading", "source-list"):
            in_list = True
            continue
        if not line.kept:
            continue
        is_domain = bool(_DOMAIN_LINE.fullmatch(line.text))
        if is_domain or (in_list and _is_heading_like(line.text, 8)):
            line.kind = "source-list"
            if in_list:
                meta.sources.extend(_source_items(line.text))
        else:
            in_list = False


def _nav_blocks(lines: list[_Line]) -> None:
    """A block of very short lines holding a phone number, date or menu word is navigation."""
    blocks: dict[int, list[_Line]] = {}
    for line in lines:
        blocks.setdefault(line.block, []).append(line)
    for block in blocks.values():
        if len(block) < 2 or not any(line.kind in ("meta", "nav") for line in block):
            continue
        kept = [line for line in block if line.kept]
        if all(_words(line.text) <= 3 and len(line.text) <= 40 for line in kept) and not any(
            line.text[:1] in "*-•#=|" or _TERMINAL.search(line.text) for line in kept
        ):
            for line in kept:
                line.kind = "nav"


def _headline(lines: list[_Line], title: str | None) -> str:
    """Mark the headline (and its repetitions) as title, not content; return the title."""
    kept = [line for line in lines if line.kept]
    if title and title.strip():
        # A given title marks only headline-like lines: a title derived from a first sentence
        # ("… normalisieren.") must not remove that sentence when the text is cleaned again.
        wanted = _norm(title) if _looks_like_headline(title) else ""
        headline = _strip_markup(title)
    else:
        if len(kept) < 2 or not _looks_like_headline(kept[0].text):
            return ""
        wanted = _norm(kept[0].text)
        headline = _strip_markup(kept[0].text)
    for line in kept:
        if wanted and _norm(line.text) == wanted and _looks_like_headline(line.text):
            line.kind = "headline"
    return headline


def _looks_like_headline(line: str) -> bool:
    """Short, and not ending like a sentence or a clause ("?" and "!" are fine)."""
    bare = _strip_markup(line).rstrip(CLOSERS + "*_ ")
    return bool(bare) and _words(bare) <= 30 and len(bare) <= 250 and bare[-1] not in ".,;:…"


def _teasers(lines: list[_Line]) -> None:
    """After a teaser heading or reading time, headline-like blocks belong to the teaser."""
    in_teaser = False
    blocks: dict[int, list[_Line]] = {}
    for line in lines:
        blocks.setdefault(line.block, []).append(line)
    for block in blocks.values():
        kept = [line for line in block if line.kept]
        starts = any(line.kind in ("teaser-heading", "reading-time") for line in block)
        if in_teaser and kept:
            teaser_like = any(line.kind in ("read-more", "promo") for line in block)
            if teaser_like or (len(kept) == 1 and _words(kept[0].text) <= 20):
                for line in kept:
                    line.kind = "teaser"
            else:
                in_teaser = False
        in_teaser = in_teaser or starts


def _dangling_headings(lines: list[_Line], text: str) -> None:
    """A heading followed by removed chrome instead of content ("Details", "Quellen") goes."""
    kept = [line for line in lines if line.kept]
    for i, line in enumerate(kept):
        if not _is_heading_like(line.text, 12) or line.text[:1] in "*-•":
            continue
        next_start = kept[i + 1].start if i + 1 < len(kept) else len(text)
        if text[line.end : next_start].strip():
            line.kind = "dangling-heading"


def _spans(lines: list[_Line]) -> list[tuple[int, int]]:
    """Consecutive kept lines of one block form a span; a removed line cuts it."""
    spans: list[tuple[int, int]] = []
    previous: _Line | None = None
    for line in lines:
        if line.kept:
            if previous is not None and previous.kept and previous.block == line.block:
                spans[-1] = (spans[-1][0], line.end)
            else:
                spans.append((line.start, line.end))
        previous = line
    return spans


def _header_date(lines: Iterable[_Line], spans: list[tuple[int, int]]) -> str | None:
    """A date line before the article body (page header) is its publication date."""
    body_start = spans[0][0] if spans else None
    for line in lines:
        if body_start is not None and line.start > body_start:
            break
        if line.kind in ("meta", "nav"):
            iso = parse_date(line.text)
            if iso:
                return iso
    return None


def _fallback_title(text: str, spans: list[tuple[int, int]]) -> str:
    """Without a headline, the start of the first sentence, cut at a word boundary."""
    if not spans:
        return ""
    start, end = spans[0]
    sentence_start, sentence_end = split_sentences(text[start:end])[0]
    first = " ".join(text[start + sentence_start : start + sentence_end].split())
    if len(first) <= 100:
        return first
    return first[:100].rsplit(" ", 1)[0] + " …"
