"""The Secret that holds an ApiKey's plain key."""

from __future__ import annotations

import base64
from typing import Any

from kuberank.crd.apikey import SECRET_FIELD, secret_name
from kuberank.operator.builders.meta import Owner, base_labels

APIKEY_LABEL = "kuberank.io/apikey"
# The kuberank.io/rotate value a key was minted for. The Secret is written before the status
# publishes the key, so an operator stopped in between finds the key it minted for that very
# rotation and publishes it, rather than minting another that clients have not read yet.
MINTED_FOR_ANNOTATION = "kuberank.io/minted-for-rotation"


def build_secret(owner: Owner, key: str, rotation: str | None = None) -> dict[str, Any]:
    """The Secret holding ``key``; ``rotation``: the kuberank.io/rotate value it answers."""
    metadata: dict[str, Any] = {
        "name": secret_name(owner.name),
        "namespace": owner.namespace,
        "labels": secret_labels(owner),
        "ownerReferences": [owner.reference()],
    }
    if rotation is not None:
        metadata["annotations"] = {MINTED_FOR_ANNOTATION: rotation}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {SECRET_FIELD: base64.b64encode(key.encode()).decode()},
    }


def secret_labels(owner: Owner) -> dict[str, str]:
    """A key Secret's labels: kuberank's own and its ApiKey's name, which the operator's watch
    of key Secrets selects by."""
    return {**base_labels(), APIKEY_LABEL: owner.name}


def labels_taken_off(secret: dict[str, Any], owner: Owner) -> dict[str, str]:
    """Those of ``secret_labels`` someone removed or changed on the live Secret. Without them
    the Secret leaves the operator's watch: its deletion or a key written into it would go
    unanswered until the next rotation."""
    live = (secret.get("metadata") or {}).get("labels") or {}
    return {k: v for k, v in secret_labels(owner).items() if live.get(k) != v}


def minted_for(secret: dict[str, Any] | None) -> str | None:
    """The rotation the Secret's key was minted for, if the operator minted it for one."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(MINTED_FOR_ANNOTATION)
    return value if isinstance(value, str) else None


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
