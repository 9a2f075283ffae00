"""Where a request goes: (key namespace, model name or alias) → RerankModel → ready endpoints.

Fed by the RerankModel and EndpointSlice watches. A RerankModel ``<name>`` is served by Service
``rrm-<name>``; its replicas are the ready endpoints of the EndpointSlices labelled
``kubernetes.io/service-name=rrm-<name>`` in the same namespace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberank.crd import reasons
from kuberank.crd.common import parse_timestamp
from kuberank.crd.rerankmodel import (
    RUNTIME_PORT_NAME,
    NameClaim,
    ScaleToZero,
    aliases_of,
    child_name,
    claim_order,
    name_holders,
    served_name,
)
from kuberank.gateway.grouped import Grouped

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGER_LABEL = "endpointslice.kubernetes.io/managed-by"
MIRRORED_SLICE_MANAGER = "endpointslicemirroring-controller.k8s.io"


@dataclass(frozen=True)
class WakePolicy:
    """spec.scaleToZero as the gateway uses it: when to record requests, how to wake."""

    after_idle_seconds: int = ScaleToZero.model_fields["after_idle_seconds"].default
    wake_replicas: int = ScaleToZero.model_fields["wake_replicas"].default
    wake_timeout_seconds: int = ScaleToZero.model_fields["wake_timeout_seconds"].default

    @property
    def record_interval(self) -> float:
        """Seconds between two writes of status.lastRequestTime: a quarter of the idle spell
        (so the operator's view is never more than that stale), at most a minute."""
        return min(self.after_idle_seconds / 4, 60.0)


@dataclass(frozen=True)
class ModelRoute:
    namespace: str
    name: str
    served_name: str
    max_documents: int | None = None  # spec.limits.maxDocuments, refused here before forwarding
    replicas: int = 1  # spec.replicas as last watched
    wake: WakePolicy | None = None  # spec.scaleToZero: set when a request may wake the model
    failing: str | None = None  # "Reason: message" of a Degraded condition waiting cannot fix
    # ... and one that only someone's change ends (reasons.NEEDS_A_CHANGE): no Retry-After
    failing_until_changed: bool = False
    starting: bool = False  # the operator reports its replicas fetching or loading the model
    # "Reason: message" of a Degraded condition that waiting may fix (no GPU free yet, a claim
    # not bound): requests are still held for it, and a 503 says why nothing is ready.
    waiting: str | None = None
    aliases: tuple[str, ...] = ()  # spec.aliases: more names that reach this model
    autoscaled: bool = False  # spec.autoscaling is set: report this model's load
    timeout: float | None = None  # spec.limits.timeoutSeconds; None: the gateway's default
    # crd.rerankmodel.claim_order: which model gets a served name two claim (not an identity)
    claim: tuple[str, str] = field(default=("~", ""), compare=False)
    created: int = field(default=0, compare=False)  # creationTimestamp, Unix seconds (OpenAI's)

    @property
    def service_name(self) -> str:
        return child_name(self.name)

    @property
    def name_claim(self) -> NameClaim:
        return NameClaim(self.name, self.served_name, self.aliases, self.claim)


@dataclass(frozen=True)
class SliceRecord:
    namespace: str
    name: str
    service_name: str
    endpoints: tuple[str, ...]  # "host:port", ready addresses only
    # Which watch found it ("models", "peers"): a relist replaces only its own watch's slices.
    pool: str = "models"


def route_from_rerankmodel(obj: Mapping[str, Any]) -> ModelRoute | None:
    """The route of a watched RerankModel; none for one being deleted, which no longer holds
    its names (the operator's rule too: a rival takes its served name at once, and requests for
    it get 404 rather than the replicas that garbage collection is about to remove)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name or not namespace or meta.get("deletionTimestamp"):
        return None
    limits = spec.get("limits") or {}
    limit, timeout = limits.get("maxDocuments"), limits.get("timeoutSeconds")
    replicas = spec.get("replicas", 1)
    return ModelRoute(namespace=namespace, name=name, served_name=served_name(obj),
                      max_documents=limit if isinstance(limit, int) and limit > 0 else None,
                      replicas=replicas if isinstance(replicas, int) else 1,
                      wake=_wake_policy(spec.get("scaleToZero")),
                      failing=_failing(obj.get("status")),
                      failing_until_changed=_failing_until_changed(obj.get("status")),
                      starting=_starting(obj.get("status")),
                      waiting=_waiting(obj.get("status")),
                      aliases=aliases_of(obj),
                      autoscaled=isinstance(spec.get("autoscaling"), Mapping),
                      timeout=_positive(timeout), claim=claim_order(meta),
                      created=_unix_seconds(meta.get("creationTimestamp")))


def _unix_seconds(stamp: Any) -> int:
    """An API server timestamp as Unix seconds; 0 when absent or odd."""
    parsed = parse_timestamp(stamp)
    return int(parsed.timestamp()) if parsed is not None else 0


def _positive(raw: Any) -> float | None:
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0
    return float(raw) if ok else None


def _condition(status: Any, kind: str) -> Mapping[str, Any]:
    """The operator's condition ``kind`` in a status as watched (empty when absent or odd)."""
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return {}


def _degraded(status: Any, reasons_wanted: Callable[[Any], bool]) -> str | None:
    """"Reason: message" of the operator's Degraded condition, when True for a reason wanted."""
    cond = _condition(status, "Degraded")
    if cond.get("status") == "True" and reasons_wanted(cond.get("reason")):
        return f"{cond.get('reason')}: {cond.get('message', '')}".rstrip(": ")
    return None


def _failing(status: Any) -> str | None:
    """A failure that waiting will not fix (CrashLoop, FetchFailed, ImagePullFailed, ...:
    answered at once, not held)."""
    return _degraded(status, lambda reason: reason not in reasons.PENDING | reasons.SERVING)


def _failing_until_changed(status: Any) -> bool:
    """A failure that only someone's change ends (``reasons.NEEDS_A_CHANGE``)."""
    return _degraded(status, lambda reason: reason in reasons.NEEDS_A_CHANGE) is not None


def _waiting(status: Any) -> str | None:
    """A wait (``reasons.PENDING``: no GPU free yet, a claim not bound, a node cut off)."""
    return _degraded(status, lambda reason: reason in reasons.PENDING)


def _starting(status: Any) -> bool:
    """Available=False because no replica is ready yet: the pods fetch or load the model."""
    cond = _condition(status, "Available")
    return cond.get("status") == "False" and cond.get("reason") == reasons.NO_REPLICAS_READY


def _wake_policy(raw: Any) -> WakePolicy | None:
    """The policy from spec.scaleToZero; defaults for fields the API server left out."""
    if not isinstance(raw, Mapping):
        return None
    default = WakePolicy()

    def whole(field: str, fallback: int) -> int:
        value = raw.get(field)
        return value if isinstance(value, int) and value > 0 else fallback

    return WakePolicy(
        after_idle_seconds=whole("afterIdleSeconds", default.after_idle_seconds),
        wake_replicas=whole("wakeReplicas", default.wake_replicas),
        wake_timeout_seconds=whole("wakeTimeoutSeconds", default.wake_timeout_seconds),
    )


def _port(ports: Iterable[Mapping[str, Any]]) -> int | None:
    listed = [p for p in ports if p.get("port")]
    named = [p for p in listed if p.get("name") == RUNTIME_PORT_NAME]
    chosen = (named or listed)[:1]
    return int(chosen[0]["port"]) if chosen else None


def _host(address: str, address_type: str) -> str:
    return f"[{address}]" if address_type == "IPv6" else address


def slice_from_endpointslice(obj: Mapping[str, Any]) -> SliceRecord | None:
    """An EndpointSlice → its ready ``host:port`` endpoints; None when it names no service.

    A missing ``ready`` condition counts as ready (the API's documented meaning of nil);
    terminating endpoints are not ready. FQDN slices are ignored.
    """
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    if not service or not meta.get("name") or not meta.get("namespace"):
        return None
    if labels.get(SLICE_MANAGER_LABEL) == MIRRORED_SLICE_MANAGER:
        return None  # its addresses are whatever someone wrote into an Endpoints object
    address_type = obj.get("addressType") or "IPv4"
    port = _port(obj.get("ports") or [])
    endpoints: list[str] = []
    if port is not None and address_type in ("IPv4", "IPv6"):
        for endpoint in obj.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            hosts = [_host(a, address_type) for a in endpoint.get("addresses") or []]
            endpoints.extend(f"{host}:{port}" for host in hosts)
    return SliceRecord(meta["namespace"], meta["name"], service, tuple(sorted(set(endpoints))))


class RoutingTable:
    """Models and slices by (namespace, name). Written by watch threads, read by the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], ModelRoute] = {}
        # Each namespace's name holders, worked out once per change of the models rather than
        # per request (300 us a request with 1,000 models in the cluster).
        self._holders_by_namespace: dict[str, Mapping[str, ModelRoute]] = {}
        # Grouped by (namespace, Service): a request looks at its Service's slices, not at
        # every slice of the cluster.
        self._slices: Grouped[SliceRecord, tuple[str, str]] = Grouped(
            lambda r: (r.namespace, r.service_name))

    # -- writers (watch side) -------------------------------------------------------------
    def upsert_model(self, route: ModelRoute) -> None:
        with self._lock:
            self._models[(route.namespace, route.name)] = route
            self._holders_by_namespace.clear()

    def remove_model(self, namespace: str, name: str) -> None:
        with self._lock:
            self._models.pop((namespace, name), None)
            self._holders_by_namespace.clear()

    def replace_models(self, routes: Iterable[ModelRoute], namespace: str | None = None) -> None:
        with self._lock:
            self._models = {k: v for k, v in self._models.items() if _kept(k, namespace)}
            self._models.update({(r.namespace, r.name): r for r in routes})
            self._holders_by_namespace.clear()

    def upsert_slice(self, record: SliceRecord) -> None:
        with self._lock:
            self._slices.put(record)

    def remove_slice(self, namespace: str, name: str) -> None:
        with self._lock:
            self._slices.drop((namespace, name))

    def replace_slices(self, records: Iterable[SliceRecord], namespace: str | None = None,
                       pool: str = "models") -> None:
        """Install a fresh list of one watch's slices (``pool``), in ``namespace`` or all."""
        with self._lock:
            self._slices.replace(
                records, lambda where, r: r.pool == pool and not _kept(where, namespace))

    # -- readers (request side) -----------------------------------------------------------
    def _holders(self, namespace: str) -> Mapping[str, ModelRoute]:
        """Every name a client may send in the namespace, and the model it reaches
        (``name_holders``: the rule the operator reports ``ServedNameTaken`` and
        ``AliasShadowed`` by)."""
        with self._lock:
            known = self._holders_by_namespace.get(namespace)
            if known is None:
                routes = {n: r for (ns, n), r in self._models.items() if ns == namespace}
                holders = name_holders(r.name_claim for r in routes.values())
                known = {name: routes[claim.name] for name, claim in holders.items()}
                self._holders_by_namespace[namespace] = known
            return known

    def models_in(self, namespace: str) -> list[ModelRoute]:
        """The namespace's models, one per served name: when two RerankModels claim the same
        served name the oldest gets it (``claim_order``; the operator marks the other
        ``ServedNameTaken``)."""
        served = [r for name, r in self._holders(namespace).items() if name == r.served_name]
        return sorted(served, key=lambda r: r.served_name)

    def served_names(self) -> set[tuple[str, str]]:
        """Every ``(namespace, served name)`` a watched model claims."""
        with self._lock:
            return {(r.namespace, r.served_name) for r in self._models.values()}

    def autoscaled(self) -> list[ModelRoute]:
        """Every model with ``autoscaling``, in any namespace."""
        with self._lock:
            return [r for r in self._models.values() if r.autoscaled]

    def model(self, namespace: str, name: str) -> ModelRoute | None:
        """The route of RerankModel ``name`` as last watched."""
        with self._lock:
            return self._models.get((namespace, name))

    def resolve(self, namespace: str, name: str) -> ModelRoute | None:
        """The model a client's ``model`` value names: a served name first, else an alias (the
        alphabetically first object declaring it), so an alias never shadows a served name."""
        return self._holders(namespace).get(name)

    def names_in(self, namespace: str) -> list[tuple[str, ModelRoute]]:
        """Every name a client may send in the namespace (served names and the aliases they do
        not shadow), each with the model it reaches, sorted by name."""
        return sorted(self._holders(namespace).items(), key=lambda item: item[0])

    def endpoints(self, route: ModelRoute) -> list[str]:
        return self.service_endpoints(route.namespace, route.service_name)

    def service_endpoints(self, namespace: str, service: str) -> list[str]:
        """The ready endpoints of a Service, from the EndpointSlices watched."""
        with self._lock:
            slices = self._slices.group((namespace, service))
        return sorted({endpoint for record in slices for endpoint in record.endpoints})


def _kept(key: tuple[str, str], namespace: str | None) -> bool:
    return namespace is not None and key[0] != namespace


def with_model(body: bytes, model: str) -> bytes:
    """The JSON body with its ``model`` field set to ``model``: a request that named an alias
    is forwarded under the served name, the only name its runtime answers to. The body was
    already parsed as a JSON object by the dialect parser."""
    payload = json.loads(body)
    payload["model"] = model
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate escaped in a field no dialect reads ("\\ud83d") parses, and has no
        # UTF-8 form: escaped again, as it came (the runtime ignores that field as before).
        return json.dumps(payload, separators=(",", ":")).encode()
