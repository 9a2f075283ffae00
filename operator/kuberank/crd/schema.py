"""Pydantic JSON schema → Kubernetes structural OpenAPI v3 schema.

The API server accepts only a subset of JSON schema (no $ref, no nullable unions, no titles,
properties and additionalProperties never together). This module rewrites pydantic's output
into that subset and keeps what matters: descriptions, defaults, enums, bounds, patterns and the
x-kubernetes-* extensions the models declare.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "anyOf",
}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of a model, with nested models inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.pop("$defs", {})
    return _convert(raw, defs)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a $ref, letting the referring node's own keys (description, default) win."""
    if "$ref" not in node:
        return node
    target = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
    target.update({k: v for k, v in node.items() if k != "$ref"})
    return target


def _drop_null(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None` becomes X: optional fields are simply absent in Kubernetes objects."""
    options = node.get("anyOf")
    if not options or node.get("x-kubernetes-int-or-string"):
        return node
    real = [o for o in options if o.get("type") != "null"]
    if len(real) != 1:
        raise ValueError(f"unions are not structural: {options}")
    merged = {k: v for k, v in node.items() if k != "anyOf"}
    inner = dict(real[0])
    inner.update(merged)
    if inner.get("default", 0) is None:
        del inner["default"]
    return inner


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _drop_null(_resolve(node, defs))
    node = _resolve(node, defs)
    if node.get("default", 0) is None:
        del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEEP:
            continue
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items",) or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _convert(value, defs)
        elif key == "additionalProperties":
            continue  # `false` from extra="forbid" is implied by pruning
        else:
            out[key] = value
    if "properties" in out:
        out["type"] = "object"
    free_form = "properties" not in out and "additionalProperties" not in out
    if out.get("type") == "object" and free_form:
        out.setdefault("x-kubernetes-preserve-unknown-fields", True)
    return out
