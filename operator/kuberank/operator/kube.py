"""The operator's calls to the API server: apply, read, delete, patch status (leader.py keeps
its Lease through the same client).

Children are written with server-side apply (one field manager, forced), so re-applying an
unchanged manifest is a no-op on the server and a drifted field is put back by the next pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

FIELD_MANAGER = "kuberank-operator"

_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "Secret": "secrets",
    "NetworkPolicy": "networkpolicies",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Pod": "pods",
    "RerankModel": "rerankmodels",
    "ApiKey": "apikeys",
}


# How the API server words its refusal of a create in a namespace being deleted (403).
NAMESPACE_ENDING = "because it is being terminated"


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when no response came)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500

    @property
    def namespace_ending(self) -> bool:
        """A create refused because its namespace is being deleted: nothing to put back there
        (the namespace controller deletes children before their owners)."""
        return self.status == 403 and NAMESPACE_ENDING in self.message


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Ref:
        meta = manifest["metadata"]
        return cls(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])

    def path(self, subresource: str = "") -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        tail = f"/{subresource}" if subresource else ""
        return f"{prefix}/namespaces/{self.namespace}/{_PLURALS[self.kind]}/{self.name}{tail}"


# kopf runs sync handlers on up to 16 threads (cli.configure), and the leader's renewals share
# the client: the client's default pool (5 per CPU, 10 on 2 cores) is smaller than that, and a
# full pool makes urllib3 log "Connection pool is full" and open a new connection per call.
POOL_SIZE = 20


def load_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(configuration)


class Kube:
    """Thin JSON-over-HTTP wrapper on the client's authenticated connection pool.

    ``may_write`` (leader election's ``Leadership.leading``) is asked before every write: a
    process that is no longer sure it leads refuses to write rather than race a new leader.
    """

    def __init__(self, api: client.ApiClient,
                 may_write: Callable[[], bool] | None = None) -> None:
        self._api = api
        self._may_write = may_write

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        if method != "GET" and self._may_write is not None and not self._may_write():
            raise KubeError(0, "not writing: this replica's leadership lapsed (lease not renewed "
                               "in time); it exits as soon as its renewal gives up")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        m, url, hdrs, data, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        raw: bytes | str
        try:
            resp = self._api.call_api(m, url, header_params=hdrs, body=data, _request_timeout=30)
            resp.read()  # type: ignore[no-untyped-call]
            status, raw = resp.status, resp.data or b""
        except ApiException as err:
            status, raw = int(err.status or 0), (err.body or "")
        except (OSError, TransportError) as err:
            # Refused, reset or timed out while the apiserver restarts: urllib3 raises its own
            # errors (MaxRetryError, ProtocolError, ReadTimeoutError), which are no OSError.
            raise KubeError(0, str(err)) from err
        if status == 404:
            return None
        if status >= 400:
            raise KubeError(status, _message(raw))
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; creates or converges the object to the manifest."""
        out = self._call(
            "PATCH",
            Ref.of(manifest).path(),
            manifest,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )
        if out is None:
            raise KubeError(404, f"namespace {manifest['metadata']['namespace']} not found")
        return out

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object; with ``metadata.resourceVersion`` set, 409 if it changed since."""
        out = self._call("PUT", Ref.of(manifest).path(), manifest,
                         query=[("fieldManager", FIELD_MANAGER)])
        if out is None:
            raise KubeError(404, f"{manifest['kind']} {manifest['metadata']['name']} is gone")
        return out

    def get(self, ref: Ref) -> dict[str, Any] | None:
        return self._call("GET", ref.path())

    def served(self, api_version: str) -> set[str]:
        """The resources (plurals) the API server serves in ``api_version`` ("group/version"):
        none when it serves no such group version, as before its CRDs are installed."""
        found = self._call("GET", f"/apis/{api_version}") or {}
        return {str(r.get("name")) for r in found.get("resources") or [] if "/" not in
                str(r.get("name"))}

    def delete(self, ref: Ref) -> bool:
        """True when something was deleted; absent objects are fine."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return self._call("DELETE", ref.path(), body) is not None

    def scale(self, ref: Ref, replicas: int, resource_version: str) -> None:
        """Set replicas through the scale subresource; 409 when the object changed since
        ``resource_version`` was read."""
        scale = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": ref.name, "namespace": ref.namespace, "resourceVersion": resource_version,
            },
            "spec": {"replicas": replicas},
        }
        if self._call("PUT", ref.path("scale"), scale) is None:
            raise KubeError(404, f"{ref.kind} {ref.name} is gone")

    def merge_patch(self, ref: Ref, patch: dict[str, Any]) -> bool:
        """Merge-patch the object itself, leaving every field the patch does not name as it is
        (an apply would also drop the operator's fields it leaves out); False when it is gone."""
        return self._call("PATCH", ref.path(), patch, content_type="application/merge-patch+json",
                          query=[("fieldManager", FIELD_MANAGER)]) is not None

    def patch_status(self, ref: Ref, status: dict[str, Any]) -> bool:
        """Merge-patch the status subresource (lists such as conditions are replaced whole);
        False when the object is gone."""
        return self._call(
            "PATCH",
            ref.path("status"),
            {"status": status},
            content_type="application/merge-patch+json",
        ) is not None


def _message(raw: bytes | str) -> str:
    try:
        body = json.loads(raw)
    except (ValueError, TypeError):
        return str(raw)[:500]
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)
