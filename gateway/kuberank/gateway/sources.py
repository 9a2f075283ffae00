"""Where the tables' contents come from: the API server (watch), or a fixed file of objects.

The file form serves ApiKey, RerankModel and EndpointSlice manifests exactly as the API server
would return them, through the same parsing, for benchmarks and local runs without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml
from kuberank.gateway.keytable import KeyTable
from kuberank.gateway.routing import RoutingTable
from kuberank.gateway.scaler import KubeScaler, Scaler
from kuberank.gateway.watch import ApiKeySink, ModelSink, SliceSink, Watchers, api_client


class Source(Protocol):
    def start(self, keys: KeyTable, routes: RoutingTable) -> None: ...

    def synced(self) -> bool: ...

    def stop(self) -> None: ...

    def scaler(self) -> Scaler | None:
        """What wakes ``scaleToZero`` models, records their requests and reports the load of
        autoscaled ones; None when this source cannot write (a fixed file of objects)."""
        ...


class KubeSource:
    """Watches the API server (the normal mode)."""

    def __init__(self, kubeconfig: str | None, namespaces: list[str],
                 peers: tuple[str, str] | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._namespaces = namespaces
        self._peers = peers
        self._watchers: Watchers | None = None
        self._scaler: KubeScaler | None = None

    def start(self, keys: KeyTable, routes: RoutingTable) -> None:
        api = api_client(self._kubeconfig)
        self._scaler = KubeScaler(api)
        self._watchers = Watchers(api, self._namespaces, keys, routes, self._peers)
        self._watchers.start()

    def scaler(self) -> Scaler | None:
        return self._scaler

    def synced(self) -> bool:
        return self._watchers is not None and self._watchers.synced()

    def stop(self) -> None:
        if self._watchers is not None:
            self._watchers.stop()


class StaticSource:
    """A fixed list of objects, loaded once."""

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self._objects = list(objects)
        self._started = False

    @classmethod
    def from_file(cls, path: str) -> StaticSource:
        docs = yaml.safe_load_all(Path(path).read_text())
        objects: list[Mapping[str, Any]] = []
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "List":
                objects.extend(doc.get("items") or [])
            elif isinstance(doc, dict):
                objects.append(doc)
        return cls(objects)

    def start(self, keys: KeyTable, routes: RoutingTable) -> None:
        def of(kind: str) -> list[Mapping[str, Any]]:
            return [o for o in self._objects if o.get("kind") == kind]

        ApiKeySink(keys).replace(of("ApiKey"), None)
        ModelSink(routes).replace(of("RerankModel"), None)
        SliceSink(routes).replace(of("EndpointSlice"), None)
        self._started = True

    def synced(self) -> bool:
        return self._started

    def scaler(self) -> Scaler | None:
        return None

    def stop(self) -> None:
        self._started = False
