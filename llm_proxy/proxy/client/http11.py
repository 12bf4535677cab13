"""One HTTP/1.1 keep-alive connection to an upstream (`Connection`, an asyncio protocol: at
most one request in flight) and the answer it parses (`Response`), with httptools (llhttp,
in C).

Request bodies are bytes, or a `StreamedBody` written chunk by chunk as the upstream takes it
(an upstream that answers before the whole body is sent is heard, and the connection is not
reused). Response bodies are chunked, Content-Length, or delimited by the end of the
connection. Response heads are bounded (`MAX_LINE_BYTES` per line, `MAX_HEADERS` fields,
`MAX_HEAD_BYTES` in all) but lenient as aiohttp's client is (bare LF line ends, folded header
lines). Flow control: the upstream socket stops being read while `HIGH_WATER` bytes wait for a
slow client. Deadlines are single timer handles, not context managers.

The connection knows nothing of the pool: it is given `on_reusable` and `on_closed` callbacks
when it is made, and the pool asks it the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, cast

import httptools

from llm_proxy.proxy.client.errors import (
    Disconnected,
    FirstByteTimeout,
    ProtocolError,
    ReadTimeout,
    UpstreamError,
)
from llm_proxy.proxy.client.target import Origin

HIGH_WATER: Final = 256 * 1024  # buffered response bytes at which reading the socket pauses
_NO_DEADLINE: Final = float("inf")
# Bounds on a response head, as the server side bounds requests: an upstream that never ends its
# headers is an error after at most one socket read past MAX_HEAD_BYTES, not a growing buffer.
MAX_LINE_BYTES: Final = 8 * 1024  # the status line, and each header line
MAX_HEADERS: Final = 100
MAX_HEAD_BYTES: Final = 64 * 1024  # the whole head (1xx interim heads included)


class Response:
    """An upstream answer whose status and headers are in; the body is read with `read_chunk`."""

    __slots__ = (
        "_buffer",
        "_conn",
        "_done",
        "_due",
        "_error",
        "_idle_secs",
        "_loop",
        "_size",
        "_timer",
        "_waiter",
        "content_length",
        "content_type",
        "deadline",
        "first_deadline",
        "raw_headers",
        "reason",
        "received",
        "status",
    )

    def __init__(
        self, conn: Connection, idle_secs: float | None, deadline: float, first_deadline: float
    ) -> None:
        self.status = 0
        self.reason = ""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_type = ""  # media type, lower case, without parameters
        self.content_length: int | None = None
        self._conn: Connection | None = conn
        self._loop = conn._loop
        self._buffer: list[bytes] = []  # (a list: a deque costs a 64-slot block per stream)
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = deadline
        self._idle_secs = idle_secs
        self.deadline = deadline  # loop time by which the whole body must be in
        self.first_deadline = first_deadline  # ...and the headers (callers may extend it)
        self.received = 0  # body bytes received so far

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (given in lower case)."""
        for key, value in self.raw_headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    @property
    def complete(self) -> bool:
        """The whole body has arrived (it may still be buffered here)."""
        return self._done

    async def read_chunk(self, deadline: float | None = None) -> bytes:
        """Everything buffered, waiting for more if nothing is; b"" at the end of the body.
        Waits at most the idle timeout, and never past `deadline` or the total deadline."""
        while True:
            if self._buffer:
                buffer = self._buffer
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                self._size = 0
                conn = self._conn
                if conn is not None and conn.reading_paused:
                    conn.resume_reading()
                return data
            if self._done:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait(deadline)

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes of the body (less if it ends first)."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await self.read_chunk()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit]

    async def _wait(self, deadline: float | None) -> None:
        loop = self._loop
        due = self.deadline if deadline is None else min(deadline, self.deadline)
        if self._idle_secs is not None:
            due = min(due, loop.time() + self._idle_secs)
        self._due = due
        # One lazy timer per response rather than one per wait: it stays armed across waits
        # (the idle deadline only moves later) and re-arms itself if it fires early.
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(due, self._on_timer)
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        except BaseException:
            self.close()
            raise
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait arms a new timer
        loop = self._loop
        if loop.time() < self._due:
            self._timer = loop.call_at(self._due, self._on_timer)
            return
        waiter.set_exception(ReadTimeout("timed out reading the upstream's answer"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Drop the connection unless the body already arrived whole (then it is pooled)."""
        self._stop_timer()
        conn = self._conn
        if conn is not None:
            self._conn = None
            if not self._done:
                conn.abort()

    # Called by the connection.

    def _feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        self.received += len(data)
        if self._size > HIGH_WATER and self._conn is not None:
            self._conn.pause_reading()
        self._wake()

    def _finish(self, error: BaseException | None) -> None:
        self._stop_timer()
        if error is None:
            self._done = True
        elif not self._done:
            self._error = error
        self._conn = None if self._done else self._conn
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


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
        "_unsent",
        "_until_eof",
        "_write_waiter",
        "_writing_paused",
        "answered",
        "closed",
        "idle_since",
        "lost_at",
        "origin",
        "reading_paused",
        "response",
        "sent_at",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: Origin,
        on_reusable: Callable[[Connection], None],
        on_closed: Callable[[Connection], None],
    ) -> None:
        """`on_reusable(self)` is called when an answer ended and the connection can carry
        another request, `on_closed(self)` once when it closed (the pool's two callbacks)."""
        self._loop = loop
        self.origin = origin  # the pool's key
        self._on_reusable = on_reusable
        self._on_closed = on_closed
        self._parser = httptools.HttpResponseParser(self)
        # What aiohttp's client accepts from old servers: bare LF line ends, folded header lines.
        self._parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True
        )
        self._head_bytes = 0  # bytes received while the current answer's head is incomplete
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self._headers_waiter: asyncio.Future[None] | None = None
        self._until_eof = False
        self._write_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._unsent = False  # an answer came before the whole body was sent: never reused
        self.closed = False
        self.reading_paused = False
        self.idle_since = 0.0
        self.answered = False  # a byte of the current request's answer has arrived
        self.sent_at = 0.0  # loop time the current request was written
        self.lost_at = _NO_DEADLINE  # loop time the connection was seen closed

    async def send(
        self,
        data: tuple[bytes, ...],
        now: float,
        deadline: float,
        first_deadline: float,
        idle: float | None,
        stream: StreamedBody | None = None,
    ) -> Response:
        loop = self._loop
        transport = self.transport
        assert transport is not None
        first_deadline = min(first_deadline, deadline)
        response = self.response = Response(self, idle, deadline, first_deadline)
        waiter = self._headers_waiter = loop.create_future()
        self.answered = False
        self._unsent = False
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
        heard: the rest is not sent, and the connection is not reused."""
        loop = self._loop
        transport = self.transport
        assert transport is not None
        async for chunk in stream.chunks():
            if answered.done():
                self._unsent = True
                return
            if self.closed:
                raise Disconnected("upstream closed the connection while the body was sent")
            transport.write(chunk)
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
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
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
        self.answered = True
        if self.response is None:  # bytes nobody asked for: the connection is unusable
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
        # The head limits cost one attribute test per read here, two len() per header line.
        if self._headers_waiter is not None:  # the head is still incomplete
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(ProtocolError(f"upstream response head over {MAX_HEAD_BYTES} bytes"))
                self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost_at = self._loop.time()
        self._on_closed(self)
        response = self.response
        if response is not None and response.status and self._until_eof and exc is None:
            self.response = None
            response._finish(None)  # a body delimited by the end of the connection
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
            response._finish(error)

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
        self._until_eof = response.content_length is None and not chunked
        waiter = self._headers_waiter
        self._headers_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or response.status == 0:
            return  # the end of a 1xx interim answer
        self.response = None
        keep_alive = self._parser.should_keep_alive() and not self._unsent
        response._finish(None)
        if keep_alive and not self.closed:
            self.resume_reading()
            self._on_reusable(self)
        else:
            self.abort()
