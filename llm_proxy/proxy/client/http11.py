"""One HTTP/1.1 keep-alive connection to an upstream (`Connection`, an asyncio protocol: at
most one request in flight, its life one named `ConnectionState`), parsed with httptools
(llhttp, in C) into a `Response` (`llm_proxy.proxy.client.response`).

Request bodies are bytes, or a `StreamedBody` written chunk by chunk as the upstream takes it
(an upstream that answers before the whole body is sent is heard, and the connection is closed:
one is reused only when its request went out whole and its answer came in whole). Response
bodies are chunked, Content-Length, or delimited by the end of the connection. Response heads
are bounded (`MAX_LINE_BYTES` per line, `MAX_HEADERS` fields, `MAX_HEAD_BYTES` in all) but
lenient as aiohttp's client is (bare LF line ends, folded header lines). Deadlines are single
timer handles, not context managers.

The connection knows nothing of the pool: it is given `on_reusable` and `on_closed` callbacks
when it is made, and the pool asks it the rest (`is_available`, `is_idle`, `has_expired`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, cast

import httptools

from llm_proxy.proxy.client.errors import (
    Disconnected,
    FirstByteTimeout,
    ProtocolError,
    UpstreamError,
)
from llm_proxy.proxy.client.response import Response
from llm_proxy.proxy.client.target import Origin

_NO_DEADLINE: Final = float("inf")
# Bounds on a response head, as the server side bounds requests: an upstream that never ends its
# headers is an error after at most one socket read past MAX_HEAD_BYTES, not a growing buffer.
MAX_LINE_BYTES: Final = 8 * 1024  # the status line, and each header line
MAX_HEADERS: Final = 100
MAX_HEAD_BYTES: Final = 64 * 1024  # the whole head (1xx interim heads included)


class ConnectionState(enum.IntEnum):
    """Where a connection is in its life (httpcore's HTTPConnectionState, with the answer's
    phases told apart: the re-send rule, the head limits and EOF-delimited bodies need them).
    Each request goes SENT → HEAD → BODY or BODY_TO_EOF → IDLE; any state can go to CLOSED."""

    NEW = 0  # connected, never used
    SENT = 1  # a request is written (its streamed body may still be going out); no answer yet
    HEAD = 2  # the answer's head is arriving (1xx interim heads included)
    BODY = 3  # the head is in; the body's end is marked (Content-Length, chunked, none)
    BODY_TO_EOF = 4  # the head is in; the body ends when the upstream closes the connection
    IDLE = 5  # the request went out whole and its answer ended whole: it can carry another
    CLOSED = 6


# Module names for the members: the hot path reads a global, not an attribute of the class.
NEW, SENT, HEAD, BODY, BODY_TO_EOF, IDLE, CLOSED = ConnectionState


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(FirstByteTimeout("timed out waiting for headers"))


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """A request body sent in chunks as they are read (an upload spooled to disk); `chunks`
    starts over at each call (a re-send, a failover)."""

    length: int
    chunks: Callable[[], AsyncIterator[bytes]]


class Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    __slots__ = (
        "_head_bytes",
        "_headers_waiter",
        "_loop",
        "_on_closed",
        "_on_reusable",
        "_parser",
        "_sending",
        "_write_waiter",
        "_writing_paused",
        "expires_at",
        "lost_at",
        "origin",
        "reading_paused",
        "response",
        "sent_at",
        "state",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: Origin,
        on_reusable: Callable[[Connection], None],
        on_closed: Callable[[Connection], None],
    ) -> None:
        """`on_reusable(self)` is called when an answer ended whole after its request went out
        whole, and the connection can carry another request; `on_closed(self)` once when it
        closed (the pool's two callbacks)."""
        self._loop = loop
        self.origin = origin  # the pool's key
        self._on_reusable = on_reusable
        self._on_closed = on_closed
        self._parser = httptools.HttpResponseParser(self)
        # What aiohttp's client accepts from old servers: bare LF line ends, folded header lines.
        self._parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True
        )
        self.state = NEW
        self._head_bytes = 0  # bytes received while the current answer's head is incomplete
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None  # the answer being parsed
        self._headers_waiter: asyncio.Future[None] | None = None
        # Not states: flow control each way, and the fate of a streamed body.
        self._write_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self.reading_paused = False
        # A streamed body not all written yet; it stays set if the body was cut short (an
        # answer came first): the upstream would read the next request as the rest of it, so
        # such a connection never goes IDLE (the pool's test) but is closed.
        self._sending = False
        self.expires_at = _NO_DEADLINE  # set by the pool when it parks it (the pool's clock)
        # The evidence for the pool's re-send rule (loop time).
        self.sent_at = 0.0  # the current request was written
        self.lost_at = _NO_DEADLINE  # the connection was lost with that request unanswered

    # What the pool asks.

    def is_idle(self) -> bool:
        """Between requests, and open."""
        return self.state is IDLE

    def is_available(self, now: float) -> bool:
        """Can carry a request now: idle, its socket not closing, and not parked past
        `expires_at` (`now` on the pool's clock)."""
        transport = self.transport
        return (
            self.state is IDLE
            and now < self.expires_at
            and transport is not None
            and not transport.is_closing()
        )

    def has_expired(self, now: float) -> bool:
        """Parked past `expires_at` (`now` on the pool's clock), or closed meanwhile."""
        return now >= self.expires_at or self.state is CLOSED

    def unanswered_for(self) -> float:
        """How long after the request was written the connection was lost with no byte of
        its answer back (inf when answered, or not lost)."""
        return self.lost_at - self.sent_at

    async def send(
        self,
        data: tuple[bytes, ...],
        now: float,
        deadline: float,
        first_deadline: float,
        idle: float | None,
        stream: StreamedBody | None = None,
    ) -> Response:
        """Write one request (`data`, then `stream` if given); returns when the answer's head
        is in. `now` and the deadlines are loop time."""
        loop = self._loop
        transport = self.transport
        assert transport is not None
        first_deadline = min(first_deadline, deadline)
        response = self.response = Response(self, loop, idle, deadline, first_deadline)
        waiter = self._headers_waiter = loop.create_future()
        self.state = SENT
        self._sending = False
        self._head_bytes = 0
        self.sent_at = now
        transport.write(b"".join(data))
        if stream is not None:
            try:
                await self._pump(stream, waiter, deadline)
            except BaseException:
                self.abort()
                raise
            # The wait for the answer starts once the body is out.
            first_deadline = min(deadline, loop.time() + (first_deadline - now))
            response.first_deadline = first_deadline
        timer = loop.call_at(first_deadline, _expire, waiter)
        try:
            await waiter
        except BaseException:
            self.abort()
            raise
        finally:
            timer.cancel()
            # Cleared by the parser on success: by the time this runs, the connection may
            # already be back in the pool and carrying someone else's request.
            if self._headers_waiter is waiter:
                self._headers_waiter = None
        return response

    async def _pump(
        self, stream: StreamedBody, answered: asyncio.Future[None], deadline: float
    ) -> None:
        """Write a streamed body, chunk by chunk, as fast as the upstream takes it (bounded
        by `deadline`). An upstream that answers before the whole body is sent (a 413) is
        heard: the rest is not sent (`_sending` stays set), and the connection is closed."""
        loop = self._loop
        transport = self.transport
        assert transport is not None
        unsent = stream.length
        self._sending = unsent > 0
        async for chunk in stream.chunks():
            if answered.done():
                return
            if self.state is CLOSED:
                raise Disconnected("upstream closed the connection while the body was sent")
            transport.write(chunk)
            unsent -= len(chunk)
            if unsent <= 0:
                self._sending = False  # all of it written (in order, ahead of any next request)
            if self._writing_paused:
                waiter = self._write_waiter = loop.create_future()
                timer = loop.call_at(deadline, _expire, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    self._write_waiter = None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        if self.state is not CLOSED:
            self.state = CLOSED
            if self.transport is not None:
                self.transport.abort()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and self.state is not CLOSED:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and self.state is not CLOSED:
            self.reading_paused = False
            self.transport.resume_reading()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # requests go out whole: no Nagle delay
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is SENT:
            self.state = HEAD  # the first byte of the answer
        elif state is IDLE or state is NEW:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:  # 101 too
            # A limit raised in a callback reaches here as the context of a callback error.
            cause = exc.__context__
            if not isinstance(cause, ProtocolError):
                cause = ProtocolError(f"invalid HTTP response from upstream: {exc}")
            self._fail(cause)
            self.abort()
            return
        # The head limits cost one state test per read here, two len() per header line.
        if self.state is HEAD:  # the head is still incomplete
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(ProtocolError(f"upstream response head over {MAX_HEAD_BYTES} bytes"))
                self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        self.state = CLOSED
        if state is SENT:
            self.lost_at = self._loop.time()
        self._on_closed(self)
        response = self.response
        if response is not None and state is BODY_TO_EOF and exc is None:
            self.response = None
            response.finish(None)  # a body delimited by the end of the connection
            return
        reason = f": {exc}" if exc is not None else ""
        writer = self._write_waiter
        if writer is not None and not writer.done():
            writer.set_exception(Disconnected(f"upstream closed the connection{reason}"))
        self._fail(Disconnected(f"upstream closed the connection{reason}"))

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        response = self.response
        if response is not None:
            self.response = None
            response.finish(error)

    # httptools callbacks

    def on_status(self, status: bytes) -> None:
        assert self.response is not None
        if len(status) > MAX_LINE_BYTES:
            raise ProtocolError(f"upstream status line over {MAX_LINE_BYTES} bytes")
        self.response.reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        headers = self.response.raw_headers
        if len(name) + len(value) > MAX_LINE_BYTES:
            raise ProtocolError(f"upstream header line over {MAX_LINE_BYTES} bytes")
        if len(headers) >= MAX_HEADERS:
            raise ProtocolError(f"upstream response with over {MAX_HEADERS} header fields")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self._parser.get_status_code()
        if status < 200:  # 1xx interim answer: the real one follows
            response.raw_headers = []
            return
        response.status = status
        chunked = False
        for name, value in response.raw_headers:
            lname = name.lower()
            if lname == b"content-type":
                response.content_type = value.split(b";", 1)[0].strip().lower().decode("latin-1")
            elif lname == b"content-length":
                with contextlib.suppress(ValueError):  # llhttp rejects malformed ones
                    response.content_length = int(value)
            elif lname == b"transfer-encoding":
                chunked = True
        self.state = BODY_TO_EOF if response.content_length is None and not chunked else BODY
        waiter = self._headers_waiter
        self._headers_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or self.state is HEAD:
            return  # the end of a 1xx interim answer
        self.response = None
        keep_alive = self._parser.should_keep_alive() and not self._sending
        response.finish(None)
        if keep_alive and self.state is not CLOSED:
            self.state = IDLE
            self.resume_reading()
            self._on_reusable(self)
        else:
            # A body still going out stops here: its pump, woken if it waits for the socket,
            # sees the answer and sends no more (the answer stands, the connection is closed).
            writer = self._write_waiter
            if writer is not None and not writer.done():
                writer.set_result(None)
            self.abort()
