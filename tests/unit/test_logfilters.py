"""A namespace being deleted refuses every create in it: the operator neither retries those
writes as failures nor logs kopf's refused Events as errors."""

from __future__ import annotations

import logging

import pytest
from kuberank.operator import logfilters
from kuberank.operator.kube import KubeError

pytestmark = pytest.mark.unit

REFUSED = ('services "rrm-m" is forbidden: unable to create new content in namespace team-a '
           "because it is being terminated")


def test_a_create_refused_in_a_namespace_being_deleted_is_told_apart() -> None:
    assert KubeError(403, REFUSED).namespace_ending
    assert not KubeError(403, 'secrets "k" is forbidden: User cannot create').namespace_ending
    assert not KubeError(404, "namespaces team-a not found").namespace_ending
    assert not KubeError(403, REFUSED).transient


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord(logfilters.KOPF_POSTER, logging.ERROR, __file__, 1, "%s", (message,),
                             None)


def test_kopfs_tries_to_post_an_event_into_a_namespace_being_deleted_are_dropped() -> None:
    logfilters.install()
    logfilters.install()  # once is enough: a second install adds nothing
    poster = logging.getLogger(logfilters.KOPF_POSTER)
    assert sum(isinstance(f, logfilters.NamespaceEnding) for f in poster.filters) == 1
    assert not poster.filter(_record(f"Request attempt #1/9 failed; will retry: {REFUSED}"))
    assert poster.filter(_record("Request attempt #1/9 failed; will retry: 503 Unavailable"))
