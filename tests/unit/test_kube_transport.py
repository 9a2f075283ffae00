"""An API server that cannot be reached is a transient ``KubeError(0)``, never urllib3's own
exception: the daemons (expiry, idle, autoscaler) catch ``KubeError`` only, and kopf retries a
handler's ``TemporaryError`` quietly instead of logging a traceback per event."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from kuberank.operator.kube import Kube, KubeError, Ref
from kubernetes import client

pytestmark = pytest.mark.unit


_SECRET = Ref("v1", "Secret", "default", "x")


def _kube(port: int) -> Kube:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    return Kube(client.ApiClient(configuration))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def hangs_up() -> Iterator[int]:
    """A listener that reads each request and closes the connection without an answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(timeout=5)


def test_a_refused_connection_is_a_transient_kube_error() -> None:
    with pytest.raises(KubeError) as caught:
        _kube(_closed_port()).get(_SECRET)
    assert caught.value.status == 0 and caught.value.transient
    assert "refused" in caught.value.message.lower()


def test_a_connection_closed_without_an_answer_is_a_transient_kube_error(hangs_up: int) -> None:
    with pytest.raises(KubeError) as caught:
        _kube(hangs_up).get(_SECRET)
    assert caught.value.status == 0 and caught.value.transient
