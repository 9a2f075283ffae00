"""The real `kuberank-runtime` process on a loopback port, for tests that drive it over HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from localcluster import free_port

RUNTIME = str(Path(sys.executable).with_name("kuberank-runtime"))


class Server:
    """One runtime process on a free port, with an httpx client bound to it."""

    def __init__(self, model: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its log goes to a file, not a pipe read only at the end: a pipe's 64 KiB fill up in a
        # long test, and the server then blocks on its next log line, answering nothing.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.proc = subprocess.Popen(
            # No drain on SIGTERM unless a test asks (a later --drain-seconds wins): stopping
            # a test server need not wait for load balancers that are not there.
            [RUNTIME, "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port),
             "--threads", "1", "--drain-seconds", "0", *args],
            env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"runtime not healthy within {timeout}s")

    def output(self) -> str:
        """Everything it logged, once stopped."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self._log.close()


@contextlib.contextmanager
def running(model: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """A ``Server`` once healthy, stopped on the way out (a fixture's whole life)."""
    server = Server(model, *args, env=env)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()
