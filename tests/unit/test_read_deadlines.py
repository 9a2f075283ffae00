"""A client that stalls while sending a request gets 408 and loses its connection, instead of
holding it for ever: headers through the server's protocol (serve), bodies through read_body.
Real uvicorn on a loopback socket, driven byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kuberank.protocol.body import read_body
from kuberank.protocol.connection import MAX_HEADER_BYTES
from kuberank.protocol.errors import install_error_handlers
from kuberank.protocol.serving import serve
from polling import wait_for

pytestmark = pytest.mark.unit

DEADLINE = 1.0  # seconds; every stall below is far past it, every pause far inside it
BIG = 4 << 20  # an answer far larger than the socket buffers on both sides
BODY_STARTED = threading.Event()  # /stream received the first bytes of a body
WATCHING = threading.Event()  # /watch began
GONE = threading.Event()  # /watch saw its client disconnect
CLOSED: list[str] = []  # why the server closed each connection its app never saw (on_closed)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/big")
    async def big() -> Response:
        return Response(b"x" * BIG, media_type="application/octet-stream")

    @app.get("/slow")
    async def slow() -> JSONResponse:
        await asyncio.sleep(DEADLINE * 1.5)
        return JSONResponse({"slow": True})

    @app.post("/stream")
    async def stream(request: Request) -> JSONResponse:
        async for chunk in request.stream():
            if chunk:
                BODY_STARTED.set()
        return JSONResponse({"done": True})

    @app.get("/watch")
    async def watch(request: Request) -> JSONResponse:
        WATCHING.set()
        for _ in range(int(DEADLINE * 50)):
            if await request.is_disconnected():
                GONE.set()
                break
            await asyncio.sleep(0.02)
        return JSONResponse({"watched": True})

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        body = await read_body(request, 1 << 20, stall_seconds=DEADLINE)
        return JSONResponse({"bytes": len(body)})

    return app


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        chosen: int = probe.getsockname()[1]
    stop = threading.Event()
    server = threading.Thread(
        target=serve, args=(_app(), 0.0, threading.Event(), stop, DEADLINE),
        kwargs={"host": "127.0.0.1", "port": chosen, "log_level": "warning",
                "on_closed": CLOSED.append}, daemon=True)
    server.start()

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", chosen)) == 0

    wait_for("the server to listen", listening, timeout=30)
    yield chosen
    stop.set()
    server.join(10)


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(30)  # a server that never closes fails the test here, not hangs it
    return conn


def _until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def _answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _timed_out(raw: bytes) -> str:
    status, headers, body = _answer(raw)
    assert status == 408 and headers["connection"] == "close", raw
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    message: str = error["message"]
    return message


REQUEST = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@contextlib.contextmanager
def closing_reasons() -> Iterator[list[str]]:
    """The reasons ``on_closed`` is told of within the block (the servers' metrics count them)."""
    seen: list[str] = []
    before = len(CLOSED)
    yield seen
    time.sleep(0.2)  # the server's side of a close may trail the client's by a moment
    seen.extend(CLOSED[before:])


def test_a_client_that_connects_and_says_nothing_is_answered_408_and_closed(port: int) -> None:
    with closing_reasons() as reasons, _connect(port) as conn:
        assert "headers not received within 1 s" in _timed_out(_until_closed(conn))
    assert reasons == ["request_timeout"]


def test_half_sent_headers_are_answered_408_and_closed(port: int) -> None:
    with _connect(port) as conn:
        conn.sendall(REQUEST)  # no blank line: the headers never end
        assert "headers not received" in _timed_out(_until_closed(conn))


def test_a_stalled_body_is_answered_408_saying_how_much_came(port: int) -> None:
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(REQUEST + b"Content-Length: 100\r\n\r\n" + b"x" * 10)
        assert "no more of the body for 1 s, after 10 bytes" in _timed_out(_until_closed(conn))
    assert reasons == []  # the app answered it: its request metrics count it


def test_a_kept_alive_connection_gets_the_deadline_for_each_request(port: int) -> None:
    """A first request answered in full, then a second that stalls in its headers."""
    with _connect(port) as conn:
        conn.sendall(REQUEST + b"Content-Length: 2\r\n\r\n{}")
        first = b""
        while b'{"bytes":2}' not in first:
            first += conn.recv(65536)
        assert _answer(first)[0] == 200
        conn.sendall(b"POST /echo HTTP/1.1\r\n")
        assert "headers not received" in _timed_out(_until_closed(conn))


def test_a_slow_client_that_keeps_sending_is_served(port: int) -> None:
    """The deadlines are for stalls: a body trickling in, each piece well inside them, is fine
    (a body's deadline restarts with every piece)."""
    with _connect(port) as conn:
        conn.sendall(REQUEST + b"Content-Length: 6\r\n\r\n")
        for piece in (b"a", b"b", b"c", b"d", b"e", b"f"):  # 2 s in all, a piece every 1/3 s
            time.sleep(DEADLINE / 3)
            conn.sendall(piece)
        answer = b""
        while b"}" not in answer:
            answer += conn.recv(65536)
    status, _, body = _answer(answer)
    assert status == 200 and json.loads(body) == {"bytes": 6}


def _first_answer(conn: socket.socket) -> bytes:
    """One complete answer whose body is a small JSON object."""
    data = b""
    while not data.endswith(b"}"):
        data += conn.recv(65536)
    return data


def test_a_stray_byte_between_requests_does_not_hold_the_connection_for_ever(port: int) -> None:
    """A CRLF after an answer starts no request, but stops uvicorn's keep-alive timer."""
    with _connect(port) as conn:
        conn.sendall(REQUEST + b"Content-Length: 2\r\n\r\n{}")
        assert _answer(_first_answer(conn))[0] == 200
        conn.sendall(b"\r\n")
        assert "headers not received" in _timed_out(_until_closed(conn))


def test_the_unread_rest_of_a_body_answered_early_does_not_hold_the_connection(
    port: int,
) -> None:
    with _connect(port) as conn:
        conn.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        assert _answer(_first_answer(conn))[0] == 404  # answered without reading the body
        with closing_reasons() as reasons:
            conn.sendall(b"x")  # the rest of that body, which then stops coming
            assert _until_closed(conn) == b""  # its answer is out: closed, nothing more said
    assert reasons == ["request_timeout"]


def test_a_pipelined_request_that_stalls_never_cuts_the_answer_before_it(port: int) -> None:
    """The first request takes longer than the deadline to answer while the second, sent right
    behind it, never finishes its headers: the first answer arrives whole, then the 408."""
    with _connect(port) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /slo")
        answers = _until_closed(conn)
    first, _, rest = answers.partition(b'{"slow":true}')
    assert _answer(first + b'{"slow":true}')[0] == 200
    assert "headers not received" in _timed_out(rest)


def test_a_client_that_closes_while_its_request_runs_is_seen_as_gone(port: int) -> None:
    """A client that gives up closes its socket (a FIN, e.g. httpx at its timeout): the app
    must be told, or the gateway holds its call to the runtime and the runtime scores pairs for
    nobody. (A half-close by a client still reading looks the same on the wire, and is taken as
    gone too, as nginx takes it.)"""
    GONE.clear()
    WATCHING.clear()
    with _connect(port) as conn:
        conn.sendall(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for("the request to run", WATCHING.is_set, timeout=10)
    assert GONE.wait(DEADLINE), "the app never learned that its client closed"


def test_a_transfer_coding_before_chunked_is_501_after_the_answer_before_it(port: int) -> None:
    """``Transfer-Encoding: gzip, chunked`` was read as if only chunked: the app got the body
    still compressed and called it invalid JSON. It is refused as RFC 9112 says, 501, once the
    answer of the request before it is out."""
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + REQUEST
                     + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        answers = _until_closed(conn)
    first, _, rest = answers.partition(b'{"slow":true}')
    assert _answer(first + b'{"slow":true}')[0] == 200
    status, headers, body = _answer(rest)
    assert status == 501 and headers["connection"] == "close" and "x-request-id" in headers
    error = json.loads(body)["error"]
    assert error["code"] == "unsupported_transfer_coding" and "'gzip'" in error["message"]
    assert reasons == ["unsupported_transfer_coding"]


def test_garbage_after_a_request_is_refused_after_its_answer_not_instead_of_it(
    port: int,
) -> None:
    """Stray bytes behind a whole request (a Content-Length a little short): the request is
    answered, then the bytes that do not parse get their 400 and the connection closes."""
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
        answers = _until_closed(conn)
    first, _, rest = answers.partition(b'{"slow":true}')
    assert _answer(first + b'{"slow":true}')[0] == 200
    status, headers, body = _answer(rest)
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert reasons == ["bad_request"]


CHUNKED = REQUEST + b"Transfer-Encoding: chunked\r\n\r\n"


def test_a_broken_chunked_body_is_a_400_at_once(port: int) -> None:
    with closing_reasons() as reasons, _connect(port) as conn:
        started = time.monotonic()
        conn.sendall(CHUNKED + b"3\r\nabc\r\nZZZ\r\n")
        status, headers, body = _answer(_until_closed(conn))
        took = time.monotonic() - started
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert took < DEADLINE / 2, took  # not held until the body's deadline
    assert reasons == ["bad_request"]


def test_a_queued_requests_broken_body_is_refused_after_the_answer_before_it(
    port: int,
) -> None:
    with _connect(port) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + CHUNKED + b"3\r\nabc\r\nZZ")
        answers = _until_closed(conn)
    first, _, rest = answers.partition(b'{"slow":true}')
    assert _answer(first + b'{"slow":true}')[0] == 200
    assert _answer(rest)[0] == 400


def test_a_chunked_bodys_trailers_do_not_count_as_headers(port: int) -> None:
    half = b"X-Filler: " + b"y" * (MAX_HEADER_BYTES // 2) + b"\r\n"
    with _connect(port) as conn:
        conn.sendall(CHUNKED.replace(b"Transfer", half + b"Transfer")
                     + b"2\r\n{}\r\n0\r\n" + half.replace(b"X-Filler", b"X-Trailer") + b"\r\n")
        assert _answer(_first_answer(conn))[0] == 200


def test_trailers_past_the_cap_are_answered_431_before_they_fill_memory(port: int) -> None:
    """The parser keeps trailers whole until they end: they are counted as they come in."""
    BODY_STARTED.clear()
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(CHUNKED.replace(b"/echo", b"/stream") + b"2\r\n{}\r\n0\r\n")
        assert BODY_STARTED.wait(10)  # the trailers come in reads of their own
        filler = b"X-Trailer: " + b"y" * 1000  # one trailer that never ends
        with contextlib.suppress(ConnectionError):  # the server may close while we still send
            for _ in range(MAX_HEADER_BYTES // len(filler) + 2):
                conn.sendall(filler)
        status, headers, body = _answer(_until_closed(conn))
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body)["error"]["message"].startswith("request trailers exceed")
    assert reasons == ["headers_too_large"]


def test_a_pipelined_request_is_not_taken_for_the_trailers_before_it(port: int) -> None:
    """The read that ends one request's trailers and brings the next one's headers (large but
    legal) and last chunk is no trailer of either."""
    stream = CHUNKED.replace(b"/echo", b"/stream")
    big = b"X-Filler: " + b"y" * (MAX_HEADER_BYTES - 12_000) + b"\r\n"
    BODY_STARTED.clear()
    with _connect(port) as conn:
        conn.sendall(stream + b"2\r\n{}\r\n0\r\n")
        assert BODY_STARTED.wait(10)
        BODY_STARTED.clear()
        conn.sendall(b"X-Trailer: " + b"t" * 20_000 + b"\r\n\r\n"
                     + stream.replace(b"Transfer", big + b"Transfer") + b"0\r\n")
        answers = _first_answer(conn)  # the first request's: its trailers ended
        conn.sendall(b"\r\n")
        while answers.count(b"}") < 2 and (more := conn.recv(65536)):
            answers += more
    assert answers.count(b"HTTP/1.1 200 OK") == 2, answers[:300]


def test_a_body_in_many_small_chunks_is_not_taken_for_trailers(port: int) -> None:
    with _connect(port) as conn:
        conn.sendall(CHUNKED)
        for _ in range(4):  # more than the cap, each chunk's size line and data in two reads
            conn.sendall(b"8000\r\n")
            time.sleep(0.05)  # so that they arrive as reads of their own
            conn.sendall(b"x" * 0x8000 + b"\r\n")
        conn.sendall(b"0\r\nX-Trailer: 1\r\n\r\n")
        status, _, body = _answer(_first_answer(conn))
    assert status == 200 and json.loads(body) == {"bytes": 4 * 0x8000}


def test_headers_past_the_cap_are_answered_431_before_they_fill_memory(port: int) -> None:
    with _connect(port) as conn:
        conn.sendall(REQUEST)
        filler = b"X-Filler: " + b"y" * 1000 + b"\r\n"
        with contextlib.suppress(ConnectionError):  # the server may close while we still send
            for _ in range(MAX_HEADER_BYTES // len(filler) + 2):
                conn.sendall(filler)
        status, headers, body = _answer(_until_closed(conn))
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert CLOSED[-1] == "headers_too_large"


def test_headers_past_the_cap_in_one_write_are_answered_431_too(port: int) -> None:
    """All of it in one read: parsed before the bytes could be counted on their way in."""
    with closing_reasons() as reasons, _connect(port) as conn:
        filler = b"X-Filler: " + b"y" * (MAX_HEADER_BYTES + 10) + b"\r\n"
        with contextlib.suppress(ConnectionError):
            conn.sendall(REQUEST + filler + b"Content-Length: 2\r\n\r\n{}")
        status, _, body = _answer(_until_closed(conn))
    assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"
    assert reasons == ["headers_too_large"]


def test_a_client_still_sending_when_refused_gets_the_answer_not_a_reset(port: int) -> None:
    """The refusal leaves bytes of the client's unread: closing at once would reset the
    connection and could drop the answer; the server lingers, reading them, as nginx does."""
    for _ in range(5):
        with _connect(port) as conn:
            filler = b"X-Filler: " + b"y" * 1000 + b"\r\n"
            conn.sendall(REQUEST + filler * (4 * MAX_HEADER_BYTES // len(filler)))
            time.sleep(0.2)  # the refusal goes out, the rest of the bytes lie unread there
            status, _, _ = _answer(_until_closed(conn))
        assert status == 431


def test_a_refusal_ends_the_request_it_breaks_and_times_nothing_while_it_lingers(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked body that breaks while the app reads it is refused by the server (400); the
    app, still running, must not write after the end of the connection (a RuntimeError, two
    tracebacks), and bytes the client keeps sending past the read deadline while the server
    lingers start no deadline of their own (a second refusal counted, the linger cut short)."""
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(CHUNKED.replace(b"Transfer", b"Content-Encoding: br\r\nTransfer")
                     + b"zz\r\n")
        for _ in range(8):  # past DEADLINE (1 s), within the linger
            time.sleep(0.2)
            conn.sendall(b"more bytes of a request already refused\r\n")
        status, _, body = _answer(_until_closed(conn))
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
    assert reasons == ["bad_request"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_headers_under_the_cap_are_served(port: int) -> None:
    with _connect(port) as conn:
        filler = b"X-Filler: " + b"y" * (MAX_HEADER_BYTES // 2) + b"\r\n"
        conn.sendall(REQUEST + filler + b"Content-Length: 2\r\n\r\n{}")
        assert _answer(_first_answer(conn))[0] == 200


def test_what_the_http_parser_refuses_is_a_json_400(port: int) -> None:
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n")
        status, headers, body = _answer(_until_closed(conn))
    assert reasons == ["bad_request"]
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])  # as every answer has one


@pytest.mark.parametrize("head", [
    b"POST /echo HTTP/1.1\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n",
    b"POST /echo HTTP/1.0\r\nHost: x\r\nHost: x\r\n",
], ids=["http-1.1-without-host", "two-hosts", "http-1.0-with-two-hosts"])
def test_a_request_without_exactly_one_host_header_is_a_400(port: int, head: bytes) -> None:
    """RFC 9112 section 3.2 asks for a 400 (nginx answers so); it was served."""
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(head + b"Content-Length: 2\r\n\r\n{}")
        status, headers, body = _answer(_until_closed(conn))
    assert status == 400 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and "Host header" in error["message"]
    assert reasons == ["bad_request"]


def test_an_http_1_0_request_needs_no_host(port: int) -> None:
    with _connect(port) as conn:
        conn.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        status, _, body = _answer(_until_closed(conn))
    assert status == 200 and json.loads(body) == {"bytes": 2}


def _with_small_receive_buffer(port: int) -> socket.socket:
    """A connection whose kernel buffer holds little, so what it does not read stays with the
    server."""
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.connect(("127.0.0.1", port))
    conn.settimeout(30)
    return conn


def test_an_answer_nobody_reads_ends_its_connection_and_frees_it(port: int) -> None:
    """The client asks for 4 MiB and reads nothing: after the deadline the server drops the
    connection (and the buffered answer) instead of holding both for ever."""
    with closing_reasons() as reasons, _with_small_receive_buffer(port) as conn:
        conn.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(DEADLINE * 3)  # the client's stall: it reads nothing for three deadlines
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                received += len(chunk)
    assert received < BIG  # cut off, not delivered
    assert reasons == ["answer_unread"]


def test_an_unread_answer_that_closes_its_connection_is_aborted_too(port: int) -> None:
    """Connection: close: the transport closes with the answer still in it, and asyncio would
    wait for a reader that never comes."""
    with closing_reasons() as reasons, _with_small_receive_buffer(port) as conn:
        conn.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(DEADLINE * 3)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                received += len(chunk)
    assert received < BIG
    assert reasons == ["answer_unread"]


def test_the_rest_of_a_large_body_answered_early_is_drained_not_taken_for_headers(
    port: int,
) -> None:
    """A client that sends the body it declared after an early 404 is not refused 431 for it,
    and a request behind that body is answered."""
    rest = b"x" * (3 * MAX_HEADER_BYTES)
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(rest)).encode() + b"\r\n\r\n")
        assert _answer(_first_answer(conn))[0] == 404
        conn.sendall(rest + REQUEST + b"Content-Length: 2\r\n\r\n{}")
        assert _answer(_first_answer(conn))[0] == 200
    assert reasons == []


def test_a_connection_idle_after_a_body_answered_early_is_kept_alive_not_refused(
    port: int,
) -> None:
    """Once the rest of the body was drained, the read deadline for headers was armed: past it
    the server wrote a 408 nobody asked for, which a client reusing the connection
    (http.client) read as the answer to its next request."""
    rest = b"x" * 4096
    with closing_reasons() as reasons, _connect(port) as conn:
        conn.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(rest)).encode() + b"\r\n\r\n")
        assert _answer(_first_answer(conn))[0] == 404
        conn.sendall(rest)
        time.sleep(DEADLINE * 2.5)  # idle past the read deadline, within the keep-alive (5 s)
        conn.sendall(REQUEST + b"Content-Length: 2\r\n\r\n{}")
        assert _answer(_first_answer(conn))[0] == 200
    assert reasons == []


def test_a_slow_reader_that_keeps_reading_gets_the_whole_answer(port: int) -> None:
    with _with_small_receive_buffer(port) as conn:
        conn.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(1 << 20):
            data += chunk
            time.sleep(0.01)  # slow, but never a deadline without reading
    assert _answer(data)[0] == 200 and data.endswith(b"x" * 100)
    assert len(data.partition(b"\r\n\r\n")[2]) == BIG
