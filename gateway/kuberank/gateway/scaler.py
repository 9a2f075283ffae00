"""The gateway's writes to the API server: wake a RerankModel at 0 replicas (scale
subresource), record when it last had a request (``scaleToZero``) and report its load
(``autoscaling``), both in its status; and record when an ApiKey was last used, in its status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from kuberank.crd import apikey, rerankmodel
from kuberank.crd.common import GROUP, VERSION, timestamp
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

TIMEOUT = 10.0  # seconds per API call: a stuck API server must not hold a wake forever


class WriteError(Exception):
    """A write failed; the message says why, for the 503 and the log."""


class Scaler(Protocol):
    """The writes, as the gateway's request path uses them (off the event loop)."""

    def wake(self, namespace: str, name: str, replicas: int) -> bool: ...

    def record_request(self, namespace: str, name: str, at: datetime) -> None: ...

    def report_load(
        self, namespace: str, name: str, instance: str, in_flight: float, at: datetime
    ) -> None: ...

    def record_key_use(self, namespace: str, name: str, at: datetime) -> None: ...


class KubeScaler:
    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)

    def wake(self, namespace: str, name: str, replicas: int) -> bool:
        """Scale the model to ``replicas`` if it is at 0 now; True when this call scaled it.

        Read-then-replace with the read's resourceVersion: a model someone scaled meanwhile
        (another gateway replica, a person, an autoscaler) is left as they set it.
        """
        with _writing(rerankmodel.KIND, namespace, name):
            for _ in range(3):
                scale: Any = self._custom.get_namespaced_custom_object_scale(
                    GROUP, VERSION, namespace, rerankmodel.PLURAL, name, _request_timeout=TIMEOUT
                )
                if int((scale.get("spec") or {}).get("replicas") or 0) > 0:
                    return False
                scale["spec"] = {"replicas": replicas}
                try:
                    self._custom.replace_namespaced_custom_object_scale(
                        GROUP, VERSION, namespace, rerankmodel.PLURAL, name, scale,
                        _request_timeout=TIMEOUT,
                    )
                except ApiException as err:
                    if err.status == 409:  # changed since read: read again
                        continue
                    raise
                return True
        return False

    def report_load(
        self, namespace: str, name: str, instance: str, in_flight: float, at: datetime
    ) -> None:
        """Merge-patch status.gatewayLoad[instance] (the operator's autoscaler sums them)."""
        report = {"inFlight": round(in_flight, 3), "time": timestamp(at)}
        self._patch_status(rerankmodel.KIND, namespace, name, {"gatewayLoad": {instance: report}})

    def record_request(self, namespace: str, name: str, at: datetime) -> None:
        """Merge-patch status.lastRequestTime (the operator's idle clock reads it)."""
        self._patch_status(rerankmodel.KIND, namespace, name,
                           {"lastRequestTime": timestamp(at)})

    def record_key_use(self, namespace: str, name: str, at: datetime) -> None:
        """Merge-patch an ApiKey's status.lastUsedTime (``kubectl get ak`` shows it)."""
        self._patch_status(apikey.KIND, namespace, name, {"lastUsedTime": timestamp(at)})

    def _patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        plural = rerankmodel.PLURAL if kind == rerankmodel.KIND else apikey.PLURAL
        with _writing(kind, namespace, name):
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status},
                _request_timeout=TIMEOUT,
            )


@contextmanager
def _writing(kind: str, namespace: str, name: str) -> Iterator[None]:
    """Turn the client's failures into one WriteError that says what went wrong."""
    try:
        yield
    except ApiException as err:
        raise WriteError(_reason(err, kind, namespace, name)) from None
    except (HTTPError, OSError) as err:
        raise WriteError(f"API server unreachable: {err}") from None


_RULES = {rerankmodel.KIND: "rerankmodels/scale get+update, rerankmodels/status patch",
          apikey.KIND: "apikeys/status patch"}


def _reason(err: ApiException, kind: str, namespace: str, name: str) -> str:
    what = f"{kind} {namespace}/{name}"
    if err.status == 403:
        return f"the gateway may not write {what} (RBAC: {_RULES[kind]})"
    if err.status == 404:
        return f"{what} is gone"
    return f"API server answered {err.status} for {what}: {err.reason}"
