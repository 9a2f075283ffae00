"""Gateway flags and KUBERANK_GATEWAY_* environment variables mean the same thing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kuberank.gateway.cli import parse_settings
from kuberank.gateway.settings import GatewaySettings
from pydantic import ValidationError
from pydantic_settings import CliApp

pytestmark = pytest.mark.unit


def test_defaults_listen_on_8080_and_watch_all_namespaces() -> None:
    settings = CliApp.run(GatewaySettings, cli_args=[])
    assert (settings.port, settings.namespaces, settings.kubeconfig) == (8080, [], None)


def test_flags_set_limits_and_comma_separated_namespaces() -> None:
    settings = CliApp.run(
        GatewaySettings,
        cli_args=[
            "--namespaces",
            "team-a, team-b",
            "--max-body-bytes",
            "65536",
            "--max-documents",
            "50",
            "--upstream-timeout",
            "2.5",
            "--kubeconfig",
            "/tmp/kc",
        ],
    )
    assert settings.namespaces == ["team-a", "team-b"]
    assert (settings.max_body_bytes, settings.max_documents) == (65536, 50)
    assert (settings.upstream_timeout, settings.kubeconfig) == (2.5, "/tmp/kc")


def test_environment_variables_match_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERANK_GATEWAY_NAMESPACES", "x,y")
    monkeypatch.setenv("KUBERANK_GATEWAY_PORT", "9000")
    settings = GatewaySettings()
    assert (settings.namespaces, settings.port) == (["x", "y"], 9000)


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(max_documents=0)
    with pytest.raises(ValidationError):
        GatewaySettings(upstream_timeout=0)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-documents", "0"], {},
         "--max-documents (KUBERANK_GATEWAY_MAX_DOCUMENTS): Input should be greater than or "
         "equal to 1"),
        ([], {"KUBERANK_GATEWAY_UPSTREAM_TIMEOUT": "0"},
         "--upstream-timeout (KUBERANK_GATEWAY_UPSTREAM_TIMEOUT): Input should be greater than 0"),
        (["--path-prefix", "/v1"], {},
         "--path-prefix (KUBERANK_GATEWAY_PATH_PREFIX): '/v1' begins like the gateway's own "
         "paths (/v1/...); "
         "choose another, e.g. /reranker"),
    ],
    ids=["flag-out-of-range", "env-out-of-range", "validator-says-why"],
)
def test_bad_settings_exit_2_with_one_line_naming_the_setting(
    argv: list[str], env: dict[str, str], message: str, settings_refusal: Callable[..., str]
) -> None:
    assert settings_refusal(parse_settings, argv, env) == f"kuberank-gateway: error: {message}"
