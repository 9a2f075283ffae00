"""kuberank-operator: run the kopf operator with kuberank's handlers.

Flags mirror KUBERANK_* environment variables (flags win). SIGTERM/SIGINT stop it gracefully:
kopf finishes running handlers, then exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import kopf
from kuberank.operator.kube import Kube, load_client
from kuberank.operator.settings import OperatorSettings
from pydantic import ValidationError


def _help(field: str) -> str:
    """A flag's help: the settings field's description and the variable that also sets it."""
    info = OperatorSettings.model_fields[field]
    default = info.get_default(call_default_factory=True)
    return f"{info.description} [env KUBERANK_{field.upper()}; default {default!r}]"


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError("must be a JSON list")
    return value


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    return f"{'.'.join(str(x) for x in loc)}: {msg.removeprefix('Value error, ')}"


def parse_args(argv: list[str] | None) -> OperatorSettings:
    p = argparse.ArgumentParser(prog="kuberank-operator", description=__doc__)
    p.add_argument("--namespace", "-n", action="append", dest="namespaces",
                   help=_help("namespaces") + " Repeatable.")
    p.add_argument("--runtime-image", help=_help("runtime_image"))
    p.add_argument("--finalizer", help=_help("finalizer"))
    p.add_argument("--annotation-prefix", help=_help("annotation_prefix"))
    p.add_argument("--liveness-endpoint", help=_help("liveness_endpoint"))
    p.add_argument("--startup-timeout-s", type=int, help=_help("startup_timeout_s"))
    p.add_argument("--metrics-from", type=_json_list, help=_help("metrics_from"))
    p.add_argument("--json-logs", action="store_true", default=None, help=_help("json_logs"))
    p.add_argument("--verbose", "-v", action="store_true", default=None, help=_help("verbose"))
    given = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    try:
        return OperatorSettings(**given)
    except ValidationError as err:  # a flag or a KUBERANK_* variable: one line, exit 2
        p.error("; ".join(_problem(e["loc"], e["msg"]) for e in err.errors()))


def configure(settings: OperatorSettings, kopf_settings: kopf.OperatorSettings) -> None:
    """Our own finalizer and annotation prefixes; progress never written into status."""
    prefix = settings.annotation_prefix
    kopf_settings.persistence.finalizer = settings.finalizer
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    # Handler chatter stays in the log; Events are reserved for condition transitions.
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.watching.server_timeout = 300
    kopf_settings.execution.max_workers = 16


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.json_logs else kopf.LogFormat.FULL,
    )
    # Registers the handlers with kopf's default registry.
    import kuberank.operator.handlers  # noqa: F401

    @kopf.on.startup()
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(operator_settings, settings)

    operator_settings = settings
    memo = kopf.Memo(kube=Kube(load_client()), settings=settings)
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint or None,
        memo=memo,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
