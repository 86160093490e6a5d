"""The benchmark's synthetic data: German-like text, valid chunks, structured unit vectors."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

# bench/ is not an installed package (only rag/ and api/ are): import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
synthetic = importlib.import_module("bench.synthetic")
bench = importlib.import_module("bench")


def test_text_is_deterministic_per_seed() -> None:
    a, b, c = (synthetic.GermanLikeText(seed, vocabulary_size=2000) for seed in (1, 1, 2))
    first = [a.paragraph() for _ in range(3)]
    assert first == [b.paragraph() for _ in range(3)]
    assert first != [c.paragraph() for _ in range(3)]


def test_text_looks_german() -> None:
    from rag.text.analysis import GermanAnalyzer

    gen = synthetic.GermanLikeText(0, vocabulary_size=2000)
    text = " ".join(gen.paragraph() for _ in range(50))
    words = text.split()
    assert 40 * 50 * 0.5 < len(words) < 130 * 50 * 2  # news-paragraph sized
    analyzer = GermanAnalyzer()
    stop_share = 1 - len(analyzer.words(text)) / len(words)
    assert 0.2 < stop_share < 0.8  # function words are frequent, as in real German
    assert sum(w[:1].isupper() for w in words) > len(words) * 0.1  # capitalised nouns
    assert any(w in text for w in ("ung", "heit", "keit", "schaft"))
    assert text.rstrip().endswith((".", "?"))


def test_query_comes_from_the_passage() -> None:
    gen = synthetic.GermanLikeText(3, vocabulary_size=2000)
    passage = gen.paragraph()
    query = gen.query_from(passage, words=4)
    assert 1 <= len(query.split()) <= 4
    cleaned = {w.strip(",.?") for w in passage.split()}
    assert set(query.split()) <= cleaned


@pytest.mark.parametrize(("n", "per_doc", "batch"), [(23, 5, 10), (40, 10, 40)])
def test_batches_have_exact_counts_and_valid_offsets(n: int, per_doc: int, batch: int) -> None:
    gen = synthetic.GermanLikeText(0, vocabulary_size=2000)
    batches = list(
        synthetic.synthetic_batches(n, chunks_per_doc=per_doc, batch_chunks=batch, text=gen)
    )
    chunks = [c for b in batches for c in b.chunks]
    docs = {d.doc_id: d for b in batches for d in b.documents}
    assert len(chunks) == n
    assert len({c.chunk_id for c in chunks}) == n
    for c in chunks:
        doc = docs[c.doc_id]
        assert doc.text[c.start : c.end] == c.text
        assert c.context == doc.title
    assert all(len(b.chunks) < batch + per_doc for b in batches)


def test_topic_vectors_are_unit_and_structured() -> None:
    space = synthetic.TopicVectors(64, topics=4, per_vector=1, noise=1.0, seed=0)
    x = space.sample(400, np.random.default_rng(0), batch=150)  # several batches
    assert x.shape == (400, 64)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    # one topic per vector: a cluster model, same-topic pairs are far closer
    label = np.argmax(x @ space.topics.T, axis=1)
    sims = x @ x.T
    same = sims[label[:, None] == label[None, :]]
    other = sims[label[:, None] != label[None, :]]
    assert same.mean() > other.mean() + 0.3


def test_mixed_topics_have_more_structure_than_uniform_noise() -> None:
    rng = np.random.default_rng(1)
    mixed = synthetic.TopicVectors(384, topics=8, per_vector=3, seed=1).sample(300, rng)
    uniform = synthetic.random_unit_vectors(300, 384, seed=1)

    def nearest(x: np.ndarray) -> float:
        sims = x @ x.T
        np.fill_diagonal(sims, -1)
        return float(sims.max(axis=1).mean())

    assert nearest(mixed) > nearest(uniform) + 0.2


def test_random_unit_vectors() -> None:
    x = synthetic.random_unit_vectors(50, 32, seed=1)
    assert x.shape == (50, 32)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(x, synthetic.random_unit_vectors(50, 32, seed=1))


def test_random_embedder_is_an_embedder() -> None:
    emb = synthetic.RandomEmbedder(16, count_tokens=lambda text: len(text))
    vectors = emb.embed_passages(["a", "b", "c"])
    assert vectors.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert emb.identity.dimension == 16
    assert emb.count_tokens("abcd") == 4


def test_percentile_matches_numpy() -> None:
    values = sorted(np.random.default_rng(0).random(37).tolist())
    for q in (0, 50, 95, 100):
        assert bench.percentile(values, q) == pytest.approx(np.percentile(values, q))
