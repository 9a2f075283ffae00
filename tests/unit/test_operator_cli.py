"""kuberank-operator's flags and KUBERANK_* variables: parsed alike, refused in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from kuberank.operator.cli import parse_args

pytestmark = pytest.mark.unit

PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def test_metrics_from_flag_is_a_json_list_of_peers() -> None:
    settings = parse_args(["--metrics-from", json.dumps([PROMETHEUS])])
    assert settings.metrics_from == [PROMETHEUS]
    assert parse_args([]).metrics_from == []


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--metrics-from", "{"], {}, "argument --metrics-from: not JSON"),
        (["--metrics-from", "{}"], {}, "argument --metrics-from: must be a JSON list"),
        ([], {"KUBERANK_METRICS_FROM": '[{"namespace": "monitoring"}]'},
         "--metrics-from (KUBERANK_METRICS_FROM): item 0 must be a NetworkPolicyPeer"),
        ([], {"KUBERANK_STARTUP_TIMEOUT_S": "5"},
         "--startup-timeout-s (KUBERANK_STARTUP_TIMEOUT_S): Input should be greater than or "
         "equal to 60"),
        (["--metrics-port", "70000"], {},
         "--metrics-port (KUBERANK_METRICS_PORT): Input should be less than or equal to 65535"),
        (["--leader-elect"], {},
         "error: settings: --leader-elect (KUBERANK_LEADER_ELECT) needs --lease-namespace"),
        (["--leader-elect", "--lease-namespace", "ops", "--lease-seconds", "2"], {},
         "--lease-seconds (KUBERANK_LEASE_SECONDS): Input should be greater than or equal to 3"),
    ],
    ids=["flag-not-json", "flag-not-a-list", "env-not-a-peer", "env-out-of-range",
         "metrics-port-out-of-range", "lease-without-namespace", "lease-too-short"],
)
def test_bad_settings_exit_2_with_one_line_naming_the_setting(
    argv: list[str], env: dict[str, str], message: str, settings_refusal: Callable[..., str]
) -> None:
    error = settings_refusal(parse_args, argv, env)
    assert error.startswith("kuberank-operator: error: ") and message in error


def test_leader_election_is_off_unless_asked_and_reads_the_charts_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse_args([]).leader_elect is False
    for name, value in {"KUBERANK_LEADER_ELECT": "true", "KUBERANK_LEASE_NAMESPACE": "ops",
                        "KUBERANK_LEASE_NAME": "kr-kuberank-operator",
                        "KUBERANK_LEASE_SECONDS": "20", "KUBERANK_IDENTITY": "pod-a"}.items():
        monkeypatch.setenv(name, value)
    settings = parse_args([])
    assert (settings.leader_elect, settings.lease_namespace, settings.lease_name,
            settings.lease_seconds, settings.identity) == (
        True, "ops", "kr-kuberank-operator", 20, "pod-a")


def test_a_metrics_port_in_use_is_one_clear_line_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "kuberank.operator.cli", "--metrics-port", str(port),
             "--namespace", "x"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"kuberank-operator: cannot serve metrics on port {port}: Address already in use")


def test_kopf_lists_and_watches_other_kinds_through_server_side_label_selectors() -> None:
    import kopf
    from kopf._cogs.structs.references import Resource
    from kuberank.operator.cli import WATCH_SELECTORS, configure

    settings = kopf.OperatorSettings()
    configure(parse_args([]), settings)
    pods = Resource(group="", version="v1", plural="pods")
    assert list(settings.watching.label_selectors.collect(pods)) == [
        WATCH_SELECTORS["v1", "pods"]]
    models = Resource(group="kuberank.io", version="v1alpha1", plural="rerankmodels")
    assert list(settings.watching.label_selectors.collect(models)) == []  # every one of ours
    assert settings.watching.chunk_size == 500


def test_only_a_cluster_wide_operator_scans_namespaces_and_crds() -> None:
    import kopf
    from kuberank.operator.cli import configure

    for argv, scans in (([], True), (["--namespace", "team-a"], False)):
        settings = kopf.OperatorSettings()
        configure(parse_args(argv), settings)
        assert settings.scanning.disabled is not scans
