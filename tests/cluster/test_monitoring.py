"""The chart's prometheus-operator objects against that project's own CRDs on a real API server.

The CRDs come from the prometheus-operator Go module (the Go module proxy serves it; nothing
else is fetched), so the ServiceMonitor, PodMonitor and PrometheusRule the chart renders are
checked by the schemas Prometheus users run, with kubectl's strict field validation: an unknown
or misplaced field is an error, not silently pruned. (promtool tests the rules themselves:
tests/unit/test_alert_rules.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from polling import wait_for

if TYPE_CHECKING:
    from conftest import Kubectl
    from localcluster import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
MONITOR_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


@pytest.fixture(scope="module")
def monitoring_crds(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule CRDs of the pinned prometheus-operator
    release, installed."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", PROMETHEUS_OPERATOR],
        cwd=tmp_path_factory.mktemp("gomod"), capture_output=True, text=True, timeout=300,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = Path(json.loads(proc.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    def kubectl(*argv: str) -> str:
        done = subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *argv],
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def established(name: str) -> bool:
        # Polled here: `kubectl wait` errors out on a CRD whose status is not written yet.
        conditions = json.loads(kubectl("get", "crd", name, "-o", "json")).get("status", {})
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions.get("conditions") or [])

    for plural in MONITOR_CRDS:
        crd = folder / f"monitoring.coreos.com_{plural}.yaml"
        kubectl("apply", "--server-side", "-f", str(crd))
    for plural in MONITOR_CRDS:
        name = f"{plural}.monitoring.coreos.com"
        wait_for(f"CRD {name} established", lambda: established(name))  # noqa: B023


def rendered_monitors(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(Path(cluster.bin_dir) / "helm"), "template", "kr", str(REPO / "charts" / "kuberank"),
         "--namespace", namespace, "--set", "metrics.serviceMonitor.enabled=true",
         "--set", "metrics.podMonitor.enabled=true", "--set", "metrics.podMonitor.interval=15s",
         "--set-json", 'metrics.scrapeFrom=[{"namespaceSelector": {}}]',
         "--set", "metrics.serviceMonitor.labels.release=prometheus",
         "--set", "metrics.prometheusRule.enabled=true"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return [d for d in docs if d["apiVersion"] == "monitoring.coreos.com/v1"]


def test_chart_monitors_are_valid_prometheus_operator_objects(
    monitoring_crds: None, cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    monitors = rendered_monitors(cluster, namespace)
    assert sorted(d["kind"] for d in monitors) == [
        "PodMonitor", "PodMonitor", "PrometheusRule", "ServiceMonitor"]  # runtimes, operator
    for doc in monitors:
        kubectl.run("apply", "--validate=strict", "-f", "-", stdin=json.dumps(doc))
        stored = kubectl.get(doc["kind"], doc["metadata"]["name"])
        assert stored is not None and stored["spec"] == doc["spec"]  # nothing pruned


def test_a_misplaced_monitor_field_is_refused_by_the_crd_schema(
    monitoring_crds: None, kubectl: Kubectl
) -> None:
    """The check above can fail: the same schema refuses a field prometheus-operator lacks."""
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "bad"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "metricsPath": "/metrics"}]},
    }
    refused = kubectl.run("apply", "--validate=strict", "-f", "-", stdin=json.dumps(bad),
                          check=False)
    assert refused.returncode != 0 and "metricsPath" in refused.stderr
    assert kubectl.get("servicemonitor", "bad") is None
