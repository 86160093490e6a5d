"""Token alignment of questions with passages and sentences: token states of the real
model, the selector feature and the retriever's re-ranking built from them."""

from __future__ import annotations

import numpy as np
import pytest

from rag.answer.selector import FEATURES, sentence_features
from rag.answer.support import SentenceBank
from rag.embedding.base import TokenEmbedder
from rag.embedding.embedder import SentenceTransformerEmbedder
from rag.retrieve.alignment import ALIGNMENT_LAYER, TokenBank
from rag.testing import FakeEmbedder
from rag.types import Chunk, Hit

PASSAGE = (
    "Trump und Putin trafen sich mehrmals. "
    "Ein weiteres wichtiges Treffen fand im Juli 2018 in Helsinki statt. "
    "Die Pressekonferenz danach wurde viel kritisiert."
)


def _hits(*texts: str) -> list[Hit]:
    return [
        Hit(chunk=Chunk(10 + i, f"d{i}", 0, 0, len(t), t), score=1.0 - 0.1 * i)
        for i, t in enumerate(texts)
    ]


def _sentences(text: str) -> list[tuple[int, int, int]]:
    out, start = [], 0
    for part in text.split(". "):
        end = start + len(part) + (1 if start + len(part) < len(text) else 0)
        out.append((0, start, end))
        start = end + 1
    return out


def test_token_offsets_cover_every_word_from_the_first(embedder) -> None:  # type: ignore[no-untyped-def]
    text = "Die Sprecherin des Weißen Hauses ist Karoline Leavitt."
    (states,) = embedder.token_states([text], query=False, layers=(4, ALIGNMENT_LAYER))
    pieces = "".join(text[a:b] for a, b in states.offsets)
    assert pieces.replace(" ", "") == text.replace(" ", "")  # no prompt, no special tokens
    assert text[slice(*states.offsets[0])].strip() == "Die"
    for layer in (4, ALIGNMENT_LAYER):
        vectors = states.layers[layer]
        assert vectors.shape == (len(states.offsets), embedder.identity.dimension)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(states.layers[4], states.layers[ALIGNMENT_LAYER])


def test_the_pass_that_stops_early_gives_the_full_models_states(embedder) -> None:  # type: ignore[no-untyped-def]
    import torch

    texts = ["query: Wo trafen sich Trump und Putin?", "query: Wer?"]
    (states, _short) = embedder.token_states(
        [t.removeprefix("query: ") for t in texts], query=True, layers=(ALIGNMENT_LAYER,)
    )
    model = embedder._st
    encoded = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode(), embedder._precision():
        full = model[0].auto_model(**encoded, output_hidden_states=True).hidden_states
    reference = full[ALIGNMENT_LAYER][0].float().numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    # Each kept token's state is one of the full pass's (the prompt's rows are left out).
    nearest = (states.layers[ALIGNMENT_LAYER] @ reference.T).max(axis=1)
    assert nearest.min() >= 0.999
    assert len(states.offsets) <= len(reference) - 4  # <s>, "query", ":", </s> at least


def test_a_question_embedded_to_search_needs_no_second_pass(embedder) -> None:  # type: ignore[no-untyped-def]
    layer = ALIGNMENT_LAYER
    embedder.token_states(["Wer?"], query=True, layers=(layer,))  # the layer is asked for once
    question = "Wo trafen sich Trump und Putin im Juli 2018, und wer war dabei?"
    embedder.embed_queries([question])  # a search embeds it
    calls: list[object] = []
    compute = embedder._token_states

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(args)
        return compute(*args)

    embedder._token_states = counting
    try:
        (kept,) = embedder.token_states([question], query=True, layers=(layer,))
    finally:
        del embedder._token_states
    assert calls == []  # the states came from the search's own pass
    (fresh,) = embedder._model(compute, [question], True, (layer,))
    np.testing.assert_array_equal(kept.offsets, fresh.offsets)
    assert float((kept.layers[layer] * fresh.layers[layer]).sum(axis=1).min()) >= 0.999


