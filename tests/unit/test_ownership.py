"""ownership.conflict: which live objects a resource may write its children over."""

from __future__ import annotations

from typing import Any

import pytest
from kuberank.operator.builders.meta import Owner
from kuberank.operator.reconcilers.ownership import conflict

pytestmark = pytest.mark.unit

OWNER = Owner(kind="RerankModel", name="bge", namespace="ns", uid="u-1")


def live(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "rrm-bge", "ownerReferences": list(refs)}}


def ref(uid: str, kind: str = "RerankModel", name: str = "bge",
        controller: bool = True) -> dict[str, Any]:
    return {"kind": kind, "name": name, "uid": uid, "controller": controller}


def test_its_own_child_may_be_written() -> None:
    assert conflict("Service", live(ref("u-1")), OWNER) is None


def test_an_object_nobody_controls_is_refused_and_named() -> None:
    for obj in (live(), live(ref("u-1", controller=False))):
        found = conflict("Service", obj, OWNER)
        assert found is not None and not found.predecessor
        assert "Service rrm-bge already exists and is controlled by nobody" in str(found)


def test_an_object_of_another_controller_is_refused_and_names_it() -> None:
    found = conflict("Service", live(ref("u-9", kind="Deployment", name="web")), OWNER)
    assert found is not None and not found.predecessor
    assert "Deployment 'web'" in str(found)


def test_the_child_of_a_deleted_namesake_is_waited_for() -> None:
    found = conflict("Service", live(ref("u-0")), OWNER)
    assert found is not None and found.predecessor
