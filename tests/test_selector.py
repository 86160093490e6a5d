"""The answer sentence selector: features, the shipped weights, fitting and choosing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.answer.selector import (
    CROSS_LINGUAL,
    FEATURES,
    QUESTION_FEATURES,
    SAME_LANGUAGE,
    Candidate,
    SelectorWeights,
    choose,
    quote_spans,
    relation,
    sentence_features,
)
from rag.answer.support import SentenceBank
from rag.testing import FakeEmbedder, overlap_selector
from rag.tuning import Sample, choose_thresholds, fit, fit_logistic, picks_of, score
from rag.types import Chunk, Hit

ROOT = Path(__file__).resolve().parents[1]
XQUAD = ROOT / "eval" / "data" / "xquad-de"


def _weights(**kw: object) -> SelectorWeights:
    return replace(overlap_selector(), **kw)  # type: ignore[arg-type]


def test_logistic_fit_recovers_the_generating_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p = 1 / (1 + np.exp(-(x @ np.array([2.0, -1.0]) + 0.5)))
    y = rng.random(4000) < p
    w, b = fit_logistic(x, y, l2=0.0)
    assert w == pytest.approx([2.0, -1.0], abs=0.2)
    assert b == pytest.approx(0.5, abs=0.15)


def test_weights_round_trip_and_reject_unknown_features() -> None:
    model = _weights()
    assert SelectorWeights.from_json(model.to_json()) == model
    data = json.loads(model.to_json())
    data["sentence"]["features"] = ["shoe_size"]
    with pytest.raises(ValueError, match="shoe_size"):
        SelectorWeights.from_json(json.dumps(data))


def test_shipped_weights_load_and_use_known_features() -> None:
    model = SelectorWeights.load()
    assert set(model.sentence.features) <= set(FEATURES)
    assert set(model.answerable.features) <= set(QUESTION_FEATURES)
    for part in (model.sentence, model.answerable):
        assert len(part.weights) == len(part.mean) == len(part.scale) == len(part.features)
    assert set(model.thresholds) == {SAME_LANGUAGE, CROSS_LINGUAL}
    assert all(0.0 < t < 1.0 for t in model.thresholds.values())
    # across languages the answerable model is less sure: its threshold is lower
    assert model.thresholds[CROSS_LINGUAL] < model.thresholds[SAME_LANGUAGE]


def test_thresholds_are_keyed_by_whether_question_and_passages_share_a_language() -> None:
    model = _weights(thresholds={SAME_LANGUAGE: 0.7, CROSS_LINGUAL: 0.4})
    rows = np.zeros((4, len(FEATURES)))
    col = FEATURES.index("cross_lingual")
    assert relation(rows) == SAME_LANGUAGE
    rows[:3, col] = 1.0  # most sentences in another language than the question
    assert relation(rows) == CROSS_LINGUAL
    rows[:3, col], rows[3:, col] = 0.0, 1.0
    assert relation(rows) == SAME_LANGUAGE
    assert relation(np.zeros((0, len(FEATURES)))) == SAME_LANGUAGE
    cands = [Candidate(0, 0, 5, 0)]

    def pick(key: str) -> list[int]:
        return choose(cands, np.array([0.9]), model, answerable=0.5, relation=key, max_sentences=1)

    assert pick(CROSS_LINGUAL) == [0]
    assert pick(SAME_LANGUAGE) == []
    assert pick("unknown") == []  # an unknown key gets the strictest threshold
    # selector.json files from before keyed the thresholds by the (German corpus') languages
    data = json.loads(model.to_json())
    data["thresholds"] = {"de": 0.7, "en": 0.4}
    assert SelectorWeights.from_json(json.dumps(data)).thresholds == model.thresholds


def test_choose_abstains_below_the_threshold_and_joins_sentences_of_one_passage() -> None:
    model = _weights(second_ratio=0.5)
    cands = [Candidate(0, 0, 5, 0), Candidate(0, 6, 9, 1), Candidate(1, 0, 4, 0)]

    def pick(probs: list[float], answerable: float = 0.9, **kw: object) -> list[int]:
        return choose(
            cands,
            np.array(probs),
            model,
            answerable=answerable,
            relation=SAME_LANGUAGE,
            max_sentences=2,
            **kw,  # type: ignore[arg-type]
        )

    assert pick([0.9, 0.8, 0.5]) == [0, 1]
    assert quote_spans(cands, [0, 1]) == [Candidate(0, 0, 9, 0)]
    assert pick([0.9, 0.3, 0.5]) == [0, 2]
    assert quote_spans(cands, [0, 2]) == [cands[0], cands[2]]
    assert pick([0.9, 0.8, 0.5], max_span_chars=5) == [0, 2]
    assert pick([0.9, 0.3, 0.3]) == [0]
    assert pick([0.9, 0.8, 0.5], answerable=0.4) == []  # the question is not answerable


def test_choose_adds_the_likelier_neighbour_of_the_best_sentence() -> None:
    cands = [Candidate(0, 0, 5, 0), Candidate(0, 6, 9, 1), Candidate(0, 10, 14, 2)]
    cands.append(Candidate(1, 0, 4, 1))  # next in vector index, but another passage

    def pick(below: float, probs: list[float]) -> list[int]:
        model = _weights(second_ratio=0.5, neighbour_below=below)
        return choose(
            cands, np.array(probs), model, answerable=0.9, relation=SAME_LANGUAGE, max_sentences=1
        )

    assert pick(1.0, [0.1, 0.9, 0.3, 0.8]) == [1, 2]
    assert pick(1.0, [0.4, 0.9, 0.3, 0.8]) == [1, 0]
    assert quote_spans(cands, [1, 2]) == [Candidate(0, 6, 14, 1)]
    assert pick(0.5, [0.1, 0.9, 0.3, 0.8]) == [1]  # sure enough: no neighbour
    assert pick(1.0, [0.1, 0.2, 0.3, 0.9]) == [3]  # no neighbour in its passage


def _hits(*texts: str) -> list[Hit]:
    return [
        Hit(chunk=Chunk(10 + i, f"d{i}", 0, 0, len(t), t), score=1.0 - 0.1 * i)
        for i, t in enumerate(texts)
    ]


def test_features_mark_the_asked_kind_of_value() -> None:
    hits = _hits(
        "Das Treffen fand im Juli 2018 in Helsinki statt. Beide Seiten lobten es.",
        "Trump und Putin trafen sich mehrmals.",
    )
    embedder = FakeEmbedder()
    cands, rows = sentence_features(
        "Wo trafen sich Trump und Putin?", hits, embedder, SentenceBank(embedder)
    )
    assert rows.shape == (len(cands), len(FEATURES))
    col = {f: FEATURES.index(f) for f in FEATURES}
    by_text = {
        hits[c.hit_index].chunk.text[c.start : c.end]: r for c, r in zip(cands, rows, strict=True)
    }
    helsinki = by_text["Das Treffen fand im Juli 2018 in Helsinki statt."]
    assert helsinki[col["type_match"]] == 1.0 and helsinki[col["type_missing"]] == 0.0
    assert by_text["Beide Seiten lobten es."][col["type_missing"]] == 1.0
    assert (
        by_text["Trump und Putin trafen sich mehrmals."][col["overlap"]] > helsinki[col["overlap"]]
    )
    assert rows[:, col["cosine_gap"]].max() == 0.0


def _synthetic_samples(n: int, seed: int) -> list[Sample]:
    """Answer sentences stand out in ``cosine_gap``; answerable questions in ``cosine``."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n):
        rows = rng.normal(size=(6, len(FEATURES)))
        answerable = q % 4 != 0
        labels = np.zeros(6, dtype=bool)
        if answerable:
            rows[2, FEATURES.index("cosine_gap")] += 3.0
            rows[2, FEATURES.index("cosine")] += 3.0
            labels[2] = True
        cands = [Candidate(i, 0, 1, 0) for i in range(6)]
        out.append(Sample(f"q{q}", f"g{q % 5}", "de", answerable, rows, labels, cands))
    return out


