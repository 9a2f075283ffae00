"""Scale an idle ``scaleToZero`` model to 0 replicas, deciding on a fresh read of it."""

from __future__ import annotations

from datetime import datetime

from kuberank.crd.rerankmodel import InvalidSpecError, parse_spec
from kuberank.operator.kube import Kube, KubeError
from kuberank.operator.reconcilers.rerankmodel import ref_of
from kuberank.operator.status.idle import created_time, last_request_time, seconds_until_scale_down


def scale_down_if_idle(
    kube: Kube, namespace: str, name: str, up_since: datetime | None, now: datetime
) -> int | None:
    """Scale the model to 0 if it is still idle when read now; the replicas it had, else None.

    The write carries the resourceVersion of that read, so a request the gateway recorded (or a
    scale someone made) in between turns it into a conflict, and nothing is scaled down.
    """
    ref = ref_of(namespace, name)
    live = kube.get(ref)
    if live is None or live["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = parse_spec(live.get("spec"))
    except InvalidSpecError:
        return None
    activity = [last_request_time(live), up_since, created_time(live)]
    wait = seconds_until_scale_down(spec, activity, now)
    if wait is None or wait > 0:
        return None
    try:
        kube.scale(ref, 0, live["metadata"]["resourceVersion"])
    except KubeError as err:
        if err.status == 409:
            return None
        raise
    return spec.replicas
