"""What the operator's indexes keep of watched objects: what the status reads, and no more."""

from __future__ import annotations

from typing import Any

from kuberank.operator.status.pods import pod_problems
from kuberank.operator.status.rerankmodel import DeploymentState
from kuberank.operator.watched import deployment_facts, pod_facts, without_bookkeeping

MANAGED = [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {"f:replicas": {}}}}]


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "rrm-bge-1", "namespace": "ns", "uid": "u",
                     "labels": {"kuberank.io/model": "bge"}, "managedFields": MANAGED,
                     "deletionTimestamp": None, "ownerReferences": [{"uid": "rs"}]},
        "spec": {"nodeName": "gpu-1", "containers": [{"name": "runtime", "env": [{}] * 20}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                   "reason": "Unschedulable",
                                   "message": "0/3 nodes are available: 3 Insufficient "
                                              "nvidia.com/gpu."}]},
    }


def test_a_pod_keeps_what_its_problems_are_read_from() -> None:
    pod = _pod()
    kept = pod_facts(pod)
    assert pod_problems([kept], "nvidia.com/gpu") == pod_problems([pod], "nvidia.com/gpu")
    assert "containers" not in kept["spec"] and "managedFields" not in kept["metadata"]
    assert kept["spec"] == {"nodeName": "gpu-1"}


def test_a_deployment_keeps_its_generation_and_status() -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rrm-bge", "namespace": "ns", "generation": 4,
                     "managedFields": MANAGED},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "runtime"}]}}},
        "status": {"observedGeneration": 4, "replicas": 2, "readyReplicas": 1,
                   "conditions": [{"type": "Progressing", "status": "False",
                                   "reason": "ProgressDeadlineExceeded"}]},
    }
    kept = deployment_facts(deployment)
    assert DeploymentState.from_object(kept) == DeploymentState.from_object(deployment)
    assert set(kept) == {"metadata", "status"} and "managedFields" not in kept["metadata"]


def test_a_model_loses_only_what_the_api_server_and_kopf_keep_for_themselves() -> None:
    handled = "kuberank.io/last-handled-configuration"
    model = {"apiVersion": "kuberank.io/v1alpha1", "kind": "RerankModel",
             "metadata": {"name": "bge", "uid": "u", "managedFields": MANAGED,
                          "annotations": {handled: '{"spec": {}}', "team": "search"}},
             "spec": {"servedName": "bge-v2"}, "status": {"observedGeneration": 1}}
    kept = without_bookkeeping(model)
    assert kept["metadata"] == {"name": "bge", "uid": "u", "annotations": {"team": "search"}}
    assert (kept["spec"], kept["status"]) == (model["spec"], model["status"])
    assert handled in model["metadata"]["annotations"]  # the watched body is left as it was
    assert without_bookkeeping({"metadata": {"name": "x"}}) == {"metadata": {"name": "x"}}
