"""The upstream HTTP/1.1 client: pooled keep-alive connections on raw asyncio, responses parsed
by httptools (llhttp, in C).

Why not `aiohttp.ClientSession`: its per-request machinery (URL and header merging, cookie and
proxy handling, trace hooks, timer contexts, payload registry, request/response objects) costs
about as much CPU as the whole bare forwarder the benchmark compares against, whatever options
it is given (measured: a tuned session gains ~1%). A proxy needs far less. Here a request is one
`writelines` of bytes compiled at config time plus the forwarded headers and the body, and one
future that the parser completes; deadlines are single timer handles, not context managers.

What it does, and tests hold it to: a pool of idle keep-alive connections per origin (most
recently used first, closed after `keepalive_secs` idle, by a periodic sweep for origins no
longer used), optionally capped per origin (`max_per_origin`: requests beyond it wait in order,
up to `pool_timeout_secs`); new connections race the host's
addresses Happy Eyeballs style (aiohappyeyeballs), from a DNS cache of `dns_ttl_secs`; http://
forward proxies (CONNECT tunnels for https, absolute form for http:
`llm_proxy.proxy.client.forward_proxy`);
a stale pooled connection (closed by the upstream while idle) is replaced by a fresh one once,
and logged, when it dropped with the write and before any response byte (a request the upstream
may have worked on is never re-sent); chunked and Content-Length bodies, and bodies that end
with the connection; response heads bounded (`MAX_LINE_BYTES` per line, `MAX_HEADERS` fields,
`MAX_HEAD_BYTES` in all) but lenient as aiohttp's client is (bare LF line ends, folded header
lines); flow control (the upstream socket stops being read while `HIGH_WATER` bytes wait for a
slow client); TLS with or without certificate verification; every failure is one
`UpstreamError` subclass per cause (see `llm_proxy.proxy.client.errors`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, cast

import aiohappyeyeballs
import httptools
import structlog
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from yarl import URL

from llm_proxy.proxy.client import forward_proxy
from llm_proxy.proxy.client.errors import (
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    FirstByteTimeout,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    UpstreamError,
    UpstreamTimeout,
    connect_error,
)
from llm_proxy.proxy.client.forward_proxy import proxy_from_env

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "Client",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "Disconnected",
    "FirstByteTimeout",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "Target",
    "UpstreamError",
    "UpstreamTimeout",
    "proxy_from_env",
    "target",
]

HIGH_WATER: Final = 256 * 1024  # buffered response bytes at which reading the socket pauses
LOW_WATER: Final = 64 * 1024  # ...and at which it resumes
_NO_DEADLINE: Final = float("inf")
HAPPY_EYEBALLS_DELAY: Final = 0.25  # RFC 8305's recommended head start per address
# A pooled connection that drops with nothing answered this soon after the request was written
# was closed by the upstream while idle (its FIN crossed our write): the request was never
# worked on, so it is sent again. A later drop may follow real work: never re-sent.
STALE_GRACE_SECS: Final = 0.05
# Bounds on a response head, as the server side bounds requests: an upstream that never ends its
# headers is an error after at most one socket read past MAX_HEAD_BYTES, not a growing buffer.
MAX_LINE_BYTES: Final = 8 * 1024  # the status line, and each header line
MAX_HEADERS: Final = 100
MAX_HEAD_BYTES: Final = 64 * 1024  # the whole head (1xx interim heads included)

log = structlog.get_logger()


Origin = tuple[str, int, bool, bool, str]  # the pool key: host, port, tls, verify, proxy


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream URL and method, compiled once per config snapshot."""

    origin: Origin
    host: str  # the origin's (TLS checks its certificate against it)
    port: int
    ssl: ssl.SSLContext | None
    head: bytes = field(repr=False)  # request line and Host (and Proxy-Authorization) header
    url: str  # never with credentials; its query string may hold one (`?key=`): never logged
    connect_host: str = ""  # where the TCP connection goes: the origin, or the proxy
    connect_port: int = 0
    tunnel: bytes | None = field(default=None, repr=False)  # CONNECT request (https via proxy)
    proxy: str = ""  # the proxy URL for messages, without credentials ("" if direct)
    shown: str = ""  # `url` for messages and logs: without its query string


