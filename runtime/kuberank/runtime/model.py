"""The only module that talks to llama.cpp: load a rank-pooling GGUF, tokenize, score pairs.

A `RankContext` is not thread-safe (llama.cpp contexts never are); the engine gives each one a
single owner thread. Tokenization only reads the vocabulary and is safe from any thread, as
llama-server does it in its HTTP threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import llama_cpp
import numpy as np
from gguf import GGUFReader
from kuberank.runtime.pairs import PairLayout, plain_layout, template_layout

log = logging.getLogger("kuberank.llama")
_backend_lock = threading.Lock()
_backend_ready = False


_said = threading.local()  # the errors llama.cpp logs on this thread, while a load listens


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _llama_log(level: int, text: bytes, _: ctypes.c_void_p) -> None:
    # ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. llama.cpp narrates every
    # load and decode at info; keep warnings and errors only.
    if level in (3, 4):
        line = text.decode(errors="replace").rstrip()
        log.log(logging.WARNING if level == 3 else logging.ERROR, "%s", line)
        listening = getattr(_said, "errors", None)
        if level == 4 and listening is not None and line:
            listening.append(line)


@contextlib.contextmanager
def _errors_said() -> Iterator[list[str]]:
    """The errors llama.cpp logs on this thread within the block: a failed load says why
    ("tensor ... data is not within the file bounds") only in its log, which the status of a
    model and a 503 never show."""
    _said.errors = []
    try:
        yield _said.errors
    finally:
        _said.errors = None


def _load_failure(errors: list[str]) -> str:
    """What llama.cpp said of a failed load, without its closing "failed to load model"."""
    for line in errors:
        _, found, why = line.partition("error loading model: ")
        if found:
            return f": {why}"
    return " (not a valid GGUF model?)"


# Architectures whose rank head llama.cpp turns into probabilities (a softmax over "yes" and
# "no"), so that its first output is the score for any number of outputs.
SOFTMAX_HEADS = frozenset({"qwen3", "qwen3vl"})


def head_problem(path: Path, arch: str, n_cls_out: int) -> str | None:
    """Why a rank-pooling GGUF's scores would not be a reranker's (pure but for reading the
    file's tensor index): no classification head at all, neither ``cls`` (jina-reranker-v1
    has that alone) nor ``cls.output`` (llama.cpp would score a component of the pooled
    state), or several outputs of which llama.cpp scores the first alone (for a two-class
    relevance model that is "not relevant": it ranks backwards) outside the architectures it
    turns into probabilities."""
    try:
        names = {tensor.name for tensor in GGUFReader(path).tensors}
    except Exception as exc:  # llama.cpp loaded it: a gap of the reader is no verdict
        log.warning("could not read the tensor index of %s (%s): its head is not checked",
                    path, exc)
        return None
    if not names & {"cls.weight", "cls.output.weight"}:
        return ("it has no classification head (neither a cls nor a cls.output tensor); "
                "convert the model with its head (kuberank-models convert)")
    if n_cls_out != 1 and arch not in SOFTMAX_HEADS:
        return (f"its head has {n_cls_out} outputs and llama.cpp scores the first alone; a "
                "reranker has one (kuberank-models convert refuses more)")
    return None


_FLASH = {"on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
          "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
          "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO}


class ModelLoadError(RuntimeError):
    """The file is missing, not a GGUF llama.cpp can load, or not a reranker."""


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def default_threads() -> int:
    """CPUs this process may really use: affinity, capped by a cgroup v2 CPU quota.

    In a pod `os.cpu_count()` is the node's core count; llama.cpp threads spin at barriers, so
    running more threads than the quota allows is many times slower, not a little.
    """
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return n


@dataclass(frozen=True)
class ContextParams:
    ctx_size: int = 512
    batch_size: int = 512
    threads: int | None = None
    gpu_layers: int = 0
    flash_attn: Literal["on", "off", "auto"] = "on"
    max_seqs: int = 1


def cuda_defaults(gpu_layers: int) -> dict[str, str]:
    """Environment CUDA must see before its first call in this process (the caller sets each
    variable unless already set, so a person's choice wins).

    On a GPU, every kernel is loaded when the first decode runs (``CUDA_MODULE_LOADING=EAGER``)
    rather than each at its first use: the engine's warm-up then pays for all of them before
    /health says ready, where lazily a request of a size not yet seen paid 10-20 ms per new
    kernel, the first request 108 ms instead of 18 (MiniLM, H100, ``bench_startup.py``)."""
    return {"CUDA_MODULE_LOADING": "EAGER"} if gpu_layers != 0 else {}


def use_cuda_defaults(gpu_layers: int) -> None:
    """Set ``cuda_defaults`` in this process's environment, each unless already set; call it
    before anything touches CUDA."""
    for name, value in cuda_defaults(gpu_layers).items():
        os.environ.setdefault(name, value)


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build has a GPU backend (CUDA here) to offload layers to."""
    return bool(llama_cpp.llama_supports_gpu_offload())


class RankModel:
    """A loaded GGUF with its vocabulary; refuses models without a rank (classification) head."""

    def __init__(self, path: Path, gpu_layers: int = 0, cuda_graphs: bool = False) -> None:
        if path.is_dir():
            raise ModelLoadError(f"model path {path} is a directory, not a GGUF file")
        if path.exists() and not path.is_file():
            raise ModelLoadError(f"model path {path} is not a regular file")
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        if not cuda_graphs:
            # ggml reads this once, at the first graph it computes: set before any decode.
            os.environ.setdefault("GGML_CUDA_DISABLE_GRAPHS", "1")
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = gpu_layers
        with _errors_said() as said:
            model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ModelLoadError(f"llama.cpp could not load {path}{_load_failure(said)}")
        self.path = path
        self.ptr: Any = model
        self.vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(model)
        self.n_cls_out: int = llama_cpp.llama_model_n_cls_out(model)
        self.arch = self.meta("general.architecture") or "unknown"
        pooling = self.meta(f"{self.arch}.pooling_type")
        if pooling != str(llama_cpp.LLAMA_POOLING_TYPE_RANK):
            self.close()
            raise ModelLoadError(
                f"{path} is not a reranker: its pooling type is {pooling or 'unset'}, "
                f"rank pooling ({llama_cpp.LLAMA_POOLING_TYPE_RANK}) is needed. Serve a "
                "cross-encoder GGUF converted with a classification head."
            )
        problem = head_problem(path, self.arch, self.n_cls_out)
        if problem is not None:
            self.close()
            raise ModelLoadError(f"{path} is not a reranker llama.cpp scores as one: {problem}")
        template = llama_cpp.llama_model_chat_template(model, b"rerank")
        self.rerank_template: str | None = template.decode() if template else None

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode(errors="replace") if n >= 0 else None

    def tokenize(self, text: str, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            out = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, capacity, False,
                                         parse_special)
            if n >= 0:
                return list(out[:n])
            capacity = -n

    def layout(self) -> PairLayout:
        """llama-server's format_prompt_rerank, as a layout (see pairs.py)."""
        if self.rerank_template is not None:
            return template_layout(self.rerank_template, self.tokenize)
        v = self.vocab
        null = llama_cpp.LLAMA_TOKEN_NULL
        eos = llama_cpp.llama_vocab_eos(v)
        if eos == null:
            eos = llama_cpp.llama_vocab_sep(v)
        return plain_layout(
            bos=llama_cpp.llama_vocab_bos(v) if llama_cpp.llama_vocab_get_add_bos(v) else None,
            eos=eos if llama_cpp.llama_vocab_get_add_eos(v) else None,
            sep=llama_cpp.llama_vocab_sep(v) if llama_cpp.llama_vocab_get_add_sep(v) else None,
        )

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None


class RankContext:
    """One llama context scoring whole pairs; use from one thread only."""

    def __init__(self, model: RankModel, params: ContextParams) -> None:
        cp = llama_cpp.llama_context_default_params()
        # Each sequence gets n_ctx / n_seq_max positions: the context size, so no packed pair
        # is told it may outgrow what the model was trained on (rank models keep no KV cache).
        cp.n_ctx = params.ctx_size * params.max_seqs
        # Non-causal models cannot split a sequence over micro-batches: ubatch must equal batch.
        cp.n_batch = cp.n_ubatch = params.batch_size
        cp.n_seq_max = params.max_seqs
        cp.embeddings = True
        cp.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_RANK
        cp.flash_attn_type = _FLASH[params.flash_attn]
        threads = params.threads or default_threads()
        cp.n_threads = cp.n_threads_batch = threads
        ctx = llama_cpp.llama_init_from_model(model.ptr, cp)
        if not ctx:
            raise ModelLoadError(f"llama.cpp could not create a context for {model.path}")
        self.ptr: Any = ctx
        self.model = model
        self.n_batch: int = llama_cpp.llama_n_batch(ctx)
        self.max_seqs = params.max_seqs
        self._batch = PairBatch(self.n_batch, params.max_seqs)
        self._memory = llama_cpp.llama_get_memory(ctx)

    def score(self, pairs: list[list[int]]) -> list[float]:
        """Scores of up to `max_seqs` pairs decoded together; the caller checked their sizes."""
        total = sum(len(p) for p in pairs)
        if not pairs or len(pairs) > self.max_seqs or total > self.n_batch:
            raise ValueError(f"{len(pairs)} pairs of {total} tokens do not fit one decode")
        self._batch.fill(pairs, total)
        if self._memory:
            llama_cpp.llama_memory_clear(self._memory, True)
        rc = llama_cpp.llama_decode(self.ptr, self._batch.raw)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with status {rc}")
        scores = [float(llama_cpp.llama_get_embeddings_seq(self.ptr, s)[0])
                  for s in range(len(pairs))]
        if not all(math.isfinite(score) for score in scores):
            # JSON has no NaN: the answer failed to encode, a bare 500 nobody could explain.
            raise NonFiniteScoreError(
                f"the model scored a pair {next(s for s in scores if not math.isfinite(s))} "
                "(its weights or their conversion are broken, or f16 overflowed: try "
                "--flash-attn off, or an f32 or other quantization of the model)")
        return scores

    def close(self) -> None:
        if self.ptr:
            self._batch.free()
            llama_cpp.llama_free(self.ptr)
            self.ptr = None


class NonFiniteScoreError(RuntimeError):
    """The model scored a pair NaN or infinite."""


class PairBatch:
    """A llama_batch written through numpy views: a few slice writes per pair instead of five
    ctypes writes per token, which cost 50-100 µs of GIL-holding Python per 150-token pair on
    these CPUs, a tenth to a sixth of a MiniLM pair's decode on an H200 (bench_batch_fill.py).

    Every token belongs to exactly one sequence and is an output (rank pooling reads them all),
    so `n_seq_id` and `logits` are written once. llama_batch_init gives each token its own one-id
    `seq_id` array; those are swapped for views of one contiguous array while the batch lives, and
    put back before llama_batch_free releases them.
    """

    def __init__(self, n_batch: int, max_seqs: int) -> None:
        self.raw: Any = llama_cpp.llama_batch_init(n_batch, 0, max_seqs)
        self.tokens = np.ctypeslib.as_array(self.raw.token, shape=(n_batch,))
        self.positions = np.ctypeslib.as_array(self.raw.pos, shape=(n_batch,))
        np.ctypeslib.as_array(self.raw.n_seq_id, shape=(n_batch,))[:] = 1
        np.ctypeslib.as_array(self.raw.logits, shape=(n_batch,))[:] = 1
        self.seq_ids = np.zeros(n_batch, dtype=np.int32)
        one_id = ctypes.POINTER(ctypes.c_int32)
        base, width = self.seq_ids.ctypes.data, self.seq_ids.itemsize
        self._seq_id_table = (one_id * n_batch)(
            *(ctypes.cast(base + width * i, one_id) for i in range(n_batch)))
        # An address, not the field's pointer object: that one shares the field's memory.
        self._own_seq_ids = ctypes.cast(self.raw.seq_id, ctypes.c_void_p).value
        self.raw.seq_id = ctypes.cast(self._seq_id_table, type(self.raw.seq_id))
        self._counting = np.arange(n_batch, dtype=np.int32)

    def fill(self, pairs: list[list[int]], total: int) -> None:
        self.tokens[:total] = np.fromiter(itertools.chain.from_iterable(pairs), np.int32, total)
        at = 0
        for seq, tokens in enumerate(pairs):
            n = len(tokens)
            self.positions[at:at + n] = self._counting[:n]
            self.seq_ids[at:at + n] = seq
            at += n
        self.raw.n_tokens = total

    def free(self) -> None:
        self.raw.seq_id = ctypes.cast(ctypes.c_void_p(self._own_seq_ids), type(self.raw.seq_id))
        llama_cpp.llama_batch_free(self.raw)
