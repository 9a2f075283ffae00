"""One number from a Prometheus text page, read with prometheus_client's own parser (every tier
checks metrics this way)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, metric: str, **labels: str) -> float:
    """The sum of the samples called ``metric`` whose labels include ``labels`` (0 when none)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric and labels.items() <= s.labels.items()
    )
