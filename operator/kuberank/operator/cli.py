"""kuberank-operator: run the kopf operator with kuberank's handlers.

Flags mirror KUBERANK_* environment variables (flags win). SIGTERM/SIGINT stop it gracefully:
kopf finishes running handlers, then exits (handing the leader-election Lease back, if held).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import uuid
from importlib.metadata import version
from typing import Any

import kopf
from kuberank.crd.apikey import PLURAL as APIKEY_PLURAL
from kuberank.crd.common import GROUP, VERSION
from kuberank.crd.rerankmodel import PLURAL as MODEL_PLURAL
from kuberank.operator import kopf_toggles, logfilters
from kuberank.operator.arenas import limit_malloc_arenas
from kuberank.operator.kube import Kube, load_client
from kuberank.operator.leader import Leadership, LeaseTiming, standby_health
from kuberank.operator.metrics import OperatorMetrics
from kuberank.operator.settings import OperatorSettings
from kuberank.operator.stopping import StopOnSignal, run_kopf
from kuberank.operator.watched import (
    CHILD_LABELS,
    KEY_SECRETS,
    RUNTIME_PODS,
    label_selector,
)
from kuberank.protocol.flags import misspelt_variables, setting_problems
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


def parse_args(argv: list[str] | None) -> OperatorSettings:
    p = argparse.ArgumentParser(prog="kuberank-operator", description=__doc__)
    p.add_argument("--namespace", "-n", action="append", dest="namespaces",
                   help=_help("namespaces") + " Repeatable.")
    p.add_argument("--runtime-image", help=_help("runtime_image"))
    p.add_argument("--runtime-cpu-image", help=_help("runtime_cpu_image"))
    p.add_argument("--runtime-fixed-ids", action=argparse.BooleanOptionalAction, default=None,
                   help=_help("runtime_fixed_ids"))
    p.add_argument("--runtime-image-pull-secrets", type=_json_list,
                   help=_help("runtime_image_pull_secrets"))
    p.add_argument("--finalizer", help=_help("finalizer"))
    p.add_argument("--annotation-prefix", help=_help("annotation_prefix"))
    p.add_argument("--liveness-endpoint", help=_help("liveness_endpoint"))
    p.add_argument("--startup-timeout-s", type=int, help=_help("startup_timeout_s"))
    p.add_argument("--metrics-from", type=_json_list, help=_help("metrics_from"))
    p.add_argument("--metrics-port", type=int, help=_help("metrics_port"))
    p.add_argument("--gateway-namespace", help=_help("gateway_namespace"))
    p.add_argument("--json-logs", action="store_true", default=None, help=_help("json_logs"))
    p.add_argument("--verbose", "-v", action="store_true", default=None, help=_help("verbose"))
    p.add_argument("--leader-elect", action="store_true", default=None,
                   help=_help("leader_elect"))
    p.add_argument("--lease-namespace", help=_help("lease_namespace"))
    p.add_argument("--lease-name", help=_help("lease_name"))
    p.add_argument("--lease-seconds", type=int, help=_help("lease_seconds"))
    p.add_argument("--identity", help=_help("identity"))
    given = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    try:
        return OperatorSettings(**given)
    except ValidationError as err:  # a flag or a KUBERANK_* variable: one line, exit 2
        p.error(setting_problems(err, "KUBERANK_"))


_CHILDREN = label_selector(CHILD_LABELS)
# Label selectors the API server applies to the operator's lists and watches of other kinds:
# the handlers' own ``labels=`` filters alone run in the operator, after every object of the
# kind (every Secret and Pod of the cluster) has been listed, held and dispatched.
WATCH_SELECTORS: dict[tuple[str, str], str] = {
    ("apps", "deployments"): _CHILDREN,
    ("v1", "services"): _CHILDREN,
    ("networking.k8s.io", "networkpolicies"): _CHILDREN,
    ("policy", "poddisruptionbudgets"): _CHILDREN,
    ("v1", "pods"): label_selector(RUNTIME_PODS),
    ("v1", "secrets"): label_selector(KEY_SECRETS),
}
LIST_CHUNK = 500  # objects per page of an initial list, not a whole cluster's in one answer


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
    kopf_settings.watching.chunk_size = LIST_CHUNK
    for resource, selector in WATCH_SELECTORS.items():
        kopf_settings.watching.label_selectors[resource] = selector
    kopf_settings.execution.max_workers = 16
    # An operator given its namespaces watches exactly those, on Roles there: kopf's scans of
    # namespaces and CRDs need cluster-wide reads it is not granted (refused and retried for
    # about a minute before it would start handling anything).
    kopf_settings.scanning.disabled = bool(settings.namespaces)


def _exit_unless_crds_served(kube: Kube) -> None:
    """An operator given its namespaces does not watch for CRDs (``configure``): started before
    them it would idle, healthy to every probe. It exits instead, and is restarted until they
    are installed (a GitOps sync wave, ``helm install --skip-crds`` then the CRDs)."""
    missing = sorted({MODEL_PLURAL, APIKEY_PLURAL} - kube.served(f"{GROUP}/{VERSION}"))
    if missing:
        sys.exit(f"kuberank-operator: the API server does not serve {', '.join(missing)} "
                 f"({GROUP}/{VERSION}) yet: install the CRDs (the chart's crds/, or kubectl "
                 "apply -f crds/); an operator limited to namespaces does not wait for them")


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    limit_malloc_arenas()  # before kopf's thread pool: each new thread would get an arena
    stopping = StopOnSignal()  # before any thread starts: each inherits the blocked signals
    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.json_logs else kopf.LogFormat.FULL,
        # Each line about an object names it: "[namespace/name]" in text, fields in JSON.
        log_prefix=None,
    )
    logfilters.install()
    # Registers the handlers with kopf's default registry.
    import kuberank.operator.handlers  # noqa: F401

    for typo in misspelt_variables(os.environ, "KUBERANK_", OperatorSettings.model_fields):
        logging.getLogger(__name__).warning("%s", typo)
    if not kopf_toggles.install():
        logging.getLogger(__name__).warning(
            "kopf %s: its readiness toggles are not the ones kuberank patches; a restart waits "
            "longer at scale (see README, High availability)", version("kopf"))

    @kopf.on.startup()
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(operator_settings, settings)

    operator_settings = settings
    metrics = OperatorMetrics()
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port)
        except OSError as err:
            sys.exit(f"kuberank-operator: cannot serve metrics on port {settings.metrics_port}: "
                     f"{err.strerror or err}")
    api = load_client()
    if settings.namespaces:
        _exit_unless_crds_served(Kube(api))
    leadership = _lead(settings, api) if settings.leader_elect else None
    try:
        run_kopf(
            stopping,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=settings.liveness_endpoint or None,
            memo=kopf.Memo(kube=Kube(api, leadership.leading if leadership else None),
                           settings=settings, metrics=metrics),
        )
    finally:
        if leadership is not None:
            leadership.release()
    return 0


def _lead(settings: OperatorSettings, api: Any) -> Leadership:
    """Wait (healthy) until this replica holds the Lease, then keep it renewed; losing it ends
    the process at once, before another leader's handlers could race this one's."""
    identity = settings.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    leadership = Leadership(api, settings.lease_namespace, settings.lease_name, identity,
                            LeaseTiming.for_lease(settings.lease_seconds))
    with standby_health(settings.liveness_endpoint):
        leadership.acquire()

    def deposed() -> None:
        logging.getLogger(__name__).error(
            "lost lease %s/%s (not renewed in time); exiting so that only the new leader acts",
            settings.lease_namespace, settings.lease_name)
        os._exit(1)

    leadership.keep(on_lost=deposed)
    return leadership


if __name__ == "__main__":
    sys.exit(main())
