"""Traffic-driven status writes: once per interval and subject, off the loop, failures logged."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from kuberank.gateway.bookkeeping import ThrottledWrites
from kuberank.gateway.scaler import WriteError

pytestmark = pytest.mark.unit


def test_a_subject_is_written_once_per_interval_and_the_last_one_at_its_end() -> None:
    written: list[str] = []
    threads: set[int] = set()

    def write(what: str) -> None:
        threads.add(threading.get_ident())
        written.append(what)

    async def scenario() -> None:
        writes = ThrottledWrites()
        for i in range(5):
            writes.submit("a", 0.3, lambda i=i: write(f"a{i}"), "a")
        writes.submit("b", 0.3, lambda: write("b"), "b")
        await asyncio.sleep(0.1)
        assert sorted(written) == ["a0", "b"]  # the first at once; the rest held
        await asyncio.sleep(0.3)  # the interval ended: the newest held one, only it
        assert sorted(written) == ["a0", "a4", "b"]
        await asyncio.sleep(0.35)  # nothing held: nothing more
        assert sorted(written) == ["a0", "a4", "b"]
        writes.submit("a", 0.3, lambda: write("a5"), "a")  # a quiet interval: written at once
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert sorted(written) == ["a0", "a4", "a5", "b"]
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
