"""Operator settings: flags and KUBERANK_* environment variables agree (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

VERSION = "0.1.0"


class OperatorSettings(BaseSettings):
    """Everything the operator process and its builders need to know."""

    model_config = SettingsConfigDict(env_prefix="KUBERANK_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means cluster-wide."
    )
    runtime_image: str = Field(
        default=f"ghcr.io/kuberank/runtime:{VERSION}", description="Default runtime image."
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
    json_logs: bool = Field(default=False, description="Log one JSON object per line.")
    verbose: bool = Field(default=False, description="Debug logging.")
    startup_timeout_s: int = Field(
        default=1800, ge=60, description="How long a model may take to fetch and load."
    )


def cpu_image(image: str) -> str:
    """The CPU variant of a runtime image: its tag with a -cpu suffix."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return f"{image}:latest-cpu"
    return image if tag.endswith("-cpu") else f"{name}:{tag}-cpu"
