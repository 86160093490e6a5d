"""``rag tune``: fit the answer sentence selector on dev data and write its weights.

Data: the ``dev`` split of ``eval/data/xquad-de`` (German and English questions over the
German paragraphs, with gold answer spans and unanswerable questions) plus
``eval/data/dev/dev.jsonl`` over the demo corpus (gold quotes). For every question the
service retrieves its passages as it would to answer; every quotable sentence becomes a
row of ``rag.answer.selector.FEATURES``, labelled 1 when it holds a gold answer (XQuAD) or
overlaps a gold quote (dev.jsonl). A logistic regression (L2, Newton's method, numpy) is
fitted on all rows, and a second one on question-level aggregates
(``rag.answer.selector.QUESTION_FEATURES``) labelled answerable or not; its threshold for
same-language and for cross-lingual questions (``rag.answer.selector.relation``) is the
highest that keeps false abstention on the answerable questions at or below
``MAX_FALSE_ABSTENTION``. The ablation refits without each feature and scores
held-out articles (``FOLDS``-fold cross-validation over the dev articles).
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from rag.answer.selector import (
    FEATURES,
    QUESTION_FEATURES,
    Candidate,
    Logistic,
    Matrix,
    SelectorWeights,
    choose,
    question_row,
    quote_spans,
    relation,
)
from rag.config import Settings
from rag.evaluation import every_nth, load_beir
from rag.evaluation.answers import load_answers, normalize, query_languages
from rag.service import RagService
from rag.types import Hit

MAX_FALSE_ABSTENTION = 0.05  # the bound on answerable questions left unanswered
L2 = 1.0  # ridge penalty on standardised weights; keeps 10 weights stable on ~700 questions
FOLDS = 3
# The sentence model's features: removing any lowers the cross-validated dev scores and adding
# any other does not raise them (the ablation in docs/tuning.md); the rest are computed for
# that ablation and for the answerable model.
SENTENCE_FEATURES = (
    "cosine_gap",
    "window",
    "cross_lingual",
    "novelty",
    "alignment",
    "passage_score",
)
MAX_SENTENCES = 2  # as the answerer's default (AnswerThresholds.extractive_max_sentences)
# How much is quoted, chosen by cross-validation on the dev split (the grid in docs/tuning.md):
SECOND_RATIO = 0.3  # a second sentence at >= this share of the best one's probability
NEIGHBOUR_BELOW = 1.0  # the best sentence's likelier neighbour joins below this (1: always)
QUOTING_GRID = (
    (1, 0.3, 0.0),
    (2, 0.5, 0.0),
    (2, 0.3, 0.0),
    (2, 0.3, 0.5),
    (2, 0.5, 1.0),
    (3, 0.3, 1.0),
)  # (max sentences, second ratio, neighbour below) rows besides the chosen one


@dataclass
class Sample:
    """One question: its candidate sentences' features and labels."""

    qid: str
    group: str  # article (or question) for cross-validation folds
    lang: str
    answerable: bool
    rows: Matrix
    labels: npt.NDArray[np.bool_]
    candidates: list[Candidate]


def _sample(
    service: RagService,
    qid: str,
    question: str,
    *,
    group: str,
    lang: str,
    answerable: bool,
    label: Callable[[Hit, Candidate], bool],
    top_k: int,
) -> Sample:
    answerer = service.answerer
    hits = service.search(question, top_k=top_k)
    candidates, rows = answerer.selector_features(question, hits)
    labels = np.array([answerable and label(hits[c.hit_index], c) for c in candidates], dtype=bool)
    return Sample(qid, group, lang, answerable, rows, labels, candidates)


