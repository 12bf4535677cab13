"""`Client`, the app's upstream client: a pool of idle keep-alive connections per origin, and
the rules for taking, returning and closing them.

What it does, and tests hold it to: idle connections are kept per origin, most recently used
first (the least likely to have gone stale), closed after `keepalive_secs` idle, by a periodic
sweep for origins no longer used; the connections per origin are optionally capped
(`max_per_origin`: requests beyond it wait in order, up to `pool_timeout_secs`, then fail with
`PoolTimeout`); new connections come from `llm_proxy.proxy.client.connect`; a stale pooled
connection (closed by the upstream while idle) is replaced by a fresh one once, and logged, when
it dropped with the write and before any response byte (a request the upstream may have worked
on is never re-sent); a plain-http request answered 407 by the forward proxy is a proxy failure.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Final

import structlog
from aiohappyeyeballs import SocketFactoryType

from llm_proxy.proxy.client.connect import Connector, Resolver
from llm_proxy.proxy.client.errors import ClientClosed, ConnectError, Disconnected, PoolTimeout
from llm_proxy.proxy.client.http11 import Connection, StreamedBody
from llm_proxy.proxy.client.response import Response
from llm_proxy.proxy.client.target import Origin, Target

# A pooled connection that drops with nothing answered this soon after the request was written
# was closed by the upstream while idle (its FIN crossed our write): the request was never
# worked on, so it is sent again. A later drop may follow real work: never re-sent.
STALE_GRACE_SECS: Final = 0.05

log = structlog.get_logger()


def _pool_expired(waiter: asyncio.Future[Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout())


def _through_proxy(target: Target, resp: Response) -> Response:
    """A plain-http request sent through a forward proxy may be answered by the proxy itself:
    a 407 is the proxy refusing us (origins never send it), so it is a proxy failure like a
    refused CONNECT, not an answer to pass on to the client."""
    if resp.status == 407 and target.proxy and target.tunnel is None:
        resp.close()
        raise ConnectError(
            "the forward proxy answered 407 Proxy Authentication Required", kind="proxy"
        )
    return resp


class Client:
    """The app's upstream client: one pool of keep-alive connections per origin."""

    def __init__(
        self,
        keepalive_secs: float = 60.0,
        dns_ttl_secs: float = 300.0,
        max_per_origin: int | None = None,
        pool_timeout_secs: float = 10.0,
        *,
        resolver: Resolver | None = None,
        socket_factory: SocketFactoryType | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """The app's upstream client.

        - `keepalive_secs`: how long an idle pooled connection is kept; a sweep every
          `keepalive_secs` also closes those of origins no request uses any more.
        - `dns_ttl_secs`: how long a host name's addresses are reused.
        - `max_per_origin`: the most connections (idle, busy or connecting) open to one origin
          (None: no cap). A request beyond it waits, first come first served, for a connection
          to be released, up to `pool_timeout_secs`, then fails with `PoolTimeout`.
        - `resolver(host, port)`: the address infos to race (default: the loop's getaddrinfo);
          `socket_factory(addr_info)`: makes each socket (default: aiohappyeyeballs'). Seams for
          tests and special networks.
        - `clock()`: the time, in seconds, that keep-alive and the DNS cache's TTL count in
          (default: the event loop's, which the request path reads anyway). A seam for tests,
          which move it by hand instead of sleeping; deadlines and the sweep's timer stay on
          the loop's.
        """
        self.keepalive_secs = keepalive_secs
        self._clock = clock
        self.connector = Connector(dns_ttl_secs, resolver, socket_factory, clock)
        if max_per_origin is not None and max_per_origin < 1:
            raise ValueError("max_per_origin must be at least 1")
        self.max_per_origin = max_per_origin
        self.pool_timeout_secs = pool_timeout_secs
        self._idle: dict[Origin, collections.deque[Connection]] = {}
        # Connections open or being opened per origin (counted per connection, not per
        # request), and the requests waiting for one, in arrival order.
        self._open: dict[Origin, int] = {}
        self._waiters: dict[Origin, collections.deque[asyncio.Future[Connection | None]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        # The loop, looked up once: in CPython 3.11 every asyncio.get_running_loop() is a
        # getpid() system call, and the request path would pay several per request (~5 % of
        # the proxy's CPU, measured with py-spy --native).
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def request(
        self,
        target: Target,
        headers: bytes,
        body: bytes | StreamedBody,
        *,
        total_secs: float,
        connect_secs: float | None = None,
        first_byte_secs: float | None = None,
        idle_secs: float | None = None,
    ) -> Response:
        """Send one request; returns when the status line and headers are in.

        `headers` are complete header lines (each ending in CRLF) without Host and
        Content-Length. `total_secs` bounds everything, the body included; `first_byte_secs`
        the wait for the headers (and `Response.first_deadline`); `idle_secs` every wait for
        more of the body.
        """
        if self._closed:
            raise ClientClosed("the upstream client is closed")
        loop = self._loop or self.loop()
        now = loop.time()
        deadline = now + total_secs
        first = now + first_byte_secs if first_byte_secs is not None else deadline
        stream = None
        if isinstance(body, StreamedBody):
            stream = body
            data: tuple[bytes, ...] = (
                target.head,
                headers,
                b"Content-Length: %d\r\n\r\n" % body.length,
            )
        else:
            data = (target.head, headers, b"Content-Length: %d\r\n\r\n" % len(body), body)
        # The common case, a pooled connection, costs what it did before the cap, the proxy
        # and the re-send rule: one is_available() in _take and one float stored in send().
        clock = self._clock
        conn = self._take(target.origin, now if clock is None else clock())
        if conn is not None:
            try:
                return _through_proxy(
                    target, await conn.send(data, now, deadline, first, idle_secs, stream)
                )
            except Disconnected:
                unanswered_for = conn.unanswered_for()
                if unanswered_for > STALE_GRACE_SECS:  # (inf if anything was answered)
                    raise
                # Closed by the upstream while it sat idle in the pool: the drop came with the
                # write and nothing was answered, so the request never reached the upstream's
                # application. It is sent once more, on a new connection.
                log.info(
                    "upstream_request_resent",
                    url=target.shown,
                    reason="pooled connection closed as the request was written",
                    after_secs=round(unanswered_for, 4),
                )
        conn = await self._new_connection(target, connect_secs, min(first, deadline))
        return _through_proxy(
            target, await conn.send(data, loop.time(), deadline, first, idle_secs, stream)
        )

    async def _new_connection(
        self, target: Target, connect_secs: float | None, deadline: float
    ) -> Connection:
        """A new connection to `target`'s origin, or, at the per-origin cap, the first one
        released to this request (a finished one handed over, or a closed one's slot)."""
        origin = target.origin
        while True:
            count = self._open.get(origin, 0)
            if self.max_per_origin is None or count < self.max_per_origin:
                self._open[origin] = count + 1
                break
            conn = await self._wait_for_slot(target)
            if conn is None:
                break  # a slot, already counted as ours
            if conn.is_idle():
                return conn
            # Handed over, then closed before this request could use it (its slot went on
            # to the next in line when it closed): wait again.
        try:
            loop = self._loop or self.loop()
            conn = await self.connector.connect(
                target,
                connect_secs,
                deadline,
                lambda: Connection(loop, origin, self._reuse, self._closed_one),
            )
        except BaseException:
            self._release(origin)  # (once open, `_closed_one` releases it when it closes)
            raise
        if self._closed:
            conn.abort()
            raise ClientClosed("the upstream client is closed")
        return conn

    async def _wait_for_slot(self, target: Target) -> Connection | None:
        """Wait for a connection of a full origin: one handed over, or None for a free slot
        (already counted as ours). Raises PoolTimeout after `pool_timeout_secs`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        self._waiters.setdefault(target.origin, collections.deque()).append(waiter)
        timer = loop.call_later(self.pool_timeout_secs, _pool_expired, waiter)
        try:
            return await waiter
        except PoolTimeout:
            raise PoolTimeout(
                f"no connection to {target.shown} free within {self.pool_timeout_secs}s"
                f" ({self.max_per_origin} per origin, all busy)"
            ) from None
        except BaseException:
            # Cancelled: anything handed over meanwhile goes to the next in line.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                conn = waiter.result()
                if conn is None:
                    self._release(target.origin)
                else:
                    self._reuse(conn)
            raise
        finally:
            timer.cancel()

    def _closed_one(self, conn: Connection) -> None:
        """The connections' `on_closed`: its slot is free."""
        self._release(conn.origin)

    def _release(self, origin: Origin) -> None:
        """A connection of `origin` closed (or failed to open): its slot goes to the first
        waiter, if any."""
        waiters = self._waiters.get(origin)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: the count stays
                return
        count = self._open.get(origin, 0) - 1
        if count > 0:
            self._open[origin] = count
        else:
            self._open.pop(origin, None)
            self._waiters.pop(origin, None)

    def _take(self, origin: Origin, now: float) -> Connection | None:
        """A parked connection of `origin` to carry a request, or None: the most recently
        used (the least likely to have gone stale); those it passes that cannot carry one
        (closed, closing, or parked too long) are closed."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.is_available(now):
                return conn
            conn.abort()
        return None

    def _reuse(self, conn: Connection) -> None:
        """The connections' `on_reusable`: `conn`'s request went out whole (a streamed body
        cut short by an early answer never gets here: the connection closes instead) and its
        answer ended whole, so it can carry another request. Where it goes, in this order:

        1. the client is closed: it is closed too;
        2. requests wait for its origin (only at the per-origin cap): it goes to the first in
           line still waiting, still counted in the origin's connections;
        3. otherwise it is parked as the origin's most recently used, until `keepalive_secs`
           from now; and the origin's oldest parked one is closed if it has expired, so a pool
           that shrinks after a burst gives its sockets back (the sweep does it for origins no
           request uses any more).
        """
        if self._closed:
            conn.abort()
            return
        waiters = self._waiters.get(conn.origin)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = collections.deque()
        loop = self._loop or self.loop()
        clock = self._clock
        now = loop.time() if clock is None else clock()
        conn.expires_at = now + self.keepalive_secs
        idle.append(conn)
        if idle[0].has_expired(now):
            idle.popleft().abort()
        if self._sweeper is None:  # one timer per keep-alive period, not per request
            self._sweeper = loop.call_later(self.keepalive_secs, self._sweep)

    def _sweep(self) -> None:
        """Close the idle connections past the keep-alive time, also of origins that no
        request uses any more (which `_take` and `_reuse` never look at)."""
        self._sweeper = None
        now = asyncio.get_running_loop().time() if self._clock is None else self._clock()
        for origin, idle in list(self._idle.items()):
            while idle and idle[0].has_expired(now):
                idle.popleft().abort()
            if not idle:
                del self._idle[origin]
        if self._idle and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_secs, self._sweep)

    def idle_connections(self) -> int:
        return sum(1 for idle in self._idle.values() for conn in idle if conn.is_idle())

    def waiting(self) -> int:
        """Requests queued for a connection (their origin at its `max_per_origin`)."""
        return sum(len(waiters) for waiters in self._waiters.values())

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ClientClosed("the upstream client is closed"))
        for idle in self._idle.values():
            while idle:
                idle.pop().abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
