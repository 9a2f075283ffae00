"""Gateway settings: command-line flags and KUBERANK_GATEWAY_* environment variables agree."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any

from kuberank.crd.common import name_list
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# First path segments the gateway answers itself: a prefix may not start with one of them.
OWN_SEGMENTS = frozenset({"v1", "v2", "rerank", "models", "healthz", "readyz", "metrics",
                          "openapi.json"})


class GatewaySettings(BaseSettings):
    """Flags of ``kuberank-gateway``; env var = KUBERANK_GATEWAY_ + flag in upper snake case."""

    model_config = SettingsConfigDict(
        env_prefix="KUBERANK_GATEWAY_", cli_kebab_case=True, cli_implicit_flags=True
    )

    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port to listen on.")
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch for ApiKeys, RerankModels and EndpointSlices "
        "(comma-separated); empty means all namespaces.",
    )
    path_prefix: str = Field(
        default="", pattern=r"^(/[A-Za-z0-9._~-]+)*/?$",
        description="Path prefix an Ingress forwards unstripped (e.g. /search): "
        "/search/v1/rerank is served as /v1/rerank; paths without it are served too.",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body accepted (413)."
    )
    max_inflight_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Request bodies held at once, in "
        "bytes (each counted as it arrives, until answered; 16 times its size if compressed); "
        "a request past it while others hold theirs is a 429 queue_full. Bounds the gateway's "
        "memory under a burst of large requests, whichever keys send them.",
    )
    max_documents: int = Field(
        default=1000, ge=1, description="Most documents one request may carry (422)."
    )
    upstream_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for a runtime's answer before 504."
    )
    connect_timeout: float = Field(
        default=2.0, gt=0, description="Seconds to wait for a connection to a runtime replica."
    )
    keep_alive_seconds: float = Field(
        default=75.0, gt=0, description="Seconds an idle client connection stays open. Longer "
        "than the proxies in front keep theirs (ingress-nginx: 60), so a proxy never sends a "
        "request on a connection the gateway is closing at that moment (a 502).",
    )
    read_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds a client may take to send a "
        "request's headers, and may stall while sending its body, before the request is "
        "answered 408 request_timeout and its connection closed (nginx's default: 60), so "
        "stalled clients cannot hold connections for ever.")
    drain_seconds: float = Field(
        default=5.0, ge=0, description="Seconds to keep accepting requests after SIGTERM (while "
        "/readyz fails) before shutting down, so load balancers stop sending first.",
    )
    retry_after: int = Field(
        default=5, ge=1, description="Retry-After seconds sent with 503 when no replica is ready."
    )
    kubeconfig: str | None = Field(
        default=None, description="Path to a kubeconfig; without it the in-cluster config is used."
    )
    objects_file: str | None = Field(
        default=None,
        description="Serve the ApiKey, RerankModel and EndpointSlice objects in this YAML file "
        "instead of watching the API server (benchmarks, local runs).",
    )
    log_level: str = Field(default="info", description="Log level of the gateway and uvicorn.")
    access_log: bool = Field(
        default=False,
        description="Log one JSON line per rerank request (key id, namespace, model, dialect, "
        "status, milliseconds, request id; never a key), on logger kuberank.gateway.access.",
    )
    instance: str = Field(
        default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname(),
        description="This gateway replica's name in the load it reports for autoscaled models "
        "(default: $POD_NAME, else the host name).",
        min_length=1,
    )
    peers: str | None = Field(
        default=None,
        description="namespace/name of the Service in front of the gateway replicas: each "
        "enforces 1/N of every key's rate limits, N being that Service's ready endpoints "
        "(default: this replica alone enforces them whole).",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    )
    load_report_seconds: float = Field(
        default=10.0, ge=0.5, le=300,
        description="Period over which the requests in flight of each autoscaled model are "
        "averaged and reported.",
    )
    key_use_seconds: float = Field(
        default=60.0, ge=0.5, le=3600,
        description="Each API key's status.lastUsedTime is written at most once per this many "
        "seconds (per gateway replica).",
    )

    @field_validator("path_prefix")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        prefix = value.rstrip("/")  # "/" and "" alike mean no prefix
        first = prefix.split("/")[1] if prefix else ""
        if first in OWN_SEGMENTS:  # /v1 would turn /v1/rerank into TEI's /rerank
            raise ValueError(f"{value!r} begins like the gateway's own paths "
                             f"(/{first}/...); choose another, e.g. /reranker")
        return prefix

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        return name_list(value)
