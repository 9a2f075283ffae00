"""When a model with ``scaleToZero`` has been idle long enough to go to 0 replicas (pure).

Idle time counts from the latest of: the last request the gateway recorded, the moment the
operator saw the model with replicas (a manual ``kubectl scale`` up gets a full idle spell), and
the model's creation. After an operator restart that moment is read back from the status (when
``Available`` last turned True: at or after the scale-up), so a restart neither restarts the
clock nor can make it scale down early.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kuberank.crd.common import parse_timestamp
from kuberank.crd.rerankmodel import RerankModelSpec


def last_request_time(body: dict[str, Any]) -> datetime | None:
    """``status.lastRequestTime`` as the gateway wrote it; None when absent or unreadable."""
    return parse_timestamp((body.get("status") or {}).get("lastRequestTime"))


def available_since(body: dict[str, Any]) -> datetime | None:
    """When the model's ``Available`` condition last turned True; None unless it is True."""
    for cond in (body.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Available":
            return (parse_timestamp(cond.get("lastTransitionTime"))
                    if cond.get("status") == "True" else None)
    return None


def created_time(body: dict[str, Any]) -> datetime | None:
    return parse_timestamp((body.get("metadata") or {}).get("creationTimestamp"))


def seconds_until_scale_down(
    spec: RerankModelSpec, activity: list[datetime | None], now: datetime
) -> float | None:
    """Seconds left before the model should be scaled to 0 (≤ 0: now); None when it never
    should be from here: no ``scaleToZero``, or already at 0 replicas."""
    if spec.scale_to_zero is None or spec.replicas == 0:
        return None
    known = [t for t in activity if t is not None]
    quiet_since = max(known) if known else now
    # Recorded times are whole seconds (RFC 3339 in status): a request at 12:00:00.9 reads as
    # 12:00:00, so one more second keeps the spell from ending before it really has.
    deadline = quiet_since + timedelta(seconds=spec.scale_to_zero.after_idle_seconds + 1)
    return (deadline - now).total_seconds()
