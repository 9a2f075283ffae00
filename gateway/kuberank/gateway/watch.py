"""List-then-watch of ApiKeys, RerankModels and EndpointSlices, feeding the in-memory tables.

One thread per (resource, namespace scope). Each lists (replacing what its scope held), then
watches from the list's resourceVersion; any error (410 Gone, dropped connection, API server
restart) leads to a relist after a short backoff, and a periodic relist repairs anything a watch
could have missed. The gateway is ready once every reflector has completed its first list.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kuberank.crd.apikey import PLURAL as APIKEY_PLURAL
from kuberank.crd.common import GROUP, MANAGED_BY, MANAGED_BY_LABEL, VERSION
from kuberank.crd.rerankmodel import PLURAL as RERANKMODEL_PLURAL
from kuberank.gateway.keytable import KeyTable, record_from_apikey
from kuberank.gateway.routing import (
    MIRRORED_SLICE_MANAGER,
    SERVICE_NAME_LABEL,
    SLICE_MANAGER_LABEL,
    RoutingTable,
    SliceRecord,
    route_from_rerankmodel,
    slice_from_endpointslice,
)
from kubernetes import client, config, watch

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
ListFn = Callable[..., Any]


class Sink(Protocol):
    """Where a reflector puts what it sees; ``namespace`` None means the whole cluster."""

    def replace(self, objects: Iterable[Obj], namespace: str | None) -> None: ...

    def apply(self, event_type: str, obj: Obj) -> None: ...


def _ns_name(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


@dataclass
class ApiKeySink:
    keys: KeyTable

    def replace(self, objects: Iterable[Obj], namespace: str | None) -> None:
        records = [r for r in map(record_from_apikey, objects) if r is not None]
        self.keys.replace_all(records, namespace)

    def apply(self, event_type: str, obj: Obj) -> None:
        record = record_from_apikey(obj) if event_type != "DELETED" else None
        if record is None:  # deleted, or status not (or no longer) published
            self.keys.remove(*_ns_name(obj))
        else:
            self.keys.upsert(record)


@dataclass
class ModelSink:
    routes: RoutingTable

    def replace(self, objects: Iterable[Obj], namespace: str | None) -> None:
        found = [r for r in map(route_from_rerankmodel, objects) if r is not None]
        self.routes.replace_models(found, namespace)

    def apply(self, event_type: str, obj: Obj) -> None:
        route = route_from_rerankmodel(obj) if event_type != "DELETED" else None
        if route is None:
            self.routes.remove_model(*_ns_name(obj))
        else:
            self.routes.upsert_model(route)


@dataclass
class SliceSink:
    routes: RoutingTable
    pool: str = "models"  # two watches may cover one namespace: each relists only its own

    def _record(self, obj: Obj) -> SliceRecord | None:
        record = slice_from_endpointslice(obj)
        return replace(record, pool=self.pool) if record is not None else None

    def replace(self, objects: Iterable[Obj], namespace: str | None) -> None:
        found = [r for r in map(self._record, objects) if r is not None]
        self.routes.replace_slices(found, namespace, self.pool)

    def apply(self, event_type: str, obj: Obj) -> None:
        record = self._record(obj) if event_type != "DELETED" else None
        if record is None:
            self.routes.remove_slice(*_ns_name(obj))
        else:
            self.routes.upsert_slice(record)


class Reflector(threading.Thread):
    """Keeps one sink in step with one resource in one scope."""

    def __init__(
        self,
        what: str,
        list_fn: ListFn,
        sink: Sink,
        scope: str | None,
        *,
        watch_timeout: int = 55,
        resync_period: float = 600.0,
        **list_kwargs: Any,
    ) -> None:
        super().__init__(name=f"watch-{what}-{scope or 'all'}", daemon=True)
        self.what = what
        self._list_fn = list_fn
        self._sink = sink
        self._namespace = scope
        self._kwargs = list_kwargs
        self._watch_timeout = watch_timeout
        self._resync_period = resync_period
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]

    def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                version = self._relist()
                backoff = 0.5
                self._watch_from(version)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning(
                    "watch of %s failed (%s); relisting in %.1fs",
                    self.what,
                    _describe(exc),
                    backoff,
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _relist(self) -> str:
        response = self._list_fn(**self._kwargs, _preload_content=False)
        body = json.loads(response.data)
        self._sink.replace(body.get("items") or [], self._namespace)
        self.synced.set()
        version: str = body["metadata"]["resourceVersion"]
        log.info(
            "listed %d %s in %s",
            len(body.get("items") or []),
            self.what,
            self._namespace or "all namespaces",
        )
        return version

    def _watch_from(self, version: str) -> None:
        deadline = time.monotonic() + self._resync_period
        while not self._stopping.is_set() and time.monotonic() < deadline:
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._list_fn,
                **self._kwargs,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,
                _request_timeout=self._watch_timeout + 30,
            ):
                raw: Obj = event.get("raw_object") or {}
                kind = event.get("type", "")
                if kind == "ERROR":
                    raise RuntimeError(f"watch error event: {raw.get('message', raw)}")
                version = (raw.get("metadata") or {}).get("resourceVersion", version)
                if kind != "BOOKMARK":
                    self._sink.apply(kind, raw)
                if self._stopping.is_set():
                    return


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__} {status}" if status else f"{type(exc).__name__}: {exc}"


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client from the given kubeconfig, or the pod's service account when None."""
    if kubeconfig:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        return api
    configuration = client.Configuration()
    config.load_incluster_config(  # type: ignore[no-untyped-call]
        client_configuration=configuration
    )
    return client.ApiClient(configuration)


