"""Generate crds/*.yaml from the pydantic models (`kuberank-crds [--out DIR ...] [--check]`).

By default both copies are written: the top-level `crds/` and the Helm chart's `crds/` (Helm
installs CRDs only from the chart's own folder), so the two can never drift apart. `--check`
exits non-zero when a committed file differs from what the models produce, so CI catches a
model edit without a regenerated CRD.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from kuberank.crd import apikey, rerankmodel
from kuberank.crd.common import GROUP, VERSION
from kuberank.crd.schema import structural_schema
from pydantic import BaseModel

_READY = '.status.conditions[?(@.type=="Ready")]'


def _version(
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[dict[str, Any]],
    scale: bool,
    description: str,
    name_rules: list[dict[str, str]],
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    spec_schema = structural_schema(spec)
    status_schema = structural_schema(status)
    return {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": subresources,
        "additionalPrinterColumns": [
            *columns,
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "description": description,
                "required": ["spec"],
                # CEL may read metadata.name at the root only.
                "x-kubernetes-validations": name_rules,
                "properties": {
                    "apiVersion": {"type": "string", "description": "API version."},
                    "kind": {"type": "string", "description": "Kind."},
                    "metadata": {"type": "object"},
                    "spec": spec_schema,
                    "status": status_schema,
                },
            }
        },
    }


def _crd(
    kind: str, plural: str, singular: str, short: list[str], version: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # `kubectl get crd -l app.kubernetes.io/part-of=kuberank` finds them, as it finds the rest.
        "metadata": {"name": f"{plural}.{GROUP}",
                     "labels": {"app.kubernetes.io/part-of": "kuberank"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short,
                "categories": ["kuberank"],
            },
            "versions": [version],
        },
    }


def rerankmodel_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "Served", "type": "string", "jsonPath": ".status.servedName"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Status", "type": "string", "jsonPath": f"{_READY}.status"},
        # Shown by default: "False" alone does not say whether to wait or to act.
        {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
        {"name": "Last Request", "type": "date", "jsonPath": ".status.lastRequestTime",
         "priority": 1},
    ]
    version = _version(
        rerankmodel.RerankModelSpec,
        rerankmodel.RerankModelStatus,
        columns,
        scale=True,
        description="A cross-encoder reranker model served by kuberank-runtime pods.",
        name_rules=rerankmodel.NAME_RULES,
    )
    return _crd(
        rerankmodel.KIND, rerankmodel.PLURAL, rerankmodel.SINGULAR, rerankmodel.SHORT_NAMES, version
    )


def apikey_crd() -> dict[str, Any]:
    active = '.status.conditions[?(@.type=="Active")]'
    columns: list[dict[str, Any]] = [
        {"name": "Key ID", "type": "string", "jsonPath": ".status.keyId"},
        {"name": "Active", "type": "string", "jsonPath": f"{active}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{active}.reason"},
        # A string: kubectl shows a date column as an age, and a future one as <invalid>.
        {"name": "Expires", "type": "string", "jsonPath": ".spec.expiresAt"},
        {"name": "Last Used", "type": "date", "jsonPath": ".status.lastUsedTime"},
    ]
    version = _version(
        apikey.ApiKeySpec,
        apikey.ApiKeyStatus,
        columns,
        scale=False,
        description="A bearer key for the kuberank gateway; the key itself lives in a Secret.",
        name_rules=apikey.NAME_RULES,
    )
    return _crd(apikey.KIND, apikey.PLURAL, apikey.SINGULAR, apikey.SHORT_NAMES, version)


def rendered() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    docs = {
        f"{rerankmodel.PLURAL}.{GROUP}.yaml": rerankmodel_crd(),
        f"{apikey.PLURAL}.{GROUP}.yaml": apikey_crd(),
    }
    header = "# Generated by kuberank-crds from kuberank.crd models. Do not edit.\n"
    return {
        name: header + yaml.safe_dump(doc, sort_keys=False, width=100) for name, doc in docs.items()
    }


def default_outs() -> list[Path]:
    root = Path(__file__).resolve().parents[3]
    return [root / "crds", root / "charts" / "kuberank" / "crds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kuberank-crds", description=__doc__)
    parser.add_argument("--out", type=Path, action="append",
                        help="output directory (repeatable; default: crds/ and the chart's crds/)")
    parser.add_argument("--check", action="store_true", help="fail if files are out of date")
    args = parser.parse_args(argv)
    stale = []
    for out in args.out or default_outs():
        for name, text in rendered().items():
            path = out / name
            current = path.read_text() if path.exists() else None
            if current == text:
                continue
            if args.check:
                stale.append(str(path))
            else:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {path}")
    if stale:
        print("out of date (run kuberank-crds): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
