"""Tell from ``metadata.managedFields`` whether someone else edited a child's spec, and build
the replacement that undoes it. Pure.

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
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # written by `kubectl rollout restart`


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


def data_edited_since_ours(obj: Mapping[str, Any], manager: str, key: str | None = None,
                           ) -> bool:
    """Whether another writer set a Secret's ``data`` (its ``key`` when given) at or after the
    operator's last write (``kubectl edit secret``, a GitOps tool), as opposed to the event of
    our own write."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    ours = max((str(e.get("time") or "") for e in entries if e.get("manager") == manager),
               default="")

    def sets_it(entry: Mapping[str, Any]) -> bool:
        data = (entry.get("fieldsV1") or {}).get("f:data")
        return data is not None and (key is None or f"f:{key}" in data)

    return any(e.get("manager") != manager and sets_it(e)
               and str(e.get("time") or "") >= ours for e in entries)


def needs_repair(edits: frozenset[Edit], already_repaired: frozenset[Edit]) -> bool:
    """True when an edit is present that no earlier repair has answered."""
    return bool(edits - already_repaired)


def reverted(live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """``live`` with the operator's spec and labels put back (pure), for a full replace.

    Server-side apply cannot undo everything another writer did: fields it added stay theirs,
    and a list item it re-keyed (a Service port with another number) collides with ours. A
    replace of the whole spec does, guarded by the live resourceVersion; other writers' labels
    and annotations are kept.
    """
    meta = dict(live["metadata"])
    meta.pop("managedFields", None)
    meta["labels"] = {**(meta.get("labels") or {}), **desired["metadata"].get("labels", {})}
    return {"apiVersion": desired["apiVersion"], "kind": desired["kind"], "metadata": meta,
            "spec": _with_restart_stamp(desired["spec"], live.get("spec") or {})}


def _with_restart_stamp(spec: dict[str, Any], live_spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` keeping a ``kubectl rollout restart`` stamp from the live pod template.

    A restart is an operation, not a configuration change: dropping its stamp would roll the
    pods a second time to undo it.
    """
    live_meta = (live_spec.get("template") or {}).get("metadata") or {}
    stamp = (live_meta.get("annotations") or {}).get(RESTARTED_AT)
    if stamp is None or "template" not in spec:
        return spec
    template = dict(spec["template"])
    meta = dict(template.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), RESTARTED_AT: stamp}
    template["metadata"] = meta
    return {**spec, "template": template}
