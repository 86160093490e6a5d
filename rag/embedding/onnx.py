"""Export a sentence-transformers folder to ONNX (fp32 or int8) once, and cache the result.

sentence-transformers can run a model with ONNX Runtime (``backend="onnx"``), but it exports
on every load unless the ``.onnx`` file already sits in the model folder. This module exports
once, offline from the local folder, and keeps the files:

* inside the model folder when it is one of ours (under ``model_dir``, e.g. the converted e5);
* otherwise (a user folder, the read-only Hugging Face cache) in a mirror folder under
  ``model_dir/onnx/`` that sentence-transformers saved with the exported model.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

logger = logging.getLogger(__name__)

ONNX_FP32 = "onnx/model.onnx"
# sentence-transformers' name for dynamic int8 quantization with the portable AVX2 recipe.
ONNX_INT8 = "onnx/model_quint8_avx2.onnx"
ONNX_FILES = {"onnx": ONNX_FP32, "onnx-int8": ONNX_INT8}


def export_folder(model_path: Path, model_dir: Path, version: str = "") -> Path:
    """The folder that holds (or will hold) the ONNX files for ``model_path``.

    ``version`` (e.g. the weights' digest) names the mirror of a foreign folder, so changed
    weights get a fresh export instead of a stale one.
    """
    model_path = model_path.resolve()
    if model_path.is_relative_to(model_dir.resolve()):
        return model_path  # ours: replaced as a whole (ONNX files included) on reconversion
    digest = hashlib.sha256(f"{model_path}\n{version}".encode()).hexdigest()[:12]
    return model_dir / "onnx" / f"{model_path.name}-{digest}"


def ensure_onnx(
    model_path: Path, backend: str, model_dir: Path, *, version: str = ""
) -> tuple[Path, str]:
    """Export ``model_path`` for ``backend`` if not done yet; returns (folder, file name)."""
    if backend not in ONNX_FILES:
        raise ConfigError(f"Unknown ONNX backend {backend!r}; use one of {sorted(ONNX_FILES)}")
    folder = export_folder(model_path, model_dir, version)
    wanted = ONNX_FILES[backend]
    if (folder / wanted).is_file():
        return folder, wanted
    model_dir.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # lazy: only needed when writing

    with FileLock(str(model_dir / ".onnx-export.lock")):
        if not (folder / ONNX_FP32).is_file():
            _export_fp32(model_path, folder, model_dir)
        if backend == "onnx-int8" and not (folder / ONNX_INT8).is_file():
            _quantize_int8(folder)
    return folder, wanted


def _load(folder: Path, **model_kwargs: Any) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(
            str(folder),
            device="cpu",
            backend="onnx",
            local_files_only=True,
            model_kwargs=model_kwargs,
        )
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"ONNX export of {folder} failed ({exc}); install sentence-transformers[onnx] "
            "or use the torch backend (RAG_EMBEDDING_BACKEND=torch)"
        ) from exc


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Hide the exporter's tracing warnings and its advice to save the export (we do)."""
    st_logger = logging.getLogger("sentence_transformers")
    level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        st_logger.setLevel(level)


def _export_fp32(model_path: Path, folder: Path, model_dir: Path) -> None:
    logger.warning("Exporting %s to ONNX once (about 30 s) ...", model_path)
    with _quiet_export():
        model = _load(model_path, export=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-export.", dir=model_dir))
    try:
        model.save(str(tmp))
        if folder == model_path.resolve():
            # Only the .onnx file(s) move into our own folder; its other files stay as they are.
            (folder / "onnx").mkdir(exist_ok=True)
            for path in (tmp / "onnx").iterdir():
                path.rename(folder / "onnx" / path.name)
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.chmod(0o755)  # mkdtemp made it private; it is a shared cache
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _quantize_int8(folder: Path) -> None:
    from sentence_transformers import export_dynamic_quantized_onnx_model

    logger.warning("Quantizing %s to int8 once (about 30 s) ...", folder)
    model = _load(folder, file_name=ONNX_FP32)
    # Quantize into a temporary folder and rename, so a killed run leaves no partial file.
    with tempfile.TemporaryDirectory(prefix=".onnx-int8.", dir=folder) as tmp:
        export_dynamic_quantized_onnx_model(model, "avx2", tmp)
        (Path(tmp) / ONNX_INT8).rename(folder / ONNX_INT8)
