"""Citation markers handled in code: parse ``[n]`` while streaming, renumber, attach to sentences.

The model's markers are never trusted. ``CitationStream`` turns raw model text into safe
text: markers that point at no passage are dropped, the rest are renumbered by first
appearance, and a group such as ``[3, 1]`` or ``[2-3]`` is written as adjacent single
markers ``[1][2]`` (clients parse ``\\[(\\d+)\\]`` and nothing else). ``statements_for``
attaches each marker to the sentence it follows; ``rag.answer.support`` checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rag.text.sentences import split_sentences

__all__ = ["CitationStream", "MarkerParser", "MarkerUse", "Segment", "Statement", "statements_for"]

Segment = str | tuple[int, ...]
"""Parser output: plain text, or the passage numbers of one marker group."""

_OPEN_CLOSE = {"[": "]", "【": "】"}
_PREFIX_WORDS = ("quelle", "quellen", "source", "sources", "passage", "doc", "document")
_MAX_MARKER_CHARS = 40  # longer "markers" are text; also bounds what streaming holds back
_MAX_RANGE = 20  # "[1-300]" is not a citation range
_PARTIAL = -1


def _skip_spaces(text: str, k: int, limit: int) -> int:
    while k < limit and text[k] in " \t":
        k += 1
    return k


def _scan_prefix(text: str, j: int, limit: int) -> int | None:
    """Skip an optional word before the number ("[Quelle 2]", "[Source 1]").

    Returns where the number starts, ``_PARTIAL`` when the text ends inside the word, or
    ``None`` when the word is no citation prefix.
    """
    k = j
    while k < limit and text[k].isalpha():
        k += 1
    if k == j:
        return j
    word = text[j:k].lower()
    if k == limit:
        at_end = limit == len(text)
        return _PARTIAL if at_end and any(w.startswith(word) for w in _PREFIX_WORDS) else None
    if word not in _PREFIX_WORDS:
        return None
    return _skip_spaces(text, k, limit)


def _scan_marker(text: str, i: int) -> tuple[int, tuple[int, ...]] | int | None:
    """Parse a marker starting at ``text[i]`` (an opener).

    Returns ``(end, numbers)`` for a complete marker, ``_PARTIAL`` when ``text`` ends
    before the marker could be decided, or ``None`` when it is not a marker.
    """
    opener = text[i]
    closer = _OPEN_CLOSE[opener]
    limit = min(len(text), i + _MAX_MARKER_CHARS)
    undecided = _PARTIAL if limit == len(text) else None
    start = _scan_prefix(text, _skip_spaces(text, i + 1, limit), limit)
    if start is None or start == _PARTIAL:
        return start
    j = start
    numbers: list[int] = []
    pending_range = False
    while True:
        k = j
        while k < limit and text[k].isdigit():
            k += 1
        if k == limit:
            return undecided
        if k == j or k - j > 3:
            return None
        value = int(text[j:k])
        if pending_range and numbers and numbers[-1] <= value <= numbers[-1] + _MAX_RANGE:
            numbers.extend(range(numbers[-1] + 1, value + 1))
        else:
            numbers.append(value)
        pending_range = False
        j = _skip_spaces(text, k, limit)
        if j == limit:
            return undecided
        ch = text[j]
        if ch == closer:
            return j + 1, tuple(numbers)
        if opener == "【" and ch == "†":  # OpenAI style "【4†source】"
            end = text.find(closer, j, limit)
            return undecided if end < 0 else (end + 1, tuple(numbers))
        if ch not in ",;-\u2013":  # list separators, hyphen or en dash
            return None
        pending_range = ch in "-\u2013"
        j = _skip_spaces(text, j + 1, limit)
        if j == limit:
            return undecided


class MarkerParser:
    """Streaming parser: feed text pieces, get text and marker segments back.

    A possible marker cut off at the end of a piece (``"… [1"``) is held back until the
    next piece decides it, so markers split across chunks are found.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[Segment]:
        """Segments that are final given ``text``; a partial marker stays buffered."""
        self._buffer += text
        return self._drain(final=False)

    def flush(self) -> list[Segment]:
        """Everything still buffered (an unfinished marker becomes plain text)."""
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[Segment]:
        buf = self._buffer
        out: list[Segment] = []
        pos = 0
        text_start = 0
        while True:
            hits = [p for p in (buf.find("[", pos), buf.find("【", pos)) if p >= 0]
            if not hits:
                break
            i = min(hits)
            result = _scan_marker(buf, i)
            if result == _PARTIAL and not final:
                if i > text_start:
                    out.append(buf[text_start:i])
                self._buffer = buf[i:]
                return out
            if isinstance(result, tuple):
                if i > text_start:
                    out.append(buf[text_start:i])
                out.append(result[1])
                pos = text_start = result[0]
            else:
                pos = i + 1
        if text_start < len(buf):
            out.append(buf[text_start:])
        self._buffer = ""
        return out


