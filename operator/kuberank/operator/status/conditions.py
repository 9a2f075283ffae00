"""Condition lists computed whole each time, keeping lastTransitionTime stable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kuberank.crd.common import timestamp


@dataclass(frozen=True)
class Cond:
    """A condition before it is stamped with a transition time."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


def stamp(
    wanted: list[Cond],
    previous: list[dict[str, Any]] | None,
    now: datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """The wire form of `wanted`; lastTransitionTime moves only where status changed."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for cond in wanted:
        old = before.get(cond.type)
        same = old is not None and old.get("status") == cond.status
        when = old.get("lastTransitionTime") if same and old else None
        item: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": when or timestamp(now),
        }
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


def find(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def transitions(
    previous: list[dict[str, Any]] | None, current: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Conditions whose status or reason differ from before (worth a Kubernetes Event)."""
    out = []
    for cond in current:
        old = find(previous, cond["type"])
        if old is None or (old.get("status"), old.get("reason")) != (
            cond["status"],
            cond["reason"],
        ):
            out.append(cond)
    return out
