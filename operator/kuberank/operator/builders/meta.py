"""Names, labels, selectors and owner references shared by every child of a RerankModel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kuberank.crd.common import API_VERSION, MANAGED_BY_LABEL
from kuberank.crd.common import MANAGED_BY as MANAGED_BY
from kuberank.crd.rerankmodel import child_name as child_name

RUNTIME_NAME = "kuberank-runtime"
MODEL_LABEL = "kuberank.io/model"
HTTP_PORT = 8080
# The de-facto convention Prometheus' kubernetes_sd relabelling (and most agents) read on pods.
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(HTTP_PORT),
    "prometheus.io/path": "/metrics",
}
GATEWAY_LABELS = {
    "app.kubernetes.io/part-of": "kuberank",
    "app.kubernetes.io/component": "gateway",
}


@dataclass(frozen=True)
class Owner:
    """The custom resource the children belong to."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector(model: str) -> dict[str, str]:
    """Pod selector; deliberately small so it never changes (Deployment selectors are immutable)."""
    return {"app.kubernetes.io/name": RUNTIME_NAME, MODEL_LABEL: model}


def selector_string(model: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(model).items())


def base_labels() -> dict[str, str]:
    """On everything the operator makes: the gateway and the operator's watches select by it."""
    return {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/part-of": "kuberank"}


def labels(model: str) -> dict[str, str]:
    return {**selector(model), "app.kubernetes.io/instance": model, **base_labels()}


def metadata(owner: Owner, name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels(owner.name), **(extra_labels or {})},
        "ownerReferences": [owner.reference()],
    }


def endpoint(model: str, namespace: str) -> str:
    return f"http://{child_name(model)}.{namespace}.svc:{HTTP_PORT}"
