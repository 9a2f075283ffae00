"""Back-pressure of the real runtime: a full queue answers 429, a client that leaves frees it
(and one that leaves mid-upload is no server error).

The MiniLM model on one thread scores a few dozen pairs a second, so a 300-document request
keeps the engine busy for seconds: long enough to observe its queue from outside.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kuberank.protocol.shaping import ANOTHER_REPLICA_HEADER
from polling import wait_for
from promtext import sample
from serverkit import Server, running

pytestmark = pytest.mark.runtime

MAX_DOCUMENTS = 300
REQUESTS = "kuberank_runtime_requests_total"
BIG = {"query": "What is a panda?",
       "documents": [f"Passage {i}: the giant panda is a bear of the bamboo forests of China, "
                     "with a black and white coat." for i in range(MAX_DOCUMENTS)]}


@pytest.fixture(scope="module")
def busy_server(minilm_model: Path) -> Iterator[Server]:
    with running(minilm_model, "--max-documents", str(MAX_DOCUMENTS),
                 "--max-queued-pairs", str(MAX_DOCUMENTS + 50)) as srv:
        yield srv


def metric(srv: Server, name: str, **labels: str) -> float:
    return sample(srv.client.get("/metrics").text, name, **labels)


def send_without_waiting(srv: Server, body: object) -> socket.socket:
    """POST ``body`` on a raw connection and return it unread, to be closed by the test."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json"
                 b"\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
    return sock


def queue_depth(srv: Server) -> float:
    return metric(srv, "kuberank_runtime_queue_depth")


def test_a_request_that_would_wait_past_the_time_bound_gets_429_not_a_late_answer(
    minilm_model: Path,
) -> None:
    """8,192 queued pairs took ~90 s to drain on 2 cores, past the gateway's 60 s upstream
    timeout: the requests at the back were admitted only to end as 504s there."""
    srv = Server(minilm_model, "--max-documents", str(MAX_DOCUMENTS),
                 "--max-queued-pairs", "5000", "--max-queue-seconds", "1")
    try:
        srv.wait_healthy()
        first = send_without_waiting(srv, BIG)  # alone: taken, however long it takes
        try:
            wait_for("the pace to be measured", lambda: metric(
                srv, "kuberank_runtime_batch_pairs_count") >= 10, timeout=60, interval=0.05)
            assert queue_depth(srv) >= 100  # seconds of work at a few dozen pairs a second
            small = {"query": "q", "documents": ["a"] * 50}
            refused = srv.client.post("/v1/rerank", json=small)
        finally:
            first.close()
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "queue_full"
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        wait_for("the queue to drain", lambda: queue_depth(srv) == 0, timeout=60)
        assert srv.client.post("/v1/rerank", json=small).status_code == 200
    finally:
        srv.stop()


def test_requests_refused_together_are_told_to_come_back_one_after_another(
    minilm_model: Path,
) -> None:
    """Each refusal counts the requests refused before it: told the same second, twelve polite
    clients came back as one herd and all but one were refused again (280 429s for 37 answers
    in benchmarks/bench_overload.py on 2 cores; 45 for 39 once told in turn)."""
    srv = Server(minilm_model, "--max-documents", str(MAX_DOCUMENTS),
                 "--max-queued-pairs", "5000", "--max-queue-seconds", "1")
    try:
        srv.wait_healthy()
        first = send_without_waiting(srv, BIG)
        try:
            wait_for("the pace to be measured", lambda: metric(
                srv, "kuberank_runtime_batch_pairs_count") >= 10, timeout=60, interval=0.05)
            def retry_after(query: str, headers: dict[str, str] | None = None) -> int:
                refused = srv.client.post("/v1/rerank", headers=headers, json={
                    "query": query, "documents": ["a"] * 100})
                assert refused.status_code == 429, refused.text
                return int(refused.headers["retry-after"])

            told = [retry_after(f"query {i}") for i in range(4)]
            # The same request again, early (a client that ignores Retry-After): told the time
            # it was given, and the next one is not pushed back by it; nor by refusals the
            # gateway will not pass on (it tries another replica).
            again = [retry_after("query 0") for _ in range(5)]
            for i in range(3):
                retry_after(f"tried elsewhere {i}", {ANOTHER_REPLICA_HEADER: "1"})
            after = retry_after("query 4")
        finally:
            first.close()
        assert told == sorted(told) and told[-1] > told[0], told
        assert all(seconds <= told[0] for seconds in again), (told, again)
        assert after <= told[-1] + (told[-1] - told[-2]) + 1, (told, after)
    finally:
        srv.stop()


