"""Settings: env parsing, validation, and the README table kept in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def settings_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        rows.append(f"| `RAG_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)


def test_readme_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", text, re.S
    )
    assert match, "README lost its settings table markers"
    assert match.group(1) == settings_table(), "README settings table is out of date"


def test_env_and_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path))
    monkeypatch.setenv("RAG_API_KEYS", "k1, k2")
    monkeypatch.setenv("RAG_CORS_ORIGINS", '["http://a", "http://b"]')
    monkeypatch.setenv("RAG_TOP_K", "7")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.index_dir == tmp_path
    assert [k.get_secret_value() for k in s.api_keys] == ["k1", "k2"]
    assert s.cors_origins == ["http://a", "http://b"]
    assert s.top_k == 7
    assert "k1" not in repr(s)  # keys are secrets


def test_invalid_values_fail_early() -> None:
    with pytest.raises(ValidationError, match="top_k"):
        Settings(top_k=0)
    with pytest.raises(ValidationError, match="embedding_backend"):
        Settings(embedding_backend="tensorrt")  # type: ignore[arg-type]


def test_rerank_setting_reaches_the_retriever(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rag.service import RagService
    from rag.testing import FakeEmbedder

    monkeypatch.setenv("RAG_RERANK", "false")
    settings = Settings(index_dir=tmp_path / "off")
    assert settings.rerank is False
    assert RagService.from_settings(settings).rerank is False  # the model loads on first use
    off = RagService(settings.index_dir, FakeEmbedder(), rerank=settings.rerank).open()
    on = RagService(tmp_path / "on", FakeEmbedder()).open()
    assert off.retriever.fusion.rerank_weight_en == 0.0 == off.retriever.fusion.rerank_weight_de
    assert on.retriever.fusion.rerank_weight_en > 0.0
    off.close()
    on.close()
