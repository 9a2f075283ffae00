"""ApiKey conditions: Active, Expired, Disabled, evaluated against the clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kuberank.crd.apikey import ApiKeySpec
from kuberank.crd.common import timestamp
from kuberank.crd.rerankmodel import aliases_of, served_name
from kuberank.operator.status.conditions import Cond, stamp


def seconds_until_expiry(spec: ApiKeySpec, now: datetime) -> float | None:
    """When the conditions next change by themselves; None if never."""
    if spec.expires_at is None or spec.expired(now):
        return None
    return (spec.expires_at - now).total_seconds()


def expiry_flipped(spec: ApiKeySpec, status: dict[str, Any], now: datetime) -> bool:
    """Whether the published Expired condition no longer tells the truth at ``now`` (a key not
    yet published has nothing to flip: its first status comes from the spec handler)."""
    if not status.get("keyId"):
        return False
    said = next((c.get("status") for c in status.get("conditions") or []
                 if c.get("type") == "Expired"), None)
    return said is not None and (said == "True") != spec.expired(now)


def unserved_models(spec: ApiKeySpec, models: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names in ``spec.models`` that no model of the key's namespace serves, by its served
    name or an alias (``models``: those RerankModel objects; one being deleted serves none).
    Not an error (a key may come before its model), but a mistyped name would otherwise show
    only as clients' 404s."""
    served = {name for model in models if not (model.get("metadata") or {}).get(
        "deletionTimestamp") for name in (served_name(model), *aliases_of(model))}
    return [name for name in spec.models if name != "*" and name not in served]


def unserved_message(names: list[str], namespace: str) -> str:
    listed = ", ".join(repr(n) for n in names)
    return (f"spec.models names {listed}, which no RerankModel in namespace {namespace} serves "
            "(yet): requests for it are answered 404 until one does. A typo?")


def _conditions(spec: ApiKeySpec, now: datetime, minted: bool,
                blocked: tuple[str, str] | None = None) -> list[Cond]:
    expired = spec.expired(now)
    until = f" until {timestamp(spec.expires_at)}" if spec.expires_at else ""
    if blocked is not None:
        active = Cond("Active", "False", *blocked)
    elif not minted:
        active = Cond("Active", "False", "Pending", "The key has not been generated yet.")
    elif spec.disabled:
        active = Cond("Active", "False", "Disabled", "spec.disabled is true; set it to false.")
    elif expired:
        active = Cond("Active", "False", "Expired", "The key expired; move spec.expiresAt.")
    else:
        active = Cond("Active", "True", "Valid", f"The gateway accepts this key{until}.")
    expired_c = (
        Cond("Expired", "True", "PastExpiry", f"The key is no longer valid ({until.strip()}).")
        if expired
        else Cond("Expired", "False", "NotExpired", f"Valid{until or ' with no expiry'}.")
    )
    disabled_c = (
        Cond("Disabled", "True", "DisabledBySpec", "spec.disabled is true.")
        if spec.disabled
        else Cond("Disabled", "False", "Enabled", "spec.disabled is false.")
    )
    return [active, expired_c, disabled_c]


def compute_status(
    spec: ApiKeySpec,
    generation: int,
    key_id: str | None,
    digest: str | None,
    secret_name: str,
    rotation: str | None,
    previous: dict[str, Any] | None,
    now: datetime,
    blocked: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The whole ApiKey status; never contains the key itself. ``blocked`` (reason, message)
    says why no key could be stored: an object this ApiKey does not control holds its
    Secret's name (``NameConflict``), or the API server refused the Secret (``ChildRefused``)."""
    previous = previous or {}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "keyId": key_id,
        "digest": digest,
        "secretName": secret_name,
        "rotation": rotation,
        "conditions": stamp(
            _conditions(spec, now, key_id is not None, blocked), previous.get("conditions"), now,
            generation
        ),
    }
    return {k: v for k, v in status.items() if v is not None}
