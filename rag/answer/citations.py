"""Citations handled in code: parse ``[n]`` markers while streaming, renumber, check support.

The model's markers are never trusted. ``CitationStream`` turns raw model text into safe
text: markers that point at no passage are dropped, the rest are renumbered by first
appearance, and a group such as ``[3, 1]`` or ``[2-3]`` is written as adjacent single
markers ``[1][2]`` (clients parse ``\\[(\\d+)\\]`` and nothing else). ``check_citations``
then builds a ``Citation`` per number: the passage sentence that best supports the
statements citing it (exact offsets into the original document) and a support verdict
from embedding similarity plus lexical overlap.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.embedding.base import Embedder
from rag.text.analysis import GermanAnalyzer, detect_language
from rag.text.sentences import split_sentences
from rag.types import Chunk, Citation, FloatArray, Hit

__all__ = [
    "CLOSERS",
    "CitationStream",
    "MarkerParser",
    "SentenceBank",
    "Statement",
    "SupportThresholds",
    "check_citations",
    "content_terms",
    "lexical_overlap",
    "statements_for",
]

Segment = str | tuple[int, ...]
"""Parser output: plain text, or the passage numbers of one marker group."""

_OPEN_CLOSE = {"[": "]", "【": "】"}
_PREFIX_WORDS = ("quelle", "quellen", "source", "sources", "passage", "doc", "document")
_MAX_MARKER_CHARS = 40  # longer "markers" are text; also bounds what streaming holds back
_MAX_RANGE = 20  # "[1-300]" is not a citation range
_PARTIAL = -1


def _scan_marker(text: str, i: int) -> tuple[int, tuple[int, ...]] | int | None:
    """Parse a marker starting at ``text[i]`` (an opener).

    Returns ``(end, numbers)`` for a complete marker, ``_PARTIAL`` when ``text`` ends
    before the marker could be decided, or ``None`` when it is not a marker.
    """
    opener = text[i]
    closer = _OPEN_CLOSE[opener]
    n = len(text)
    limit = min(n, i + _MAX_MARKER_CHARS)
    j = i + 1

    def skip_spaces(k: int) -> int:
        while k < limit and text[k] in " \t":
            k += 1
        return k

    j = skip_spaces(j)
    # Optional word before the number: "[Quelle 2]", "[Source 1]".
    k = j
    while k < limit and text[k].isalpha():
        k += 1
    if k > j:
        word = text[j:k].lower()
        if k == limit:
            return (
                _PARTIAL if limit == n and any(w.startswith(word) for w in _PREFIX_WORDS) else None
            )
        if word not in _PREFIX_WORDS:
            return None
        j = skip_spaces(k)
    numbers: list[int] = []
    pending_range = False
    while True:
        k = j
        while k < limit and text[k].isdigit():
            k += 1
        if k == limit:
            return _PARTIAL if limit == n else None
        if k == j or k - j > 3:
            return None
        value = int(text[j:k])
        if pending_range and numbers and numbers[-1] <= value <= numbers[-1] + _MAX_RANGE:
            numbers.extend(range(numbers[-1] + 1, value + 1))
        else:
            numbers.append(value)
        pending_range = False
        j = skip_spaces(k)
        if j == limit:
            return _PARTIAL if limit == n else None
        ch = text[j]
        if ch == closer:
            return j + 1, tuple(numbers)
        if opener == "【" and ch == "†":  # OpenAI style "【4†source】"
            end = text.find(closer, j, limit)
            if end < 0:
                return _PARTIAL if limit == n else None
            return end + 1, tuple(numbers)
        if ch in ",;":
            j = skip_spaces(j + 1)
        elif ch in "-\u2013":  # hyphen or en dash
            pending_range = True
            j = skip_spaces(j + 1)
        else:
            return None
        if j == limit:
            return _PARTIAL if limit == n else None


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


@dataclass(frozen=True)
class SupportThresholds:
    """How a statement is checked against the passage it cites.

    Same language: ``score = (1 - lexical_weight) * cosine + lexical_weight * overlap
    + relative_weight * (cosine - median)``. ``cosine`` is the best claim-sentence
    similarity in the cited passage, ``overlap`` the share of the claim's terms found in
    it, ``median`` the median of that best cosine over all given passages (it removes
    the per-claim baseline of the embedding model).

    Claim and passage in different languages (an English answer over German text):
    terms cannot match, so ``score = cosine + cross_lingual_relative_weight *
    (cosine - median) - cross_lingual_offset``; the offset puts it on the same scale.

    ``supported`` means ``score >= min_score``. Defaults: see ``rag.answer.answerer``.
    """

    min_score: float = 0.75
    lexical_weight: float = 0.3
    relative_weight: float = 1.0
    cross_lingual_relative_weight: float = 2.0
    cross_lingual_offset: float = 0.11


_analyzer = GermanAnalyzer()
_analyzer_lock = threading.Lock()


def content_terms(text: str, *, query: bool) -> set[str]:
    """Stemmed content terms (``query``: an English text keeps names and numbers only)."""
    with _analyzer_lock:  # the Snowball stemmer object is not documented thread-safe
        return set(_analyzer.analyze_query(text) if query else _analyzer.analyze(text))


def lexical_overlap(claim: str, evidence: str) -> float:
    """Share of the claim's content terms (stemmed, compounds split) found in the evidence.

    English claims keep only names and numbers (``analyze_query``), which is what can match
    German evidence literally. A claim without content terms scores 0.
    """
    wanted = content_terms(claim, query=True)
    if not wanted:
        return 0.0
    return len(wanted & content_terms(evidence, query=False)) / len(wanted)


_LEADING_JUNK = " \t\r\n#*_>\u2022-\u2013\u2014|"  # bullets, dashes, markdown
_TRAILING_JUNK = " \t\r\n*_|"


@dataclass(frozen=True)
class PassageSentences:
    """Sentence spans of one chunk (offsets into ``chunk.text``) and their vectors."""

    spans: tuple[tuple[int, int], ...]
    vectors: FloatArray
    quotable: tuple[bool, ...]  # a real sentence, not a heading or a fragment


def _tidy(text: str, start: int, end: int) -> tuple[int, int]:
    """Trim markdown bullets/emphasis from a span's ends so the quote reads cleanly."""
    while start < end and text[start] in _LEADING_JUNK:
        start += 1
    while end > start and text[end - 1] in _TRAILING_JUNK:
        end -= 1
    return start, end


