"""Running the app: the listening socket, connection limits, signals, graceful drain.

Connections are admitted in order: past `max_connections` open connections, or past
`max_connections_per_client` from one address, a new connection gets a 503 at once and is
closed. A connection that has not sent a complete request head within `header_timeout_secs`
is closed (authenticated keep-alive connections then get `keepalive_timeout_secs`); a head
larger than MAX_HEAD_BYTES is a 431. `server.metrics_port` serves /metrics and /health only.

Shutdown on SIGTERM or SIGINT, in order:
  1. `/health` answers 503 from now on, so load balancers stop sending;
  2. stop accepting connections;
  3. let in-flight requests and streams finish, up to `shutdown_grace_secs`;
  4. close what is left and run the cleanup contexts (upstream client, listener, ...) in
     reverse order.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from ssl import SSLContext
from typing import Any, Final, cast

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from llm_proxy.config.model import Config
from llm_proxy.errors import API_ERROR, error_body
from llm_proxy.keys import LIFECYCLE, NOTIFIER, STORE, TLS_CONTEXT
from llm_proxy.lifecycle import MAX_HEAD_BYTES, Lifecycle

log = structlog.get_logger()

_REJECT_HEAD: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
)


def _reject_bytes(message: str) -> bytes:
    body = error_body(message, API_ERROR, "over_capacity")
    return _REJECT_HEAD % len(body) + body


_HEAD_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n"
)
_HEAD_TOO_LARGE_BODY: Final = error_body(
    f"The request head is larger than {MAX_HEAD_BYTES // 1024} KiB in total.",
    code="request_header_fields_too_large",
)
HEAD_TOO_LARGE: Final = _HEAD_TOO_LARGE % len(_HEAD_TOO_LARGE_BODY) + _HEAD_TOO_LARGE_BODY

_OVER_CAPACITY: Final = _reject_bytes(
    "The proxy is at its connection limit (max_connections); retry shortly."
)
_OVER_CLIENT_CAPACITY: Final = _reject_bytes(
    "Too many connections from your address (max_connections_per_client); reuse "
    "connections or retry shortly."
)

# Pending connections the kernel queues before accept() (capped by net.core.somaxconn). With
# aiohttp's default of 128, a burst of new clients (1,000 streams opened at once) overflows the
# queue and the dropped SYNs are retried by the clients a whole second later.
LISTEN_BACKLOG: Final = 4096
# After an answer sent before the body was read (401, 413), unread body bytes are read and
# dropped for this long so the client sees the answer rather than a reset; raw bytes only
# (bodies are never inflated by aiohttp here), so this costs no CPU to speak of.
_LINGER_SECS: Final = 2.0
_LINGER_MAX_BYTES: Final = 1 << 20  # dropped after a refused head before the connection closes

# All `server.metrics_port` serves. It is plain HTTP beside a port that may require TLS and
# client certificates, so it must be no door to the API, the admin API or the UI: any other
# path is a 404 before the app sees it (nothing on the main port's path pays for this).
METRICS_PORT_PATHS: Final = frozenset({"/metrics", "/health", "/health/detailed"})
_NOT_ON_METRICS_PORT: Final = error_body(
    "Not found: this port (server.metrics_port) serves /metrics, /health and /health/detailed "
    "only.",
    code="not_found",
)

# What aiohttp's parser reports, in words that never quote the offending bytes (a header line
# may hold a master key).
_PARSE_ERRORS: Final = {
    "BadHttpMessage": "the request head is malformed",
    "LineTooLong": "a request line or header is longer than 8 KiB",
    "InvalidHeader": "a request header is malformed",
    "BadStatusLine": "the request line is malformed",
    "BadHttpMethod": "the request method is malformed",
    "InvalidURLError": "the request URL is malformed",
    "TransferEncodingError": "the chunked body is malformed",
    "ContentLengthError": "the body is shorter than its Content-Length",
    "ContentEncodingError": "the body encoding is malformed",
}


def handler_args(config: Config) -> dict[str, Any]:
    """Per-connection settings for aiohttp's protocol, the same for `serve` and the tests."""
    return {
        "access_log": None,  # one canonical line per request comes from the observe middleware
        "keepalive_timeout": config.keepalive_timeout_secs,
        # Bodies arrive as sent: the handlers inflate them themselves, after authentication
        # and within max_request_body_mb (aiohttp would inflate without a bound).
        "auto_decompress": False,
        "lingering_time": _LINGER_SECS,
    }


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner `serve` uses (tests use it too, so they run the way production does)."""
    return web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,  # a client hang-up cancels the handler, closing upstream
        shutdown_timeout=1.0,  # we drain ourselves first; this only closes what is left
        **handler_args(app[STORE].current.config),
    )


class _RequestHandler(RequestHandler):
    """aiohttp's protocol, with requests it cannot parse answered in OpenAI's shape and logged
    without their bytes: aiohttp's own answer and log line quote the offending header line,
    which may hold a master key."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "unknown"
        if status >= 500:
            log.error("unhandled_error", path=request.path[:256], error=kind, exc_info=exc)
            text = "Internal proxy error."
            body = error_body(text, API_ERROR, "internal_error")
        else:
            log.info("bad_http_request", status=status, error=kind, remote=request.remote)
            what = _PARSE_ERRORS.get(kind, "the request could not be parsed")
            body = error_body(f"Malformed HTTP request: {what}.", code="bad_request")
        if request.writer.output_size > 0:
            raise ConnectionError("a response has started; it cannot be replaced by an error")
        response = web.Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


