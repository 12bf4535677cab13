"""Running the app: the listening socket (with a connection cap), signals, graceful drain.

Shutdown on SIGTERM or SIGINT, in order:
  1. `/health` answers 503 from now on, so load balancers stop sending;
  2. stop accepting connections;
  3. let in-flight requests and streams finish, up to `shutdown_grace_secs`;
  4. close what is left and run the cleanup contexts (sessions, listener) in reverse order.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Final

import orjson
import structlog
from aiohttp import web

from llm_proxy.keys import LIFECYCLE, METRICS
from llm_proxy.lifecycle import Lifecycle

log = structlog.get_logger()

_OVER_CAPACITY: Final = orjson.dumps(
    {
        "error": {
            "message": "The proxy is at its connection limit (max_connections); retry shortly.",
            "type": "api_error",
            "param": None,
            "code": "over_capacity",
        }
    }
)
_REJECT: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_OVER_CAPACITY), _OVER_CAPACITY)
)


class _Counted(asyncio.Protocol):
    """Wraps aiohttp's protocol to count open connections."""

    __slots__ = ("_inner", "_lifecycle")

    def __init__(self, inner: asyncio.Protocol, lifecycle: Lifecycle) -> None:
        self._inner = inner
        self._lifecycle = lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lifecycle.open_connections -= 1
        self._inner.connection_lost(exc)


class _Reject(asyncio.Protocol):
    """Past the connection cap: a clear 503, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REJECT)
        transport.close()


# Pending connections the kernel queues before accept() (capped by net.core.somaxconn). With
# aiohttp's default of 128, a burst of new clients (1,000 streams opened at once) overflows the
# queue and the dropped SYNs are retried by the clients a whole second later.
LISTEN_BACKLOG: Final = 4096


class CappedTCPSite(web.TCPSite):
    """A TCPSite that answers 503 at once beyond `max_connections` open connections."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, lifecycle: Lifecycle, cap: int
    ) -> None:
        super().__init__(runner, host, port, backlog=LISTEN_BACKLOG)
        self._lifecycle = lifecycle
        self._cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        lifecycle, cap = self._lifecycle, self._cap

        def protocol() -> asyncio.Protocol:
            if lifecycle.open_connections >= cap:
                lifecycle.rejected_connections += 1
                return _Reject()
            lifecycle.open_connections += 1
            return _Counted(server(), lifecycle)

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    grace_secs: float,
    max_connections: int,
    keepalive_timeout_secs: float,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then drain (see the module docstring)."""
    lifecycle = app[LIFECYCLE]
    runner = web.AppRunner(
        app,
        access_log=None,  # one canonical line per request comes from the observe middleware
        handler_cancellation=True,  # a client hang-up cancels the handler, closing upstream
        handle_signals=False,
        shutdown_timeout=1.0,  # we drain ourselves first; this only closes what is left
        keepalive_timeout=keepalive_timeout_secs,  # also bounds a slow request head
    )
    await runner.setup()
    site = CappedTCPSite(runner, host, port, lifecycle, max_connections)
    await site.start()
    log.info("listening", host=host, port=port, max_connections=max_connections)

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if started is not None:
        started.set()
    try:
        await stop.wait()
        lifecycle.draining = True
        metrics = app[METRICS]
        log.info("draining", in_flight=metrics.active_requests, grace_secs=grace_secs)
        await site.stop()
        deadline = time.monotonic() + grace_secs
        # Polling the request counter (only during shutdown) beats an event on the hot path.
        while metrics.active_requests > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        log.info("stopped", unfinished=metrics.active_requests)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