def test_full_queue_gets_429_with_retry_after_and_then_serves_again(busy_server: Server) -> None:
    first = send_without_waiting(busy_server, BIG)
    try:
        # Refused while more than 50 of the first request's pairs wait (300 + 50 > 350).
        wait_for("the first request to fill the queue",
                 lambda: queue_depth(busy_server) >= 200, timeout=60, interval=0.05)
        refused = busy_server.client.post("/v1/rerank", json=BIG)
    finally:
        first.close()
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    wait_for("the queue to drain", lambda: queue_depth(busy_server) == 0, timeout=60)
    again = busy_server.client.post("/v1/rerank", json=BIG)
    assert again.status_code == 200, again.text
    assert len(again.json()["results"]) == MAX_DOCUMENTS


def test_client_that_leaves_has_its_queued_pairs_skipped(busy_server: Server) -> None:
    decoded_before = metric(busy_server, "kuberank_runtime_batch_pairs_count")
    skipped_before = metric(busy_server, "kuberank_runtime_skipped_pairs_total")
    left_before = metric(busy_server, REQUESTS, path="/v1/rerank", status="499")

    leaving = send_without_waiting(busy_server, BIG)
    wait_for("the request's pairs to be queued",
             lambda: queue_depth(busy_server) >= 100, timeout=60, interval=0.05)
    leaving.close()
    wait_for("the queue to empty", lambda: queue_depth(busy_server) == 0, timeout=60)

    decoded = metric(busy_server, "kuberank_runtime_batch_pairs_count") - decoded_before
    skipped = metric(busy_server, "kuberank_runtime_skipped_pairs_total") - skipped_before
    assert decoded + skipped == MAX_DOCUMENTS
    assert skipped >= 1, "every pair was scored for a client that had left"
    assert metric(busy_server, REQUESTS, path="/v1/rerank", status="499") == left_before + 1
    answer = busy_server.client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert answer.status_code == 200


def test_client_that_leaves_during_the_upload_is_a_499_not_a_server_error(
    busy_server: Server,
) -> None:
    left_before = metric(busy_server, REQUESTS, path="/v1/rerank", status="499")
    sock = socket.create_connection(("127.0.0.1", busy_server.port))
    sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 1000\r\n\r\n{\"query\": \"q\", ")
    sock.close()  # 976 bytes of the body never come
    wait_for("the request to count as 499", lambda: metric(
        busy_server, REQUESTS, path="/v1/rerank", status="499") == left_before + 1, timeout=30)
    assert metric(busy_server, REQUESTS, path="/v1/rerank", status="500") == 0


def test_bodies_held_at_once_are_bounded_and_a_lone_large_one_still_fits(
    minilm_model: Path,
) -> None:
    srv = Server(minilm_model, "--max-documents", str(MAX_DOCUMENTS),
                 "--max-inflight-body-bytes", "25000")
    medium = {"query": "q", "documents": ["a panda"], "pad": "p" * 9000}
    try:
        srv.wait_healthy()
        # (What a stalled upload holds, and a tenant's share, are driven message by message in
        # tests/unit/test_protocol_budget.py.) A body larger than the whole bound is served
        # when it is alone, and holds the bound while it is scored.
        with (httpx.Client(base_url=srv.url, timeout=120) as other,
              concurrent.futures.ThreadPoolExecutor(1) as pool):
            scoring = pool.submit(other.post, "/v1/rerank", json=BIG)
            wait_for("the large request queued", lambda: queue_depth(srv) > 0, interval=0.02)
            refused = srv.client.post("/v1/rerank", json=medium)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "queue_full"
            assert "bytes of request bodies" in refused.json()["error"]["message"]
            assert refused.headers["retry-after"] == "1"
            assert scoring.result().status_code == 200
        assert srv.client.post("/v1/rerank", json=medium).status_code == 200
    finally:
        srv.stop()


def refused_at_the_door(port: int, request: bytes) -> bytes:
    """Send ``request`` on a raw connection; what the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        with contextlib.suppress(ConnectionError):  # it may close while we still send
            sock.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def test_connections_closed_before_the_app_saw_a_request_are_counted_by_why(
    busy_server: Server,
) -> None:
    closed = "kuberank_runtime_connections_closed_total"
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"y" * (70 << 10) + b"\r\n\r\n"
    assert refused_at_the_door(busy_server.port, huge).startswith(b"HTTP/1.1 431")
    garbled = b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n"
    assert refused_at_the_door(busy_server.port, garbled).startswith(b"HTTP/1.1 400")
    wait_for("both counted", lambda: (
        metric(busy_server, closed, reason="headers_too_large") == 1
        and metric(busy_server, closed, reason="bad_request") == 1))
