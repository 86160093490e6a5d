"""From retrieved passages to a cited answer (or a reasoned abstention), whole or streamed.

``Answerer.answer`` / ``Answerer.stream`` get the passages the caller retrieved for the
condensed question. The steps:

1. No passages: abstain (``no_passages``).
2. Without a chat model (extractive): the selector (``rag.answer.selector``) rates every
   passage sentence; the most likely one or two are quoted (``rag.answer.extractive``),
   one ``DeltaEvent`` per sentence when streaming. When none is likely enough it abstains
   (``low_relevance``); a message that asks nothing ("Hallo", "Danke") gets a short reply
   saying what can be asked.
3. With a chat model: if the best sentence's cosine is below ``min_relevance``, abstain
   (``low_relevance``) without calling it. Else prompt (``rag.answer.prompts``),
   stream/complete, parse and renumber the markers in code (``rag.answer.markers``), check
   each citation against its passage (``rag.answer.support``). A reply of
   ``NOT_IN_SOURCES``, or one with no supported citation, abstains (``unsupported``).

``standalone_question`` is filled here: ``answer`` condenses ``question`` with ``history``
itself, through the same memo as ``condense``, so a caller that condensed first (to
retrieve) pays nothing twice. When streaming, ``DoneEvent.answer.text`` is authoritative:
if the streamed draft turns out unsupported, the final answer is the abstention message
(no further delta is sent; clients replace the draft with ``answer.text``).

Calibration of the LLM path (dev.jsonl, dense top-5, multilingual-e5-small): the relevance
floor lies between the best sentence of answerable questions and off-topic ones; support
thresholds separate reference answers from other passages (see ``SupportThresholds``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from rag.answer.condense import condense_question
from rag.answer.extractive import ScoredSentence, compose_extractive, score_sentences
from rag.answer.generation import ChatModel
from rag.answer.markers import CitationStream, statements_for
from rag.answer.prompts import NOT_IN_SOURCES, build_messages
from rag.answer.selector import (
    Candidate,
    Matrix,
    SelectorWeights,
    choose,
    quote_spans,
    relation,
    sentence_features,
)
from rag.answer.support import SentenceBank, SupportThresholds, check_citations
from rag.embedding.base import Embedder
from rag.retrieve.alignment import TokenBank
from rag.retrieve.answer_types import is_question
from rag.text.analysis import detect_language
from rag.types import (
    AbstainReason,
    Answer,
    AnswerEvent,
    Citation,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    Hit,
    PassagesEvent,
    Turn,
)

__all__ = ["ABSTAIN_MESSAGES", "SMALL_TALK_REPLIES", "AnswerThresholds", "Answerer"]


@dataclass(frozen=True)
class AnswerThresholds:
    """Every tunable number of answering; defaults calibrated on dev.jsonl."""

    min_relevance: float = 0.82  # best sentence cosine below this: ``low_relevance``
    # Across languages cosines run ~0.05 lower. English questions over the German demo
    # corpus: 10 off-topic 0.742-0.781, 6 answerable 0.803-0.859 (plus dev d13-d15).
    min_relevance_cross_lingual: float = 0.79
    support: SupportThresholds = field(default_factory=SupportThresholds)
    extractive_max_sentences: int = 2  # quoted sentences, from different passages


ABSTAIN_MESSAGES: dict[str, dict[AbstainReason, str]] = {
    "de": {
        "no_passages": "In den Quellen wurde nichts zu dieser Frage gefunden.",
        "low_relevance": "Die vorliegenden Quellen beantworten diese Frage nicht.",
        "unsupported": "Die vorliegenden Quellen enthalten keine belegbare Antwort auf diese "
        "Frage.",
    },
    "en": {
        "no_passages": "Nothing in the sources matches this question.",
        "low_relevance": "The sources do not answer this question.",
        "unsupported": "The sources contain no answer to this question that could be verified.",
    },
}


# The reply to a message that asks nothing the sources answer ("Hallo", "Danke").
SMALL_TALK_REPLIES = {
    "de": "Hallo! Ich beantworte Fragen zum Inhalt der Dokumente in meinem Index und belege "
    "jede Antwort mit Zitaten aus den Quellen. Was möchten Sie wissen?",
    "en": "Hello! I answer questions about the documents in my index and back every answer "
    "with quotes from the sources. What would you like to know?",
}


@dataclass
class _Draft:
    """What both paths build before the ``Answer``: text, citations, or a reason."""

    text: str = ""
    citations: tuple[Citation, ...] = ()
    reason: AbstainReason | None = None
    notice: str = ""  # replaces the abstention message (the reply to small talk)
    streamed: bool = False  # model text already went out as deltas
    timings: dict[str, float] = field(default_factory=dict)


class Answerer:
    """Answers questions from given passages, with an LLM or extractively."""

    def __init__(
        self,
        embedder: Embedder,
        chat_model: ChatModel | None = None,
        *,
        thresholds: AnswerThresholds | None = None,
        selector: SelectorWeights | None = None,
        tokens: TokenBank | None = None,
    ) -> None:
        self.embedder = embedder
        self.chat_model = chat_model
        self.thresholds = thresholds or AnswerThresholds()
        self.selector = selector or SelectorWeights.load()
        self._bank = SentenceBank(embedder)
        self._tokens = tokens or TokenBank(embedder)  # shared with the retriever
        self._condensed: OrderedDict[tuple[str, tuple[Turn, ...]], str] = OrderedDict()
        self._lock = threading.Lock()

    # -- public API -------------------------------------------------------------------

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """The standalone question for retrieval (memoised per question and history)."""
        key = (question, tuple(history))
        with self._lock:
            if key in self._condensed:
                self._condensed.move_to_end(key)
                return self._condensed[key]
        standalone = condense_question(question, history, self.chat_model)
        with self._lock:
            self._condensed[key] = standalone
            while len(self._condensed) > 256:
                self._condensed.popitem(last=False)
        return standalone

    def answer(self, question: str, hits: Sequence[Hit], *, history: Sequence[Turn] = ()) -> Answer:
        """A cited answer, or an abstention with its reason."""
        events = list(self._events(question, hits, history, streaming=False))
        done = events[-1]
        assert isinstance(done, DoneEvent)
        return done.answer

    def stream(
        self, question: str, hits: Sequence[Hit], *, history: Sequence[Turn] = ()
    ) -> Iterator[AnswerEvent]:
        """``PassagesEvent``, ``DeltaEvent``…, ``CitationsEvent``, ``DoneEvent`` (last)."""
        return self._events(question, hits, history, streaming=True)

    # -- the pipeline -----------------------------------------------------------------

    def _score(self, question: str, hits: Sequence[Hit]) -> list[ScoredSentence]:
        vector = self._tokens.vector(question)  # from the question's search, if recent
        return score_sentences(question, hits, self.embedder, self._bank, query_vector=vector)

    def _below_floor(
        self, scored: Sequence[ScoredSentence], hits: Sequence[Hit], language: str
    ) -> bool:
        """The best sentence is below the relevance floor for its language pair."""
        best = max(scored, key=lambda s: s.cosine)
        text = hits[best.hit_index].chunk.text[best.start : best.end]
        th = self.thresholds
        same = detect_language(text) == language
        return best.cosine < (th.min_relevance if same else th.min_relevance_cross_lingual)

    def _events(
        self, question: str, hits: Sequence[Hit], history: Sequence[Turn], *, streaming: bool
    ) -> Iterator[AnswerEvent]:
        started = time.perf_counter()
        hits = tuple(hits)
        standalone = self.condense(question, history) if history else question
        language = detect_language(question)
        yield PassagesEvent(passages=hits, standalone_question=standalone)
        draft = _Draft()
        llm = "extractive"
        if not hits:
            draft.reason = "no_passages"
        else:
            t = time.perf_counter()
            scored = self._score(standalone, hits) if self.chat_model is not None else []
            draft.timings["relevance"] = _ms(t)
            if self.chat_model is None:
                yield from self._extract(standalone, hits, language, draft, streaming)
            elif not scored or self._below_floor(scored, hits, language):
                draft.reason = "low_relevance"
            else:
                llm = self.chat_model.name
                yield from self._generate(question, standalone, hits, language, draft, streaming)
                llm = str(getattr(self.chat_model, "last_model", llm))
        if draft.reason is not None:
            messages = ABSTAIN_MESSAGES.get(language, ABSTAIN_MESSAGES["en"])
            draft.text = draft.notice or messages[draft.reason]
            draft.citations = ()
            if streaming and not draft.streamed:
                yield DeltaEvent(draft.text)
        draft.timings.setdefault("generate", 0.0)
        draft.timings["answer"] = _ms(started)
        yield CitationsEvent(draft.citations)
        yield DoneEvent(
            Answer(
                question=question,
                text=draft.text,
                citations=draft.citations,
                passages=hits,
                abstained=draft.reason is not None,
                language=language,
                reason=draft.reason,
                standalone_question=standalone,
                llm=llm,
                timings_ms=draft.timings,
            )
        )

    def selector_features(
        self, question: str, hits: Sequence[Hit]
    ) -> tuple[list[Candidate], Matrix]:
        """The candidate sentences of ``hits`` and their selector features."""
        return sentence_features(question, hits, self.embedder, self._bank, self._tokens)

    def _extract(
        self, question: str, hits: tuple[Hit, ...], language: str, draft: _Draft, streaming: bool
    ) -> Iterator[DeltaEvent]:
        """Quote the sentences the selector finds likely enough; fills ``draft``."""
        t = time.perf_counter()
        candidates, rows = self.selector_features(question, hits)
        probs = self.selector.probabilities(rows)
        picked = choose(
            candidates,
            probs,
            self.selector,
            answerable=self.selector.answerable_probability(rows),
            relation=relation(rows),
            max_sentences=self.thresholds.extractive_max_sentences,
        )
        draft.timings["generate"] = _ms(t)
        if not picked:
            draft.reason = "low_relevance"
            if not is_question(question):  # "Hallo", "Danke": say what can be asked instead
                draft.notice = SMALL_TALK_REPLIES.get(language, SMALL_TALK_REPLIES["en"])
            return
        chosen = [
            ScoredSentence(c.hit_index, c.start, c.end, float(probs.max()), c.vector_index)
            for c in quote_spans(candidates, picked)
        ]
        pieces, draft.citations = compose_extractive(chosen, hits, language=language)
        draft.text = "".join(pieces)
        if streaming:
            draft.streamed = True
            for piece in pieces:  # one sentence at a time, so a client shows progress
                yield DeltaEvent(piece)

    def _generate(
        self,
        question: str,
        standalone: str,
        hits: tuple[Hit, ...],
        language: str,
        draft: _Draft,
        streaming: bool,
    ) -> Iterator[DeltaEvent]:
        """Run the LLM and check its citations; fills ``draft``, yields safe text pieces."""
        assert self.chat_model is not None
        messages = build_messages(question, hits, language=language, standalone_question=standalone)
        citer = CitationStream(len(hits))
        gate = _SentinelGate()
        t = time.perf_counter()
        if streaming:
            for raw in self.chat_model.stream(messages):
                piece = citer.feed(gate.feed(raw))
                if piece:
                    draft.streamed = True
                    yield DeltaEvent(piece)
        else:
            citer.feed(gate.feed(self.chat_model.complete(messages)))
        tail = citer.feed(gate.flush()) + citer.finish()
        draft.timings["generate"] = _ms(t)
        if gate.declined or NOT_IN_SOURCES in citer.text:
            draft.reason = "unsupported"
            return
        if tail and streaming:
            draft.streamed = True
            yield DeltaEvent(tail)
        t = time.perf_counter()
        draft.text = citer.text
        draft.citations = check_citations(
            statements_for(citer.clean_text, citer.uses),
            citer.cited,
            hits,
            self.embedder,
            self._bank,
            self.thresholds.support,
        )
        draft.timings["check"] = _ms(t)
        if not any(c.supported for c in draft.citations):
            draft.reason = "unsupported"


class _SentinelGate:
    """Holds text back while it could still be the ``NOT_IN_SOURCES`` reply."""

    def __init__(self) -> None:
        self._held = ""
        self._open = False
        self.declined = False

    def feed(self, text: str) -> str:
        if self._open:
            return text
        self._held += text
        head = self._held.lstrip()
        if head.startswith(NOT_IN_SOURCES):
            self.declined = True
            return ""
        if NOT_IN_SOURCES.startswith(head):
            return ""  # still undecided (or only blanks so far)
        self._open = True
        out, self._held = self._held, ""
        return out

    def flush(self) -> str:
        if self.declined:
            return ""
        out, self._held = self._held, ""
        return out


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 2)
