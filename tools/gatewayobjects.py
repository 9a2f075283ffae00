"""What a kuberank-gateway reads from ``--objects-file`` instead of watching a cluster: one
ApiKey that may use every model of its namespace, one RerankModel, and the EndpointSlice of the
runtimes serving it. For tests and benchmarks that run the gateway beside runtimes on loopback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kuberank.crd.keys import digest_secret, parse_key


def one_model(key: str, model: str, port: int, addresses: Sequence[str] = ("127.0.0.1",),
              namespace: str = "local") -> list[dict[str, Any]]:
    """``key`` (a whole ``kr_…`` key) for ``model``, served on ``port`` at each address."""
    parsed = parse_key(key)
    assert parsed is not None, "not a kuberank key"
    meta = {"namespace": namespace}
    return [
        {"kind": "ApiKey", "metadata": {**meta, "name": "local"}, "spec": {"models": ["*"]},
         "status": {"keyId": parsed.key_id, "digest": digest_secret(parsed.secret)}},
        {"kind": "RerankModel", "metadata": {**meta, "name": model}, "spec": {}},
        {"kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {**meta, "name": f"rrm-{model}-1",
                      "labels": {"kubernetes.io/service-name": f"rrm-{model}"}},
         "ports": [{"name": "http", "port": port}],
         "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]},
    ]


def write(path: Path, objects: list[dict[str, Any]]) -> Path:
    """The objects as the multi-document YAML file the gateway reads."""
    path.write_text(yaml.safe_dump_all(objects))
    return path
