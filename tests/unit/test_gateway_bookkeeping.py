"""Traffic-driven status writes: once per interval and subject, off the loop, failures logged."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from kuberank.gateway.bookkeeping import ThrottledWrites
from kuberank.gateway.scaler import WriteError

pytestmark = pytest.mark.unit


def test_a_subject_is_written_once_per_interval_and_others_independently() -> None:
    written: list[str] = []
    threads: set[int] = set()

    def write(what: str) -> None:
        threads.add(threading.get_ident())
        written.append(what)

    async def scenario() -> None:
        writes = ThrottledWrites()
        for _ in range(5):
            writes.submit("a", 0.2, lambda: write("a"), "a")
        writes.submit("b", 0.2, lambda: write("b"), "b")
        await asyncio.sleep(0.05)
        assert sorted(written) == ["a", "b"]
        await asyncio.sleep(0.2)  # the interval has passed: a is written again
        writes.submit("a", 0.2, lambda: write("a"), "a")
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert sorted(written) == ["a", "a", "b"]
    assert threading.get_ident() not in threads  # never on the event loop's thread


def test_a_failed_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise WriteError("the gateway may not write ApiKey ns/k (RBAC: apikeys/status patch)")

    async def scenario() -> None:
        ThrottledWrites().submit("k", 60, fail, "the use of ApiKey ns/k")
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "could not record the use of ApiKey ns/k: the gateway may not write" in caplog.text
