"""Tell from ``metadata.managedFields`` whether someone else edited a child's spec. Pure.

Children are written by server-side apply under one field manager. ``kubectl edit``, ``kubectl
scale``, ``kubectl set image`` or any other writer shows up as another manager owning fields
under ``spec`` (status writers use the ``status`` subresource and do not count). Each edit
stamps its entry's ``time``, so an edit is recognised once: a writer that added fields the
operator never sets keeps its entry after the repair, and that alone must not trigger another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Edit = tuple[str, str, str, str]  # manager, operation, subresource, time


def foreign_spec_edits(obj: Mapping[str, Any], manager: str) -> frozenset[Edit]:
    """Every other writer's claim on the object's spec, as (manager, operation, subresource,
    time)."""
    edits: set[Edit] = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        subresource = entry.get("subresource") or ""
        if entry.get("manager") == manager or subresource == "status":
            continue
        if "f:spec" in (entry.get("fieldsV1") or {}):
            edits.add((str(entry.get("manager")), str(entry.get("operation")), subresource,
                       str(entry.get("time"))))
    return frozenset(edits)


def needs_repair(edits: frozenset[Edit], already_repaired: frozenset[Edit]) -> bool:
    """True when an edit is present that no earlier repair has answered."""
    return bool(edits - already_repaired)
