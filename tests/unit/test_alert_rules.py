"""The chart's alerting rules, checked and unit-tested by Prometheus' own promtool.

promtool is built from the Prometheus Go module (tools/promtool/build.sh, cached after the first
build); `promtool test rules` evaluates the rules on synthetic series with Prometheus' rule engine,
so an alert that never fires, fires for the wrong model or renders a broken annotation fails here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import buildtools
import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def promtool() -> str:
    return buildtools.promtool()


def _rules(directory: Path, *extra: str) -> Path:
    rendered = subprocess.run(
        [buildtools.helm(), "template", "kr", str(REPO / "charts" / "kuberank"),
         "--namespace", "ops", "--set", "metrics.prometheusRule.enabled=true",
         "--set", "metrics.prometheusRule.labels.release=prometheus", *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    rules = [d for d in yaml.safe_load_all(rendered.stdout)
             if d and d["kind"] == "PrometheusRule"]
    assert len(rules) == 1 and rules[0]["metadata"]["labels"]["release"] == "prometheus"
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}))
    return path


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rules(tmp_path_factory.mktemp("rules"))


def test_rules_pass_promtool_check(promtool: str, rules_file: Path) -> None:
    checked = subprocess.run([promtool, "check", "rules", str(rules_file)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{metric}{{{inner}}}", "values": values}


def _alerts(name: str, at: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(alerts)}


def _promtool_test(promtool: str, rules: Path, series: list[dict[str, str]],
                   cases: list[dict[str, Any]], tmp_path: Path) -> None:
    """Evaluate ``cases`` on ``series`` (one sample a minute) with Prometheus' rule engine."""
    spec = {"rule_files": [str(rules)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}]}
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(spec, width=1000))
    tested = subprocess.run([promtool, "test", "rules", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_each_alert_fires_for_the_model_in_trouble_only_in_its_own_namespace(
    promtool: str, rules_file: Path, tmp_path: Path
) -> None:
    requests, errors = "kuberank_gateway_requests_total", "kuberank_gateway_upstream_errors_total"
    latency = "kuberank_gateway_request_duration_seconds_bucket"
    condition = "kuberank_operator_model_condition"
    # The same served name in two tenants' namespaces: only team-a's is in trouble.
    team_a = {"namespace": "team-a", "model": "bge"}
    team_b = {"namespace": "team-b", "model": "bge"}
    series = [
        # team-a: 10 % of its requests fail, all take 10-30 s, replicas refuse 0.1 a second
        _series(requests, "0+90x40", **team_a, status="200", dialect="jina", key_id="k"),
        _series(requests, "0+10x40", **team_a, status="503", dialect="jina", key_id="k"),
        _series(latency, "0x40", **team_a, dialect="jina", le="10"),
        _series(latency, "0+100x40", **team_a, dialect="jina", le="30"),
        _series(latency, "0+100x40", **team_a, dialect="jina", le="+Inf"),
        _series(errors, "0+6x40", **team_a, kind="refused"),
        # team-b: 1 % errors, fast, one connect error at the start and none since
        _series(requests, "0+99x40", **team_b, status="200", dialect="jina", key_id="k"),
        _series(requests, "0+1x40", **team_b, status="500", dialect="jina", key_id="k"),
        _series(latency, "0+100x40", **team_b, dialect="jina", le="0.1"),
        _series(latency, "0+100x40", **team_b, dialect="jina", le="+Inf"),
        _series(errors, "1x40", **team_b, kind="connect"),
        # the operator's view of the model objects: team-a's crashes, team-b's is fine
        _series(condition, "1x40", namespace="team-a", name="bge", condition="Degraded",
                reason="CrashLoop"),
        _series(condition, "0x40", namespace="team-b", name="bge", condition="Degraded",
                reason=""),
    ]
    bad = {**team_a, "severity": "warning"}
    cases = [
        _alerts("KuberankRerankErrors", "8m"),  # pending: not yet held for 10m
        _alerts("KuberankRerankErrors", "20m", {"exp_labels": bad, "exp_annotations": {
            "summary": "Rerank requests for bge in team-a fail with 5xx",
            "description": "10% of the requests for model bge got 5xx at the gateway: no ready "
            "replica, waking too slowly, a replica failing mid-request or timing out. kubectl "
            "get rrm -n team-a shows the reason."}}),
        _alerts("KuberankRerankSlow", "20m", {"exp_labels": bad, "exp_annotations": {
            "summary": "Rerank requests for bge in team-a are slow",
            "description": "99% of the requests for model bge took up to 29.8s at the gateway. "
            "Add replicas (or spec.autoscaling), or send fewer or shorter documents."}}),
        _alerts("KuberankReplicasRefuseWork", "20m", {"exp_labels": bad, "exp_annotations": {
            "summary": "Replicas of bge in team-a keep turning requests away",
            "description": "Runtime replicas of model bge answer 429 (queue full) or 503 (not "
            "loaded) before scoring, 0.10 times a second. Add replicas or set "
            "spec.autoscaling."}}),
        _alerts("KuberankReplicasUnreachable", "20m"),
        _alerts("KuberankModelDegraded", "8m"),  # pending
        _alerts("KuberankModelDegraded", "20m", {
            "exp_labels": {"namespace": "team-a", "name": "bge", "reason": "CrashLoop",
                           "severity": "warning"},
            "exp_annotations": {
                "summary": "RerankModel bge in team-a is degraded: CrashLoop",
                "description": "The operator reports CrashLoop for RerankModel bge: kubectl "
                "describe rrm bge -n team-a has the message; docs/troubleshooting.md maps each "
                "reason to its fix."}}),
    ]
    _promtool_test(promtool, rules_file, series, cases, tmp_path)


def test_a_gateway_or_operator_that_stops_answering_scrapes_is_an_alert(
    promtool: str, tmp_path: Path
) -> None:
    rules = _rules(tmp_path, "--set", "metrics.serviceMonitor.enabled=true",
                   "--set", "metrics.podMonitor.enabled=true",
                   "--set-json", 'metrics.scrapeFrom=[{"namespaceSelector": {}}]')
    checked = subprocess.run([promtool, "check", "rules", str(rules)],
                             capture_output=True, text=True, timeout=60)
    assert "SUCCESS: 7 rules found" in checked.stdout, checked.stdout + checked.stderr
    series = [  # two gateway replicas up for 10 minutes, then both gone; no operator at all
        _series("up", "1x10 0x30", job="kr-kuberank-gateway", namespace="ops", pod="gw-1"),
        _series("up", "1x10 0x30", job="kr-kuberank-gateway", namespace="ops", pod="gw-2"),
        _series("up", "1x40", job="ops/kr-kuberank-runtime", namespace="team-a", pod="rt"),
    ]
    cases = [
        _alerts("KuberankGatewayDown", "9m"),
        _alerts("KuberankGatewayDown", "14m"),  # down 4 minutes: pending
        _alerts("KuberankGatewayDown", "17m", {
            "exp_labels": {"severity": "critical"},
            "exp_annotations": {
                "summary": "No kuberank gateway replica answers",
                "description": "No pod of Service kr-kuberank-gateway in ops has been scraped "
                "for 5 minutes: every rerank request through the gateway fails. kubectl get "
                "pods -n ops -l app.kubernetes.io/component=gateway"}}),
        _alerts("KuberankOperatorDown", "12m", {
            "exp_labels": {"severity": "warning"},
            "exp_annotations": {
                "summary": "The kuberank operator is not running",
                "description": "No operator pod in ops has been scraped for 10 minutes: serving "
                "goes on, but new or changed RerankModels and ApiKeys are not acted on and their "
                "status is stale. kubectl get pods -n ops -l "
                "app.kubernetes.io/component=operator"}}),
    ]
    _promtool_test(promtool, rules, series, cases, tmp_path)
