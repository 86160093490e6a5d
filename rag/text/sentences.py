"""German-aware sentence splitting that returns exact character spans.

Spans are ``(start, end)`` offsets into the input, trimmed of whitespace, in order. A cut is
made after ``.``, ``!``, ``?`` or an ellipsis (plus closing quotes and brackets) when whitespace
follows and the next word could start a sentence, and at line breaks that end a heading or a
list item. German needs care with dates ("am 18. November"), ordinals ("2. Weltkrieg"),
abbreviations ("z. B.", "Dr.", "D.C.") and numbers ("20.000").
"""

from __future__ import annotations

import re

from rag.text.lexicon import CLOSERS, MONTHS

__all__ = ["split_sentences"]

# Typographic quotes and dashes are written as escapes (ruff flags them as ambiguous).
_OPENERS = "\"'\u201e\u201c\u201d\u201a\u2018\u2019\u00bb\u00ab([*_"
_DASHES = "\u2013\u2014"
# Terminal punctuation, then any closing quotes/brackets, then whitespace or the end.
_END = re.compile(rf"(?:\.{{2,}}|…|[.!?])+[{re.escape(CLOSERS)}]*(?=\s|$)")
_ENDS_SENTENCE = re.compile(rf"(?:\.|…|[!?])[{re.escape(CLOSERS)}]*$")
_LINE_BREAK = re.compile(r"[ \t\r\f\v]*\n\s*")
_BULLET = re.compile(rf"(?:[-*•{_DASHES}|#=>]|\d{{1,3}}[.)])(?:\s|$)|[#=]")
_DIGITS = re.compile(r"\d{1,3}")
_WORD_CHARS = re.compile(r"[\w.]+$")
_OPEN_CLAUSE = re.compile(
    r",\s*(?:der|die|das|dem|den|deren|dessen|denen|welche[rsnm]?|dass|weil|ob|obwohl|"
    r"nachdem|sodass|which|who|whom|whose|because)\s[^,;:.!?]*$",
    re.IGNORECASE,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Abbreviations that (almost) never end a sentence: no cut after them.
_NEVER_END = _words(
    """
    abb abs abt anm bd bspw bzgl bzw ca capt col dipl dr evtl exkl fa fr frl gebr gem gen ggf
    gov hd hl hr hrsg inkl ing jhd jr kap kl lt mag max min mio mr mrd mrs ms mt nr nrn o.ä
    prof rd rep sen sgt sog sr st std str tel tsd u.ä vgl vs z.b z.t zb zt zit ziff
    """
)
# Abbreviations that may end a sentence; cut only if a typical sentence opener follows.
_MAYBE_END = _words("etc usw u.a u.v.m. uvm ua jh chr inc ltd co corp")
# Before a number these are abbreviations ("Nov. 2024", "S. 12", "Nr. 5").
_BEFORE_NUMBER = _words(
    """
    jan feb febr mär märz apr jun jul aug sep sept okt oct nov dez dec s art abs bd nr no vol
    """
)
# Words that typically open a sentence; used where a dot is ambiguous.
_STARTERS = _words(
    """
    der die das den dem des ein eine einen einem einer eines er sie es wir ich ihr man dies diese
    dieser dieses doch aber und auch auf in im am an bei mit nach seit als wenn da dann so zudem
    außerdem trotz während wie was wer wo warum laut nun noch jedoch allerdings zum zur vor für
    unter über zwar denn deshalb daher damit dabei dort hier heute gestern morgen jetzt bisher
    the a an it he she they we i this that these those there on at but and however also yet
    """
)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans ``(start, end)``: trimmed, in order, covering all text."""
    cuts = sorted({*_punctuation_cuts(text), *_line_cuts(text)})
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in [*cuts, len(text)]:
        span = _trim(text, start, cut)
        if span is not None:
            spans.append(span)
        start = max(start, cut)
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _next_word(text: str, pos: int) -> str:
    """The word after ``pos``, skipping whitespace and opening quotes/brackets."""
    i = pos
    n = len(text)
    while i < n and (text[i].isspace() or text[i] in _OPENERS):
        i += 1
    j = i
    while j < n and not text[j].isspace():
        j += 1
    return text[i:j]


def _prev_token(text: str, end: int) -> str:
    """The word-ish token (letters, digits, inner dots) that ends right before ``end``."""
    match = _WORD_CHARS.search(text, max(0, end - 80), end)  # bounded: linear on long texts
    if match is None:
        return ""
    return match.group().strip(".")


def _punctuation_cuts(text: str) -> list[int]:
    cuts = []
    for match in _END.finditer(text):
        if _is_boundary(text, match.start(), match.group(), match.end()):
            cuts.append(match.end())
    return cuts


def _is_boundary(text: str, start: int, mark: str, end: int) -> bool:
    nxt = _next_word(text, end)
    if not nxt:
        return True
    first = nxt[0]
    # Sentences do not start in lower case: "D.C. begleitet", "z. B. der", "…, sagte er".
    if first.islower():
        return False
    core = mark.rstrip(CLOSERS)
    if core != "." or text[start - 1 : start] in ("", " "):
        return True  # "!", "?", ellipsis, or a dot standing alone
    token = _prev_token(text, start)
    low = token.lower()
    bare_word = re.sub(r"\W+$", "", nxt).lower()
    if _DIGITS.fullmatch(token):
        # "am 18. November", "2. Weltkrieg", "Platz 3. Die Mannschaft ..." (rare)
        return bare_word in _STARTERS and bare_word not in MONTHS
    if low in _NEVER_END:
        return False
    if first.isdigit() and (low in _BEFORE_NUMBER or len(token) == 1):
        return False
    if len(token) == 1 and token.isalpha():
        return False  # initials and "z. B.", "u. a.", "d. h."
    if low in _MAYBE_END or "." in token:
        # "etc.", "D.C.", "U.S.": only a typical opener starts a new sentence.
        return bare_word in _STARTERS
    return True


def _line_cuts(text: str) -> list[int]:
    """Cut at line breaks that end a heading, a list item or a table row."""
    cuts = []
    for match in _LINE_BREAK.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        prev_line = text[line_start : match.start()].strip()
        next_text = text[match.end() : match.end() + 4]
        if not prev_line or not next_text:
            continue
        blank = match.group().count("\n") > 1
        if _ENDS_SENTENCE.search(prev_line) and not blank:
            continue  # the punctuation rules decide ("Dr.\nMüller")
        if _continues(prev_line, next_text):
            continue
        cuts.append(match.start())
    return cuts


def _continues(prev_line: str, rest: str) -> bool:
    """True when the line break sits inside a sentence (wrapped or broken text)."""
    if _BULLET.match(prev_line) or _BULLET.match(rest):
        return False
    if rest[0].islower():
        return True
    last = prev_line.split()[-1].strip("*_`")
    if not last:
        return False
    if last[-1] in ",;:-(\u201e" + _DASHES:
        return True
    # "… dass es\n\nBestrebungen": a sentence does not end on a lower-case word without a mark.
    if last[0].islower() and last[-1].isalnum():
        return True
    # "Moskau, das die … im Weißen\n\nHaus mit Freude …": a relative or subordinate clause
    # opened after a comma is still open. (A heading may hold a comma, "Ein neuer, radikaler
    # Abschnitt", but no clause.)
    return bool(_OPEN_CLAUSE.search(prev_line))