def xquad_samples(
    service: RagService, folder: Path, *, split: str = "dev", top_k: int = 5, every: int = 1
) -> list[Sample]:
    """Samples for a split of an XQuAD-style BEIR folder (the index must hold its corpus)."""
    _corpus, queries, _qrels = load_beir(folder, split)
    queries = every_nth(queries, every)
    gold = load_answers(folder)
    langs = query_languages(folder)
    rows = {
        json.loads(x)["query_id"]: json.loads(x)
        for x in (folder / "answers.jsonl").read_text("utf-8").splitlines()
        if x
    }
    out = []
    for qid, text in tqdm(queries.items(), desc=f"features {folder.name}", unit="q"):
        if qid not in gold:
            continue
        answers = [normalize(a) for a in gold[qid].answers]
        doc = rows[qid].get("gold_doc")

        def label(hit: Hit, c: Candidate, answers: list[str] = answers) -> bool:
            quote = normalize(hit.chunk.text[c.start : c.end])
            return any(a in quote for a in answers)

        article = doc.rsplit("-", 1)[0] if doc else qid.rsplit("-", 1)[0]
        out.append(
            _sample(
                service,
                qid,
                text,
                group=article,
                lang=langs.get(qid, "?"),
                answerable=gold[qid].answerable,
                label=label,
                top_k=top_k,
            )
        )
    return out


def qa_samples(service: RagService, path: Path, *, top_k: int = 5) -> list[Sample]:
    """Samples for a QA file (``dev.jsonl``): positives overlap a gold quote."""
    store = service.index.store
    out = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        if q["type"] == "boilerplate_trap":
            continue
        spans: list[tuple[str, int, int]] = []
        for g in q.get("gold", []):
            start = store.get_document(g["doc"]).text.find(g["quote"])
            if start >= 0:
                spans.append((g["doc"], start, start + len(g["quote"])))

        def label(hit: Hit, c: Candidate, spans: list[tuple[str, int, int]] = spans) -> bool:
            a, b = hit.chunk.start + c.start, hit.chunk.start + c.end
            return any(d == hit.chunk.doc_id and a < e and s < b for d, s, e in spans)

        answerable = q["type"] != "unanswerable"
        out.append(
            _sample(
                service,
                q["id"],
                q["question"],
                group=f"qa-{q['id']}",
                lang=q["lang"],
                answerable=answerable,
                label=label,
                top_k=top_k,
            )
        )
    return out


# -- fitting --------------------------------------------------------------------------
def fit_logistic(
    x: Matrix, y: npt.NDArray[np.bool_], *, l2: float = L2, iterations: int = 50
) -> tuple[Matrix, float]:
    """L2-regularised logistic regression by Newton's method; ``(weights, bias)``."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    target = y.astype(np.float64)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -30, 30)))
        grad = design.T @ (p - target) + penalty * beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def _logistic(x: Matrix, y: npt.NDArray[np.bool_], names: Sequence[str]) -> Logistic:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    w, b = fit_logistic((x - mean) / scale, y)
    return Logistic(
        features=tuple(names),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in w),
        bias=b,
    )


def fit(
    samples: Sequence[Sample],
    features: Sequence[str] = SENTENCE_FEATURES,
    question_features: Sequence[str] = QUESTION_FEATURES,
) -> SelectorWeights:
    """The sentence model, the answerable model and its thresholds, fitted on ``samples``."""
    usable = [s for s in samples if len(s.rows)]
    cols = [FEATURES.index(f) for f in features]
    sentence = _logistic(
        np.vstack([s.rows[:, cols] for s in usable]),
        np.concatenate([s.labels for s in usable]),
        features,
    )
    qcols = [QUESTION_FEATURES.index(f) for f in question_features]
    answerable = _logistic(
        np.vstack([question_row(s.rows)[qcols] for s in usable]),
        np.array([s.answerable for s in usable], dtype=bool),
        question_features,
    )
    model = SelectorWeights(sentence, answerable, {}, SECOND_RATIO, NEIGHBOUR_BELOW)
    return replace(model, thresholds=choose_thresholds(model, samples))


def choose_thresholds(model: SelectorWeights, samples: Sequence[Sample]) -> dict[str, float]:
    """Per ``relation`` (same-language or cross-lingual questions), the highest threshold
    whose false abstention is <= the bound."""
    limits = {}
    keys = [relation(s.rows) for s in samples]
    for key in sorted(set(keys)):
        best = sorted(
            model.answerable_probability(s.rows)
            for s, k in zip(samples, keys, strict=True)
            if k == key and s.answerable
        )
        if best:
            limits[key] = best[int(MAX_FALSE_ABSTENTION * len(best))]
    return limits


def score(samples: Sequence[Sample], picks: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Per language: supported answers, abstention, false abstention (selection alone)."""
    out: dict[str, dict[str, float]] = {}
    for lang in sorted({s.lang for s in samples}):
        items = [s for s in samples if s.lang == lang]
        answerable = [s for s in items if s.answerable]
        unanswerable = [s for s in items if not s.answerable]
        out[lang] = {
            "supported": _rate(answerable, lambda s: _supported(s, picks[s.qid])),
            "abstained_unanswerable": _rate(unanswerable, lambda s: not picks[s.qid]),
            "false_abstention": _rate(answerable, lambda s: not picks[s.qid]),
        }
    return out