class _Connection(asyncio.Protocol):
    """Wraps aiohttp's protocol: counts open connections (in all and per client address),
    closes a connection whose first request head does not arrive in time, and answers 431 to
    a first head past MAX_HEAD_BYTES as soon as it passes (never buffering more of it)."""

    __slots__ = (
        "_discarded",
        "_head_bytes",
        "_head_timer",
        "_inner",
        "_lifecycle",
        "_linger",
        "_peer",
        "_tail",
        "_transport",
    )

    def __init__(self, inner: asyncio.Protocol, lifecycle: Lifecycle) -> None:
        self._inner = inner
        self._lifecycle = lifecycle
        self._peer: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen while waiting for the end of the first head
        self._head_bytes = 0  # of the first head, so far
        self._transport: asyncio.BaseTransport | None = None
        self._linger: asyncio.TimerHandle | None = None  # set once refused: input is dropped
        self._discarded = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        lifecycle = self._lifecycle
        limits = lifecycle.limits
        if limits.per_client:
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) else None
            if address is not None:
                count = lifecycle.per_client.get(address, 0)
                if count >= limits.per_client:
                    lifecycle.rejected_connections += 1
                    _reject(transport, _OVER_CLIENT_CAPACITY)
                    self._inner = _Closed()
                    return
                lifecycle.per_client[address] = count + 1
                self._peer = address
        self._head_timer = asyncio.get_running_loop().call_later(
            limits.header_timeout_secs, _close_slow_head, transport
        )
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            self._discarded += len(data)
            if self._discarded > _LINGER_MAX_BYTES and self._transport is not None:
                self._transport.close()
            return
        if self._head_timer is not None:
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            if end < 0:
                end = seen.find(b"\n\n")
            head = self._head_bytes + (len(data) if end < 0 else end - len(self._tail))
            if head > MAX_HEAD_BYTES:
                self._head_timer.cancel()
                self._head_timer = None
                log.info("request_head_too_large", remote=self._peer)
                self._refuse(HEAD_TOO_LARGE)
                return
            if end >= 0:
                self._head_timer.cancel()
                self._head_timer = None
                self._tail = b""
            else:
                self._head_bytes = head
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def _refuse(self, answer: bytes) -> None:
        """Answer, then close gracefully: the client is most likely still sending, and closing
        with its bytes unread would reset the connection, often before it read the answer. So
        our side is shut for writing (FIN after the answer) and what still arrives is dropped,
        for at most _LINGER_SECS and _LINGER_MAX_BYTES (a TLS transport cannot half-close: it
        is closed at once)."""
        transport = cast(asyncio.WriteTransport, self._transport)
        transport.write(answer)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(_LINGER_SECS, transport.close)

    def eof_received(self) -> bool | None:
        if self._linger is not None:
            return False  # the client is done too: close
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        lifecycle = self._lifecycle
        lifecycle.open_connections -= 1
        if self._linger is not None:
            self._linger.cancel()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        peer = self._peer
        if peer is not None:
            left = lifecycle.per_client[peer] - 1
            if left:
                lifecycle.per_client[peer] = left
            else:
                del lifecycle.per_client[peer]
        self._inner.connection_lost(exc)


def _metrics_server(runner: web.AppRunner) -> Server:
    """A server for the metrics port: the app's own request handling (middlewares, tokens,
    the access line), reached only for `METRICS_PORT_PATHS` (matched on the decoded path,
    which is what the router matches: `/metrics/../v1/models` is not `/metrics`)."""
    server = runner.server
    assert server is not None
    handle = server.request_handler

    async def only(request: BaseRequest) -> web.StreamResponse:
        if request.path in METRICS_PORT_PATHS:
            return await handle(request)
        return web.Response(status=404, body=_NOT_ON_METRICS_PORT, content_type="application/json")

    return Server(
        only,
        request_factory=server.request_factory,
        handler_cancellation=server.handler_cancellation,
    )


class _Closed(asyncio.Protocol):
    """A connection turned away: nothing it sends is read."""


def _reject(transport: asyncio.BaseTransport, answer: bytes) -> None:
    # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
    writer = cast(asyncio.WriteTransport, transport)
    writer.write(answer)
    writer.close()


def _close_slow_head(transport: asyncio.BaseTransport) -> None:
    if not transport.is_closing():
        log.info("client_head_timeout")
        transport.close()


