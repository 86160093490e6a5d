"""Embedding seam: the ``Embedder`` protocol and its sentence-transformers implementation."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from rag.cache import BoundedCache
from rag.embedding import resolve
from rag.embedding.base import TokenStates, unit_rows
from rag.embedding.batching import MODEL_THREAD, QueryBatcher
from rag.embedding.convert import DEFAULT_MODEL_NAME
from rag.embedding.late import FORK_LAYER, Span, pool_spans, sentence_ids
from rag.embedding.onnx import ensure_onnx
from rag.embedding.resolve import cached_sha256, resolve_model
from rag.errors import ConfigError
from rag.types import EmbedderIdentity, FloatArray

# --------------------------------------------------------------------------------------
# sentence-transformers implementation

BACKENDS = ("torch", "onnx", "onnx-int8")
# Matmul precision of the torch backend. "auto" is bf16 where the CPU multiplies bf16 in
# hardware (AMX or AVX-512 BF16), fp32 elsewhere (docs/speed.md: 2.6x the passages per second
# and 1.5x the queries at cosine >= 0.99998 to fp32 on an AMX CPU).
PRECISIONS = ("auto", "fp32", "bf16")
# Prompt names sentence-transformers' encode_document tries, in its own order; a blank
# entry (it adds ``document: ""`` by default) does not count.
_PASSAGE_PROMPTS = ("passage", "document", "corpus")

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
        threads: int = 0,
        precision: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"Unknown embedding backend {backend!r}; use one of {BACKENDS}")
        if precision not in PRECISIONS:
            raise ConfigError(f"Unknown embedding precision {precision!r}; use one of {PRECISIONS}")
        self.model_name = model
        self.model_dir = model_dir
        self.backend = backend
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.threads = threads  # intra-op threads of one forward pass; 0: the runtime's default
        self.precision = precision
        self._st: Any = None
        self._tokenizer: Tokenizer | None = None
        self._identity: EmbedderIdentity | None = None
        self._query_prompt: str | None = None
        self._passage_prompt: str | None = None
        self._onnx_file = Path()
        self._resolved: tuple[Path, str] | None = None
        # The model is loaded and run on the process's model thread, whichever thread asks.
        self._model = MODEL_THREAD
        # Queries of concurrent requests share forward passes.
        self._queries = QueryBatcher(
            lambda texts: self._forward(texts, self._query_prompt), self._model, batch_size
        )
        # Token states of recent queries at the layers ever asked for queries
        # (``token_states``), kept from the queries' own passes: a question is embedded to
        # search and then aligned with its passages.
        self._query_layers: set[int] = set()
        self._query_states: BoundedCache[str, _Pending | TokenStates] = BoundedCache(256)
        self._states_lock = threading.Lock()  # guards ``_query_layers``

    def load(self) -> None:
        """Resolve, load and identify the model now instead of on first use."""
        if self._st is None:
            self._model(self._load_once)

    def _load_once(self) -> None:
        if self._st is None:  # another caller's load may have been queued first
            self._load()

    def _resolve(self) -> tuple[Path, str]:
        # Memoised: resolving may probe the hub, which count_tokens and load both need.
        if self._resolved is None:
            resolved, source = resolve_model(self.model_name, self.model_dir)
            self._resolved = Path(resolved), source
        return self._resolved

    def _load(self) -> None:
        path, source = self._resolve()
        weights_sha256 = resolve.weights_sha256(path, self.model_dir)
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
            tokenizer_sha256=resolve.tokenizer_sha256(path, self.model_dir),
            prompts=used,
        )
        if self.bf16:
            _bf16_linears(st)
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
            kwargs = {
                "backend": "onnx",
                "model_kwargs": {"file_name": file_name, "session_options": self._ort_options()},
            }
        elif self.threads:
            import torch

            torch.set_num_threads(self.threads)  # process-wide: torch has no per-model setting
        try:
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ConfigError(
                f"Could not load the embedding model from {folder}: {exc}. Delete the folder "
                "and run `rag models prepare`, or point RAG_EMBEDDING_MODEL to a valid "
                "sentence-transformers folder."
            ) from exc

    def _ort_options(self) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Idle threads sleep instead of spinning: on a shared 2-core box int8 embedded 8.4
        # instead of 6.3 passages per CPU-second, 1.59 instead of 1.43 per second (docs/speed.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        return options

    @property
    def identity(self) -> EmbedderIdentity:
        """Name, source, digests, dimension and prompts of the model (loads it)."""
        self.load()
        assert self._identity is not None
        return self._identity

    def embed_queries(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised float32 vectors of questions (with the query prompt)."""
        self.load()
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got one str")
        if 0 < len(texts) <= self.batch_size:
            return self._queries(texts)
        return self._model(self._encode, texts, self._query_prompt)

    def _forward(self, texts: Sequence[str], prompt_name: str | None) -> FloatArray:
        """One forward pass over a few texts, the vectors ``encode`` gives.

        ``encode`` also sorts, batches and moves the model to its device on every call:
        about 2.7 of a one-query call's 26 ms on one thread (docs/speed.md), which every
        search would pay.
        """
        import torch

        prompt = self._st.prompts[prompt_name] if prompt_name else ""
        features = self._st.preprocess(list(texts), prompt=prompt)
        with self._states_lock:
            asked = tuple(sorted(self._query_layers))
        layers = asked if prompt_name == self._query_prompt else ()
        with (
            torch.inference_mode(),
            self._precision(),
            _captured(getattr(self._st[0], "auto_model", None), layers) as hidden,
        ):
            vectors = self._st(features)["sentence_embedding"].float().numpy()
        if hidden:
            self._keep_query_states(texts, prompt, features["attention_mask"].numpy(), hidden)
        return unit_rows(vectors)

    def _keep_query_states(
        self, texts: Sequence[str], prompt: str, mask: npt.NDArray[Any], hidden: dict[int, Any]
    ) -> None:
        # Only the arrays here, on the model thread; the offsets are worked out when asked.
        for row, text in enumerate(texts):
            layers = {k: v[row].float().numpy() for k, v in hidden.items()}
            self._query_states.put(text, _Pending(prompt, mask[row].astype(bool), layers))

    def _with_offsets(self, prompt: str, texts: Sequence[str], **options: Any) -> Any:
        """``prompt + text`` tokenized as the model's passes are (truncated at its length),
        with each token's character offsets; one home for the token offsets of every pass."""
        return self._st.tokenizer(
            [prompt + t for t in texts],
            return_offsets_mapping=True,
            truncation=True,
            max_length=self._st.max_seq_length,
            **options,
        )

    def _settled(self, text: str, kept: _Pending | TokenStates | None) -> TokenStates | None:
        """``kept`` as ``TokenStates`` (tokenized for its offsets now if it is pending)."""
        if not isinstance(kept, _Pending):
            return kept
        encoded = self._with_offsets(kept.prompt, [text])
        n = len(encoded["offset_mapping"][0])
        if n != int(kept.mask.sum()):
            return None  # not the tokens of the pass: computed afresh instead
        offsets = np.zeros((len(kept.mask), 2), dtype=np.intp)
        offsets[:n] = encoded["offset_mapping"][0]
        states = _token_rows(offsets, kept.mask, kept.prompt, kept.layers)
        self._query_states.put(text, states)
        return states

    def embed_passages(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised float32 vectors of passages (with the passage prompt)."""
        self.load()
        return self._model(self._encode, texts, self._passage_prompt)

    @property
    def bf16(self) -> bool:
        """Whether the model runs in bf16 (torch backend only; ``_bf16_linears``)."""
        if self.backend != "torch" or self.precision == "fp32":
            return False
        return self.precision == "bf16" or native_bf16()

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        # Every call of the model runs in here: its linear layers hold bf16 weights, and
        # autocast feeds them bf16 inputs while norms and softmax stay fp32.
        if not self.bf16:
            yield
            return
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    def embed_passage_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        sentences: Sequence[Sequence[Span]] | None = None,
    ) -> tuple[FloatArray, list[FloatArray]]:
        """Passage vectors plus, per passage, vectors of its character ``spans``.

        One pass per passage: a span's vector is pooled from the passage's token states,
        not embedded as its own text. Without ``sentences`` the states are the full pass's
        (late chunking); with them, the pass forks at ``FORK_LAYER`` and the spans pool
        the branch where each sentence sees only itself and the prefix
        (``rag.embedding.late``). Passages are batched by length, so short ones are not
        padded to long ones.
        """
        self.load()
        return self._model(self._passage_spans, texts, spans, sentences)

    def _passage_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        sentences: Sequence[Sequence[Span]] | None,
    ) -> tuple[FloatArray, list[FloatArray]]:
        vectors = np.zeros((len(texts), self.identity.dimension), dtype=np.float32)
        windows: list[FloatArray] = [vectors[:0]] * len(texts)
        prompt = self._st.prompts[self._passage_prompt] if self._passage_prompt else ""
        encoded = self._with_offsets(prompt, texts)
        shift = len(prompt)
        order = sorted(range(len(texts)), key=lambda i: -len(encoded["input_ids"][i]))
        for at in range(0, len(order), self.batch_size):
            batch = order[at : at + self.batch_size]
            features = self._st.preprocess([texts[i] for i in batch], prompt=prompt)
            for row, i in enumerate(batch):
                n = len(encoded["input_ids"][i])
                if features["input_ids"][row][:n].tolist() != encoded["input_ids"][i]:
                    raise ConfigError(
                        f"{self.model_name}: token offsets do not match the model's tokens; "
                        "set RAG_WINDOW_VECTORS=separate"
                    )
            ids = None
            if sentences is not None:
                ids = [
                    sentence_ids(encoded["offset_mapping"][i], _shifted(sentences[i], shift))
                    for i in batch
                ]
            pooled, states = self._pass(features, ids)
            for row, i in enumerate(batch):
                n = len(encoded["input_ids"][i])
                vectors[i] = pooled[row]
                prefix = None if ids is None else np.flatnonzero(ids[row] < 0)
                windows[i] = pool_spans(
                    states[row][:n],
                    encoded["offset_mapping"][i],
                    _shifted(spans[i], shift),
                    always=prefix,
                )
        return unit_rows(vectors), windows

    def _pass(
        self, features: dict[str, Any], ids: list[npt.NDArray[np.intp]] | None
    ) -> tuple[FloatArray, FloatArray]:
        """(passage vectors, token states to pool windows from) of one padded batch."""
        import torch

        with torch.inference_mode(), self._precision():
            if ids is None:
                out = self._st(features)
                return (
                    out["sentence_embedding"].float().numpy(),
                    out["token_embeddings"].float().numpy(),
                )
            full, local = forked_pass(self._encoder(), features, ids, FORK_LAYER)
        return full, local

    def token_states(
        self, texts: Sequence[str], *, query: bool, layers: Sequence[int]
    ) -> list[TokenStates] | None:
        """Token states of ``texts`` after each of ``layers`` (0: the embeddings), from one
        pass of the torch model that stops at the last of them; None on the ONNX backends,
        which expose no layers."""
        if self.backend != "torch":
            return None
        self.load()
        if not query:
            return self._model(self._token_states, texts, query, tuple(layers))
        with self._states_lock:
            self._query_layers.update(layers)
        kept = {t: self._query_states.get(t) for t in texts}
        settled = {t: self._settled(t, v) for t, v in kept.items()}
        known = {
            t: v for t, v in settled.items() if v is not None and all(k in v.layers for k in layers)
        }
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = self._model(self._token_states, missing, query, tuple(layers))
            known.update(zip(missing, fresh, strict=True))
        return [
            TokenStates(known[t].offsets, {k: known[t].layers[k] for k in layers}) for t in texts
        ]

    def _token_states(
        self, texts: Sequence[str], query: bool, layers: tuple[int, ...]
    ) -> list[TokenStates]:
        import torch

        name = self._query_prompt if query else self._passage_prompt
        prompt = self._st.prompts[name] if name else ""
        encoded = self._with_offsets(prompt, texts, padding=True, return_tensors="pt")
        offsets = encoded.pop("offset_mapping").numpy()
        with torch.inference_mode(), self._precision():
            hidden = _hidden_states(self._encoder(), encoded, max(layers))
        mask = encoded["attention_mask"].numpy().astype(bool)
        return [
            _token_rows(
                offsets[row], mask[row], prompt, {k: hidden[k][row].float().numpy() for k in layers}
            )
            for row in range(len(texts))
        ]

    def _encoder(self) -> Any:
        encoder = getattr(self._st[0], "auto_model", None) if self.backend == "torch" else None
        if encoder is None or not hasattr(getattr(encoder, "encoder", None), "layer"):
            raise ConfigError(
                f"RAG_WINDOW_VECTORS=forked needs a BERT-style torch model; {self.model_name} "
                f"on the {self.backend} backend is not one: set RAG_WINDOW_VECTORS=separate"
            )
        return encoder

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> FloatArray:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got one str")
        if not texts:
            return np.zeros((0, self.identity.dimension), dtype=np.float32)
        with self._precision():
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


def _shifted(spans: Sequence[Span], by: int) -> list[Span]:
    return [(a + by, b + by) for a, b in spans]


def forked_pass(
    model: Any, features: dict[str, Any], ids: list[npt.NDArray[np.intp]], fork: int
) -> tuple[FloatArray, FloatArray]:
    """Mean-pooled passage vectors of the full pass, and the token states of a branch that
    runs layers ``fork``.. again with sentence-local attention (``ids``: sentence per token,
    -1 for the prefix, which attends and is attended to everywhere)."""
    import torch

    mask = features["attention_mask"]
    out = model(
        input_ids=features["input_ids"],
        attention_mask=mask,
        token_type_ids=features.get("token_type_ids"),
        output_hidden_states=True,
    )
    weights = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
    pooled = (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    sentence = torch.full(mask.shape, -1, dtype=torch.long)
    for row, row_ids in enumerate(ids):
        sentence[row, : len(row_ids)] = torch.from_numpy(row_ids)
    prefix = sentence < 0
    local = (sentence[:, :, None] == sentence[:, None, :]) | prefix[:, :, None] | prefix[:, None, :]
    local &= mask[:, None, :].bool()
    extended = model.get_extended_attention_mask(local.long(), mask.shape)
    states = out.hidden_states[fork]
    for layer in model.encoder.layer[fork:]:
        states = layer(states, attention_mask=extended)[0]
    return pooled.float().numpy(), states.float().numpy()


@dataclass(frozen=True)
class _Pending:
    """A query's token states as its pass left them: padded rows, mask and prompt."""

    prompt: str
    mask: npt.NDArray[np.bool_]
    layers: dict[int, Any]


def _token_rows(
    offsets: npt.NDArray[Any], mask: npt.NDArray[np.bool_], prompt: str, layers: dict[int, Any]
) -> TokenStates:
    """One text's ``TokenStates`` from its padded pass: the prompt, special and padding tokens
    left out, offsets into the text without the prompt, unit rows."""
    start, end = offsets[:, 0], offsets[:, 1]
    # The first word's token may start at the prompt's closing space.
    keep = mask & (end > start) & (end > len(prompt))
    return TokenStates(
        np.maximum(offsets[keep].astype(np.intp) - len(prompt), 0),
        {k: unit_rows(v[keep]) for k, v in layers.items()},
    )


@contextlib.contextmanager
def _captured(model: Any, layers: Sequence[int]) -> Iterator[dict[int, Any]]:
    """The states after each of ``layers`` (1 or more) of the passes run inside, by hooks
    removed on exit; empty without layers or for a model that is not BERT-style."""
    hidden: dict[int, Any] = {}
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if not layers or blocks is None:
        yield hidden
        return

    def keep(k: int) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            hidden[k] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [blocks[k - 1].register_forward_hook(keep(k)) for k in layers if k >= 1]
    try:
        yield hidden
    finally:
        for handle in handles:
            handle.remove()


def _hidden_states(model: Any, encoded: dict[str, Any], last: int) -> list[Any]:
    """The embeddings and the states after each layer up to ``last``; later layers do not run."""
    mask = encoded["attention_mask"]
    states = model.embeddings(
        input_ids=encoded["input_ids"], token_type_ids=encoded.get("token_type_ids")
    )
    extended = model.get_extended_attention_mask(mask, mask.shape)
    out = [states]
    for layer in model.encoder.layer[:last]:
        states = layer(states, attention_mask=extended)[0]
        out.append(states)
    return out


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _bf16_linears(st: Any) -> None:
    """Store the weights of the model's linear layers in bf16, once.

    Autocast would otherwise cast the fp32 weights again on every pass: a one-query pass
    took 17.7 ms that way, 10.0 ms with bf16 weights and 15.0 ms in fp32 (docs/speed.md).
    The vectors are the same as autocast's, which rounds the same weights the same way.
    """
    import torch

    for module in st.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


def _dimension(st: Any) -> int:
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dimension = getter()
    if dimension is None:  # modules that do not declare it: measure once
        dimension = st.encode(["x"], convert_to_numpy=True).shape[1]
    return int(dimension)
