"""Shared fixtures: one real control plane per test session (tools/localcluster.py).

Kept small and generic on purpose; tier-specific fixtures live in tests/<tier>/conftest.py.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import localcluster  # lives in tools/, made importable just above


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localcluster.Cluster]:
    """Build the binaries if needed (a failed build fails the tests, never skips them), start
    etcd + apiserver + controller-manager + scheduler + kwok once, and stop them at the end."""
    try:
        bin_dir = localcluster.ensure_binaries()
        # Every kubectl and helm a test runs is the one built beside the control plane.
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        running = localcluster.start(tmp_path_factory.mktemp("cluster"), bin_dir)
    except localcluster.ClusterError as err:
        pytest.fail(f"local control plane unavailable: {err}", pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def kubeconfig(cluster: localcluster.Cluster) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """A kubernetes.client.ApiClient authenticated as cluster admin."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, ready for pods (its `default` ServiceAccount
    exists, else pod admission rejects them); deleted afterwards without waiting, unless the
    test deleted it itself."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _wait_for_service_account(core, name)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as err:
            if err.status != 404:  # 404: the test deleted it
                raise


def _wait_for_service_account(core: client.CoreV1Api, ns: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", ns)
            return
        except ApiException as err:
            if err.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture
def settings_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[Callable[[list[str]], object], list[str], dict[str, str]], str]:
    """Run a CLI's settings parser on flags and KUBERANK_* variables that it must refuse; assert
    exit status 2 and return the last line it wrote to stderr."""

    def refuse(parse: Callable[[list[str]], object], argv: list[str], env: dict[str, str]) -> str:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as exited:
            parse(argv)
        assert exited.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    return refuse