class _Rejected(asyncio.Protocol):
    """Past the connection cap: a clear 503, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _reject(transport, _OVER_CAPACITY)


class ProxySite(web.BaseSite):
    """A TCP site that admits connections under the limits in `Lifecycle.limits`."""

    __slots__ = ("_exclusive", "_host", "_metrics_only", "_only", "_port", "_ssl")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        ssl: SSLContext | None = None,
        *,
        exclusive: bool = False,  # never SO_REUSEPORT (a per-instance listener)
        metrics_only: bool = False,  # serve METRICS_PORT_PATHS alone (the metrics port)
    ) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host = host
        self._port = port
        self._ssl = ssl
        self._exclusive = exclusive
        self._metrics_only = metrics_only
        self._only: Server | None = None  # the metrics port's own server (its connections)

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()  # registers the site with the runner
        runner = cast(web.AppRunner, self._runner)
        server = runner.server
        assert server is not None
        lifecycle = runner.app[LIFECYCLE]
        args = handler_args(runner.app[STORE].current.config)
        loop = asyncio.get_running_loop()

        if self._metrics_only:
            server = self._only = _metrics_server(runner)

        def protocol() -> asyncio.Protocol:
            if lifecycle.open_connections >= lifecycle.limits.max_connections:
                lifecycle.rejected_connections += 1
                return _Rejected()
            lifecycle.open_connections += 1
            return _Connection(_RequestHandler(server, loop=loop, **args), lifecycle)

        self._server = await loop.create_server(
            protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=(runner.app[STORE].current.config.reuse_port and not self._exclusive)
            or None,
            ssl=self._ssl,
        )

    async def stop(self) -> None:
        await super().stop()
        if self._only is not None:  # (the runner closes the connections of its own server)
            self._only.pre_shutdown()
            await self._only.shutdown(1.0)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        sockets = cast(asyncio.Server, self._server).sockets
        return int(sockets[0].getsockname()[1])


# Young collections every this many net allocations rather than Python's 700: a request leaves
# a few reference cycles behind (aiohttp's request and protocol objects), so the default ran
# one every ~140 requests; measured, this cuts the collector's time under load ~4-fold.
GC_GEN0_THRESHOLD: Final = 10_000


def _settle_heap() -> None:
    """Once serving: what startup allocated (modules, config, the app) is moved out of the
    collector's sight (`gc.freeze`), so a full collection no longer walks it (18 ms each,
    measured: a latency spike for every request in flight), and young collections run less
    often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _warn_if_limits_are_per_instance(config: Config) -> None:
    """With reuse_port, several instances share the port: limits kept in each process hold
    per instance, so a key gets N times its limit."""
    if not config.reuse_port or config.rate_limit_backend is not None:
        return
    limited = [
        k.name
        for k in config.master_keys
        if k.rate_limit or k.tokens_per_minute or k.max_budget_usd or k.max_parallel_requests
    ]
    log.warning(
        "limits_per_instance",
        reason="server.reuse_port is on without rate_limit_backend: every instance on the "
        "port enforces its own request limits, token limits and budgets",
        keys=limited or None,
        fix="set rate_limit_backend: redis://... to share them",
    )


async def _start_sites(
    runner: web.AppRunner, host: str, port: int, config: Config, context: SSLContext | None
) -> list[ProxySite]:
    """The main site (HTTPS with `context`), then the optional plain-HTTP and metrics ones."""
    site = ProxySite(runner, host, port, context)
    await site.start()
    sites = [site]
    if config.http_port is not None:  # plain HTTP beside HTTPS, only when configured
        plain = ProxySite(runner, host, config.http_port)
        await plain.start()
        sites.append(plain)
    if config.metrics_port is not None:  # this instance alone, /metrics and /health only
        own = ProxySite(runner, host, config.metrics_port, exclusive=True, metrics_only=True)
        await own.start()
        sites.append(own)
    return sites


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then drain (see the module docstring).
    Every setting comes from the config the app was created with."""
    lifecycle = app[LIFECYCLE]
    config = app[STORE].current.config
    grace = config.shutdown_grace_secs
    runner = make_runner(app)
    await runner.setup()
    sites = await _start_sites(runner, host, port, config, app.get(TLS_CONTEXT))
    _settle_heap()
    _warn_if_limits_are_per_instance(config)
    log.info(
        "listening",
        host=host,
        port=port,
        max_connections=lifecycle.limits.max_connections,
        max_connections_per_client=lifecycle.limits.per_client,
    )

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = app[NOTIFIER]
    notifier.ready(
        f"serving on {host}:{sites[0].port}, config version {app[STORE].current.version}"
    )
    if started is not None:
        started.set()
    try:
        await stop.wait()
        lifecycle.draining = True
        notifier.stopping(f"draining {lifecycle.in_flight} requests (up to {grace:g}s)")
        log.info("draining", in_flight=lifecycle.in_flight, grace_secs=grace)
        for each in sites:
            await each.stop()
        deadline = time.monotonic() + grace
        # Polling the request counter (only during shutdown) beats an event on the hot path.
        while lifecycle.in_flight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        log.info("stopped", unfinished=lifecycle.in_flight)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await notifier.close()
        await runner.cleanup()