class SentenceBank:
    """Sentence spans and embeddings per chunk, cached by ``chunk_id`` (chunks are immutable)."""

    def __init__(self, embedder: Embedder, *, max_chunks: int = 4096) -> None:
        self._embedder = embedder
        self._max = max_chunks
        self._cache: OrderedDict[int, PassageSentences] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, chunks: Sequence[Chunk]) -> list[PassageSentences]:
        """Sentences of each chunk; missing ones are embedded in one batch."""
        with self._lock:
            found: dict[int, PassageSentences | None] = {
                c.chunk_id: self._cache.get(c.chunk_id) for c in chunks
            }
        missing = [c for c in chunks if found[c.chunk_id] is None]
        if missing:
            span_lists = []
            texts: list[str] = []
            for chunk in missing:
                spans = []
                for start, end in split_sentences(chunk.text):
                    start, end = _tidy(chunk.text, start, end)
                    if start < end:
                        spans.append((start, end))
                if not spans:
                    spans = [(0, len(chunk.text))]
                span_lists.append(spans)
                texts.extend(chunk.text[s:e] for s, e in spans)
            vectors = self._embedder.embed_passages(texts) if texts else None
            row = 0
            for chunk, spans in zip(missing, span_lists, strict=True):
                assert vectors is not None
                block = np.asarray(vectors[row : row + len(spans)], dtype=np.float32)
                row += len(spans)
                quotable = tuple(_is_quotable(chunk.text, s, e) for s, e in spans)
                entry = PassageSentences(tuple(spans), block, quotable)
                found[chunk.chunk_id] = entry
                with self._lock:
                    self._cache[chunk.chunk_id] = entry
                    while len(self._cache) > self._max:
                        self._cache.popitem(last=False)
        out = []
        for chunk in chunks:
            cached = found[chunk.chunk_id]
            assert cached is not None
            out.append(cached)
        return out


