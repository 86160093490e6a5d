"""The answer sentence selector: how likely each passage sentence answers the question.

Every quotable sentence of the retrieved passages gets a few general features (below) and a
logistic model turns them into a probability: ``p = sigmoid(w . (x - mean) / scale + b)``.
The weights are fitted on data (``rag tune``, ``rag.tuning``: XQuAD dev split plus
``eval/data/dev/dev.jsonl``) and shipped as ``selector.json`` next to this module; inference
is this dot product, no fitting library needed. A second logistic model over a few
question-level aggregates of the same features (``QUESTION_FEATURES``) gives the probability
that the passages answer at all; below its threshold the answer abstains. There are two
thresholds, one for questions in the language of their passages and one for questions in
another (``relation``), each chosen on the dev split for the most abstention on
unanswerable questions at <= 5 % false abstention. XQuAD's corpus is German, so its German
questions set the first and its English ones the second, which then serves a Spanish or
Russian question as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.answer.extractive import ScoredSentence, score_sentences, term_match
from rag.answer.support import SentenceBank, content_terms
from rag.embedding.base import Embedder
from rag.retrieve.alignment import TokenBank
from rag.retrieve.answer_types import asked_kind, holds_kind
from rag.text.analysis import detect_language
from rag.types import Hit

__all__ = [
    "CROSS_LINGUAL",
    "FEATURES",
    "MAX_SPAN_CHARS",
    "QUESTION_FEATURES",
    "SAME_LANGUAGE",
    "Candidate",
    "Logistic",
    "SelectorWeights",
    "choose",
    "question_row",
    "quote_spans",
    "relation",
    "sentence_features",
]

# What each feature measures (all in [0, 1] or close; standardised by the fitted mean/scale):
FEATURES: tuple[str, ...] = (
    "cosine",  # embedding similarity of question and sentence
    "cosine_gap",  # cosine minus the best cosine among the candidates (<= 0)
    "window",  # similarity of the question and the sentence with its neighbours
    "overlap",  # IDF-weighted share of question terms in the sentence (German analysis)
    "overlap_gap",  # overlap minus the best overlap among the candidates (<= 0)
    "passage_score",  # the passage's fused retrieval score (best passage = 1)
    "passage_rank",  # 1 / (1 + rank of the passage)
    "type_match",  # the question asks for a kind of value and the sentence holds one
    "type_missing",  # the question asks for a kind of value and the sentence holds none
    "cross_lingual",  # question and sentence are in different languages
    "novelty",  # share of the sentence's terms the question does not contain
    "coverage",  # share of all question terms the sentence holds (unweighted)
    "unmatched",  # share of question terms no candidate sentence holds (same for all rows)
    "alignment",  # question tokens matched in the sentence's tokens (``rag.retrieve.alignment``)
)

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Candidate:
    """A quotable sentence: offsets into ``hits[hit_index].chunk.text`` and its vector row."""

    hit_index: int
    start: int
    end: int
    vector_index: int


def _window_cosines(vectors: npt.NDArray[np.float32], query: npt.NDArray[np.float32]) -> Matrix:
    """Cosine of the query with each sentence averaged with its two neighbours."""
    padded = np.vstack([np.zeros_like(vectors[:1]), vectors, np.zeros_like(vectors[:1])])
    summed = padded[:-2] + padded[1:-1] + padded[2:]
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.asarray((summed / np.maximum(norms, 1e-9)) @ query, dtype=np.float64)


def sentence_features(
    question: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    bank: SentenceBank,
    tokens: TokenBank | None = None,
) -> tuple[list[Candidate], Matrix]:
    """The candidate sentences of ``hits`` and their feature rows (columns: ``FEATURES``);
    ``tokens`` caches the passages' token states and the question's vector from its search
    (a fresh one when not given)."""
    tokens = tokens or TokenBank(embedder)
    query = tokens.vector(question)
    if query is None:
        query = embedder.embed_queries([question])[0]
    scored: list[ScoredSentence] = score_sentences(
        question, hits, embedder, bank, query_vector=query
    )
    if not scored:
        return [], np.zeros((0, len(FEATURES)))
    entries = bank.get([hit.chunk for hit in hits])
    windows = [_window_cosines(entry.vectors, query) for entry in entries]
    language = detect_language(question)
    kind = asked_kind(question)
    asked = content_terms(question, query=False)
    wanted = content_terms(question, query=True)
    best = max(s.cosine for s in scored)
    best_overlap = max(s.overlap for s in scored)
    texts = [hits[s.hit_index].chunk.text[s.start : s.end] for s in scored]
    sentence_terms = [content_terms(text, query=False) for text in texts]
    matched = [{t: term_match(t, terms) for t in wanted} for terms in sentence_terms]
    found = {t for m in matched for t, v in m.items() if v > 0}
    unmatched = len(wanted - found) / len(wanted) if wanted else 0.0
    spans = [(s.hit_index, s.start, s.end) for s in scored]
    # Embedders without token states (the ONNX backends): the sentence cosines stand in.
    aligned = tokens.span_alignments(question, [h.chunk for h in hits], spans) or [
        s.cosine for s in scored
    ]
    rows = []
    for s, text, terms, match, align in zip(
        scored, texts, sentence_terms, matched, aligned, strict=True
    ):
        holds = kind is not None and holds_kind(text, kind)
        rows.append(
            [
                s.cosine,
                s.cosine - best,
                float(windows[s.hit_index][s.vector_index]),
                s.overlap,
                s.overlap - best_overlap,
                float(hits[s.hit_index].score),
                1.0 / (1.0 + s.hit_index),
                float(holds),
                float(kind is not None and not holds),
                float(detect_language(text) != language),
                len(terms - asked) / len(terms) if terms else 0.0,
                sum(match.values()) / len(wanted) if wanted else 0.0,
                unmatched,
                align,
            ]
        )
    candidates = [Candidate(s.hit_index, s.start, s.end, s.vector_index) for s in scored]
    return candidates, np.asarray(rows, dtype=np.float64)


# Question-level aggregates of the rows, for the answerable model (abstention).
QUESTION_FEATURES: tuple[str, ...] = (
    "max_cosine",  # the best sentence cosine
    "max_window",  # the best sentence-with-neighbours cosine
    "max_coverage",  # the largest share of question terms one sentence holds
    "unmatched",  # share of question terms no candidate holds
    "cross_lingual",  # share of candidates in another language than the question
)


def question_row(rows: Matrix) -> Matrix:
    """The ``QUESTION_FEATURES`` of one question from its sentence rows."""
    col = {f: i for i, f in enumerate(FEATURES)}
    return np.array(
        [
            rows[:, col["cosine"]].max(),
            rows[:, col["window"]].max(),
            rows[:, col["coverage"]].max(),
            rows[0, col["unmatched"]],
            rows[:, col["cross_lingual"]].mean(),
        ]
    )


SAME_LANGUAGE = "same_language"
CROSS_LINGUAL = "cross_lingual"
# Threshold keys of selector.json files written before the keys named the relation: they
# were fitted on German corpora, so a German question was a same-language one.
_OLD_THRESHOLD_KEYS = {"de": SAME_LANGUAGE, "en": CROSS_LINGUAL}


def relation(rows: Matrix) -> str:
    """Which abstention threshold applies: ``CROSS_LINGUAL`` when most candidate sentences
    are in another language than the question, else ``SAME_LANGUAGE``."""
    if rows.shape[0] == 0:
        return SAME_LANGUAGE
    share = float(rows[:, FEATURES.index("cross_lingual")].mean())
    return CROSS_LINGUAL if share > 0.5 else SAME_LANGUAGE


@dataclass(frozen=True)
class Logistic:
    """``sigmoid(w . (x - mean) / scale + b)`` over the named columns."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def probabilities(self, rows: Matrix, names: Sequence[str]) -> Matrix:
        """One probability per row; ``names`` are the columns of ``rows``."""
        if rows.shape[0] == 0:
            return np.zeros(0)
        unknown = set(self.features) - set(names)
        if unknown:
            raise ValueError(f"selector weights name unknown features {sorted(unknown)}")
        x = (rows[:, [list(names).index(f) for f in self.features]] - self.mean) / self.scale
        z = x @ np.asarray(self.weights) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), dtype=np.float64)