class Watchers:
    """All reflectors of one gateway: three resources for each watched namespace (or all), and
    the slices of the gateway's own Service (``peers``) when its namespace is not watched."""

    def __init__(
        self, api: client.ApiClient, namespaces: list[str], keys: KeyTable, routes: RoutingTable,
        peers: tuple[str, str] | None = None,
    ) -> None:
        custom = client.CustomObjectsApi(api)
        discovery = client.DiscoveryV1Api(api)
        # Only the slices of kuberank's Services (the EndpointSlice controller copies the
        # Service's labels onto its slices), not every Service's of the cluster; and never one
        # mirrored from an Endpoints object, whose addresses whoever may write Endpoints in the
        # namespace chooses (the `edit` role of clusters from before 1.22 still may): a
        # selector-less Service of the model's name and hand-written Endpoints would send a
        # tenant's requests to any pod IP, another tenant's runtime included.
        slice_filter = {"label_selector": f"{SERVICE_NAME_LABEL},{MANAGED_BY_LABEL}={MANAGED_BY},"
                                          f"{SLICE_MANAGER_LABEL}!={MIRRORED_SLICE_MANAGER}"}
        self.reflectors: list[Reflector] = []
        scopes: list[str | None] = list(namespaces) or [None]
        for ns in scopes:
            if ns is None:
                self._add(
                    "apikeys",
                    custom.list_cluster_custom_object,
                    ApiKeySink(keys),
                    None,
                    group=GROUP,
                    version=VERSION,
                    plural=APIKEY_PLURAL,
                )
                self._add(
                    "rerankmodels",
                    custom.list_cluster_custom_object,
                    ModelSink(routes),
                    None,
                    group=GROUP,
                    version=VERSION,
                    plural=RERANKMODEL_PLURAL,
                )
                self._add(
                    "endpointslices",
                    discovery.list_endpoint_slice_for_all_namespaces,
                    SliceSink(routes),
                    None,
                    **slice_filter,
                )
            else:
                self._add(
                    "apikeys",
                    custom.list_namespaced_custom_object,
                    ApiKeySink(keys),
                    ns,
                    group=GROUP,
                    version=VERSION,
                    namespace=ns,
                    plural=APIKEY_PLURAL,
                )
                self._add(
                    "rerankmodels",
                    custom.list_namespaced_custom_object,
                    ModelSink(routes),
                    ns,
                    group=GROUP,
                    version=VERSION,
                    namespace=ns,
                    plural=RERANKMODEL_PLURAL,
                )
                self._add(
                    "endpointslices",
                    discovery.list_namespaced_endpoint_slice,
                    SliceSink(routes),
                    ns,
                    namespace=ns,
                    **slice_filter,
                )

        if peers is not None:
            # The gateway's own Service (the chart's, not kuberank-managed): its slices alone.
            self._add(
                "gateway endpointslices",
                discovery.list_namespaced_endpoint_slice,
                SliceSink(routes, pool="peers"),
                peers[0],
                namespace=peers[0],
                label_selector=f"{SERVICE_NAME_LABEL}={peers[1]}",
            )

    def _add(self, what: str, fn: ListFn, sink: Sink, ns: str | None, **kwargs: Any) -> None:
        self.reflectors.append(Reflector(what, fn, sink, ns, **kwargs))

    def start(self) -> None:
        for reflector in self.reflectors:
            reflector.start()

    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    def stop(self) -> None:
        for reflector in self.reflectors:
            reflector.stop()