def target(url: URL, method: str = "POST", verify: bool = True, proxy: URL | None = None) -> Target:
    """Compile `url` (path and query string as given: the request line carries both) into a
    `Target`, reached directly or through the http:// forward `proxy` (its user:password, if
    any, sent as `Proxy-Authorization: Basic`). Raises ValueError for anything but an
    absolute http(s) URL, for a URL with user:password@ (credentials go in headers, never
    silently dropped), and for a proxy that is not http://host[:port]."""
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an http(s) URL: {url.with_user(None)}")
    if url.raw_user is not None or url.raw_password is not None:
        raise ValueError(
            f"user:password@ is not supported in an upstream URL: {url.with_user(None)}"
        )
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    host_header = url.host_port_subcomponent
    if proxy is None:
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
        return Target(
            origin=(url.host, port, tls, verify, ""),
            host=url.host,
            port=port,
            ssl=_ssl_context(verify) if tls else None,
            head=head,
            url=str(url),
            shown=str(url.with_query(None)),
            connect_host=url.host,
            connect_port=port,
        )
    if proxy.scheme != "http" or not proxy.host or proxy.raw_path not in ("", "/"):
        raise ValueError(f"not an http://host[:port] forward proxy: {proxy.with_user(None)}")
    auth = forward_proxy.authorization(proxy)
    shown = str(proxy.with_user(None).with_path(""))
    # Connections through a proxy are pooled apart, and apart per proxy credentials (a tunnel
    # is authorized once, when it is opened): the key carries a digest, never the secret.
    key = f"{proxy.host}:{proxy.port or 80}" + (
        "#" + hashlib.sha256(auth).hexdigest()[:16] if auth else ""
    )
    if tls:
        host = f"[{url.host}]" if ":" in url.host else url.host
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
        tunnel: bytes | None = forward_proxy.connect_request(f"{host}:{port}", proxy)
    else:  # absolute form: the proxy forwards it, with the credentials sent on every request
        absolute = f"http://{host_header}{url.raw_path_qs}"
        head = f"{method} {absolute} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii") + auth
        tunnel = None
    return Target(
        origin=(url.host, port, tls, verify, key),
        host=url.host,
        port=port,
        ssl=_ssl_context(verify) if tls else None,
        head=head,
        url=str(url),
        shown=str(url.with_query(None)),
        connect_host=proxy.host,
        connect_port=proxy.port or 80,
        tunnel=tunnel,
        proxy=shown,
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_SSL_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def _ssl_context(verify: bool) -> ssl.SSLContext:
    context = _SSL_CONTEXTS.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _SSL_CONTEXTS[verify] = context
    return context


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
        self, conn: _Connection, idle_secs: float | None, deadline: float, first_deadline: float
    ) -> None:
        self.status = 0
        self.reason = ""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_type = ""  # media type, lower case, without parameters
        self.content_length: int | None = None
        self._conn: _Connection | None = conn
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


