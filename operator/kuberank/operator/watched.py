"""Which objects of other kinds the operator takes, by label: the handlers' ``labels=``
filters, and the same as the label selectors the API server lists and watches by
(cli.WATCH_SELECTORS), so it never sends the operator every Secret and Pod of the cluster."""

from __future__ import annotations

from collections.abc import Mapping

import kopf
from kuberank.crd.common import MANAGED_BY_LABEL
from kuberank.operator.builders.meta import MANAGED_BY, MODEL_LABEL, RUNTIME_NAME
from kuberank.operator.builders.secret import APIKEY_LABEL

CHILD_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: kopf.PRESENT}
RUNTIME_PODS = {"app.kubernetes.io/name": RUNTIME_NAME, MODEL_LABEL: kopf.PRESENT}
KEY_SECRETS = {APIKEY_LABEL: kopf.PRESENT}


def label_selector(labels: Mapping[str, object]) -> str:
    """A ``labels=`` filter as a label selector (``kopf.PRESENT``: the label is there)."""
    return ",".join(key if value is kopf.PRESENT else f"{key}={value}"
                    for key, value in labels.items())