def test_fit_separates_answers_and_keeps_false_abstention_bounded() -> None:
    samples = _synthetic_samples(200, 1)
    model = fit(samples)
    m = score(samples, picks_of(model, samples))["de"]
    assert m["supported"] > 0.8
    assert m["false_abstention"] <= 0.05 + 1e-9
    assert m["abstained_unanswerable"] > 0.3
    assert model.thresholds == choose_thresholds(model, samples)


@pytest.mark.slow
def test_refitting_on_a_slice_behaves_like_the_shipped_weights(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Refit on two dev articles; the shipped and the refitted model pick alike."""
    from rag.ingest.loaders import document_from_text
    from rag.service import RagService
    from rag.tuning import xquad_samples

    dev = set(json.loads((XQUAD / "splits.json").read_text())["dev"])
    corpus = [json.loads(x) for x in (XQUAD / "corpus.jsonl").read_text("utf-8").splitlines()]
    articles = sorted({d["id"].rsplit("-", 1)[0] for d in corpus})
    answers = [json.loads(x) for x in (XQUAD / "answers.jsonl").read_text("utf-8").splitlines()]
    dev_articles = sorted(
        {a["gold_doc"].rsplit("-", 1)[0] for a in answers if a["gold_doc"] and a["query_id"] in dev}
    )
    chosen = set(dev_articles[:2])
    assert chosen <= set(articles)
    slice_dir = tmp_path / "slice"
    slice_dir.mkdir()
    docs = [d for d in corpus if d["id"].rsplit("-", 1)[0] in chosen]
    keep = {
        a["query_id"]
        for a in answers
        if a["query_id"] in dev and a["gold_doc"] and a["gold_doc"].rsplit("-", 1)[0] in chosen
    }
    (slice_dir / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs), "utf-8")
    for name in ("queries.jsonl", "answers.jsonl"):
        rows = [json.loads(x) for x in (XQUAD / name).read_text("utf-8").splitlines()]
        key = "id" if name == "queries.jsonl" else "query_id"
        (slice_dir / name).write_text(
            "\n".join(json.dumps(r) for r in rows if r[key] in keep), "utf-8"
        )
    (slice_dir / "qrels.tsv").write_text("query_id\tdoc_id\trelevance\n", "utf-8")
    (slice_dir / "splits.json").write_text(json.dumps({"dev": sorted(keep), "test": []}), "utf-8")
    service = RagService(tmp_path / "index", embedder)
    service.index.ingest([document_from_text(d["id"], d["text"], title=d["title"]) for d in docs])
    samples = xquad_samples(service, slice_dir)
    service.close()
    assert len(samples) >= 20
    shipped = SelectorWeights.load()
    refit = fit(samples, shipped.sentence.features, shipped.answerable.features)
    # German questions over German paragraphs, English ones across: one threshold each
    assert set(refit.thresholds) == {SAME_LANGUAGE, CROSS_LINGUAL}
    same_top = np.mean(
        [
            int(np.argmax(shipped.probabilities(s.rows)))
            == int(np.argmax(refit.probabilities(s.rows)))
            for s in samples
            if len(s.rows)
        ]
    )
    assert same_top >= 0.8
    m_shipped = score(samples, picks_of(shipped, samples))["de"]
    m_refit = score(samples, picks_of(refit, samples))["de"]
    assert abs(m_shipped["supported"] - m_refit["supported"]) <= 0.15
