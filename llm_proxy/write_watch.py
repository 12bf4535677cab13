"""A write-idle bound for one response: a client that takes none of its answer for
`write_timeout_secs` is disconnected, so it cannot hold the request and its upstream
connection for good (the relay waits on the client's socket when the client stops reading).

One timer per response, re-armed once per period, rather than a timeout per write: a stream
writes hundreds of chunks, and the common write does not wait at all.
"""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger()


class WriteWatch:
    """Call `writing()` before a write that may wait and `written()` after it; `close()` at
    the end. A write still waiting `timeout` seconds after it began aborts the connection
    (the pending write then fails as a client hang-up)."""

    __slots__ = ("_handle", "_loop", "_since", "_timeout", "_transport", "fired")

    def __init__(self, transport: asyncio.Transport | None, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        self._timeout = timeout
        self._since: float | None = None  # loop time the pending write began
        self.fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(timeout, self._check)

    def writing(self) -> None:
        self._since = self._loop.time()

    def written(self) -> None:
        self._since = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self._loop.time()
        since = self._since
        if since is not None and now - since >= self._timeout:
            self._handle = None
            self.fired = True
            log.info("client_write_timeout", waited_secs=round(now - since, 3))
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.abort()
            return
        due = self._timeout if since is None else since + self._timeout - now
        self._handle = self._loop.call_later(due, self._check)
