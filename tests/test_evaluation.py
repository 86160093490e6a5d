"""`rag eval`: metric helpers, and the BEIR path end to end on a 20-passage GermanQuAD slice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.errors import ConfigError
from rag.evaluation import evaluate_beir, format_report
from rag.evaluation.qa import boilerplate_lines
from rag.evaluation.ranking import ndcg_at, rank_of_all, rank_of_first
from rag.types import Chunk

MINI = Path(__file__).parent / "data" / "germanquad-mini"


def test_rank_helpers() -> None:
    assert rank_of_first(["a", "b", "c"], {"c"}) == 3
    assert rank_of_first(["a"], {"z"}) is None
    # A two-quote question is found only when both quotes have been seen.
    assert rank_of_all([{"x"}, {"a"}, {"y"}, {"b"}], [{"a"}, {"b"}]) == 4
    assert rank_of_all([{"a"}], [{"a"}, {"b"}]) is None
    assert ndcg_at(1, 10) == 1.0
    assert ndcg_at(3, 10) == pytest.approx(0.5)
    assert ndcg_at(11, 10) == 0.0


def test_boilerplate_lines_are_the_uncovered_part_of_a_trap_quote() -> None:
    chunk = Chunk(1, "d", 0, 0, 20, "Warum nicht reden?", "")
    quote = "Warum nicht reden?\nKommentar (0)"
    assert boilerplate_lines([chunk], quote) == ["Kommentar (0)"]


@pytest.mark.slow
def test_beir_evaluation_end_to_end(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def run(split: str) -> dict[str, Any]:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        kept = tmp_path / "kept"
        return evaluate_beir(settings, MINI, split=split, embedder=embedder, index_dir=kept)

    report = run("test")
    assert report["chunks_embedded"] == report["chunks"]
    # a kept index serves the other split without embedding anything again
    dev = run("dev")
    assert dev["chunks_embedded"] == 0 and dev["chunks"] == report["chunks"]
    test_ids = json.loads((MINI / "splits.json").read_text())["test"]
    assert report["queries"] == len(test_ids)
    assert report["documents"] == 20
    assert report["chunks"] >= 20  # every passage became at least one chunk
    for mode in ("dense", "lexical", "hybrid"):
        m = report["retrieval"][mode]
        assert m["n"] == len(test_ids)
        assert 0.0 <= m["success@1"] <= m["success@5"] <= m["success@10"] <= 1.0
        assert m["latency_p50_ms"] <= m["latency_p95_ms"]
    # 20 passages is easy: a working pipeline finds most gold passages first.
    assert report["retrieval"]["hybrid"]["mrr@10"] > 0.7
    assert report["retrieval"]["lexical"]["mrr@10"] > 0.5
    table = format_report(report)
    assert "| hybrid |" in table and "MRR@10" in table


def test_beir_evaluation_refuses_an_index_with_other_documents(tmp_path: Path) -> None:
    """Evaluation prunes documents outside its corpus, so it must never run on a user's index."""
    from rag.service import RagService
    from rag.testing import FakeEmbedder
    from rag.types import Document

    kept = tmp_path / "users-index"
    service = RagService(kept, FakeEmbedder()).open()
    service.add_documents([Document(doc_id="mine", text="Ein Dokument, das bleiben muss.")])
    service.close()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="would delete them"):
        evaluate_beir(settings, MINI, split="dev", embedder=FakeEmbedder(), index_dir=kept)
    service = RagService(kept, FakeEmbedder()).open()
    assert [d.document.doc_id for d in service.index.documents()] == ["mine"]
    service.close()
