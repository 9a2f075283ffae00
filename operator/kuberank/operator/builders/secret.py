"""The Secret that holds an ApiKey's plain key."""

from __future__ import annotations

import base64
from typing import Any

from kuberank.crd.apikey import SECRET_FIELD, secret_name
from kuberank.operator.builders.meta import Owner, base_labels

APIKEY_LABEL = "kuberank.io/apikey"


def build_secret(owner: Owner, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(owner.name),
            "namespace": owner.namespace,
            "labels": {
                **base_labels(),
                APIKEY_LABEL: owner.name,
            },
            "ownerReferences": [owner.reference()],
        },
        "data": {SECRET_FIELD: base64.b64encode(key.encode()).decode()},
    }


def key_from_secret(secret: dict[str, Any] | None) -> str | None:
    """The plain key stored in a Secret, or None when absent or unreadable."""
    if not secret:
        return None
    raw = (secret.get("data") or {}).get(SECRET_FIELD)
    if not raw:
        return None
    try:
        key = base64.b64decode(raw, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return key or None