def _supported(sample: Sample, picked: Sequence[int]) -> bool:
    """A quoted span (``quote_spans``) holds a positive sentence."""
    return any(
        sample.labels[i]
        for span in quote_spans(sample.candidates, picked)
        for i, c in enumerate(sample.candidates)
        if c.hit_index == span.hit_index and span.start <= c.start and c.end <= span.end
    )


def picks_of(
    model: SelectorWeights, samples: Sequence[Sample], max_sentences: int = MAX_SENTENCES
) -> dict[str, list[int]]:
    """The sentences ``model`` quotes for each sample (empty: abstains)."""
    return {
        s.qid: choose(
            s.candidates,
            model.probabilities(s.rows),
            model,
            answerable=model.answerable_probability(s.rows),
            relation=relation(s.rows),
            max_sentences=max_sentences,
        )
        for s in samples
    }


def _rate(items: Sequence[Sample], pred: Callable[[Sample], bool]) -> float:
    return sum(1 for s in items if pred(s)) / len(items) if items else 0.0


def cross_validated(
    samples: Sequence[Sample],
    features: Sequence[str] = SENTENCE_FEATURES,
    question_features: Sequence[str] = QUESTION_FEATURES,
    quoting: tuple[int, float, float] = (MAX_SENTENCES, SECOND_RATIO, NEIGHBOUR_BELOW),
) -> dict[str, dict[str, float]]:
    """``score`` on held-out folds (by article), each fold's model fitted on the others.

    ``quoting``: max sentences, second ratio and neighbour threshold of the quotes.
    """
    fold = [zlib.crc32(s.group.encode()) % FOLDS for s in samples]
    picks: dict[str, list[int]] = {}
    for k in range(FOLDS):
        train = [s for s, f in zip(samples, fold, strict=True) if f != k]
        test = [s for s, f in zip(samples, fold, strict=True) if f == k]
        model = fit(train, features, question_features)
        model = replace(model, second_ratio=quoting[1], neighbour_below=quoting[2])
        picks.update(picks_of(model, test, quoting[0]))
    return score(samples, picks)