@dataclass(frozen=True)
class SelectorWeights:
    """The fitted sentence model, the answerable model and its thresholds."""

    sentence: Logistic  # over ``FEATURES``: does this sentence answer?
    answerable: Logistic  # over ``QUESTION_FEATURES``: do the passages answer at all?
    thresholds: dict[str, float]  # per ``relation`` of question and passages; abstain below
    second_ratio: float = 0.3  # quote a second sentence at >= this share of the best's
    # Also quote the best sentence's likelier neighbour while its probability is below this
    # (1: always); chosen by cross-validation on the dev split (docs/tuning.md).
    neighbour_below: float = 0.0

    def probabilities(self, rows: Matrix) -> Matrix:
        """Probability that each row's sentence answers (rows hold all ``FEATURES``)."""
        return self.sentence.probabilities(rows, FEATURES)

    def answerable_probability(self, rows: Matrix) -> float:
        """Probability that the passages answer the question at all (0 without rows)."""
        if rows.shape[0] == 0:
            return 0.0
        return float(
            self.answerable.probabilities(question_row(rows)[None, :], QUESTION_FEATURES)[0]
        )

    def threshold(self, relation: str) -> float:
        """The abstention threshold for a ``relation`` (the strictest for an unknown one)."""
        return self.thresholds.get(relation, max(self.thresholds.values(), default=0.5))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SelectorWeights:
        data = json.loads(text)
        models = {}
        for key, names in (("sentence", FEATURES), ("answerable", QUESTION_FEATURES)):
            part = data[key]
            unknown = set(part["features"]) - set(names)
            if unknown:
                raise ValueError(f"selector weights name unknown features {sorted(unknown)}")
            models[key] = Logistic(
                features=tuple(part["features"]),
                mean=tuple(part["mean"]),
                scale=tuple(part["scale"]),
                weights=tuple(part["weights"]),
                bias=float(part["bias"]),
            )
        return cls(
            models["sentence"],
            models["answerable"],
            {_OLD_THRESHOLD_KEYS.get(k, k): float(v) for k, v in data["thresholds"].items()},
            float(data.get("second_ratio", 0.3)),
            float(data.get("neighbour_below", 0.0)),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> SelectorWeights:
        """The given weights file, or the shipped ``selector.json``."""
        if path is not None:
            return cls.from_json(path.read_text("utf-8"))
        shipped = resources.files("rag.answer").joinpath("selector.json")
        return cls.from_json(shipped.read_text("utf-8"))


MAX_SPAN_CHARS = 400  # two sentences of one passage are quoted as one span up to this length


def choose(
    candidates: Sequence[Candidate],
    probs: Matrix,
    weights: SelectorWeights,
    *,
    answerable: float,
    relation: str,
    max_sentences: int,
    max_span_chars: int = MAX_SPAN_CHARS,
) -> list[int]:
    """Indices of the sentences to quote, most likely first; empty to abstain.

    Empty when ``answerable`` (``SelectorWeights.answerable_probability``) is below the
    threshold for the ``relation`` of question and passages. Else the best sentence, plus
    the next ones while they stay at ``second_ratio`` of its probability. Sentences of one
    passage are quoted as one span (``quote_spans``), so a second one there must keep the
    span short.
    Below ``neighbour_below`` the best sentence's likelier neighbour in its passage joins
    (answers often sit in the sentence next to the one that echoes the question).
    """
    order = [int(i) for i in np.argsort(-probs, kind="stable")]
    if not order or answerable < weights.threshold(relation):
        return []
    chosen = [order[0]]
    for i in order[1:]:
        if len(chosen) >= max_sentences or probs[i] < weights.second_ratio * probs[order[0]]:
            break
        same = [candidates[c] for c in chosen if candidates[c].hit_index == candidates[i].hit_index]
        if same:
            span = [*same, candidates[i]]
            if max(c.end for c in span) - min(c.start for c in span) > max_span_chars:
                continue
        chosen.append(i)
    return _with_neighbour(candidates, probs, chosen, weights.neighbour_below)


def _with_neighbour(
    candidates: Sequence[Candidate], probs: Matrix, chosen: list[int], below: float
) -> list[int]:
    """``chosen`` plus the likelier sentence next to its first one, if that is below ``below``."""
    top = candidates[chosen[0]]
    if probs[chosen[0]] >= below:
        return chosen
    near = [
        i
        for i, c in enumerate(candidates)
        if c.hit_index == top.hit_index and abs(c.vector_index - top.vector_index) == 1
    ]
    if not near:
        return chosen
    best = max(near, key=lambda i: float(probs[i]))
    return chosen if best in chosen else [*chosen, best]


def quote_spans(candidates: Sequence[Candidate], picked: Sequence[int]) -> list[Candidate]:
    """The picked sentences as quotes: one span per passage, in the order of first pick."""
    spans: dict[int, Candidate] = {}
    for i in picked:
        c = candidates[i]
        if c.hit_index in spans:
            old = spans[c.hit_index]
            c = Candidate(
                c.hit_index, min(old.start, c.start), max(old.end, c.end), old.vector_index
            )
        spans[c.hit_index] = c
    return list(spans.values())
