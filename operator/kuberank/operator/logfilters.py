"""Log lines that say nothing is wrong, kept out of the operator's log."""

from __future__ import annotations

import logging

from kuberank.operator.kube import NAMESPACE_ENDING

# kopf's Event poster logs on this logger.
KOPF_POSTER = "kopf._core.engines.posting"


class NamespaceEnding(logging.Filter):
    """kopf retries a refused Event nine times, logging each try as an error, and 403s
    included (for API server upgrades). An Event about an object whose namespace is being
    deleted is refused for good and needs no one's attention: its tries are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return NAMESPACE_ENDING not in record.getMessage()


def install() -> None:
    """Put the filters on the loggers they concern (once per process)."""
    poster = logging.getLogger(KOPF_POSTER)
    if not any(isinstance(f, NamespaceEnding) for f in poster.filters):
        poster.addFilter(NamespaceEnding())
