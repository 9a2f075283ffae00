"""Operator settings: flags and KUBERANK_* environment variables agree (pydantic-settings)."""

from __future__ import annotations

from typing import Annotated, Any

from kuberank.crd.common import name_list
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

VERSION = "0.1.0"
_PEER_FIELDS = {"podSelector", "namespaceSelector", "ipBlock"}


class OperatorSettings(BaseSettings):
    """Everything the operator process and its builders need to know."""

    model_config = SettingsConfigDict(env_prefix="KUBERANK_", extra="ignore")

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to watch (comma-separated, or a JSON "
        "list); empty means cluster-wide."
    )
    runtime_image: str = Field(
        default=f"ghcr.io/kuberank/runtime:{VERSION}", description="Default runtime image."
    )
    runtime_cpu_image: str = Field(
        default="",
        description="Runtime image of CPU models (gpus: 0); empty means the runtime image's tag "
        "with a -cpu suffix. Required when the runtime image is pinned by digest.",
    )
    runtime_fixed_ids: bool = Field(
        default=True,
        description="Run model pods as user and group 65532 (fsGroup too), as Pod Security "
        "'restricted' asks; false leaves the ids to the platform (OpenShift's restricted-v2 "
        "assigns them from the namespace's range and refuses others).",
    )
    runtime_image_pull_secrets: list[str] = Field(
        default_factory=list,
        description="Names of Secrets (in each model's namespace) that runtime pods pull their "
        "image with (JSON list).",
    )
    finalizer: str = Field(
        default="kuberank.io/operator", description="Finalizer the operator puts on objects."
    )
    annotation_prefix: str = Field(
        default="operator.kuberank.io",
        description="Prefix of the annotations holding handler progress and the last spec.",
    )
    liveness_endpoint: str | None = Field(
        default="http://0.0.0.0:8081/healthz", description="kopf liveness probe URL; '' disables."
    )
    metrics_port: int = Field(
        default=8082, ge=0, le=65535,
        description="Port of the operator's Prometheus /metrics (models' conditions and "
        "replicas, scalings); 0 disables it.",
    )
    json_logs: bool = Field(default=False, description="Log one JSON object per line.")
    verbose: bool = Field(default=False, description="Debug logging.")
    startup_timeout_s: int = Field(
        default=1800, ge=60, description="How long a model may take to fetch and load."
    )
    metrics_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="NetworkPolicy peers (JSON list, e.g. the Prometheus namespace) that may "
        "scrape the runtime pods' /metrics; empty admits only the gateway.",
    )

    gateway_namespace: str = Field(
        default="",
        description="Namespace of the gateway pods, the only ones (with the metrics scrapers) "
        "the runtime pods' NetworkPolicy admits; empty admits gateway-labelled pods of any "
        "namespace (the chart sets its release namespace).",
    )

    leader_elect: bool = Field(
        default=False,
        description="Run handlers only while holding a Lease, so more replicas can stand by.",
    )
    lease_namespace: str = Field(
        default="", description="Namespace of the leader-election Lease (the operator's own)."
    )
    lease_name: str = Field(default="kuberank-operator", description="Name of that Lease.")
    lease_seconds: int = Field(
        default=15, ge=3, description="How long a leader that stops renewing keeps the Lease."
    )
    identity: str = Field(
        default="",
        description="This replica's name in the Lease (the pod's); empty means host name plus "
        "a random suffix.",
    )

    @model_validator(mode="after")
    def _cpu_image_is_known(self) -> OperatorSettings:
        if not self.runtime_cpu_image and "@" in self.runtime_image:
            raise ValueError(
                "--runtime-image (KUBERANK_RUNTIME_IMAGE) is pinned by digest, so its CPU "
                "variant cannot be derived from its tag: set --runtime-cpu-image "
                "(KUBERANK_RUNTIME_CPU_IMAGE) too")
        return self

    @property
    def cpu_runtime_image(self) -> str:
        """The image CPU models run when their spec names none."""
        return self.runtime_cpu_image or cpu_image(self.runtime_image)

    @model_validator(mode="after")
    def _lease_has_a_namespace(self) -> OperatorSettings:
        if self.leader_elect and not self.lease_namespace:
            raise ValueError("--leader-elect (KUBERANK_LEADER_ELECT) needs --lease-namespace "
                             "(KUBERANK_LEASE_NAMESPACE): the operator's own namespace")
        return self

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespace_list(cls, value: Any) -> Any:
        """KUBERANK_NAMESPACES as the chart writes it (a JSON list) or as a person would
        (``team-a,team-b``, as the gateway's own takes it)."""
        return name_list(value)

    @field_validator("metrics_from")
    @classmethod
    def _peers_only(cls, peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Refused at start, not by the API server on every model's NetworkPolicy later."""
        for i, peer in enumerate(peers):
            unknown = sorted(set(peer) - _PEER_FIELDS)
            if not peer or unknown:
                raise ValueError(
                    f"item {i} must be a NetworkPolicyPeer with one or more of "
                    f"{sorted(_PEER_FIELDS)}, got {sorted(peer) or 'an empty object'}"
                )
        return peers


def cpu_image(image: str) -> str:
    """The CPU variant of a runtime image: its tag with a -cpu suffix."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return f"{image}:latest-cpu"
    return image if tag.endswith("-cpu") else f"{name}:{tag}-cpu"
