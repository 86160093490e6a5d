"""Hybrid retrieval on the real model and the demo corpus, plus filters and near-duplicates."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from rag.ingest.loaders import document_from_text, load_documents
from rag.retrieve.alignment import TokenBank
from rag.retrieve.retriever import FusionConfig, Retriever, interleave
from rag.store.factory import open_index
from rag.testing import FakeEmbedder
from rag.types import Filters

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def top_texts(service, query: str, k: int = 3, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.chunk.text for h in service.search(query, top_k=k, **kw)]


@pytest.mark.slow
def test_german_question_with_a_rare_name(api_real_service) -> None:  # type: ignore[no-untyped-def]
    texts = top_texts(
        api_real_service, "Was erwartet Sergej Riabkow von den bilateralen Beziehungen?"
    )
    assert "Riabkow" in texts[0]


@pytest.mark.slow
def test_question_about_a_date(api_real_service) -> None:  # type: ignore[no-untyped-def]
    texts = top_texts(api_real_service, "Was geschah am 28. Januar 2017?")
    assert any("28. Januar 2017" in t for t in texts[:2])


@pytest.mark.slow
@pytest.mark.parametrize(
    "question",
    [
        "Who is the spokeswoman of the White House?",
        "Кто пресс-секретарь Белого дома?",
    ],
)
def test_question_in_another_language_finds_german_paragraph(api_real_service, question) -> None:  # type: ignore[no-untyped-def]
    texts = top_texts(api_real_service, question)
    assert any("Katherine Leavitt" in t for t in texts[:2])


def test_questions_not_in_german_use_the_cross_lingual_fusion_weights(tmp_path: Path) -> None:
    """Their lexical side sees only names and numbers, as an English question's does."""
    index = open_index(tmp_path / "idx", FakeEmbedder())
    index.ingest(load_documents([CORPUS]).documents)
    # the cross-lingual weights ignore the lexical side, the German ones the dense side
    retriever = Retriever(index, fusion=FusionConfig(weights_de=(0.0, 1.0), weights_en=(1.0, 0.0)))
    for question in (
        "¿Qué dijo Putin sobre Ucrania en 2025?",
        "Что сказал Путин про Украину в 2025 году?",
        "What did Putin say about Ukraine in 2025?",
    ):
        hybrid = [h.chunk.chunk_id for h in retriever.search(question, top_k=5)]
        dense = [h.chunk.chunk_id for h in retriever.search(question, top_k=5, mode="dense")]
        assert hybrid == dense, question
    german = "Was sagte Putin 2025 über die Ukraine?"
    hybrid = [h.chunk.chunk_id for h in retriever.search(german, top_k=5)]
    lexical = [h.chunk.chunk_id for h in retriever.search(german, top_k=5, mode="lexical")]
    assert hybrid == lexical
    index.close()


class _Alignments(TokenBank):
    """Alignments given by the test: the chunk with the highest id aligns best."""

    def passage_alignments(self, question: str, chunks):  # type: ignore[no-untyped-def]
        self.asked = [c.chunk_id for c in chunks]
        top = max(self.asked)
        return [1.0 if cid == top else 0.0 for cid in self.asked]


def test_questions_in_other_languages_are_reranked_by_token_alignment(tmp_path: Path) -> None:
    index = open_index(tmp_path / "idx", FakeEmbedder())
    index.ingest(load_documents([CORPUS]).documents)
    fusion = FusionConfig(rerank_weight_de=0.0, rerank_weight_en=5.0, rerank_depth=6)
    bank = _Alignments(index.embedder)
    retriever = Retriever(index, fusion=fusion, tokens=bank)
    plain = Retriever(index, fusion=replace(fusion, rerank_weight_en=0.0))
    english = "What did Putin say about Ukraine in 2025?"
    before = plain.search(english, top_k=8)
    after = retriever.search(english, top_k=8)
    assert bank.asked == [h.chunk.chunk_id for h in before[:6]]  # the first rerank_depth
    best = max(bank.asked)
    assert after[0].chunk.chunk_id == best and after[0].score == pytest.approx(
        next(h.score for h in before if h.chunk.chunk_id == best)
    )
    assert [h.chunk.chunk_id for h in after[6:]] == [h.chunk.chunk_id for h in before[6:]]
    assert all(a.score >= b.score for a, b in itertools.pairwise(after))
    assert len(retriever.search(english, top_k=2)) == 2
    german = "Was sagte Putin 2025 über die Ukraine?"
    bank.asked = []
    assert [h.chunk.chunk_id for h in retriever.search(german, top_k=8)] == [
        h.chunk.chunk_id for h in plain.search(german, top_k=8)
    ]
    assert bank.asked == []  # weight 0: no alignment asked for
    # An embedder without token states (FakeEmbedder): the fused order stays.
    no_states = Retriever(index, fusion=fusion)
    assert [h.chunk.chunk_id for h in no_states.search(english, top_k=8)] == [
        h.chunk.chunk_id for h in before
    ]
    index.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "question",
    [
        "Where did Trump and Putin meet in July 2018?",
        "¿Dónde se reunieron Trump y Putin en julio de 2018?",
    ],
)
def test_reranked_cross_lingual_question_finds_the_helsinki_paragraph(
    api_real_service, question
) -> None:  # type: ignore[no-untyped-def]
    hits = api_real_service.search(question, top_k=5)
    assert "Helsinki" in hits[0].chunk.text
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


