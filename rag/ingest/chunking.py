"""Cut a document's article content into citable passages with exact offsets.

The content spans from ``clean`` are paragraphs. A paragraph that does not end a sentence (a
subheading, or a paragraph broken mid-sentence by a blank line) flows into the next one when
only whitespace lies between them. Each such run becomes one passage if it fits ``max_tokens``
(counted by the embedding model's tokenizer); otherwise it is cut at sentence boundaries into
windows of about equal size, never over the limit (a sentence that alone is too long is cut at
a clause or word boundary). Passages under ``min_tokens`` are merged with a neighbour.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.ingest.cleaning import clean
from rag.text.sentences import split_sentences
from rag.types import Chunk, Document

__all__ = ["chunk_document", "chunk_id_for"]

_ID_BITS = 53  # ids stay exact in JSON numbers / JavaScript
_WORD = re.compile(r"\S+")
_CLAUSE_END = re.compile(r"[,;:)\]\u2013\u2014]$|^[\u2013\u2014-]$")  # "," ";" ":" or a dash
_TERMINAL = re.compile(r"[.!?…][\"'\u201c\u201d\u00bb\u00ab\u2019)\]*_]*$")


def chunk_id_for(doc_id: str, text: str, occurrence: int = 0) -> int:
    """A stable id below 2**53 from the document id, the passage text and its occurrence."""
    key = f"{doc_id}\x1f{occurrence}\x1f{text}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> (64 - _ID_BITS)


def chunk_document(
    doc: Document,
    count_tokens: Callable[[str], int],
    *,
    max_tokens: int = 200,
    min_tokens: int = 12,
) -> list[Chunk]:
    """Split ``doc`` into passages; ``doc.text[c.start:c.end] == c.text`` for each."""
    if max_tokens < 1 or min_tokens > max_tokens:
        raise ValueError("need 1 <= max_tokens and min_tokens <= max_tokens")
    cleaned = clean(doc.text, title=doc.title or None)
    counter = _Counter(doc.text, count_tokens)
    windows: list[tuple[int, int]] = []
    for run in _runs(doc.text, cleaned.content):
        windows.extend(_pack(run, counter, max_tokens))
    windows = _merge_small(windows, counter, max_tokens, min_tokens)
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for ordinal, (start, end) in enumerate(windows):
        text = doc.text[start:end]
        occurrence = seen.get(text, 0)
        seen[text] = occurrence + 1
        chunk_id = chunk_id_for(doc.doc_id, text, occurrence)
        chunks.append(Chunk(chunk_id, doc.doc_id, ordinal, start, end, text, context=doc.title))
    return chunks


class _Counter:
    """``count_tokens`` on spans of one text, memoised (the packer asks about spans twice)."""

    def __init__(self, text: str, count_tokens: Callable[[str], int]) -> None:
        self.text = text
        self._count = count_tokens
        self._cache: dict[tuple[int, int], int] = {}

    def __call__(self, start: int, end: int) -> int:
        key = (start, end)
        if key not in self._cache:
            self._cache[key] = self._count(self.text[start:end])
        return self._cache[key]


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    glue: bool = False  # keep together with the next piece (heading, broken sentence)


def _flows(text: str, start: int, end: int) -> bool:
    """True when a paragraph leads into the next: a heading or an unfinished sentence."""
    block = text[start:end]
    heading = "\n" not in block and len(block.split()) <= 12 and not block.endswith(".")
    return heading or not _TERMINAL.search(block)


def _runs(text: str, spans: tuple[tuple[int, int], ...]) -> list[list[_Piece]]:
    """Group paragraphs that flow into each other; each group is a list of sentence pieces."""
    runs: list[list[_Piece]] = []
    joins_next = False
    previous_end = -1
    for start, end in spans:
        contiguous = previous_end >= 0 and not text[previous_end:start].strip()
        if not (joins_next and contiguous) or not runs:
            runs.append([])
        joins_next = _flows(text, start, end)
        sentences = split_sentences(text[start:end])
        for i, (s, e) in enumerate(sentences):
            last = i == len(sentences) - 1
            runs[-1].append(_Piece(start + s, start + e, glue=last and joins_next))
        previous_end = end
    return runs


def _pack(run: list[_Piece], count: _Counter, max_tokens: int) -> list[tuple[int, int]]:
    """Cut a run of pieces into windows of about equal size, none over ``max_tokens``."""
    total = count(run[0].start, run[-1].end)
    if total <= max_tokens:
        return [(run[0].start, run[-1].end)]
    pieces: list[_Piece] = []
    for piece in run:
        if count(piece.start, piece.end) > max_tokens:
            pieces.extend(_split_long(piece, count, max_tokens))
        else:
            pieces.append(piece)
    target = total / math.ceil(total / max_tokens)
    windows: list[tuple[int, int]] = []
    current: list[_Piece] = [pieces[0]]
    for piece in pieces[1:]:
        now = count(current[0].start, current[-1].end)
        grown = count(current[0].start, piece.end)
        # Stop where the window is closest to the target size; never pass the limit.
        if grown <= max_tokens and abs(grown - target) <= abs(now - target):
            current.append(piece)
            continue
        carried = [current.pop()] if current[-1].glue and len(current) > 1 else []
        windows.append((current[0].start, current[-1].end))
        current = carried
        if current and count(current[0].start, piece.end) > max_tokens:
            windows.append((current[0].start, current[-1].end))
            current = []
        current.append(piece)
    windows.append((current[0].start, current[-1].end))
    return windows


def _split_long(piece: _Piece, count: _Counter, max_tokens: int) -> list[_Piece]:
    """Cut one over-long sentence at clause boundaries, else at word boundaries."""
    text = count.text
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, piece.start, piece.end)]
    out: list[_Piece] = []
    i = 0
    while i < len(words):
        j = i
        while j + 1 < len(words) and count(words[i][0], words[j + 1][1]) <= max_tokens:
            j += 1
        if j == i and count(words[i][0], words[i][1]) > max_tokens:
            out.extend(_split_chars(words[i], count, max_tokens))
            i += 1
            continue
        if j + 1 < len(words):  # not the end: prefer the last clause boundary in the window
            for k in range(j, i + (j - i) // 3, -1):
                if _CLAUSE_END.search(text[words[k][0] : words[k][1]]):
                    j = k
                    break
        out.append(_Piece(words[i][0], words[j][1]))
        i = j + 1
    return out


def _split_chars(word: tuple[int, int], count: _Counter, max_tokens: int) -> list[_Piece]:
    """Last resort for a 'word' (a URL, a blob) longer than the limit: cut by characters."""
    out: list[_Piece] = []
    start, end = word
    while start < end:
        # A token spans a few characters at most: bound the search so that a huge blob
        # costs linear, not quadratic, tokenizer time.
        lo, hi = start + 1, min(end, start + 64 * max_tokens)
        while lo < hi:  # the longest prefix that fits
            mid = (lo + hi + 1) // 2
            if count(start, mid) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append(_Piece(start, lo))
        start = lo
    return out


def _merge_small(
    windows: list[tuple[int, int]], count: _Counter, max_tokens: int, min_tokens: int
) -> list[tuple[int, int]]:
    """Merge windows under ``min_tokens`` into the next (else the previous) neighbour."""
    text = count.text
    merged = list(windows)
    i = 0
    while i < len(merged):
        start, end = merged[i]
        if count(start, end) >= min_tokens:
            i += 1
            continue
        nxt = merged[i + 1] if i + 1 < len(merged) else None
        prev = merged[i - 1] if i > 0 else None
        if nxt and not text[end : nxt[0]].strip() and count(start, nxt[1]) <= max_tokens:
            merged[i : i + 2] = [(start, nxt[1])]
        elif prev and not text[prev[1] : start].strip() and count(prev[0], end) <= max_tokens:
            merged[i - 1 : i + 1] = [(prev[0], end)]
            i -= 1
        else:
            i += 1
    return merged
