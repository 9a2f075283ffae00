"""Leader election on a coordination.k8s.io Lease, so operator replicas can stand by.

kopf handlers must never run in two processes on the same objects, which kept the operator at one
replica: a lost node then stopped reconciling, scaling to zero and autoscaling for the minutes it
takes Kubernetes to reschedule the pod. With a Lease, a second replica waits and takes over within
a lease duration. The kubernetes client's own ``leaderelection`` runs the protocol (expiry judged
by the follower's own clock since it last saw the record change, so clock skew between nodes does
not matter); this module adapts it to a process that runs kopf in its main thread:

- ``acquire`` blocks until this process leads (``standby_health`` keeps a standby's probe green);
- ``keep`` renews in a daemon thread and calls ``on_lost`` when a renewal misses its deadline; the
  caller exits at once, as controller-runtime does, because a deposed leader must not keep writing;
- ``release`` hands the lease back on a graceful stop, so a rolling update does not wait it out.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)


class _OnlyTrouble(logging.Filter):
    """The library logs every renewal and every follower poll at INFO (one line every couple of
    seconds, forever); keep its failures and leader changes, drop the routine."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage().startswith(
            ("Error", "Failed", "Leader has switched"))


@dataclass(frozen=True)
class LeaseTiming:
    """How long a lease lasts, how long the leader keeps trying to renew it, how often it tries.

    Derived from the lease duration alone with client-go's proportions (15 s → 10 s → 2 s).
    """

    lease_seconds: int
    renew_deadline_seconds: int
    retry_seconds: int

    @classmethod
    def for_lease(cls, lease_seconds: int) -> LeaseTiming:
        if lease_seconds < 3:
            raise ValueError(f"a lease must last at least 3 seconds, got {lease_seconds}")
        return cls(lease_seconds, lease_seconds * 2 // 3, max(1, lease_seconds // 7))


class _LeaseExpiredError(Exception):
    """Not renewed for a whole lease duration (the process was paused, or cut off): another
    replica may lead by now, so renewing must stop at once, not retry for a renew deadline."""


class _Election(leaderelection.LeaderElection):
    """The library's election, which stops renewing (without writing) once released, takes a
    failed call (API server unreachable) for a failed attempt instead of dying with it, and
    gives up at once when its last renewal is a lease duration old."""

    def __init__(self, config: Any, lease_seconds: float) -> None:
        super().__init__(config)  # type: ignore[no-untyped-call]
        self.releasing = threading.Event()
        self.lease_seconds = lease_seconds
        self.renewed_at: float | None = None  # monotonic time of the last acquire or renewal

    def try_acquire_or_renew(self) -> bool:
        if self.releasing.is_set():
            return False
        try:
            held = bool(super().try_acquire_or_renew())  # type: ignore[no-untyped-call]
        except Exception as err:  # any failure is a missed attempt, retried
            log.warning("lease %s: %s", self.election_config.lock.name, err)
            held = False
        if held:
            self.renewed_at = time.monotonic()
        elif (self.renewed_at is not None
              and time.monotonic() - self.renewed_at >= self.lease_seconds):
            raise _LeaseExpiredError
        return held


class TimedApi:
    """An API object whose every call carries ``_request_timeout``: a renewal on a connection
    cut without a reset (a network partition) never returned, so the leader neither renewed
    nor learnt that it had lost the lease, and never exited as it must."""

    def __init__(self, api: Any, seconds: float) -> None:
        self._api, self._seconds = api, seconds

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)
        if not callable(method):
            return method
        return lambda *args, **kwargs: method(*args, _request_timeout=self._seconds, **kwargs)


def timed_leases(api: client.ApiClient, seconds: float) -> TimedApi:
    """The Lease API on a client of its own that never retries (urllib3 retries a read that
    timed out three times: a call of ``seconds`` took four times that), each call bounded."""
    config = copy.deepcopy(api.configuration)
    config.retries = False
    return TimedApi(client.CoordinationV1Api(client.ApiClient(config)), seconds)


class Leadership:
    """This process's claim on the Lease ``namespace/name`` under ``identity``."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str,
                 timing: LeaseTiming) -> None:
        self.namespace, self.name, self.identity = namespace, name, identity
        library_log = logging.getLogger("leaderelection")
        if not any(isinstance(f, _OnlyTrouble) for f in library_log.filters):
            library_log.addFilter(_OnlyTrouble())
        self._leases = timed_leases(api, timing.renew_deadline_seconds)
        lock = LeaseLock(name, namespace, identity)  # type: ignore[no-untyped-call]
        # The operator's client, not the library's default (the proxy stands in for it).
        lock.api_instance = cast(client.CoordinationV1Api, self._leases)
        config = electionconfig.Config(  # type: ignore[no-untyped-call]
            lock, timing.lease_seconds, timing.renew_deadline_seconds, timing.retry_seconds,
            onstarted_leading=lambda: None, onstopped_leading=None,
        )
        self._election = _Election(config, timing.lease_seconds)
        self._renew_deadline = timing.renew_deadline_seconds

    def leading(self) -> bool:
        """Whether this process may still act as leader: it renewed within the renew deadline.

        Judged by this process's own monotonic clock, which keeps counting while the process is
        paused: a leader woken after its lease ran out knows before its next write, not after
        the renewal thread's next attempt fails (threads wake in any order).
        """
        renewed = self._election.renewed_at
        return renewed is not None and time.monotonic() - renewed < self._renew_deadline

    def acquire(self) -> None:
        """Block until this process holds the lease."""
        log.info("waiting to lead: lease %s/%s, identity %s", self.namespace, self.name,
                 self.identity)
        self._election.acquire()  # type: ignore[no-untyped-call]
        log.info("leading: lease %s/%s held by %s", self.namespace, self.name, self.identity)

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew in the background; ``on_lost`` runs if a renewal misses its deadline."""

        def renew() -> None:
            try:
                self._election.renew_loop()  # type: ignore[no-untyped-call]
            except _LeaseExpiredError:
                pass
            finally:
                if not self._election.releasing.is_set():
                    on_lost()

        threading.Thread(target=renew, name="lease-renewal", daemon=True).start()

    def release(self) -> None:
        """Stop renewing and clear the holder, so a standby takes over without waiting."""
        self._election.releasing.set()
        for _ in range(3):  # a renewal racing this write makes it a 409: read again
            try:
                lease = self._leases.read_namespaced_lease(self.name, self.namespace)
                if lease.spec is None or lease.spec.holder_identity != self.identity:
                    return
                lease.spec.holder_identity = None
                self._leases.replace_namespaced_lease(self.name, self.namespace, lease)
                log.info("released lease %s/%s", self.namespace, self.name)
                return
            except ApiException as err:
                if err.status != 409:
                    log.warning("could not release lease %s/%s: %s", self.namespace, self.name,
                                err.reason)
                    return
            except Exception as err:  # API server unreachable: the lease simply runs out
                log.warning("could not release lease %s/%s: %s", self.namespace, self.name, err)
                return


class _HealthServer(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], path: str) -> None:
        super().__init__(address, _Healthy)
        self.health_path = path


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _HealthServer)
        self.send_response(200 if urlsplit(self.path).path == self.server.health_path else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not worth a log line."""


@contextmanager
def standby_health(endpoint: str | None) -> Iterator[None]:
    """Answer the liveness endpoint while waiting to lead, so the probe does not restart a
    healthy standby; the port is freed before kopf serves the same endpoint."""
    if not endpoint:
        yield
        return
    url = urlsplit(endpoint)
    server = _HealthServer((url.hostname or "0.0.0.0", url.port or 80), url.path or "/")
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
