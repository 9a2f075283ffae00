"""docs/troubleshooting.md names every error code a client can get, every pod problem the
operator reports and every reason a model or key is not well, so adding one without documenting
it fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kuberank.crd import reasons as shared

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "troubleshooting.md").read_text()
SOURCES = [*(REPO / "runtime" / "kuberank" / "protocol").glob("*.py"),
           *(REPO / "runtime" / "kuberank" / "runtime").glob("*.py"),
           *(REPO / "gateway" / "kuberank" / "gateway").glob("*.py")]


def _codes() -> set[str]:
    text = "\n".join(path.read_text() for path in SOURCES)
    return set(re.findall(r'\bcode="([a-z_]+)"', text)) | set(
        re.findall(r'default_code = "([a-z_]+)"', text))


# A reason is written as a literal or as a constant of crd.reasons (the gateway reads those).
REASON = r'(?:"(\w+)"|reasons\.([A-Z_]+))'


def _reason(literal: str, constant: str) -> str:
    return literal or str(getattr(shared, constant))


def _pod_problems() -> set[str]:
    pods = (REPO / "operator" / "kuberank" / "operator" / "status" / "pods.py").read_text()
    return {_reason(*found) for found in re.findall(r"PodProblem\(\s*" + REASON, pods)}


# Reasons of conditions that say all is well: nothing to troubleshoot.
HEALTHY = {"AllReplicasReady", "MinimumReplicasAvailable", "AsExpected", "RolloutComplete",
           "Valid"}


def _unwell_reasons() -> set[str]:
    """Reasons of a RerankModel's conditions and of an ApiKey's ``Active`` that are not
    ``HEALTHY``, and why the operator wrote nothing of a model (``Blocked``)."""
    status = REPO / "operator" / "kuberank" / "operator" / "status"
    model = (status / "rerankmodel.py").read_text()
    key = (status / "apikey.py").read_text()
    handlers = (REPO / "operator" / "kuberank" / "operator" / "handlers"
                / "rerankmodel.py").read_text()
    cond = r'Cond\(\s*"(\w+)",\s*"\w+",\s*' + REASON
    reasons = {_reason(*found) for _, *found in re.findall(cond, model)}
    reasons |= {_reason(*found) for kind, *found in re.findall(cond, key) if kind == "Active"}
    reasons |= {_reason(*found) for found in re.findall(r"Blocked\(" + REASON, handlers)}
    return reasons - HEALTHY


def test_sources_were_read() -> None:
    assert {"queue_full", "invalid_api_key", "client_closed_request"} <= _codes()
    assert {"InsufficientGPU", "ClaimNotReady", "Unschedulable", "FetchFailed"} <= _pod_problems()
    assert {"RollingOut", "ServedNameTaken", "InvalidSpec", "Expired", "AliasShadowed",
            "NoReplicasReady"} <= _unwell_reasons()


@pytest.mark.parametrize("code", sorted(_codes()))
def test_every_error_code_is_explained(code: str) -> None:
    assert f"`{code}`" in DOC


@pytest.mark.parametrize("reason", sorted(_pod_problems()))
def test_every_pod_problem_is_explained(reason: str) -> None:
    assert f"`{reason}`" in DOC


@pytest.mark.parametrize("reason", sorted(_unwell_reasons()))
def test_every_reason_a_model_or_key_is_not_well_is_explained(reason: str) -> None:
    assert f"`{reason}`" in DOC
