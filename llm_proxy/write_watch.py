"""A write-idle bound for every response: a client that takes none of its answer for
`write_timeout_secs` is disconnected, so it cannot hold the request and its upstream
connection for good (the relay waits on the client's socket when the client stops reading).

One timer for all responses (`WriteWatches`, ticking every `TICK_SECS` while any response is
watched) rather than one per response or a timeout per write: a stream writes hundreds of
chunks, the common write does not wait at all, and a thousand open streams would otherwise
hold a thousand timers.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

log = structlog.get_logger()

# How often pending writes are checked: a stuck client is cut off within
# write_timeout_secs + TICK_SECS.
TICK_SECS: Final = 0.25


class WriteWatches:
    """The watched responses of one app, and their one timer."""

    def __init__(self) -> None:
        self._active: set[WriteWatch] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, transport: asyncio.Transport | None, timeout: float) -> WriteWatch:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        watch = WriteWatch(self, loop, transport, timeout)
        self._active.add(watch)
        if self._handle is None:
            self._handle = loop.call_later(TICK_SECS, self._tick)
        return watch

    def __len__(self) -> int:
        return len(self._active)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        stuck = [w for w in self._active if w.since is not None and now - w.since >= w.timeout]
        for watch in stuck:
            watch.fire(now)
        self._handle = self._loop.call_later(TICK_SECS, self._tick) if self._active else None

    def discard(self, watch: WriteWatch) -> None:
        self._active.discard(watch)


class WriteWatch:
    """Call `writing()` before a write that may wait and `written()` after it; `close()` at
    the end. A write still waiting `timeout` seconds after it began aborts the connection
    (the pending write then fails as a client hang-up)."""

    __slots__ = ("_loop", "_transport", "_watches", "fired", "since", "timeout")

    def __init__(
        self,
        watches: WriteWatches,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport | None,
        timeout: float,
    ) -> None:
        self._watches = watches
        self._loop = loop
        self._transport = transport
        self.timeout = timeout
        self.since: float | None = None  # loop time the pending write began
        self.fired = False

    def writing(self) -> None:
        self.since = self._loop.time()

    def written(self) -> None:
        self.since = None

    def close(self) -> None:
        self._watches.discard(self)

    def fire(self, now: float) -> None:
        assert self.since is not None
        self.fired = True
        self._watches.discard(self)
        log.info("client_write_timeout", waited_secs=round(now - self.since, 3))
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()