def ablation(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Cross-validated scores: every feature, the kept ones, less each, plus each other one."""
    runs: list[dict[str, Any]] = [
        {"without": "(every feature)", "scores": cross_validated(samples, FEATURES)},
        {"without": "-", "scores": cross_validated(samples)},
    ]
    for f in SENTENCE_FEATURES:
        kept = [g for g in SENTENCE_FEATURES if g != f]
        runs.append({"without": f, "scores": cross_validated(samples, kept)})
    for f in FEATURES:
        if f not in SENTENCE_FEATURES:
            scores = cross_validated(samples, [*SENTENCE_FEATURES, f])
            runs.append({"without": f"+{f}", "scores": scores})
    for f in QUESTION_FEATURES:
        kept = [g for g in QUESTION_FEATURES if g != f]
        scores = cross_validated(samples, SENTENCE_FEATURES, kept)
        runs.append({"without": f"{f} (answerable)", "scores": scores})
    for q in QUOTING_GRID:
        scores = cross_validated(samples, quoting=q)
        label = f"(quoting: max {q[0]} sentences, second ratio {q[1]}, neighbour below {q[2]})"
        runs.append({"without": label, "scores": scores})
    return runs


def collect(
    settings: Settings,
    xquad: Path,
    qa: Path | None,
    index_dir: Path,
    *,
    every: int = 1,
    cache: Path | None = None,
) -> list[Sample]:
    """Samples of the XQuAD dev split (its corpus ingested into ``index_dir``) and ``qa``.

    With ``cache``, samples saved there by an earlier run with the same arguments are loaded
    instead of retrieving again (a refit or ablation then takes seconds), and fresh ones are
    saved there.
    """
    key = [str(xquad), str(qa), every, FEATURES]
    if cache is not None and cache.exists():
        with cache.open("rb") as f:
            saved = pickle.load(f)  # a file this command wrote
        if saved.get("key") == key:
            return list(saved["samples"])
    samples = _collect(settings, xquad, qa, index_dir, every=every)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("wb") as f:
            pickle.dump({"key": key, "samples": samples}, f)
    return samples


def _collect(
    settings: Settings, xquad: Path, qa: Path | None, index_dir: Path, *, every: int
) -> list[Sample]:
    from rag.ingest.loaders import document_from_text

    service = RagService.from_settings(settings.model_copy(update={"index_dir": index_dir}))
    corpus, _queries, _qrels = load_beir(xquad, None)
    docs = [document_from_text(d["id"], d["text"], title=d.get("title") or None) for d in corpus]
    service.index.ingest(tqdm(docs, desc="ingest", unit="doc"), prune=True)
    samples = xquad_samples(service, xquad, split="dev", every=every)
    service.close()
    if qa is not None:
        service = RagService.from_settings(settings)
        samples += qa_samples(service, qa)
        service.close()
    return samples


def _label(without: str) -> str:
    """The ablation row's name: the kept model, an added or removed feature, a quoting choice."""
    if without == "-":
        return "all (cross-validated)"
    if without.startswith("+"):
        return f"with {without[1:]}"
    return without if without.startswith("(") else f"without {without}"


def format_scores(label: str, scores: dict[str, dict[str, float]]) -> str:
    """One markdown row: supported / abstained / false abstention per language."""
    cells = [
        f"{m['supported']:.3f} / {m['abstained_unanswerable']:.3f} / {m['false_abstention']:.3f}"
        for _lang, m in sorted(scores.items())
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def run_tune(
    settings: Settings,
    *,
    xquad: Path,
    qa: Path | None,
    index_dir: Path,
    out: Path,
    with_ablation: bool = False,
    every: int = 1,
    cache: Path | None = None,
) -> int:
    """CLI entry: collect features, fit, write the weights, print the (ablation) table."""
    samples = collect(settings, xquad, qa, index_dir, every=every, cache=cache)
    model = fit(samples)
    langs = sorted({s.lang for s in samples})
    header = "| features | " + " | ".join(
        f"{lang}: supported / abstains / false abst." for lang in langs
    )
    print(header + " |\n|---|" + "---|" * len(langs))
    print(
        format_scores(
            "kept features, fitted on all (in-sample)", score(samples, picks_of(model, samples))
        )
    )
    if with_ablation:
        for run in ablation(samples):
            label = _label(run["without"])
            print(format_scores(label, run["scores"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model.to_json(), encoding="utf-8")
    print(f"thresholds {model.thresholds}; weights written to {out}")
    return 0
