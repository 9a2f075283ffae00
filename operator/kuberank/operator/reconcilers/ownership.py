"""Children are written only over objects their resource already controls, or none.

Server-side apply with force takes any object that carries a child's name: a user's Secret
``<key>-key`` or Service ``rrm-<model>`` would be rewritten, given our owner reference, and then
garbage-collected with the resource. So each name is looked up first, and one held by anything
else stops the reconcile before a single child is written. The one exception is an object an
earlier resource of the same kind and name left behind (``kubectl delete --cascade=orphan``, an
orphaning prune): kuberank's own labels for this very resource and no controller. It is taken
back, as a Deployment adopts its ReplicaSets: recreating a model over its running pods keeps
them serving, and a recreated ApiKey keeps the key its clients hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kuberank.crd.common import MANAGED_BY_LABEL
from kuberank.operator.builders.meta import MANAGED_BY, MODEL_LABEL, Owner
from kuberank.operator.builders.secret import APIKEY_LABEL
from kuberank.operator.kube import Kube, Ref

# The label that names, on each of its children, the resource of a kind that made it.
OWNER_LABELS = {"RerankModel": MODEL_LABEL, "ApiKey": APIKEY_LABEL}


class NameConflictError(Exception):
    """A child's name is taken by an object its resource does not control.

    ``predecessor`` is true when that object belongs to an earlier resource of the same kind and
    name (deleted and created again): garbage collection removes it within seconds. ``kinds``
    are the kinds of the objects in the way.
    """

    def __init__(self, message: str, *, predecessor: bool,
                 kinds: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.predecessor = predecessor
        self.kinds = kinds


def controller_of(live: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference marked as controller, if any (pure)."""
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def left_behind_for(live: dict[str, Any], owner: Owner) -> bool:
    """Whether ``live`` is a child an earlier ``owner.kind`` named ``owner.name`` made and
    left without a controller (pure)."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    label = OWNER_LABELS.get(owner.kind)
    return (controller_of(live) is None and label is not None
            and labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(label) == owner.name)


def conflict(kind: str, live: dict[str, Any], owner: Owner) -> NameConflictError | None:
    """Why ``live`` (a ``kind``) may not be written as ``owner``'s child, or None (pure)."""
    controller = controller_of(live)
    if controller is not None and controller.get("uid") == owner.uid:
        return None
    if left_behind_for(live, owner):
        return None  # taken back: the apply makes ``owner`` its controller
    name = live["metadata"]["name"]
    if controller is not None and (controller.get("kind"), controller.get("name")) == (
            owner.kind, owner.name):
        return NameConflictError(
            f"{kind} {name} still belongs to the previous {owner.kind} {owner.name!r}, which is "
            "being deleted; retrying", predecessor=True, kinds=frozenset({kind}))
    held_by = (f"{controller.get('kind')} {controller.get('name')!r}" if controller is not None
               else "nobody (it was created by hand or by another tool)")
    return NameConflictError(
        f"{kind} {name} already exists and is controlled by {held_by}; kuberank does not take "
        f"over objects it did not create: rename or delete that {kind}, or give this "
        f"{owner.kind} another name", predecessor=False, kinds=frozenset({kind}))


def claimed(kube: Kube, ref: Ref, owner: Owner) -> dict[str, Any] | None:
    """The object at ``ref`` if it is ``owner``'s, None if there is none; NameConflictError
    when someone else holds the name."""
    live = kube.get(ref)
    if live is not None and (found := conflict(ref.kind, live, owner)) is not None:
        raise found
    return live


def check_names(kube: Kube, manifests: Iterable[dict[str, Any]], owner: Owner) -> None:
    """Raise NameConflictError when any manifest's name is held by an object not ``owner``'s,
    naming every such object (one at a time, each took a retry round to learn of)."""
    found = []
    for manifest in manifests:
        live = kube.get(ref := Ref.of(manifest))
        if live is not None and (refused := conflict(ref.kind, live, owner)) is not None:
            found.append(refused)
    if len(found) == 1:
        raise found[0]
    if found:
        raise NameConflictError(" Also: ".join(map(str, found)),
                                predecessor=all(f.predecessor for f in found),
                                kinds=frozenset().union(*(f.kinds for f in found)))
