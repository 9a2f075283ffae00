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
        assert found is not None and not found.predecessor and found.kinds == {"Service"}
        assert "Service rrm-bge already exists and is controlled by nobody" in str(found)


def test_an_object_of_another_controller_is_refused_and_names_it() -> None:
    found = conflict("Service", live(ref("u-9", kind="Deployment", name="web")), OWNER)
    assert found is not None and not found.predecessor
    assert "Deployment 'web'" in str(found)


def test_the_child_of_a_deleted_namesake_is_waited_for() -> None:
    found = conflict("Service", live(ref("u-0")), OWNER)
    assert found is not None and found.predecessor


def labelled(labels: dict[str, str], *refs: dict[str, Any]) -> dict[str, Any]:
    obj = live(*refs)
    obj["metadata"]["labels"] = labels
    return obj


OURS = {"app.kubernetes.io/managed-by": "kuberank", "kuberank.io/model": "bge"}


def test_a_child_an_earlier_namesake_left_behind_is_taken_back() -> None:
    """``kubectl delete --cascade=orphan`` and recreate (a new servedName, an orphaning
    prune): the model was stuck NameConflict over its own running pods, the recreated key
    over the Secret its clients' key is in."""
    assert conflict("Deployment", labelled(OURS), OWNER) is None
    assert conflict("Deployment", labelled(OURS, ref("u-0", controller=False)), OWNER) is None
    key_owner = Owner(kind="ApiKey", name="team", namespace="ns", uid="k-1")
    secret = labelled({"app.kubernetes.io/managed-by": "kuberank", "kuberank.io/apikey": "team"})
    assert conflict("Secret", secret, key_owner) is None


@pytest.mark.parametrize("labels", [
    {"app.kubernetes.io/managed-by": "kuberank", "kuberank.io/model": "other"},
    {"app.kubernetes.io/managed-by": "Helm", "kuberank.io/model": "bge"},
    {"kuberank.io/model": "bge"},
    {"app.kubernetes.io/managed-by": "kuberank", "kuberank.io/apikey": "bge"},
], ids=["another-models", "helms", "no-managed-by", "a-keys-label"])
def test_only_kuberanks_labels_for_this_very_resource_mark_a_child_left_behind(
    labels: dict[str, str],
) -> None:
    found = conflict("Service", labelled(labels), OWNER)
    assert found is not None and not found.predecessor


def test_a_controlled_object_with_our_labels_is_still_its_controllers() -> None:
    found = conflict("Service", labelled(OURS, ref("u-0")), OWNER)
    assert found is not None and found.predecessor  # the namesake's, until it is collected
    found = conflict("Service", labelled(OURS, ref("u-9", kind="Deployment", name="x")), OWNER)
    assert found is not None and not found.predecessor
