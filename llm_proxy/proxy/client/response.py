"""An upstream answer (`Response`) as its connection parses it: the status and headers, then the
body, buffered until the reader takes it. The buffer is bounded by flow control: past
`HIGH_WATER` bytes the connection stops reading the socket, and it reads again once the reader
took what was buffered. Reads wait at most the idle timeout, and never past the total deadline,
with one lazy timer per response.

The connection calls `feed` and `finish`; readers call `read_chunk`, `read` and `close`.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from llm_proxy.proxy.client.errors import ReadTimeout

HIGH_WATER: Final = 256 * 1024  # buffered response bytes at which reading the socket pauses


class Source(Protocol):
    """What a response needs of its connection: flow control, and dropping it."""

    reading_paused: bool

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...


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
        self,
        conn: Source,
        loop: asyncio.AbstractEventLoop,
        idle_secs: float | None,
        deadline: float,
        first_deadline: float,
    ) -> None:
        self.status = 0
        self.reason = ""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_type = ""  # media type, lower case, without parameters
        self.content_length: int | None = None
        self._conn: Source | None = conn
        self._loop = loop
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

    # Called by the connection (not by readers).

    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        self.received += len(data)
        if self._size > HIGH_WATER and self._conn is not None:
            self._conn.pause_reading()
        self._wake()

    def finish(self, error: BaseException | None) -> None:
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
