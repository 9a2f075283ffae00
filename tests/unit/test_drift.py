"""Recognising other writers' edits of a child's spec from its managedFields."""

from __future__ import annotations

from typing import Any

import pytest
from kuberank.operator.drift import (
    data_edited_since_ours,
    foreign_spec_edits,
    needs_repair,
    reverted,
)

pytestmark = pytest.mark.unit

OURS = "kuberank-operator"


def entry(manager: str, operation: str, fields: dict[str, Any], time: str = "t1",
          subresource: str | None = None) -> dict[str, Any]:
    out = {"manager": manager, "operation": operation, "time": time, "fieldsType": "FieldsV1",
           "fieldsV1": fields}
    if subresource:
        out["subresource"] = subresource
    return out


def obj(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "rrm-x", "managedFields": list(entries)}}


APPLIED = entry(OURS, "Apply", {"f:metadata": {}, "f:spec": {"f:replicas": {}}})
CONTROLLER = entry("kube-controller-manager", "Update", {"f:status": {}}, subresource="status")
REVISION = entry("kube-controller-manager", "Update", {"f:metadata": {"f:annotations": {}}})


def test_our_apply_status_writers_and_metadata_edits_are_not_drift() -> None:
    assert foreign_spec_edits(obj(APPLIED, CONTROLLER, REVISION), OURS) == frozenset()
    assert foreign_spec_edits({"metadata": {}}, OURS) == frozenset()


def test_kubectl_edits_and_scale_of_the_spec_are_drift() -> None:
    edited = entry("kubectl-edit", "Update", {"f:spec": {"f:template": {}}}, time="t2")
    scaled = entry("kubectl", "Update", {"f:spec": {"f:replicas": {}}}, subresource="scale")
    assert foreign_spec_edits(obj(APPLIED, edited, scaled), OURS) == {
        ("kubectl-edit", "Update", "", "t2"),
        ("kubectl", "Update", "scale", "t1"),
    }


def test_an_edit_is_repaired_once_and_again_only_when_it_changes() -> None:
    first = foreign_spec_edits(obj(entry("kubectl-patch", "Update", {"f:spec": {}}, "t2")), OURS)
    assert needs_repair(first, frozenset())
    assert not needs_repair(first, first)  # left-over fields we never set: no second repair
    later = foreign_spec_edits(obj(entry("kubectl-patch", "Update", {"f:spec": {}}, "t3")), OURS)
    assert needs_repair(later, first)
    assert not needs_repair(frozenset(), first)


def test_a_reverted_child_gets_our_spec_and_labels_and_keeps_everything_else() -> None:
    live = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "rrm-x", "namespace": "ns", "resourceVersion": "42",
                     "labels": {"team": "search", "kuberank.io/model": "edited"},
                     "annotations": {"note": "kept"}, "managedFields": [APPLIED]},
        "spec": {"ports": [{"name": "http", "port": 9999}], "clusterIP": "10.0.0.7"},
        "status": {},
    }
    desired = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "rrm-x", "namespace": "ns",
                            "labels": {"kuberank.io/model": "x"}},
               "spec": {"ports": [{"name": "http", "port": 8080}]}}
    out = reverted(live, desired)
    assert out["spec"] == desired["spec"]
    assert out["metadata"]["resourceVersion"] == "42"  # a concurrent change gets a 409
    assert out["metadata"]["labels"] == {"team": "search", "kuberank.io/model": "x"}
    assert out["metadata"]["annotations"] == {"note": "kept"}
    assert "managedFields" not in out["metadata"] and "status" not in out


def test_a_reverted_deployment_keeps_a_rollout_restart_stamp_and_nothing_else_foreign() -> None:
    stamp = {"kubectl.kubernetes.io/restartedAt": "2026-11-26T07:00:00Z"}
    live = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "rrm-x", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"replicas": 3, "template": {"metadata": {
                "labels": {"a": "b"}, "annotations": {**stamp, "sidecar": "injected"}}}}}
    desired = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "rrm-x", "namespace": "ns", "labels": {}},
               "spec": {"replicas": 1, "template": {"metadata": {
                   "labels": {"a": "b"}, "annotations": {"prometheus.io/scrape": "true"}}}}}
    out = reverted(live, desired)["spec"]
    assert out["replicas"] == 1
    assert out["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true", **stamp}
    assert desired["spec"]["template"]["metadata"]["annotations"] == {  # desired left untouched
        "prometheus.io/scrape": "true"}
    unstamped = {**live, "spec": {"replicas": 3}}
    assert reverted(unstamped, desired)["spec"] == desired["spec"]


def _secret(*entries: tuple[str, str, bool]) -> dict[str, Any]:
    return {"metadata": {"managedFields": [
        {"manager": m, "time": t, "fieldsV1": {"f:data": {}} if data else {"f:metadata": {}}}
        for m, t, data in entries]}}


def test_a_secret_whose_data_another_writer_set_after_ours_was_edited() -> None:
    ours = ("kuberank-operator", "2026-01-01T00:00:05Z", True)
    assert not data_edited_since_ours(_secret(ours), "kuberank-operator")
    assert data_edited_since_ours(
        _secret(ours, ("kubectl-patch", "2026-01-01T00:00:09Z", True)), "kuberank-operator")
    # an older foreign write we have since replaced, or a label someone added, is no edit
    assert not data_edited_since_ours(
        _secret(ours, ("kubectl-patch", "2026-01-01T00:00:01Z", True)), "kuberank-operator")
    assert not data_edited_since_ours(
        _secret(ours, ("kubectl-label", "2026-01-01T00:00:09Z", False)), "kuberank-operator")


def test_an_edit_of_one_data_key_is_told_from_another() -> None:
    """KeyChanged is about the key field only: a tool adding another data key changed no key."""
    ours = {"manager": "kuberank-operator", "time": "2026-01-01T00:00:05Z",
            "fieldsV1": {"f:data": {"f:api-key": {}}}}
    other = {"manager": "vault-agent", "time": "2026-01-01T00:00:09Z",
             "fieldsV1": {"f:data": {"f:ca.crt": {}}}}
    secret = {"metadata": {"managedFields": [ours, other]}}
    assert data_edited_since_ours(secret, "kuberank-operator")
    assert not data_edited_since_ours(secret, "kuberank-operator", "api-key")
    other["fieldsV1"] = {"f:data": {"f:api-key": {}, "f:ca.crt": {}}}
    assert data_edited_since_ours(secret, "kuberank-operator", "api-key")
