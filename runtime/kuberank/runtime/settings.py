"""Runtime settings: every command-line flag is also an environment variable (KUBERANK_<FLAG>).

The operator renders a RerankModel's spec into these environment variables; a person running the
server by hand uses the flags. Flags win over the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kuberank.modelkit.paths import default_model_path
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_QUEUED_PAIRS = 8192
GPU_MAX_BATCH_PAIRS = 8  # best of 1-64 for MiniLM-L6 and BERT-large on an H200 (engine.py)
GPU_CONTEXTS = 4  # llama contexts decoding side by side on one GPU (engine.py)
CPU_MAX_CONTEXTS = 4  # on the CPU: one per thread, up to this many (engine.py)
PACKED_BATCH_TOKENS = 8192  # attention over a packed batch grows with its square


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBERANK_", extra="ignore")

    model: Path = Field(default_factory=default_model_path,
                        description="GGUF file of a rank-pooling (reranker) model.")
    served_name: str | None = Field(
        default=None, description="Model name clients send and /v1/models lists "
        "(default: the file name without .gguf).")
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for llama.cpp, split evenly between the "
        "contexts (default: the CPUs this process may use, its cgroup quota included).")
    ctx_size: int = Field(default=512, ge=16, le=131072,
                          description="Context size in tokens; a query+document pair must fit.")
    batch_size: int | None = Field(
        default=None, ge=16, le=1_048_576, description="Tokens per decode (physical batch = "
        "logical batch for non-causal models); caps the longest pair. Default: ctx-size, or "
        f"room for every packed pair at ctx-size up to {PACKED_BATCH_TOKENS} tokens when "
        "packing.")
    gpu_layers: int = Field(default=0, ge=-1,
                            description="Layers to offload to the GPU (-1: all, 0: CPU only).")
    flash_attn: Literal["on", "off", "auto"] | None = Field(
        default=None, description="Flash attention: on, off or auto (default: on for the CPU, "
        "where it measured faster; auto with GPU offload, where llama.cpp picks per model).")
    max_documents: int = Field(default=1000, ge=1,
                               description="Most documents in one request (more is a 422).")
    max_query_tokens: int | None = Field(default=None, ge=1,
                                         description="Longest query in tokens.")
    max_document_tokens: int | None = Field(default=None, ge=1,
                                            description="Longest document in tokens.")
    overflow: Literal["truncate", "reject"] = Field(
        default="truncate", description="What to do with a query, document or pair over its "
        "limit: truncate (keeps the pair's closing tokens) or reject (413).")
    normalize: bool = Field(default=False, description="Return sigmoid(score) in [0, 1] instead "
                            "of the raw classifier output, unless a request says otherwise.")
    max_batch_pairs: int | None = Field(
        default=None, ge=1, le=256,  # llama.cpp's LLAMA_MAX_SEQ
        description="Most query+document pairs packed into one decode (default: 1 on the CPU, "
        f"{GPU_MAX_BATCH_PAIRS} with GPU offload; both measured best).")
    contexts: int | None = Field(
        default=None, ge=1, le=16,
        description="llama.cpp contexts decoding side by side, each on its own thread, all "
        "sharing the loaded weights and one queue (default: one per thread up to "
        f"{CPU_MAX_CONTEXTS} on the CPU, {GPU_CONTEXTS} with GPU offload; both measured best).")
    schedule: Literal["shortest", "fifo"] = Field(
        default="shortest", description="Which waiting request the engine serves first: the one "
        "that has waited longest per pair it brought, the fewest pairs first among new ones (a "
        "small request does not wait behind a large one, a large one waits in proportion to "
        "its size), or arrival order.")
    max_wait_seconds: float = Field(
        default=10.0, gt=0, description="With --schedule shortest, a request that has waited "
        "this long is served next whatever its size.")
    cuda_graphs: bool = Field(
        default=False, description="Let llama.cpp capture CUDA graphs. Off by default: pairs of "
        "varying length change the graph at nearly every decode, and updating it aborted the "
        "process on an H200.")
    max_queued_pairs: int | None = Field(
        default=None, ge=1, description="Pairs waiting for the engine before 429s (default: "
        "8192, or max-documents when larger; never less, or a full request could not queue).")
    max_queue_seconds: float = Field(
        default=30.0, ge=0, description="Refuse (429 queue_full) a request that would wait "
        "longer than this behind the queue, at the pace decodes go (0: no bound but "
        "max-queued-pairs). The gateway gives up after its upstream timeout (60 s): a request "
        "admitted behind more would only time out there. A request that finds the queue empty "
        "is always taken.")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024,
                                description="Largest request body in bytes (more is a 413).")
    max_inflight_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Request bodies held at once, in "
        "bytes (each counted as it arrives, until answered; 16 times its size if compressed); "
        "a request past it while others hold theirs is a 429 queue_full. Bounds memory under "
        "a burst of large requests.")
    shutdown_seconds: float = Field(
        default=20.0, ge=0, le=600, description="After the drain, seconds requests in flight "
        "get to finish before they are answered 503 draining and the server stops (the "
        "operator's pods have 30 s of grace: 5 of drain, 20 of this, 5 to spare).")
    read_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds a client may take to send a "
        "request's headers, and may stall while sending its body, before the request is "
        "answered 408 request_timeout and its connection closed (nginx's default: 60), so "
        "stalled clients cannot hold connections for ever.")
    drain_seconds: float = Field(
        default=5.0, ge=0, le=60, description="Seconds to keep serving after SIGTERM (while "
        "/health answers 503 draining) before shutting down, so clients of the pod's Service "
        "stop sending first.")

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _flash_attn_words(cls, value: Any) -> Any:
        words = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            return words.get(value.strip().lower(), value.strip().lower())
        return value

    @field_validator("served_name")
    @classmethod
    def _a_name_a_client_can_send(cls, value: str | None) -> str | None:
        """Unset when empty; refused when blank, with control characters (a newline cannot be
        sent in a JSON client's ``model`` as typed) or longer than a RerankModel's (200)."""
        if not value:
            return None
        if not value.strip():
            raise ValueError("a served name must not be blank")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("a served name must not contain control characters")
        if len(value) > 200:
            raise ValueError(f"a served name has at most 200 characters, not {len(value)}")
        return value

    @model_validator(mode="after")
    def _largest_request_fits_the_queue(self) -> RuntimeSettings:
        if self.max_queued_pairs is not None and self.max_queued_pairs < self.max_documents:
            raise ValueError(
                f"--max-queued-pairs (KUBERANK_MAX_QUEUED_PAIRS, {self.max_queued_pairs}) must be "
                f"at least --max-documents (KUBERANK_MAX_DOCUMENTS, {self.max_documents}): a "
                "request that can never be queued would get 429 forever")
        return self

    @property
    def effective_max_queued_pairs(self) -> int:
        return self.max_queued_pairs or max(DEFAULT_MAX_QUEUED_PAIRS, self.max_documents)

    @property
    def effective_served_name(self) -> str:
        return self.served_name or self.model.name.removesuffix(".gguf")


@dataclass(frozen=True)
class EngineChoices:
    """The engine settings in force once it is known where llama.cpp runs."""

    flash_attn: Literal["on", "off", "auto"]
    max_batch_pairs: int
    batch_size: int
    contexts: int
    threads: int  # per context


def engine_choices(settings: RuntimeSettings, offloaded: bool, cpus: int) -> EngineChoices:
    """Explicit settings win; otherwise the defaults measured for the CPU or for a GPU.

    ``cpus`` is what the process may use (model.default_threads). On the CPU several
    single-threaded contexts beat one context with every thread (llama.cpp's threads meet at a
    barrier after each operation), so the threads are spread over up to CPU_MAX_CONTEXTS."""
    pairs = settings.max_batch_pairs or (GPU_MAX_BATCH_PAIRS if offloaded else 1)
    batch = settings.batch_size or (
        settings.ctx_size if pairs == 1
        else max(settings.ctx_size, min(settings.ctx_size * pairs, PACKED_BATCH_TOKENS)))
    threads = settings.threads or cpus
    contexts = settings.contexts or (GPU_CONTEXTS if offloaded
                                     else max(1, min(CPU_MAX_CONTEXTS, threads)))
    return EngineChoices(flash_attn=settings.flash_attn or ("auto" if offloaded else "on"),
                         max_batch_pairs=pairs, batch_size=batch, contexts=contexts,
                         threads=max(1, threads // contexts))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuberank-runtime",
        description="Serve a llama.cpp rank-pooling GGUF model over HTTP: POST /v1/rerank "
        "(Jina/GPUStack), /rerank (TEI), /v2/rerank (Cohere v2); GET /v1/models, /health, "
        "/metrics. Every flag can also be set by the environment variable shown.",
    )
    for name, field in RuntimeSettings.model_fields.items():
        env = f"KUBERANK_{name.upper()}"
        default = "computed" if field.default_factory else field.default
        help_text = f"{field.description} [env {env}; default {default}]"
        if field.annotation is bool:
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, default=None, help=help_text)
    return parser


def load_settings(argv: Sequence[str] | None = None) -> RuntimeSettings:
    """Flags override the environment, which overrides defaults."""
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    return RuntimeSettings(**given)
