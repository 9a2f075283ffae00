"""docs/troubleshooting.md names every error code a client can get and every pod problem the
operator reports, so adding one without documenting it fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


def _pod_problems() -> set[str]:
    pods = (REPO / "operator" / "kuberank" / "operator" / "status" / "pods.py").read_text()
    return set(re.findall(r'PodProblem\(\s*"([A-Za-z]+)"', pods))


def test_sources_were_read() -> None:
    assert {"queue_full", "invalid_api_key", "client_closed_request"} <= _codes()
    assert {"InsufficientGPU", "FetchFailed"} <= _pod_problems()


@pytest.mark.parametrize("code", sorted(_codes() - {"internal_error"}))
def test_every_error_code_is_explained(code: str) -> None:
    assert f"`{code}`" in DOC


@pytest.mark.parametrize("reason", sorted(_pod_problems()))
def test_every_pod_problem_is_explained(reason: str) -> None:
    assert f"`{reason}`" in DOC