def _pool_expired(waiter: asyncio.Future[_Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout())


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """A request body sent in chunks as they are read (an upload spooled to disk); `chunks`
    starts over at each call (a re-send, a failover)."""

    length: int
    chunks: Callable[[], AsyncIterator[bytes]]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    __slots__ = (
        "_head_bytes",
        "_headers_waiter",
        "_loop",
        "_origin",
        "_parser",
        "_pool",
        "_unsent",
        "_until_eof",
        "_write_waiter",
        "_writing_paused",
        "answered",
        "closed",
        "idle_since",
        "lost_at",
        "reading_paused",
        "response",
        "sent_at",
        "transport",
    )

    def __init__(self, pool: Client, origin: Origin) -> None:
        self._pool = pool
        self._loop = pool.loop()
        self._origin = origin
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
        self._pool._release(self._origin)
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
            self._pool._put(self)
        else:
            self.abort()


Resolver = Callable[[str, int], Awaitable[Sequence[AddrInfoType]]]


async def _getaddrinfo(host: str, port: int) -> list[AddrInfoType]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(infos))  # (the same address may come once per protocol)


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
        """
        self.keepalive_secs = keepalive_secs
        self.dns_ttl_secs = dns_ttl_secs
        self._resolver: Resolver = resolver or _getaddrinfo
        self._socket_factory = socket_factory
        if max_per_origin is not None and max_per_origin < 1:
            raise ValueError("max_per_origin must be at least 1")
        self.max_per_origin = max_per_origin
        self.pool_timeout_secs = pool_timeout_secs
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        # Connections open or being opened per origin (counted per connection, not per
        # request), and the requests waiting for one, in arrival order.
        self._open: dict[Origin, int] = {}
        self._waiters: dict[Origin, collections.deque[asyncio.Future[_Connection | None]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        # Host names resolved once per TTL, one lookup in flight per name: a burst of new
        # connections must not queue a thousand getaddrinfo calls on the executor.
        self._dns: dict[tuple[str, int], tuple[float, list[AddrInfoType]]] = {}
        self._resolving: dict[tuple[str, int], asyncio.Future[list[AddrInfoType]]] = {}
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
        # and the re-send rule: one is_closing() in _take and one float stored in send().
        conn = self._take(target.origin, now)
        if conn is not None:
            try:
                return _through_proxy(
                    target, await conn.send(data, now, deadline, first, idle_secs, stream)
                )
            except Disconnected:
                if conn.answered or conn.lost_at - conn.sent_at > STALE_GRACE_SECS:
                    raise
                # Closed by the upstream while it sat idle in the pool: the drop came with the
                # write and nothing was answered, so the request never reached the upstream's
                # application. It is sent once more, on a new connection.
                log.info(
                    "upstream_request_resent",
                    url=target.shown,
                    reason="pooled connection closed as the request was written",
                    after_secs=round(conn.lost_at - conn.sent_at, 4),
                )
        conn = await self._new_connection(target, connect_secs, min(first, deadline))
        return _through_proxy(
            target, await conn.send(data, loop.time(), deadline, first, idle_secs, stream)
        )

    async def _new_connection(
        self, target: Target, connect_secs: float | None, deadline: float
    ) -> _Connection:
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
            if not conn.closed:
                return conn
            # Handed over, then closed before this request could use it (its slot went on
            # to the next in line when it closed): wait again.
        try:
            conn = await self._connect(target, connect_secs, deadline)
        except BaseException:
            self._release(origin)  # (once open, the connection releases it when it closes)
            raise
        if self._closed:
            conn.abort()
            raise ClientClosed("the upstream client is closed")
        return conn

    async def _wait_for_slot(self, target: Target) -> _Connection | None:
        """Wait for a connection of a full origin: one handed over, or None for a free slot
        (already counted as ours). Raises PoolTimeout after `pool_timeout_secs`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
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
                    self._put(conn)
            raise
        finally:
            timer.cancel()

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

    async def _connect(
        self, target: Target, connect_secs: float | None, deadline: float
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        if connect_secs is not None:
            deadline = min(deadline, loop.time() + connect_secs)
        via = f" via proxy {target.proxy}" if target.proxy else ""
        to_proxy = bool(target.proxy)  # failures before the tunnel are the proxy's
        try:
            async with asyncio.timeout_at(deadline):
                sock = await self._open_socket(target.connect_host, target.connect_port)
                try:
                    if target.tunnel is not None:
                        await forward_proxy.open_tunnel(
                            sock, target.tunnel, target.proxy, f"{target.host}:{target.port}"
                        )
                    to_proxy = False
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, target.origin),
                        sock=sock,
                        ssl=target.ssl,
                        server_hostname=target.host if target.ssl is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ConnectTimeout(f"timed out connecting to {target.shown}{via}") from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            error = connect_error(exc, target.shown + via)
            if to_proxy and error.kind != "fd_exhausted":
                error = ConnectError(f"cannot connect to proxy {target.proxy}: {exc}", "proxy")
            raise error from exc
        return conn

    async def _open_socket(self, host: str, port: int) -> socket.socket:
        """A connected TCP socket to `host`: its addresses raced Happy Eyeballs style (RFC 8305,
        as aiohttp does), so an address that drops SYNs costs `HAPPY_EYEBALLS_DELAY`, not the
        connect timeout. The address that won moves to the front of the cached lookup."""
        infos = await self._addresses(host, port)
        try:
            sock = await aiohappyeyeballs.start_connection(
                infos,
                happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                interleave=1,
                socket_factory=self._socket_factory,
            )
        except OSError:
            self._dns.pop((host, port), None)  # every address failed: look again next time
            raise
        cached = self._dns.get((host, port))
        if cached is not None and len(cached[1]) > 1:
            peer = sock.getpeername()[:2]
            winner = [info for info in cached[1] if info[4][:2] == peer]
            if winner and winner[0] is not cached[1][0]:
                rest = [info for info in cached[1] if info is not winner[0]]
                self._dns[(host, port)] = (cached[0], [winner[0], *rest])
        return sock

    async def _addresses(self, host: str, port: int) -> list[AddrInfoType]:
        """The addresses to try for `host`, in the resolver's order (an IP literal as is)."""
        if _is_ip(host):
            return aiohappyeyeballs.addr_to_addr_infos((host, port)) or []
        key = (host, port)
        loop = asyncio.get_running_loop()
        cached = self._dns.get(key)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        pending = self._resolving.get(key)
        if pending is None:
            pending = self._resolving[key] = loop.create_task(self._resolve(host, port))
            pending.add_done_callback(self._resolved)
        return await asyncio.shield(pending)

    async def _resolve(self, host: str, port: int) -> list[AddrInfoType]:
        loop = asyncio.get_running_loop()
        infos = list(await self._resolver(host, port))
        if not infos:
            raise socket.gaierror(f"no address for {host}")
        self._dns[(host, port)] = (loop.time() + self.dns_ttl_secs, infos)
        return infos

    def _resolved(self, task: asyncio.Future[list[AddrInfoType]]) -> None:
        self._resolving = {k: t for k, t in self._resolving.items() if t is not task}
        if not task.cancelled():
            task.exception()  # retrieved: its waiters may all have timed out

    def _take(self, origin: Origin, now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have gone stale
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                conn.abort()
                continue
            if now - conn.idle_since > self.keepalive_secs:
                conn.abort()
                continue
            return conn
        return None

    def _put(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        waiters = self._waiters.get(conn._origin)
        while waiters:  # (only at the per-origin cap) hand it to the first in line
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        idle = self._idle.get(conn._origin)
        if idle is None:
            idle = self._idle[conn._origin] = collections.deque()
        loop = self._loop or self.loop()
        now = loop.time()
        conn.idle_since = now
        idle.append(conn)
        # Retire the oldest idle connection once it is past the keep-alive time, so a pool
        # that shrinks after a burst gives its sockets back.
        oldest = idle[0]
        if oldest.closed or now - oldest.idle_since > self.keepalive_secs:
            idle.popleft().abort()
        if self._sweeper is None:  # one timer per keep-alive period, not per request
            self._sweeper = loop.call_later(self.keepalive_secs, self._sweep)

    def _sweep(self) -> None:
        """Close the idle connections past the keep-alive time, also of origins that no
        request uses any more (which `_take` and `_put` never look at)."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for origin, idle in list(self._idle.items()):
            while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive_secs):
                idle.popleft().abort()
            if not idle:
                del self._idle[origin]
        if self._idle and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_secs, self._sweep)

    def idle_connections(self) -> int:
        return sum(1 for idle in self._idle.values() for conn in idle if not conn.closed)

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
