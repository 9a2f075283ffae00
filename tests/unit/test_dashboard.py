"""The chart's Grafana dashboard: shipped as the sidecar expects, every query valid PromQL (checked
by Prometheus' own promtool) and about metrics kuberank really exports, so a renamed metric
breaks this test instead of a panel."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import buildtools
import pytest
import yaml
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.operator.metrics import OperatorMetrics
from kuberank.runtime.metrics import RuntimeMetrics
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "kuberank" / "dashboards" / "kuberank.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
            "info": ("_info",)}
# Labels Prometheus adds to the runtimes' series: the PodMonitor's podTargetLabels.
TARGET_LABEL = "kuberank_io_model"


def _queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _as_promql(expr: str) -> str:
    """Grafana's variables replaced by what they stand for when every value is selected."""
    return (expr.replace("$__rate_interval", "5m").replace('"$namespace"', '".*"')
            .replace('"$model"', '".*"'))


def _exported(registry: CollectorRegistry) -> set[str]:
    return {family.name + suffix for family in registry.collect()
            for suffix in SUFFIXES[family.type]}


def test_the_chart_ships_the_dashboard_for_grafanas_sidecar() -> None:
    helm = buildtools.helm()
    rendered = subprocess.run(
        [helm, "template", "kr", str(REPO / "charts" / "kuberank"), "-n", "ops",
         "--set", "metrics.grafanaDashboard.enabled=true",
         "--set", "metrics.grafanaDashboard.namespace=monitoring"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    [config] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap"]
    assert config["metadata"]["namespace"] == "monitoring"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["kuberank.json"]) == json.loads(DASHBOARD.read_text())
    off = subprocess.run([helm, "template", "kr", str(REPO / "charts" / "kuberank")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "kuberank.json" not in off  # opt-in


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    queries = _queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": _as_promql(q)} for i, q in enumerate(queries)]}]}
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules, width=1000))
    promtool = buildtools.promtool()
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_every_metric_a_panel_reads_is_one_kuberank_exports() -> None:
    exported = (_exported(GatewayMetrics().registry) | _exported(OperatorMetrics().registry)
                | _exported(RuntimeMetrics().registry))
    dashboard = json.loads(DASHBOARD.read_text())
    texts = _queries(dashboard) + [v["query"]["query"] for v in dashboard["templating"]["list"]
                                   if isinstance(v.get("query"), dict)]
    read = {m for text in texts
            for m in re.findall(r"\bkuberank_(?:gateway|operator|runtime)_[a-z_]+", text)}
    assert read - exported == set(), "panels read metrics nobody exports"
    # the runtimes' series are told apart by the label their PodMonitor adds
    runtime_queries = [q for q in _queries(dashboard) if "kuberank_runtime_" in q]
    assert runtime_queries and all(TARGET_LABEL in q for q in runtime_queries)


def test_a_misspelt_metric_would_be_caught() -> None:
    """The check above can fail: the exported names do not match just any kuberank_ name."""
    exported = _exported(GatewayMetrics().registry)
    assert "kuberank_gateway_requests_total" in exported
    assert "kuberank_gateway_request_total" not in exported