@pytest.mark.slow
def test_the_answer_does_not_embed_its_question_again_after_the_search(api_real_service) -> None:  # type: ignore[no-untyped-def]
    question = "Wo trafen sich Trump und Putin im Juli 2018? Und wann genau?"
    hits = api_real_service.search(question)
    embedder = api_real_service.answerer.embedder
    searched = api_real_service.retriever.tokens.vector(question)
    assert searched is not None
    calls: list[object] = []
    embed = embedder.embed_queries

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return embed(texts)

    embedder.embed_queries = counting
    try:
        answer = api_real_service.answerer.answer(question, hits)
    finally:
        del embedder.embed_queries
    assert calls == [] and "Helsinki" in answer.text
    np.testing.assert_allclose(searched, embed([question])[0], atol=1e-2)


def test_the_sentence_that_holds_what_is_asked_aligns_best(embedder) -> None:  # type: ignore[no-untyped-def]
    hits = _hits(PASSAGE)
    spans = _sentences(PASSAGE)
    assert [PASSAGE[a:b] for _, a, b in spans][1].endswith("Helsinki statt.")
    for question in (
        "Wann fand das Treffen in Helsinki statt?",
        "When did the meeting in Helsinki take place?",
    ):
        scores = TokenBank(embedder).span_alignments(question, [h.chunk for h in hits], spans)
        assert scores is not None
        assert int(np.argmax(scores)) == 1, (question, scores)
        assert all(0.0 < s <= 1.0 for s in scores)


def test_embedders_without_token_states_fall_back_to_the_sentence_cosine() -> None:
    fake = FakeEmbedder()
    assert not isinstance(fake, TokenEmbedder)
    bank = TokenBank(fake)
    assert bank.span_alignments("Wo?", [h.chunk for h in _hits(PASSAGE)], [(0, 0, 5)]) is None
    assert bank.passage_alignments("Wo?", [h.chunk for h in _hits(PASSAGE)]) is None
    _cands, rows = sentence_features(
        "Wo fand das Treffen statt?", _hits(PASSAGE), fake, SentenceBank(fake)
    )
    col = {f: FEATURES.index(f) for f in FEATURES}
    np.testing.assert_allclose(rows[:, col["alignment"]], rows[:, col["cosine"]])


def test_the_bank_keeps_states_and_gives_the_same_alignment(embedder) -> None:  # type: ignore[no-untyped-def]
    chunks = [h.chunk for h in _hits(PASSAGE)]
    text = "Ein anderer Text."
    other = [Chunk(99, "d9", 0, 0, len(text), text)]
    bank = TokenBank(embedder, max_chunks=1)
    calls: list[int] = []
    embed = embedder.token_states

    def counting(texts, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return embed(texts, **kw)

    first = bank.passage_alignments("Wann war das Treffen in Helsinki?", chunks)
    embedder.token_states = counting
    try:
        again = bank.passage_alignments("Wann war das Treffen in Helsinki?", chunks)
        assert calls == []  # the question and the passage both came from the bank
        bank.passage_alignments("Wann war das Treffen?", other)
        bank.passage_alignments("Wann war das Treffen?", chunks)
        assert calls == [1, 1, 1]  # max_chunks=1: the first passage was evicted
    finally:
        del embedder.token_states
    assert first is not None and again is not None
    np.testing.assert_allclose(first, again, atol=2e-3)  # float16 in the bank


def test_the_passage_that_holds_the_asked_detail_aligns_higher(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = [
        "Trump und Putin trafen sich mehrmals, zuletzt sprachen sie am Telefon.",
        "Ein weiteres Treffen fand im Juli 2018 in Helsinki statt.",
    ]
    chunks = [Chunk(i + 1, f"d{i}", 0, 0, len(t), t) for i, t in enumerate(texts)]
    bank = TokenBank(embedder)
    for question in ("Where did they meet in July 2018?", "Wo trafen sie sich im Juli 2018?"):
        scores = bank.passage_alignments(question, chunks)
        assert scores is not None and scores[1] > scores[0], (question, scores)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_backends_expose_no_token_states(backend: str) -> None:
    model = SentenceTransformerEmbedder("unused", backend=backend)
    assert model.token_states(["Text"], query=False, layers=(1,)) is None