@dataclass(frozen=True)
class MarkerUse:
    """One renumbered marker: where it sits in the marker-free text and what it cites."""

    offset: int  # position in ``CitationStream.clean_text`` right after the cited text
    numbers: tuple[int, ...]  # new citation numbers, 1-based


class CitationStream:
    """Turns raw model text into displayable text with checked, renumbered markers.

    ``feed`` returns the text that is safe to show now; ``finish`` the rest. Afterwards
    ``text`` is the whole answer, ``cited`` the 0-based passage indexes in new-number
    order and ``uses`` where each marker stood. Whitespace before a dropped marker is
    dropped with it ("Text [9]." becomes "Text.").
    """

    def __init__(self, passage_count: int) -> None:
        self._count = passage_count
        self._parser = MarkerParser()
        self._new_number: dict[int, int] = {}
        self.cited: list[int] = []
        self.uses: list[MarkerUse] = []
        self._parts: list[str] = []
        self._clean: list[str] = []
        self._clean_len = 0
        self._held_space = ""
        self._started = False
        self.dropped = 0

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def clean_text(self) -> str:
        """The answer without any markers (statements are cut from it)."""
        return "".join(self._clean)

    def feed(self, raw: str) -> str:
        return self._render(self._parser.feed(raw))

    def finish(self) -> str:
        out = self._render(self._parser.flush())
        self._held_space = ""  # trailing whitespace of the answer is not shown
        return out

    def _render(self, segments: Sequence[Segment]) -> str:
        out: list[str] = []
        for segment in segments:
            if isinstance(segment, str):
                out.append(self._emit_text(segment))
            else:
                out.append(self._emit_marker(segment))
        piece = "".join(out)
        self._parts.append(piece)
        return piece

    def _emit_text(self, text: str) -> str:
        text = self._held_space + text
        body = text.rstrip()
        self._held_space = text[len(body) :]
        if not self._started:
            body = body.lstrip()  # an answer does not start with blanks
        self._started = self._started or bool(body)
        self._clean.append(body)
        self._clean_len += len(body)
        return body

    def _emit_marker(self, numbers: tuple[int, ...]) -> str:
        valid: list[int] = []
        for number in numbers:
            if not 1 <= number <= self._count:
                self.dropped += 1
                continue
            index = number - 1
            if index not in self._new_number:
                self.cited.append(index)
                self._new_number[index] = len(self.cited)
            new = self._new_number[index]
            if new not in valid:
                valid.append(new)
        if not valid:
            self._held_space = ""
            return ""
        space, self._held_space = self._held_space, ""
        self._started = True
        # The clean text skips the marker and the blank before it: "Text [1]." -> "Text.".
        valid.sort()  # "[3, 1]" -> "[1][2]": first appearance decides numbers, output is sorted
        self.uses.append(MarkerUse(offset=self._clean_len, numbers=tuple(valid)))
        return space + "".join(f"[{n}]" for n in valid)


@dataclass(frozen=True)
class Statement:
    """A sentence of the answer (markers removed) and the citation numbers attached to it."""

    text: str
    numbers: tuple[int, ...]


def statements_for(clean_text: str, uses: Sequence[MarkerUse]) -> list[Statement]:
    """Attach each marker to the sentence it follows: "A. B [1]." cites B, "A. [1] B." cites A."""
    spans = split_sentences(clean_text)
    if not spans:
        return []
    numbers: dict[int, list[int]] = {}
    for use in uses:
        # The last non-blank character before the marker decides the sentence.
        pos = use.offset
        while pos > 0 and clean_text[pos - 1].isspace():
            pos -= 1
        index = 0
        for i, (start, _end) in enumerate(spans):
            if start < pos:
                index = i
        bucket = numbers.setdefault(index, [])
        bucket.extend(n for n in use.numbers if n not in bucket)
    return [
        Statement(text=clean_text[spans[i][0] : spans[i][1]], numbers=tuple(nums))
        for i, nums in sorted(numbers.items())
    ]
