"""uvicorn's httptools protocol with the bounds uvicorn leaves out, so that no client holds a
connection, or the server's memory, for as long as it likes (nginx has each of them:
``client_header_timeout``, ``large_client_header_buffers``, ``send_timeout``).

- A request's headers must be complete within ``read_seconds`` of its first byte (for the first
  request, of the connection; bytes between requests that begin none count too), else 408.
- They may take ``MAX_HEADER_BYTES`` at most, else 431 (the parser would buffer any size):
  counted as they arrive and as they are parsed, so neither a trickle nor one large read
  gets past it.
- An answer the client stops reading (the write buffer past its high-water mark, not shrinking
  for ``read_seconds``) ends the connection: it would hold the answer's memory for ever.
- What the HTTP parser refuses is answered in the API's JSON error shape, not plain text; so is
  a request without exactly one Host header (HTTP/1.0 may send none), which RFC 9112 refuses.

A stalled body is the app's to time out (``read_body``), so that it can answer in JSON. Every
answer here closes the connection; none is written into the answer of an earlier (pipelined)
request of the connection: it waits for that answer (reading no more meanwhile). The app never
sees these refusals, so each is told to ``on_closed`` (the servers count them: a slow-client
attack shows in metrics). Closing lingers, as nginx's does: the answer goes out with the end of
the server's side, and what the client still sends is read and dropped for a few seconds, since
a socket closed with bytes unread resets the connection and a client still sending its request
could lose the answer. A client that ends its side (a FIN) is gone, as nginx takes it: one that
gives up and closes looks the same on the wire as one that half-closes and still reads, and the
first is the one whose work must stop.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import struct
import termios
import threading
from http import HTTPStatus

from httptools import HttpParserError
from kuberank.protocol.body import transfer_coding_refusal
from kuberank.protocol.errors import (
    ApiError,
    BadRequest,
    HeadersTooLarge,
    RequestTimeout,
    error_body,
)
from kuberank.protocol.requestid import HEADER as REQUEST_ID_HEADER
from kuberank.protocol.requestid import choose_request_id
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # request line and headers; nginx's default is 4 x 8 KiB
# A lingering close ends when the client sends nothing for LINGER_IDLE_SECONDS, or at most
# LINGER_SECONDS after the answer (nginx: lingering_timeout 5 s, lingering_time 30 s).
LINGER_IDLE_SECONDS = 2.0
LINGER_SECONDS = 10.0


def error_bytes(err: ApiError, request_id: str) -> bytes:
    """``err`` as a whole HTTP/1.1 answer in the API's error shape, closing the connection,
    with an ``x-request-id`` as every answer has (a fresh one: the request never parsed)."""
    body = json.dumps(error_body(err)).encode()
    head = (f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}\r\n"
            f"content-type: application/json\r\nconnection: close\r\n"
            f"{REQUEST_ID_HEADER}: {request_id}\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


ANSWER_UNREAD = "answer_unread"  # why a connection was closed without an answer
# The help of the servers' counter of what ``on_closed`` is told (one text for both).
CLOSED_HELP = (
    "Connections the server closed on its own, by why: request_timeout (headers not "
    "complete within --read-timeout), headers_too_large, bad_request (bytes that are "
    "not HTTP), unsupported_transfer_coding (a Transfer-Encoding coding before chunked), "
    "answer_unread (an answer the client read nothing of for --read-timeout)."
    " Only answer_unread follows a request the request metrics counted."
)


class _HeadersOverCapError(HttpParserError):
    """Stops the parser inside its callback: uvicorn answers what stops it with
    ``send_400_response``, which says 431 for this one."""


class _RefusedHeadersError(HttpParserError):
    """Stops the parser before the body of a request whose headers are refused."""


def host_refusal(http_version: str, hosts: int) -> ApiError | None:
    """RFC 9112 section 3.2: a 400 for an HTTP/1.1 request without a Host header, and for any
    request with more than one (which one names the resource cannot be told)."""
    if hosts > 1:
        return BadRequest("the request has more than one Host header: send one")
    if hosts == 0 and http_version != "1.0":
        return BadRequest(f"an HTTP/{http_version} request needs a Host header")
    return None


class BoundedProtocol(HttpToolsProtocol):
    read_seconds = 60.0
    # Set while the server drains (``serving``): every answer then closes its connection, so a
    # client's kept connection does not outlive the drain and lose the request it sends as the
    # server stops; its next request opens a connection that a load balancer sends elsewhere.
    draining: threading.Event | None = None

    @staticmethod
    def on_closed(reason: str) -> None:
        """A connection was closed here: ``reason`` is the refusal's error code, or
        ``ANSWER_UNREAD``. Subclasses (``serving.serve``) count them."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._parsed_bytes = 0  # of this request's line and headers, as the parser gives them
        self._in_headers = False
        self._in_message = False  # between a request's first byte and the end of its body
        self._message_ended = False  # the read being parsed ended a message
        # A chunk's size line was parsed and none of its data yet: after the last chunk's,
        # the bytes are trailers, which the parser buffers whole before any callback.
        self._chunk_begun = False
        # The read being parsed gave body bytes or began a message: it is no trailer's.
        self._not_trailers = False
        self._trailer_bytes = 0
        self._drain_deadline: asyncio.TimerHandle | None = None
        self._after_answers: ApiError | None = None  # a refusal waiting for earlier answers
        # Requests of this connection not answered yet, oldest first (uvicorn's ``cycle`` is
        # the newest parsed only: one pipelined behind another replaces it).
        self._unanswered: list[RequestResponseCycle] = []
        self._write_watch: asyncio.TimerHandle | None = None
        self._buffered = 0
        self._linger_until = 0.0  # set when closing: what comes in until then is dropped
        self._header_refusal: ApiError | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._arm_header_deadline()  # a client that connects and says nothing

    # -- reading -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._linger_until:
            self._arm_linger()
            return
        if self._header_deadline is not None:  # reading a request's headers
            self._header_bytes += len(data)
        between_chunks, self._not_trailers = self._chunk_begun, False
        self._message_ended = False
        super().data_received(data)
        if self._ending():  # a refusal inside the parser: its answer is out
            return
        # Only whole reads after the last chunk's size line count: the trailers in the read that
        # brought that line are not (the cap holds within one read's size).
        if between_chunks and self._chunk_begun and not self._not_trailers:
            self._trailer_bytes += len(data)
        if self._header_deadline is not None and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(HeadersTooLarge(f"request headers exceed {MAX_HEADER_BYTES} bytes"))
        elif self._trailer_bytes > MAX_HEADER_BYTES:
            self._refuse(HeadersTooLarge(f"request trailers exceed {MAX_HEADER_BYTES} bytes"))
        elif self._header_deadline is None and not self._answering():
            # Bytes that begin no request stop uvicorn's keep-alive timer: the rest of a body
            # answered early (drained while it keeps coming), or a stray CRLF (a request's
            # headers must follow in time).
            if self._in_message:
                self._arm_drain_deadline()
            elif not self._message_ended:  # (an ended one left the keep-alive timer armed)
                self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self._parsed_bytes = self._trailer_bytes = 0
        self._chunk_begun, self._not_trailers = False, True
        self._in_headers = True  # httptools calls on_header for a chunked body's trailers too
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm_header_deadline()

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_headers:
            self._count_parsed(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_chunk_header(self) -> None:
        self._chunk_begun = True

    def on_body(self, body: bytes) -> None:
        self._chunk_begun, self._not_trailers = False, True
        super().on_body(body)

    def _count_parsed(self, size: int) -> None:
        """Headers that came in one read are parsed before ``data_received`` can look."""
        self._parsed_bytes += size
        if self._parsed_bytes > MAX_HEADER_BYTES:
            raise _HeadersOverCapError

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_header_deadline()
        codings = [v.decode("latin-1") for n, v in self.headers if n == b"transfer-encoding"]
        self._header_refusal = (
            host_refusal(self.parser.get_http_version(), sum(n == b"host" for n, _ in self.headers))
            or (transfer_coding_refusal(codings) if codings else None))
        if self._header_refusal is not None:
            raise _RefusedHeadersError  # answered by send_400_response
        super().on_headers_complete()
        if self.cycle is not None and self.cycle not in self._unanswered:
            self._unanswered.append(self.cycle)
        if self.cycle is not None and self.draining is not None and self.draining.is_set():
            self.cycle.keep_alive = False  # answered with Connection: close

    def send_400_response(self, msg: str) -> None:
        if self._header_refusal is not None:
            self._refuse(self._header_refusal)
            return
        if self._parsed_bytes > MAX_HEADER_BYTES:
            self._refuse(HeadersTooLarge(f"request headers exceed {MAX_HEADER_BYTES} bytes"))
            return
        self._refuse(BadRequest(f"{msg.rstrip('.')}: the HTTP request does not parse"))

    def on_message_complete(self) -> None:
        self._in_message = self._chunk_begun = False
        self._message_ended = True
        _cancel(self._drain_deadline)
        self._drain_deadline = None
        super().on_message_complete()
        if self._header_deadline is None and not self._answering():
            # A body drained after its early answer (a 413, a 429): the connection is idle now,
            # as after any answer, and closes as idle ones do, quietly at the keep-alive
            # timeout (the body's bytes stopped uvicorn's timer). A header deadline here sent
            # a 408 for a request nobody had sent, read as the answer to the next one.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _arm_drain_deadline(self) -> None:
        _cancel(self._drain_deadline)  # restarted by every read: a deadline for stalls
        self._drain_deadline = self.loop.call_later(self.read_seconds, self._drain_stalled)

    def _drain_stalled(self) -> None:
        """The rest of a body answered early stopped coming: its answer is out, so close."""
        self._drain_deadline = None
        if not self._ending() and not self._answering():
            log.info("%s: sent no more of a body already answered for %g s; the connection "
                     "is closed", self._peer(), self.read_seconds)
            self.on_closed(RequestTimeout.default_code)
            self.transport.close()

    def _arm_header_deadline(self) -> None:
        self._header_bytes = 0
        self._header_deadline = self.loop.call_later(self.read_seconds, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        _cancel(self._header_deadline)
        self._header_deadline = None

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    def _answering(self) -> bool:
        """A request of this connection, whose headers came in time, is not answered yet."""
        self._unanswered = [c for c in self._unanswered if not c.response_complete]
        return bool(self._unanswered)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._ending():
            return
        if self._answering():  # a pipelined request stalls behind one still being answered:
            self._arm_header_deadline()  # its answer must not be cut, so look again later
            return
        self._refuse(RequestTimeout(f"request headers not received within "
                                    f"{self.read_seconds:g} s; the connection is closed"))

    def _refuse(self, err: ApiError) -> None:
        """Answer ``err`` and close the connection, never inside the answer of an earlier
        request: bytes that broke after a whole request (or a queued request's body) are
        refused once the answers before them are out, reading no more meanwhile."""
        self._disarm_header_deadline()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if not cycle.more_body or self._drop_queued(cycle):
                self._after_answers = err
                self.transport.pause_reading()
                return
            if cycle.response_started:  # its own body broke under an answer already begun
                self._close(err, answer=False)
                return
        self._close(err, answer=True)

    def _drop_queued(self, cycle: RequestResponseCycle) -> bool:
        """A pipelined request whose body broke before its turn never runs."""
        if self.pipeline and self.pipeline[0][0] is cycle:
            self.pipeline.popleft()
            cycle.response_complete = True  # nothing waits for its answer
            return True
        return False

    def _ending(self) -> bool:
        """Closed, closing or lingering: nothing more is read, answered or timed."""
        return self.transport.is_closing() or bool(self._linger_until)

    def _close(self, err: ApiError, answer: bool) -> None:
        if self._ending():
            return
        chosen = choose_request_id(None)
        log.info("%s: %d %s (request %s)", self._peer(), err.status, err.message,
                 chosen if answer else "-")
        self.on_closed(err.code)
        if not answer:
            self.transport.close()
            return
        self.transport.write(error_bytes(err, chosen))
        self._linger()

    def _linger(self) -> None:
        """End the server's side after the answer, then drop what still comes in until the
        client goes quiet, hangs up, or ``LINGER_SECONDS`` pass; then close. A request still
        running is told its client is gone: nothing can be written after the end."""
        self._disarm_header_deadline()
        _cancel(self._drain_deadline)
        self._drain_deadline = None
        self._abandon_requests()
        try:
            self.transport.write_eof()
        except (NotImplementedError, RuntimeError):
            self.transport.close()
            return
        self._linger_until = self.loop.time() + LINGER_SECONDS
        self.transport.resume_reading()  # a refusal after answers paused it
        self._arm_linger()

    def _arm_linger(self) -> None:
        _cancel(self._linger_timer)
        wait = min(LINGER_IDLE_SECONDS, self._linger_until - self.loop.time())
        self._linger_timer = self.loop.call_later(max(0.0, wait), self.transport.close)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if (self._after_answers is not None and not self.transport.is_closing()
                and not self._answering() and not self.pipeline):
            err, self._after_answers = self._after_answers, None
            self._close(err, answer=True)

    def end_keep_alive(self) -> None:
        """The server began to drain: no answer keeps its connection from now on, those of
        requests in flight included. A connection idle between requests stays open through the
        drain and closes with its next answer: closed now, a client that does not look before
        it sends (``http.client``) lost the request it sent next (EPIPE), every time."""
        if self._ending():
            return
        for cycle in (*self._unanswered, self.cycle):
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False

    # -- writing -------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_writes()

    def resume_writing(self) -> None:
        self._stop_watching_writes()
        super().resume_writing()

    def _watch_writes(self) -> None:
        self._stop_watching_writes()
        self._buffered = self._unsent()
        self._write_watch = self.loop.call_later(self.read_seconds, self._check_writes)

    def _unsent(self) -> int:
        """Bytes of answers the client has not taken yet: the transport's buffer and what the
        kernel still holds (its buffer moves only when a third of the kernel's frees up, so
        a slow reader's progress can be invisible in the transport's alone)."""
        held = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
        except (AttributeError, OSError, ValueError):
            return held
        return held + int(struct.unpack("i", queued)[0])

    def _stop_watching_writes(self) -> None:
        _cancel(self._write_watch)
        self._write_watch = None

    def _check_writes(self) -> None:
        # A closing transport still holds what it could not send (an answer with
        # Connection: close, or one a refusal follows): asyncio would wait for it for ever.
        self._write_watch = None
        if self.transport.get_write_buffer_size() == 0:  # all handed to the kernel (a closing
            return                                       # transport is never resumed)
        if self._unsent() < self._buffered:
            self._watch_writes()  # the client reads, if slowly
            return
        log.info("%s: read nothing of its answer for %g s; the connection is closed",
                 self._peer(), self.read_seconds)
        self.on_closed(ANSWER_UNREAD)
        self._after_answers = None  # moot: one count per connection
        self.transport.abort()  # frees what it would not read

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        _cancel(self._drain_deadline)
        _cancel(self._linger_timer)
        self._stop_watching_writes()
        if self._after_answers is not None:  # the answer before it closed the connection
            self.on_closed(self._after_answers.code)
            self._after_answers = None
        self._abandon_requests()
        super().connection_lost(exc)

    def _abandon_requests(self) -> None:
        """Tell every request of the connection not answered yet that its client is gone
        (uvicorn tells only the newest, a pipelined one): the one being answered would write to
        a closed transport, and score for nobody."""
        running = [c for c in (*self._unanswered, self.cycle)
                   if c is not None and not c.response_complete]
        for cycle in running:
            cycle.disconnected = True
            cycle.waiting_for_100_continue = False
            cycle.message_event.set()