@pytest.mark.slow
def test_filters_restrict_and_top_k_holds(api_real_service) -> None:  # type: ignore[no-untyped-def]
    only = "001_40d325ee384e1a80"
    hits = api_real_service.search(
        "Telefonat zwischen Putin und Trump", top_k=4, filters=Filters(doc_ids=(only,))
    )
    assert len(hits) == 4
    assert {h.chunk.doc_id for h in hits} == {only}
    dated = api_real_service.search(
        "Beziehungen",
        top_k=3,
        filters=Filters(published_from="2024-11-01", published_to="2024-11-30"),
    )
    assert dated and all(h.published and h.published.startswith("2024-11") for h in dated)
    none = api_real_service.search("Beziehungen", filters=Filters(published_to="1990-01-01"))
    assert none == []


@pytest.mark.slow
def test_each_part_of_a_multi_part_question_reaches_the_top(api_real_service) -> None:  # type: ignore[no-untyped-def]
    """The meeting in the White House ranks far down for the whole question, not per part."""
    question = (
        "Wie ging Trump mit Selenskyj um \u2013 nach seinem Telefonat mit Putin und bei "
        "ihrem Treffen in Washington?"
    )
    index = api_real_service.index
    spat = "Trump und Zelensky liefern sich einen hitzigen Schlagabtausch"

    def top5(fusion: FusionConfig) -> list[str]:
        return [h.chunk.text for h in Retriever(index, fusion=fusion).search(question, top_k=5)]

    assert not any(spat in t for t in top5(FusionConfig(decompose=False)))
    texts = top5(FusionConfig())
    assert any(spat in t for t in texts)
    assert any("Er informierte den ukrainischen Präsidenten" in t for t in texts)


@pytest.mark.slow
def test_a_question_for_a_designation_finds_the_quoted_term(api_real_service) -> None:  # type: ignore[no-untyped-def]
    question = "Wie nennt der Kommentar Russlands Krieg in der Ukraine?"
    index = api_real_service.index

    def top5(fusion: FusionConfig) -> list[str]:
        return [h.chunk.text for h in Retriever(index, fusion=fusion).search(question, top_k=5)]

    assert not any("Militärkampagne" in t for t in top5(FusionConfig(term_passages=0)))
    assert any("Militärkampagne" in t for t in top5(FusionConfig())[:3])


def test_lexical_mode_embeds_nothing_and_dense_embeds_once(tmp_path: Path) -> None:
    """Lexical-only stays pure BM25; a designation question embeds its query once."""

    class CountingEmbedder(FakeEmbedder):
        calls = 0

        def embed_queries(self, texts):  # type: ignore[no-untyped-def]
            CountingEmbedder.calls += 1
            return super().embed_queries(texts)

    index = open_index(tmp_path / "idx", CountingEmbedder())
    index.ingest(load_documents([CORPUS]).documents)
    retriever = Retriever(index)
    question = "Wie nennt der Kommentar Russlands Krieg in der Ukraine?"
    CountingEmbedder.calls = 0
    assert retriever.search(question, top_k=3, mode="lexical")
    assert CountingEmbedder.calls == 0
    assert retriever.search(question, top_k=3, mode="hybrid")
    assert CountingEmbedder.calls == 2  # the question, then the quoted phrases (one batch)
    index.close()


def test_interleave_takes_turns_and_keeps_scores_descending() -> None:
    whole = [(1, 0.9), (2, 0.8), (3, 0.7)]
    part = [(2, 0.95), (4, 0.6)]
    merged = interleave([whole, part])
    assert [c for c, _ in merged] == [1, 2, 3, 4]
    scores = [s for _, s in merged]
    assert scores == sorted(scores, reverse=True)
    assert merged[1] == (2, 0.9)  # capped at the score before it
    assert interleave([[], [(5, 0.1)]]) == [(5, 0.1)]
    assert interleave([]) == []


def test_syndicated_paragraph_comes_back_once_with_its_other_locations(tmp_path: Path) -> None:
    index = open_index(tmp_path / "idx", FakeEmbedder())
    docs = load_documents([CORPUS]).documents
    original = next(d for d in docs if d.doc_id.startswith("002"))
    paragraph = next(p for p in original.text.split("\n\n") if "Katherine Leavitt" in p)
    copy = document_from_text(
        "syndicated-copy",
        "Agenturmeldung über Trump und Russland\n\n" + paragraph + "\n\nEnde der Meldung über "
        "die Gespräche zwischen den Regierungen in Washington und Moskau.",
    )
    index.ingest([*docs, copy])
    hits = Retriever(index).search("Katherine Leavitt Sprecherin dauerhaften Frieden", 5)
    with_leavitt = [h for h in hits if "Katherine Leavitt" in h.chunk.text]
    assert len(with_leavitt) == 1
    others = {loc.doc_id for loc in with_leavitt[0].duplicates}
    assert others == {"syndicated-copy", original.doc_id} - {with_leavitt[0].chunk.doc_id}
    index.close()
