"""Schemathesis drives the real runtime and the real gateway from their own /openapi.json:
generated requests, valid and not, to every operation, plus unsupported methods and requests
without a key. No answer may be a 5xx, each must be one the document declares (status, content
type, headers, body schema), a body the schema refuses must be refused, and the gateway must
refuse a request without its key.

Not required: that every body the schema admits is served. A query of only combining marks
or format characters passes the schema's pattern and tokenizes to nothing with a BERT
vocabulary (a 422 `empty_query` the pattern cannot foresee for every vocabulary), and a body's
`model` may contradict the one the path names (`/models/{model}/rerank`: 422 `model_mismatch`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gatewayobjects
import httpx
import pytest
from kuberank.crd.keys import generate_key
from localcluster import free_port
from polling import wait_for
from serverkit import Server, running

pytestmark = pytest.mark.runtime

BIN = Path(sys.executable).parent
KEY = generate_key()


def fuzz(base_url: str, workdir: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    """One schemathesis run, seeded and without an example database: the same requests each
    time (the answers can still differ in timing, never in kind). Its cache goes in
    ``workdir``."""
    return subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{base_url}/openapi.json",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", "40", "--seed", "20261128", "--generation-database", "none",
         "--request-timeout", "120",  # a loaded CI machine: slow is not wrong
         *headers],
        capture_output=True, text=True, timeout=600, cwd=workdir,
    )


def verdict(run: subprocess.CompletedProcess[str]) -> str:
    return f"schemathesis exited {run.returncode}:\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"


@pytest.fixture(scope="module")
def runtime(tiny_model: Path) -> Iterator[Server]:
    with running(tiny_model, "--served-name", "tiny") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(runtime: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway that knows one key and one model, served by ``runtime``, from a file of the
    objects it would otherwise watch."""
    objects_file = gatewayobjects.write(
        tmp_path_factory.mktemp("gateway") / "objects.yaml",
        gatewayobjects.one_model(KEY, "tiny", runtime.port, namespace="fuzz"))
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "kuberank-gateway"), "--objects-file", str(objects_file),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        assert proc.poll() is None, f"the gateway exited with {proc.returncode}"
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("the gateway ready", serving)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_runtime_answers_every_generated_request_as_its_document_says(
    runtime: Server, tmp_path: Path,
) -> None:
    run = fuzz(runtime.url, tmp_path)
    assert run.returncode == 0, verdict(run)
    assert runtime.proc.poll() is None


def test_the_gateway_answers_every_generated_request_as_its_document_says(
    gateway: str, tmp_path: Path,
) -> None:
    run = fuzz(gateway, tmp_path, "--header", f"Authorization: Bearer {KEY}")
    assert run.returncode == 0, verdict(run)