_WORDS = re.compile(r"\w+")


_URL = re.compile(r"(?:https?://|www\.)\S+")


# Closing quotes, brackets and markdown emphasis that may follow a sentence's final mark.
CLOSERS = "\"'“”»«\u2019\u2018)]*_ "


def _is_quotable(text: str, start: int, end: int) -> bool:
    """A sentence worth quoting: several words, not a table row, a link list or a heading
    (a line of its own without final punctuation, or a fragment cut off by the chunker)."""
    sentence = text[start:end]
    if len(_WORDS.findall(sentence)) < 4 or "|" in sentence[:3] or len(_URL.findall(sentence)) > 1:
        return False
    own_line = text[:start].rstrip(" \t").endswith("\n") or not text[:start].strip()
    line_end = text[end:].lstrip(" \t")
    own_line = own_line and (not line_end or line_end.startswith("\n"))
    return not own_line or sentence.rstrip(CLOSERS)[-1:] in (".", "!", "?", "…", ":")


def check_citations(
    statements: Sequence[Statement],
    cited: Sequence[int],
    hits: Sequence[Hit],
    embedder: Embedder,
    bank: SentenceBank,
    thresholds: SupportThresholds | None = None,
) -> tuple[Citation, ...]:
    """One ``Citation`` per new number (``cited[number - 1]`` is the passage index).

    Every statement citing a passage is scored against it (``SupportThresholds``).
    ``score`` is the weakest statement's score, so ``supported`` needs all of them to
    pass; ``quote`` is the passage sentence closest (by meaning and words) to the
    best-scoring statement.
    """
    th = thresholds or SupportThresholds()
    if not cited:
        return ()
    claims = [s for s in statements if s.text.strip()]
    claim_vectors = embedder.embed_queries([s.text for s in claims]) if claims else None
    entries = bank.get([hit.chunk for hit in hits])
    passage_langs = [detect_language(hit.chunk.text) for hit in hits]
    # best[c][p]: how close claim c comes to any sentence of passage p.
    best: list[list[float]] = []
    for c in range(len(claims)):
        assert claim_vectors is not None
        best.append([float((e.vectors @ claim_vectors[c]).max()) for e in entries])
    citations: list[Citation] = []
    for number, index in enumerate(cited, start=1):
        hit, entry, text = hits[index], entries[index], hits[index].chunk.text
        candidates = [i for i, ok in enumerate(entry.quotable) if ok] or list(
            range(len(entry.spans))
        )
        best_span = entry.spans[candidates[0]]
        best_score = -np.inf
        weakest: float | None = None
        for c, claim in enumerate(claims):
            if number not in claim.numbers:
                continue
            assert claim_vectors is not None
            cosine = best[c][index]
            relative = cosine - float(np.median(best[c]))
            if detect_language(claim.text) == passage_langs[index]:
                overlap = lexical_overlap(claim.text, text)
                score = (
                    (1.0 - th.lexical_weight) * cosine
                    + th.lexical_weight * overlap
                    + th.relative_weight * relative
                )
            else:
                score = (
                    cosine + th.cross_lingual_relative_weight * relative - th.cross_lingual_offset
                )
            if score > best_score:
                best_score = score
                cosines = entry.vectors[candidates] @ claim_vectors[c]
                fit = [
                    float(cosines[k]) + th.lexical_weight * lexical_overlap(claim.text, text[s:e])
                    for k, (s, e) in enumerate(entry.spans[cand] for cand in candidates)
                ]
                best_span = entry.spans[candidates[int(np.argmax(fit))]]
            weakest = score if weakest is None else min(weakest, score)
        final = weakest if weakest is not None else 0.0
        start, end = best_span
        citations.append(
            Citation(
                number=number,
                doc_id=hit.chunk.doc_id,
                chunk_id=hit.chunk.chunk_id,
                title=hit.title,
                quote=text[start:end],
                start=hit.chunk.start + start,
                end=hit.chunk.start + end,
                score=round(final, 4),
                supported=weakest is not None and final >= th.min_score,
                url=hit.url,
                source=hit.source,
                published=hit.published,
            )
        )
    return tuple(citations)
