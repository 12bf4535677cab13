"""The upstream HTTP/1.1 client (`llm_proxy.upstream_client`) against real servers on loopback:
raw asyncio TCP servers where the test needs byte-for-byte (mis)behaviour, aiohttp where not.

A few of the scenarios run a second time on uvloop, the event loop `llm-proxy serve` uses."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from yarl import URL

from llm_proxy.upstream_client import (
    HIGH_WATER,
    Client,
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    FirstByteTimeout,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    Response,
    UpstreamError,
    proxy_from_env,
    target,
)
from tests.conftest import serve

SOCKET_READ = 256 * 1024  # the most one socket read delivers (asyncio's and uvloop's buffers)


# --- a raw TCP server -----------------------------------------------------------------------


Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """`handler(server, reader, writer)` runs for every accepted connection (which is closed when
    it returns). Counts connections, keeps what was received, and re-raises handler errors."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body), in arrival order
        self.hangups = 0  # connections the client closed or aborted (seen by `until_eof`)
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context is not None else "http"
        self.url = URL(f"{scheme}://127.0.0.1:{self.port}/v1/chat/completions")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.errors and exc[0] is None:
            raise self.errors[0]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # torn down by __aexit__ (3.11 logs a cancelled callback task as an error)
        except BaseException as exc:  # an assertion in a handler: fail the test with it
            self.errors.append(exc)
        finally:
            writer.transport.abort()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        """One request (head up to the blank line, and the Content-Length body); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            self.hangups += 1
            return None
        except ConnectionResetError:
            self.hangups += 1
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body

    async def until_eof(self, reader: asyncio.StreamReader) -> bytes:
        """Wait for the client to close or abort the connection; what it sent meanwhile."""
        data = b""
        with contextlib.suppress(ConnectionError):
            data = await reader.read()
        self.hangups += 1
        return data


def response(body: bytes = b"ok", status: str = "200 OK", headers: tuple[bytes, ...] = ()) -> bytes:
    head = b"HTTP/1.1 %s\r\n" % status.encode()
    head += b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def keep_alive(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
    """A well-behaved keep-alive server answering `echo:<body>`."""
    while (request := await server.read_request(reader)) is not None:
        writer.write(response(b"echo:" + request[1]))


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def read_all(resp: Response) -> bytes:
    parts = []
    while chunk := await resp.read_chunk():
        parts.append(chunk)
    return b"".join(parts)


async def post(
    client: Client, url: URL, body: bytes = b"{}", headers: bytes = b"", **kw: Any
) -> Response:
    kw.setdefault("total_secs", 5.0)
    async with asyncio.timeout(5):  # a hang fails the test quickly, not after 120 s
        return await client.request(target(url), headers, body, **kw)


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing may escape into the event loop's error log (an exception out of a protocol
    callback, an unretrieved task exception...): every failure is to reach the caller."""
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    errors = [r for r in records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = Client()
    yield c
    await c.close()


# --- compiling a target ---------------------------------------------------------------------


def test_target_compiles_request_line_and_host() -> None:
    t = target(URL("http://example.com/v1/chat?a=1&b=%20"))
    assert t.head == b"POST /v1/chat?a=1&b=%20 HTTP/1.1\r\nHost: example.com\r\n"
    assert (t.host, t.port, t.ssl, t.origin) == (
        "example.com",
        80,
        None,
        ("example.com", 80, False, True, ""),
    )

    t = target(URL("https://api.example.com:8443/v1/models"), "GET", verify=False)
    assert t.head == b"GET /v1/models HTTP/1.1\r\nHost: api.example.com:8443\r\n"
    assert t.origin == ("api.example.com", 8443, True, False, "")
    assert t.ssl is not None and t.ssl.verify_mode == ssl.CERT_NONE

    t = target(URL("https://api.example.com/"))
    assert t.port == 443 and b"Host: api.example.com\r\n" in t.head
    assert t.ssl is not None and t.ssl.verify_mode == ssl.CERT_REQUIRED and t.ssl.check_hostname

    t = target(URL("http://[::1]:8080/x"))
    assert t.head == b"POST /x HTTP/1.1\r\nHost: [::1]:8080\r\n"
    assert (t.host, t.port) == ("::1", 8080)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative/path", "http:///nohost"])
def test_target_rejects_non_http_urls(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message is for the config error)
        target(URL(url))


def test_target_keeps_the_query_string_after_the_path() -> None:
    """Azure's form: the caller places the endpoint path before `?api-version=...`."""
    t = target(URL("https://x.openai.azure.com/openai/deployments/d/chat?api-version=2024-06-01"))
    assert t.head.startswith(b"POST /openai/deployments/d/chat?api-version=2024-06-01 HTTP/1.1\r\n")


@pytest.mark.parametrize("url", ["https://user:secret@h.example/v1", "https://user@h.example/v1"])
def test_target_rejects_userinfo_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError) as info:  # noqa: PT011
        target(URL(url))
    assert "secret" not in str(info.value)


# --- the basics -----------------------------------------------------------------------------


async def test_post_round_trip(client: Client) -> None:
    answer = response(
        b'{"ok": true}',
        "201 Created Here",
        (b"Content-Type: Application/JSON; charset=utf-8", b"X-Multi: a", b"X-Multi: b"),
    )

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(answer)
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        url = URL(f"{srv.url}?a=1&b=%20")
        headers = b"Authorization: Bearer sk-x\r\nX-Custom: v\r\n"
        resp = await post(client, url, b'{"model": "m"}', headers)
        assert srv.requests == [
            (
                b"POST /v1/chat/completions?a=1&b=%%20 HTTP/1.1\r\n"
                b"Host: 127.0.0.1:%d\r\n"
                b"Authorization: Bearer sk-x\r\nX-Custom: v\r\n"
                b"Content-Length: 14\r\n\r\n" % srv.port,
                b'{"model": "m"}',
            )
        ]
        assert (resp.status, resp.reason) == (201, "Created Here")
        assert resp.raw_headers == [
            (b"Content-Type", b"Application/JSON; charset=utf-8"),
            (b"X-Multi", b"a"),
            (b"X-Multi", b"b"),
            (b"Content-Length", b"12"),
        ]
        assert resp.content_type == "application/json"
        assert resp.content_length == 12
        assert resp.header(b"x-multi") == "a"
        assert resp.header(b"content-type") == "Application/JSON; charset=utf-8"
        assert resp.header(b"x-missing") is None
        assert resp.complete  # the body came with the headers
        assert await resp.read_chunk() == b'{"ok": true}'
        assert await resp.read_chunk() == b""
        assert await resp.read_chunk() == b""
        assert resp.received == 12


async def test_get_request_line(client: Client) -> None:
    async with RawServer(keep_alive) as srv:
        t = target(srv.url.with_path("/v1/models").with_query("q=1"), "GET")
        resp = await client.request(t, b"Accept: */*\r\n", b"", total_secs=5)
        assert await read_all(resp) == b"echo:"
        assert srv.requests == [
            (
                b"GET /v1/models?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Accept: */*\r\nContent-Length: 0\r\n\r\n" % srv.port,
                b"",
            )
        ]


async def test_read_limit(client: Client) -> None:
    async with RawServer(keep_alive) as srv:
        resp = await post(client, srv.url, b"0123456789")
        assert await resp.read(6) == b"echo:0"
        resp.close()
        resp = await post(client, srv.url, b"0123456789")
        assert await resp.read(1000) == b"echo:0123456789"
        assert srv.connections == 1


async def test_no_body_status_is_complete_and_pooled(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")

    async with RawServer(handler) as srv:
        for _ in range(3):
            resp = await post(client, srv.url)
            assert (resp.status, resp.content_length, resp.complete) == (204, None, True)
            assert await resp.read_chunk() == b""
        assert srv.connections == 1
        assert client.idle_connections() == 1


async def test_large_request_body(client: Client) -> None:
    body = random.Random(3).randbytes(4 << 20)

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        while (request := await server.read_request(reader)) is not None:
            writer.write(response(hashlib.sha256(request[1]).hexdigest().encode()))

    async with RawServer(handler) as srv:
        for _ in range(2):
            resp = await post(client, srv.url, body)
            assert await read_all(resp) == hashlib.sha256(body).hexdigest().encode()
        assert b"Content-Length: 4194304\r\n\r\n" in srv.requests[0][0]
        assert srv.connections == 1


# --- pooling --------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(client: Client) -> None:
    async with RawServer(keep_alive) as srv:
        for i in range(3):
            resp = await post(client, srv.url, b"n%d" % i)
            assert await read_all(resp) == b"echo:n%d" % i
            assert client.idle_connections() == 1
        assert srv.connections == 1
        assert [body for _, body in srv.requests] == [b"n0", b"n1", b"n2"]


async def test_concurrent_requests_get_their_own_answers(client: Client) -> None:
    peers: set[Any] = set()

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        await asyncio.sleep(0.02 * (int(body.split(b"-")[1]) % 5))  # answers come back out of order
        return web.Response(body=b"echo:" + body, headers={"X-Echo": body[:20].decode()})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    async with serve(app) as base:
        url = URL(base + "/v1/chat/completions")

        async def one(i: int) -> None:
            body = b"request-%d-" % i + b"x" * (i * 997)
            resp = await post(client, url, body)
            assert resp.header(b"x-echo") == body[:20].decode()
            assert await read_all(resp) == b"echo:" + body

        await asyncio.gather(*(one(i) for i in range(20)))
        assert len(peers) == 20  # the pool was empty: one connection each
        assert client.idle_connections() == 20
        await asyncio.gather(*(one(i) for i in range(20, 40)))
        assert len(peers) == 20  # ...and all of them reused
        assert client.idle_connections() == 20

        # Many more requests, at most five in flight: never more than five connections.
        fresh = Client()
        peers.clear()
        gate = asyncio.Semaphore(5)

        async def gated(i: int) -> None:
            async with gate:
                body = b"gated-%d" % i
                resp = await post(fresh, url, body)
                assert await read_all(resp) == b"echo:" + body

        try:
            await asyncio.gather(*(gated(i) for i in range(60)))
        finally:
            await fresh.close()
        assert 1 <= len(peers) <= 5


async def test_connection_close_answer_is_not_pooled(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"bye", headers=(b"Connection: close",)))
        await server.until_eof(reader)  # the client, not the server, closes it

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        assert await read_all(resp) == b"bye"
        await until(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0
        resp = await post(client, srv.url)
        assert await read_all(resp) == b"bye"
        assert srv.connections == 2


async def test_idle_connections_expire_after_keepalive_secs() -> None:
    client = Client(keepalive_secs=0.1)
    try:
        async with RawServer(keep_alive) as srv:
            assert await read_all(await post(client, srv.url, b"1")) == b"echo:1"
            await asyncio.sleep(0.2)
            assert await read_all(await post(client, srv.url, b"2")) == b"echo:2"
            assert srv.connections == 2
            await until(lambda: srv.hangups == 1)  # the expired one was closed
    finally:
        await client.close()


async def test_pool_retires_its_oldest_idle_connection() -> None:
    client = Client(keepalive_secs=0.5)
    gone: list[int] = []

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        number = server.connections
        while await server.read_request(reader) is not None:
            if number <= 2:
                await asyncio.sleep(0.05)  # so that the first two requests overlap
            writer.write(response(b"%d" % number))
        gone.append(number)

    try:
        async with RawServer(handler) as srv:
            await asyncio.gather(post(client, srv.url), post(client, srv.url))
            assert client.idle_connections() == 2
            await asyncio.sleep(0.2)
            # The most recently used connection is taken; the other one ages in the pool.
            first = await read_all(await post(client, srv.url))
            await asyncio.sleep(0.35)
            # Past keepalive_secs for the one that aged, but not for the one just used: when
            # that comes back, the aged one is closed.
            assert await read_all(await post(client, srv.url)) == first
            await until(lambda: len(gone) == 1)
            assert gone == [3 - int(first)]
            assert srv.connections == 2
            assert client.idle_connections() == 1
    finally:
        await client.close()


async def test_idle_sockets_of_an_unused_origin_are_swept() -> None:
    """No later request to this origin: the sweep still closes its idle connection."""
    client = Client(keepalive_secs=0.1)
    try:
        async with RawServer(keep_alive) as srv:
            await read_all(await post(client, srv.url))
            assert client.idle_connections() == 1
            await until(lambda: srv.hangups == 1, timeout=1.0)
            assert client.idle_connections() == 0
    finally:
        await client.close()


# --- the per-origin cap ---------------------------------------------------------------------


async def held(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
    """Keep-alive; each answer comes 0.1 s after its request."""
    while (request := await server.read_request(reader)) is not None:
        await asyncio.sleep(0.1)
        writer.write(response(b"echo:" + request[1]))


async def test_max_per_origin_queues_requests_in_order() -> None:
    client = Client(max_per_origin=2)
    try:
        async with RawServer(held) as srv:
            calls = []
            for i in range(6):
                calls.append(asyncio.ensure_future(post(client, srv.url, b"%d" % i)))
                await asyncio.sleep(0.005)  # a known arrival order
            answers = [await read_all(await call) for call in calls]
            assert answers == [b"echo:%d" % i for i in range(6)]
            assert srv.connections == 2
            # First come, first served: each freed connection takes the oldest waiter.
            assert sorted(body for _, body in srv.requests[:2]) == [b"0", b"1"]
            assert sorted(body for _, body in srv.requests[2:4]) == [b"2", b"3"]
            assert client.idle_connections() == 2
    finally:
        await client.close()


async def test_pool_timeout_when_the_origin_stays_full() -> None:
    client = Client(max_per_origin=1, pool_timeout_secs=0.1)
    try:
        async with RawServer(slow_body) as srv:
            busy = await post(client, srv.url)  # holds the only connection for 0.2 s
            started = time.monotonic()
            with pytest.raises(PoolTimeout) as info:
                await post(client, srv.url)
            assert 0.08 <= time.monotonic() - started < 0.5
            assert info.value.kind == "pool_full"
            assert await read_all(busy) == b"ok"
            assert srv.connections == 1
            # ...and the slot still works afterwards.
            assert await read_all(await post(client, srv.url)) == b"ok"
    finally:
        await client.close()


async def test_a_closed_connection_frees_its_slot_for_a_waiter() -> None:
    async def close_after_answer(
        server: RawServer, reader: Any, writer: asyncio.StreamWriter
    ) -> None:
        request = await server.read_request(reader)
        assert request is not None
        await asyncio.sleep(0.05)
        writer.write(response(b"bye", headers=(b"Connection: close",)))

    client = Client(max_per_origin=1, pool_timeout_secs=2.0)
    try:
        async with RawServer(close_after_answer) as srv:
            answers = await asyncio.gather(*(post(client, srv.url) for _ in range(3)))
            assert [await read_all(resp) for resp in answers] == [b"bye"] * 3
            assert srv.connections == 3
    finally:
        await client.close()


async def test_failed_connects_give_their_slot_back() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(max_per_origin=1, pool_timeout_secs=0.1)
    try:
        for _ in range(3):
            with pytest.raises(ConnectError):
                await post(client, URL(f"http://127.0.0.1:{port}/v1/x"))
    finally:
        await client.close()


async def test_closing_the_client_fails_the_waiters() -> None:
    client = Client(max_per_origin=1, pool_timeout_secs=5.0)
    async with RawServer(slow_body) as srv:
        busy = await post(client, srv.url)
        waiting = asyncio.ensure_future(post(client, srv.url))
        await asyncio.sleep(0.02)
        await client.close()
        with pytest.raises(ClientClosed):
            await waiting
        busy.close()


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("byte_by_byte", [False, True])
async def test_chunked_body(client: Client, byte_by_byte: bool) -> None:
    parts = [b"data: one\n\n", b"data: two\n\n", b"x" * 70_000, b"data: [DONE]\n\n"]

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            data = head + b"Transfer-Encoding: chunked\r\n\r\n"
            if byte_by_byte:
                data += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts[:2]) + b"0\r\n\r\n"
                for i in range(len(data)):
                    writer.write(data[i : i + 1])
                    await writer.drain()
                continue
            writer.write(data)
            for part in parts:
                await asyncio.sleep(0.03)
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await asyncio.sleep(0.03)
            writer.write(b"0\r\n\r\n")

    async with RawServer(handler) as srv:
        for _ in range(2):
            resp = await post(client, srv.url)
            assert (resp.status, resp.content_type, resp.content_length) == (
                200,
                "text/event-stream",
                None,
            )
            expected = parts if not byte_by_byte else parts[:2]
            chunks = []
            while chunk := await resp.read_chunk():
                chunks.append(chunk)
            assert b"".join(chunks) == b"".join(expected)
            if not byte_by_byte:
                assert chunks[:2] == parts[:2]  # streamed as they came, not all at the end
            assert resp.complete
            assert resp.received == len(b"".join(expected))
        assert srv.connections == 1
        assert client.idle_connections() == 1


async def test_body_delimited_by_connection_close(client: Client) -> None:
    parts = [b"first ", b"second ", b"y" * 100_000, b" last"]

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n")
        for part in parts:
            await asyncio.sleep(0.02)
            writer.write(part)
        await writer.drain()
        writer.close()

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        assert (resp.status, resp.content_length, resp.complete) == (200, None, False)
        first = await resp.read_chunk()
        assert first == b"first "
        assert first + await read_all(resp) == b"".join(parts)
        assert resp.complete
        assert await resp.read_chunk() == b""
        assert client.idle_connections() == 0


async def test_body_delimited_by_a_reset_connection_is_an_error(client: Client) -> None:
    """Ended by a reset (not a clean close), an until-close body is truncated, not whole."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        assert await resp.read_chunk() == b"partial"
        with pytest.raises(UpstreamError):
            await resp.read_chunk()
        assert not resp.complete


@pytest.mark.parametrize(
    ("answer", "received"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", 9),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 5),
    ],
    ids=["content-length", "chunked"],
)
async def test_truncated_body_is_an_error(client: Client, answer: bytes, received: int) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        assert resp.status == 200
        with pytest.raises(Disconnected):
            await read_all(resp)
        assert resp.received == received
        assert not resp.complete
        assert client.idle_connections() == 0


async def test_interim_100_continue_is_skipped(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(response(b"final body", headers=(b"X-Final: yes",)))

    async with RawServer(handler) as srv:
        for _ in range(2):
            resp = await post(client, srv.url)
            assert (resp.status, resp.reason) == (200, "OK")
            assert resp.raw_headers == [(b"X-Final", b"yes"), (b"Content-Length", b"10")]
            assert await read_all(resp) == b"final body"
        assert srv.connections == 1
        assert client.idle_connections() == 1


async def test_backpressure_bounds_buffering(client: Client) -> None:
    size = 8 << 20
    payload = random.Random(7).randbytes(size)

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for i in range(0, size, 64 * 1024):
            writer.write(payload[i : i + 64 * 1024])
            await writer.drain()
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        digest = hashlib.sha256()
        total = reads = most_buffered = 0
        paused_seen = False
        async with asyncio.timeout(10):
            while True:
                await asyncio.sleep(0.005)  # a slow client
                most_buffered = max(most_buffered, resp._size)
                conn = resp._conn
                paused_seen = paused_seen or (conn is not None and conn.reading_paused)
                chunk = await resp.read_chunk()
                if not chunk:
                    break
                reads += 1
                digest.update(chunk)
                total += len(chunk)
        assert total == size
        assert digest.digest() == hashlib.sha256(payload).digest()
        assert paused_seen  # the socket was not read while the buffer was full...
        assert most_buffered <= HIGH_WATER + SOCKET_READ  # ...so the buffer stayed bounded
        assert reads >= size // (HIGH_WATER + SOCKET_READ)
        assert client.idle_connections() == 1


# --- stale and broken connections -----------------------------------------------------------


@pytest.mark.parametrize("pause", [0.0, 0.1])
async def test_upstream_closing_idle_connection(client: Client, pause: float) -> None:
    """The upstream closes a keep-alive connection right after answering: whether the client
    noticed (pause) or not (no pause: it may send on the dead one), the next request works."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(reader)
        assert request is not None
        writer.write(response(b"echo:" + request[1]))  # no "Connection: close" said
        await writer.drain()
        writer.close()

    async with RawServer(handler) as srv:
        assert await read_all(await post(client, srv.url, b"1")) == b"echo:1"
        if pause:
            await asyncio.sleep(pause)
            assert client.idle_connections() == 0
        assert await read_all(await post(client, srv.url, b"2")) == b"echo:2"
        assert srv.connections == 2


async def test_stale_pooled_connection_is_retried_once_on_a_new_one(client: Client) -> None:
    """The deterministic form of the race: the pooled connection takes the request and dies
    without a byte of answer. The request goes out again, on a fresh connection."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        number = server.connections
        assert await server.read_request(reader) is not None
        if number == 1:
            writer.write(response(b"first"))
            assert await server.read_request(reader) is not None
            return  # closed without answering
        writer.write(response(b"second"))
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        assert await read_all(await post(client, srv.url, b"a")) == b"first"
        assert client.idle_connections() == 1
        assert await read_all(await post(client, srv.url, b"b")) == b"second"
        assert srv.connections == 2
        assert [body for _, body in srv.requests] == [b"a", b"b", b"b"]
        assert srv.requests[1] == srv.requests[2]


async def test_stale_pooled_connection_resend_is_logged(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"ok"))
        if server.connections == 1:
            assert await server.read_request(reader) is not None  # ...and drops it at once
        else:
            await server.until_eof(reader)

    async with RawServer(handler) as srv:
        await read_all(await post(client, srv.url))
        with structlog.testing.capture_logs() as logs:
            assert await read_all(await post(client, srv.url)) == b"ok"
    resent = [e for e in logs if e["event"] == "upstream_request_resent"]
    assert len(resent) == 1 and resent[0]["url"] == str(srv.url)
    assert len(srv.requests) == 3


async def test_pooled_request_held_then_dropped_is_not_resent(client: Client) -> None:
    """The upstream read the request, worked on it for a second, then closed without answering:
    it may have generated (and billed) an answer. Sending it again would duplicate the POST."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"first"))
        assert await server.read_request(reader) is not None
        await asyncio.sleep(1.0)  # "working on it"; then gone

    async with RawServer(handler) as srv:
        assert await read_all(await post(client, srv.url, b"a")) == b"first"
        with structlog.testing.capture_logs() as logs, pytest.raises(Disconnected):
            await post(client, srv.url, b"b")
        assert srv.connections == 1
        assert [body for _, body in srv.requests] == [b"a", b"b"]
    assert not [e for e in logs if e["event"] == "upstream_request_resent"]


async def test_no_retry_once_the_pooled_connection_answered(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"first"))
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-")  # a byte of answer, then gone
        await writer.drain()
        await asyncio.sleep(0.02)

    async with RawServer(handler) as srv:
        assert await read_all(await post(client, srv.url, b"a")) == b"first"
        with pytest.raises(Disconnected):
            await post(client, srv.url, b"b")
        assert srv.connections == 1
        assert len(srv.requests) == 2


async def test_fresh_connection_closed_without_answer(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None  # ...and nothing back

    async with RawServer(handler) as srv:
        started = time.monotonic()
        with pytest.raises(Disconnected):
            await post(client, srv.url)
        assert time.monotonic() - started < 1.0
        assert srv.connections == 1  # a fresh connection's failure is not retried
        assert client.idle_connections() == 0


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
)
async def test_invalid_response_is_an_error(client: Client, answer: bytes) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(answer)
        await server.until_eof(reader)  # the server keeps it open: the client must hang up

    async with RawServer(handler) as srv:
        with pytest.raises(ProtocolError):
            await post(client, srv.url)
        await until(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0


async def test_upgrade_answer_is_an_error(client: Client) -> None:
    """A 101 makes the parser stop with an "upgrade" (not a parse error): it is still an invalid
    answer, not an exception out of `data_received`."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n")
        writer.write(b"Upgrade: websocket\r\n\r\n\x81\x02hi")
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        with pytest.raises(ProtocolError):
            await post(client, srv.url)
        await until(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0


async def test_invalid_answer_on_pooled_connection_is_not_retried(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"first"))
        assert await server.read_request(reader) is not None
        writer.write(b"garbage\r\n\r\n")
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        assert await read_all(await post(client, srv.url)) == b"first"
        with pytest.raises(ProtocolError):
            await post(client, srv.url)
        assert srv.connections == 1
        assert len(srv.requests) == 2


async def test_endless_headers_are_an_error_with_bounded_memory(client: Client) -> None:
    written: list[int] = []

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for i in range(1_000_000):  # 20 MB of headers, unless the client hangs up
                writer.write(b"X-%07d: %s\r\n" % (i, b"v" * 8))
                if i % 1000 == 0:
                    await writer.drain()
        except ConnectionError:
            written.append(i * 20)

    async with RawServer(handler) as srv:
        started = time.monotonic()
        with pytest.raises(ProtocolError) as info:
            await post(client, srv.url)
        assert time.monotonic() - started < 1.0
        assert info.value.kind == "protocol"
        await until(lambda: bool(written))  # the client hung up, long before the 20 MB
        assert written[0] < 10_000_000
        assert client.idle_connections() == 0


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 " + b"O" * (9 * 1024) + b"\r\n\r\n",  # status line
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (9 * 1024) + b"\r\n\r\n",  # one header line
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Fold: v\r\n" + b" " * (70 * 1024) + b"w\r\n\r\n",
    ],
    ids=["status-line", "header-line", "101-headers", "head-over-64k"],
)
async def test_response_head_limits(client: Client, head: bytes) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(head)
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        with pytest.raises(ProtocolError):
            await post(client, srv.url)
        await until(lambda: srv.hangups == 1)  # the connection was dropped
        assert client.idle_connections() == 0


async def test_head_at_the_limits_is_accepted(client: Client) -> None:
    headers = tuple(b"X-%02d: " % i + b"v" * 600 for i in range(99))  # ~60 KiB, 99 + 1 fields
    async with RawServer(keep_alive) as srv:
        srv.handler = functools.partial(_answer_with, response(b"ok", "200 OK", headers))
        resp = await post(client, srv.url)
        assert len(resp.raw_headers) == 100
        assert await read_all(resp) == b"ok"


async def _answer_with(
    answer: bytes, server: RawServer, reader: Any, writer: asyncio.StreamWriter
) -> None:
    while await server.read_request(reader) is not None:
        writer.write(answer)


async def test_bare_lf_and_folded_header_lines_are_accepted(client: Client) -> None:
    """What old servers send, and aiohttp's client accepts."""
    answer = b"HTTP/1.1 200 OK\nX-Folded: a\r\n  b\nContent-Length: 2\n\nhi"
    async with RawServer(keep_alive) as srv:
        srv.handler = functools.partial(_answer_with, answer)
        resp = await post(client, srv.url)
        assert resp.status == 200
        assert (b"X-Folded", b"a  b") in resp.raw_headers
        assert await read_all(resp) == b"hi"


@pytest.mark.parametrize("delay", [0.0, 0.05])
async def test_unrequested_bytes_make_a_connection_unusable(client: Client, delay: float) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            writer.write(response(b"one"))
            if server.connections == 1:
                await writer.drain()
                await asyncio.sleep(delay)
                writer.write(response(b"two"))  # an answer nobody asked for

    async with RawServer(handler) as srv:
        assert await read_all(await post(client, srv.url)) == b"one"
        await until(lambda: client.idle_connections() == 0)
        assert await read_all(await post(client, srv.url)) == b"one"
        assert srv.connections == 2


# --- closing --------------------------------------------------------------------------------


async def test_response_close_mid_body_aborts_the_connection(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        assert await server.until_eof(reader) == b""

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        assert await resp.read_chunk() == b"0123456789"
        resp.close()
        resp.close()  # idempotent
        await until(lambda: srv.hangups == 1)
        assert not resp.complete
        assert client.idle_connections() == 0


async def test_response_close_after_body_keeps_the_connection(client: Client) -> None:
    async with RawServer(keep_alive) as srv:
        resp = await post(client, srv.url, b"a")
        await until(lambda: resp.complete)
        resp.close()  # whole but unread: still reusable
        assert client.idle_connections() == 1
        resp = await post(client, srv.url, b"b")
        assert await read_all(resp) == b"echo:b"
        resp.close()
        assert client.idle_connections() == 1
        assert srv.connections == 1
        assert srv.hangups == 0


async def test_client_close_aborts_idle_connections_and_refuses_requests() -> None:
    client = Client()

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"ok"))
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        await asyncio.gather(post(client, srv.url), post(client, srv.url))
        assert client.idle_connections() == 2
        await client.close()
        assert client.idle_connections() == 0
        await until(lambda: srv.hangups == 2)
        with pytest.raises(ClientClosed):
            await post(client, srv.url)
        assert srv.connections == 2


async def test_client_close_during_a_request() -> None:
    client = Client()

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        await asyncio.sleep(0.1)
        writer.write(response(b"late"))
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        pending = asyncio.ensure_future(post(client, srv.url))
        await until(lambda: len(srv.requests) == 1)
        await client.close()
        resp = await pending  # the request in flight still gets its answer...
        assert await read_all(resp) == b"late"
        await until(lambda: srv.hangups == 1)  # ...but its connection is not kept
        assert client.idle_connections() == 0


@pytest.mark.parametrize("when", ["waiting for headers", "reading the body"])
async def test_cancelled_request_drops_the_connection(client: Client, when: str) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        if when == "reading the body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await server.until_eof(reader)

    async def call() -> bytes:
        return await read_all(await post(client, srv.url))

    async with RawServer(handler) as srv:
        task = asyncio.ensure_future(call())
        await until(lambda: len(srv.requests) == 1)
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0


# --- timeouts and connect failures ----------------------------------------------------------


@pytest.mark.parametrize("which", ["first_byte_secs", "total_secs"])
async def test_no_headers_in_time(client: Client, which: str) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        await server.until_eof(reader)  # never answers

    kw = {"total_secs": 10.0, "first_byte_secs": 0.2}
    if which == "total_secs":
        kw = {"total_secs": 0.2}
    async with RawServer(handler) as srv:
        started = time.monotonic()
        with pytest.raises(FirstByteTimeout) as info:
            await post(client, srv.url, **kw)
        elapsed = time.monotonic() - started
        assert 0.15 <= elapsed < 1.0
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, UpstreamError)
        assert info.value.kind == "first_byte_timeout"
        await until(lambda: srv.hangups == 1)  # the connection was dropped
        assert client.idle_connections() == 0


async def test_idle_timeout_between_chunks(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(0.1)
        writer.write(b"3\r\ndef\r\n")
        await server.until_eof(reader)  # then stalls

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url, idle_secs=0.3)
        assert await resp.read_chunk() == b"abc"
        assert await resp.read_chunk() == b"def"  # 0.1 s is within the idle timeout
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await resp.read_chunk()
        assert 0.25 <= time.monotonic() - started < 1.0
        await until(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0


async def test_total_timeout_on_a_trickling_body(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(0.02)

    async with RawServer(handler) as srv:
        started = time.monotonic()
        resp = await post(client, srv.url, total_secs=0.5, idle_secs=0.3)
        with pytest.raises(ReadTimeout):
            await read_all(resp)
        assert 0.45 <= time.monotonic() - started < 1.5
        assert 5 < resp.received < 1000


async def test_read_chunk_deadline_argument(client: Client) -> None:
    """`read_chunk(deadline)` caps one wait (the relay passes `first_deadline`)."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url, first_byte_secs=0.3)
        loop = asyncio.get_running_loop()
        assert resp.first_deadline < resp.deadline
        assert resp.first_deadline - loop.time() <= 0.3 + 1e-6  # (uvloop: a ms clock)
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await resp.read_chunk(resp.first_deadline)
        assert time.monotonic() - started < 0.6


async def test_connect_refused(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await post(client, URL(f"http://127.0.0.1:{port}/v1/x"), connect_secs=1.0)
    assert info.value.kind == "refused"
    assert time.monotonic() - started < 1.0


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port that takes no more connections: its accept queue is full, so Linux drops
    further SYNs and a connect hangs (a local stand-in for a blackholed address)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.3).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("where", ["full-backlog", "10.255.255.1"])
async def test_connect_timeout(client: Client, where: str) -> None:
    """Nothing answers: a timeout (or, for the remote address, an immediate error where the
    network says it is unreachable), within about the connect timeout."""
    with contextlib.ExitStack() as stack:
        if where == "full-backlog":
            url = URL(f"http://127.0.0.1:{stack.enter_context(full_backlog())}/v1/x")
        else:
            if await asyncio.to_thread(reachable, where, 81):
                pytest.skip(f"something answers at {where} on this network")
            url = URL(f"http://{where}:81/v1/x")
        started = time.monotonic()
        with pytest.raises((ConnectTimeout, ConnectError)) as info:
            await post(client, url, connect_secs=0.2)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    if where == "full-backlog":
        assert isinstance(info.value, ConnectTimeout)
    if isinstance(info.value, ConnectTimeout):
        assert elapsed >= 0.15
    else:
        assert info.value.kind == "unreachable"
    assert client.idle_connections() == 0


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) files."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _make_cert_with_cryptography(cert, key)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
    return cert, key


def _make_cert_with_cryptography(cert: Path, key: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def server_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    return context


async def test_tls_without_verification(client: Client, tls_cert: tuple[Path, Path]) -> None:
    async with RawServer(keep_alive, server_tls(tls_cert)) as srv:
        t = target(srv.url, verify=False)
        for body in (b"secret-1", b"secret-2"):
            resp = await client.request(t, b"X-A: 1\r\n", body, total_secs=5)
            assert resp.status == 200
            assert await read_all(resp) == b"echo:" + body
        assert srv.connections == 1  # kept alive over TLS too
        assert client.idle_connections() == 1
        assert srv.requests[0] == (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"X-A: 1\r\nContent-Length: 8\r\n\r\n" % srv.port,
            b"secret-1",
        )


async def test_tls_verification_rejects_self_signed(
    client: Client, tls_cert: tuple[Path, Path]
) -> None:
    async with RawServer(keep_alive, server_tls(tls_cert)) as srv:
        with pytest.raises(ConnectError) as info:
            await client.request(target(srv.url, verify=True), b"", b"{}", total_secs=5)
        assert info.value.kind == "tls"
        assert srv.requests == []
        assert client.idle_connections() == 0


# --- forward proxies ------------------------------------------------------------------------


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def connect_proxy(refuse: bytes = b"") -> Handler:
    """A CONNECT proxy: the tunnel goes to 127.0.0.1 on the requested port (whatever the host
    name). With `refuse`, that answer instead (and the connection closed)."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(reader)
        assert request is not None
        if refuse:
            writer.write(refuse)
            await writer.drain()
            return
        port = int(request[0].split(b" ")[1].rsplit(b":", 1)[1])
        origin_reader, origin_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(pipe(reader, origin_writer), pipe(origin_reader, writer))
        finally:
            origin_writer.transport.abort()

    return handler


async def test_https_through_a_connect_tunnel(client: Client, tls_cert: tuple[Path, Path]) -> None:
    """CONNECT with the proxy's credentials, then TLS with the origin (SNI: the origin's name)
    inside the tunnel; the tunnel is pooled and reused like any connection."""
    names: list[str | None] = []
    context = server_tls(tls_cert)

    def sni(_sock: Any, name: str | None, _context: Any) -> None:
        names.append(name)

    context.sni_callback = sni
    async with RawServer(keep_alive, context) as origin, RawServer(connect_proxy()) as proxy:
        url = URL(f"https://localhost:{origin.port}/v1/chat?api-version=1")
        t = target(url, verify=False, proxy=URL(f"http://u%40x:p%3Aw@127.0.0.1:{proxy.port}"))
        for body in (b"1", b"2"):
            resp = await client.request(t, b"", body, total_secs=5)
            assert await read_all(resp) == b"echo:" + body
        assert proxy.requests == [
            (
                b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n"
                b"Proxy-Authorization: Basic dUB4OnA6dw==\r\n\r\n" % (origin.port, origin.port),
                b"",
            )
        ]
        assert names == ["localhost"]
        assert origin.connections == 1 and proxy.connections == 1
        assert origin.requests[0][0].startswith(b"POST /v1/chat?api-version=1 HTTP/1.1\r\n")
        assert b"Proxy-Authorization" not in origin.requests[0][0]


async def test_certificate_is_checked_against_the_origin_through_the_tunnel(
    client: Client, tls_cert: tuple[Path, Path]
) -> None:
    async with (
        RawServer(keep_alive, server_tls(tls_cert)) as origin,
        RawServer(connect_proxy()) as proxy,
    ):
        url = URL(f"https://localhost:{origin.port}/v1/x")
        t = target(url, verify=True, proxy=URL(f"http://127.0.0.1:{proxy.port}"))
        with pytest.raises(ConnectError) as info:
            await client.request(t, b"", b"{}", total_secs=5)
        assert info.value.kind == "tls"  # the origin's self-signed certificate, not the proxy
        assert origin.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 403 Forbidden\r\n\r\n",
        b"",  # closed without an answer
        b"garbage\r\n\r\n",
    ],
)
async def test_proxy_failures_are_proxy_connect_errors(client: Client, answer: bytes) -> None:
    async with RawServer(connect_proxy(refuse=answer)) as proxy:
        proxy_url = URL(f"http://user:hunter2@127.0.0.1:{proxy.port}")
        t = target(URL("https://api.example.com/v1/x"), proxy=proxy_url)
        with pytest.raises(ConnectError) as info:
            await client.request(t, b"", b"{}", total_secs=5)
    assert info.value.kind == "proxy"
    assert "hunter2" not in str(info.value) and "user" not in str(info.value)
    if answer[:12] in (b"HTTP/1.1 407", b"HTTP/1.1 403"):
        assert answer[9:12].decode() in str(info.value)  # the proxy's status, for the operator


async def test_unreachable_proxy_is_a_proxy_connect_error(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t = target(URL("https://api.example.com/v1/x"), proxy=URL(f"http://127.0.0.1:{port}"))
    with pytest.raises(ConnectError) as info:
        await client.request(t, b"", b"{}", total_secs=5)
    assert info.value.kind == "proxy"


async def test_http_through_a_proxy_in_absolute_form(client: Client) -> None:
    """The proxy gets the absolute URL and the credentials on every request; the origin's name
    is never resolved here (the resolver would fail on it)."""
    async with RawServer(keep_alive) as proxy:
        t = target(
            URL("http://origin.invalid:8080/v1/chat?q=1"),
            "POST",
            proxy=URL(f"http://user:pw@127.0.0.1:{proxy.port}/"),
        )
        for _ in range(2):
            assert await read_all(await client.request(t, b"", b"x", total_secs=5)) == b"echo:x"
        assert proxy.connections == 1
        assert proxy.requests[0][0] == (
            b"POST http://origin.invalid:8080/v1/chat?q=1 HTTP/1.1\r\nHost: origin.invalid:8080\r\n"
            b"Proxy-Authorization: Basic dXNlcjpwdw==\r\nContent-Length: 1\r\n\r\n"
        )


def test_the_pool_key_includes_the_proxy_and_its_credentials() -> None:
    url = URL("https://api.example.com/v1/x")
    direct = target(url)
    one = target(url, proxy=URL("http://proxy:3128"))
    other = target(url, proxy=URL("http://proxy:3129"))
    user_a = target(url, proxy=URL("http://a:secret@proxy:3128"))
    user_b = target(url, proxy=URL("http://b:secret@proxy:3128"))
    assert len({t.origin for t in (direct, one, other, user_a, user_b)}) == 5
    assert "secret" not in repr(user_a) and "secret" not in user_a.proxy
    assert (one.connect_host, one.connect_port) == ("proxy", 3128)


@pytest.mark.parametrize(
    "proxy", ["https://proxy:3128", "socks5://proxy:1080", "http://proxy:3128/path"]
)
def test_only_http_forward_proxies(proxy: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        target(URL("https://api.example.com/v1/x"), proxy=URL(proxy))


PROXY = "http://proxy:3128"


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://api.example.com/v1", {"HTTPS_PROXY": PROXY}, PROXY),
        ("https://api.example.com/v1", {"https_proxy": PROXY, "HTTPS_PROXY": "http://up:1"}, PROXY),
        ("https://api.example.com/v1", {"HTTP_PROXY": PROXY}, None),  # not for https
        ("http://api.example.com/v1", {"HTTP_PROXY": PROXY}, PROXY),
        ("http://api.example.com/v1", {"HTTP_PROXY": PROXY, "REQUEST_METHOD": "GET"}, None),
        ("http://api.example.com/v1", {"http_proxy": PROXY, "REQUEST_METHOD": "GET"}, PROXY),
        ("https://api.example.com/v1", {"ALL_PROXY": PROXY}, PROXY),
        ("https://api.example.com/v1", {"https_proxy": "", "ALL_PROXY": PROXY}, PROXY),
        ("https://api.example.com/v1", {"HTTPS_PROXY": "proxy:3128"}, PROXY),  # no scheme
        ("https://api.example.com/v1", {}, None),
        # NO_PROXY forms
        ("https://api.example.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, None),
        ("https://api.example.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "example.com"}, None),
        ("https://example.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": ".example.com"}, None),
        ("https://api.example.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": ".example.com"}, None),
        ("https://notexample.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "example.com"}, PROXY),
        ("https://API.Example.com./v1", {"HTTPS_PROXY": PROXY, "no_proxy": "x, example.COM"}, None),
        (
            "https://api.example.com/v1",
            {"HTTPS_PROXY": PROXY, "NO_PROXY": "a.b *.example.com"},
            None,
        ),
        ("https://10.1.2.3/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://11.1.2.3/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8"}, PROXY),
        ("https://10.1.2.3/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.1.2.3"}, None),
        ("https://[fd00::1]/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "fd00::/8"}, None),
        ("https://[fd00::1]:8443/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "[fd00::1]:8443"}, None),
        (
            "https://api.example.com:8443/v1",
            {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example.com:8443"},
            None,
        ),
        (
            "https://api.example.com/v1",
            {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example.com:8443"},
            PROXY,
        ),
        (
            "https://api.example.com/v1",
            {"HTTPS_PROXY": PROXY, "no_proxy": "", "NO_PROXY": "*"},
            None,
        ),
        (
            "https://api.example.com/v1",
            {"HTTPS_PROXY": PROXY, "no_proxy": "x", "NO_PROXY": "*"},
            PROXY,
        ),
        # loopback is never proxied
        ("http://127.0.0.1:18001/v1", {"HTTP_PROXY": PROXY}, None),
        ("http://127.9.9.9/v1", {"HTTP_PROXY": PROXY}, None),
        ("http://[::1]:8080/v1", {"HTTP_PROXY": PROXY}, None),
        ("http://localhost:8080/v1", {"HTTP_PROXY": PROXY}, None),
        ("http://api.localhost/v1", {"HTTP_PROXY": PROXY}, None),
    ],
)
def test_proxy_from_env(url: str, env: dict[str, str], expected: str | None) -> None:
    proxy = proxy_from_env(URL(url), env)
    assert (str(proxy) if proxy is not None else None) == expected


# --- the same on uvloop ---------------------------------------------------------------------


UVLOOP_SCENARIOS: list[Callable[..., Awaitable[None]]] = [
    test_post_round_trip,
    test_keep_alive_reuses_one_connection,
    functools.partial(test_chunked_body, byte_by_byte=False),
    test_body_delimited_by_connection_close,
    test_backpressure_bounds_buffering,
    test_stale_pooled_connection_is_retried_once_on_a_new_one,
    functools.partial(test_upstream_closing_idle_connection, pause=0.0),
    test_response_close_mid_body_aborts_the_connection,
    test_idle_timeout_between_chunks,
    functools.partial(test_invalid_response_is_an_error, answer=b"garbage\r\n\r\n"),
]


@pytest.mark.parametrize(
    "scenario",
    [*UVLOOP_SCENARIOS, "tls"],
    ids=lambda s: s if isinstance(s, str) else getattr(s, "func", s).__name__,
)
def test_on_uvloop(scenario: Any, tls_cert: tuple[Path, Path]) -> None:
    uvloop = pytest.importorskip("uvloop")
    if scenario == "tls":
        scenario = functools.partial(test_tls_without_verification, tls_cert=tls_cert)

    async def run() -> None:
        client = Client()
        try:
            await scenario(client)
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


def addr(host: str, port: int) -> Any:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))


class FakeResolver:
    """Resolves every name to `answers` (address infos; each carries its own port)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[Any]:
        self.lookups += 1
        await asyncio.sleep(0.01)  # a real lookup takes a while: concurrent callers share it
        return self.answers


async def slow_body(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
    """Keep-alive; the body follows the head 0.2 s later (so the connection stays busy)."""
    while await server.read_request(reader) is not None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        await asyncio.sleep(0.2)
        writer.write(b"ok")


async def test_host_names_resolve_once() -> None:
    async with RawServer(slow_body) as srv:
        resolver = FakeResolver(addr("127.0.0.1", srv.port))
        client = Client(resolver=resolver)
        try:
            url = srv.url.with_host("api.test")
            # Three at once need three connections; they share one lookup...
            answers = await asyncio.gather(*(post(client, url) for _ in range(3)))
            for resp in answers:
                assert await read_all(resp) == b"ok"
            # ...and later new connections reuse it, within the TTL.
            busy = await post(client, url)
            await asyncio.gather(*(post(client, url) for _ in range(3)))
            await read_all(busy)
        finally:
            await client.close()
        assert srv.connections == 4
        assert resolver.lookups == 1


async def test_dns_ttl_secs_bounds_the_cache() -> None:
    async with RawServer(keep_alive) as srv:
        resolver = FakeResolver(addr("127.0.0.1", srv.port))
        client = Client(keepalive_secs=0.0, dns_ttl_secs=0.05, resolver=resolver)
        try:
            await read_all(await post(client, srv.url.with_host("api.test")))
            await asyncio.sleep(0.1)
            await read_all(await post(client, srv.url.with_host("api.test")))
        finally:
            await client.close()
        assert resolver.lookups == 2


async def test_connect_falls_back_across_addresses() -> None:
    """A name with several addresses: a refusing one is skipped, the next one serves."""
    async with RawServer(keep_alive) as srv:
        # 127.0.0.2 is loopback too, but nothing listens there on this port.
        resolver = FakeResolver(addr("127.0.0.2", srv.port), addr("127.0.0.1", srv.port))
        client = Client(keepalive_secs=0.0, resolver=resolver)
        try:
            resp = await post(client, srv.url.with_host("multi.test"))
            assert (await read_all(resp)).startswith(b"echo:")
            # When every address refuses, the lookup is dropped so the next try resolves.
            resolver.answers = [addr("127.0.0.2", srv.port)]
            resolver.lookups = 0
            with pytest.raises(ConnectError) as info:
                await post(client, srv.url.with_host("other.test"))
            assert info.value.kind == "refused"
            with pytest.raises(ConnectError):
                await post(client, srv.url.with_host("other.test"))
            assert resolver.lookups == 2
        finally:
            await client.close()


async def test_blackholed_first_address_costs_the_happy_eyeballs_delay() -> None:
    """The first address drops SYNs: the next one is tried after 0.25 s (not after the connect
    timeout), and the one that answered goes first for the next new connection."""
    with full_backlog() as dead:
        async with RawServer(slow_body) as srv:
            resolver = FakeResolver(addr("127.0.0.1", dead), addr("127.0.0.1", srv.port))
            client = Client(resolver=resolver)
            url = srv.url.with_host("api.test")
            try:
                started = time.monotonic()
                first = await post(client, url, connect_secs=5.0)
                assert 0.2 <= time.monotonic() - started < 1.0
                started = time.monotonic()
                second = await post(client, url, connect_secs=5.0)  # the first is still busy
                assert time.monotonic() - started < 0.2
                for resp in (first, second):
                    assert await read_all(resp) == b"ok"
            finally:
                await client.close()
            assert srv.connections == 2
            assert resolver.lookups == 1


FD_EXHAUSTION = """
import asyncio, os, resource, sys
import uvloop
from yarl import URL
from llm_proxy.upstream_client import Client, ConnectError, target

async def main() -> None:
    client = Client()
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    try:
        await client.request(target(URL(sys.argv[1])), b"", b"", total_secs=5)
    except ConnectError as exc:
        print(exc.kind, exc)

uvloop.run(main())
"""


async def test_out_of_file_descriptors_for_real() -> None:
    """RLIMIT_NOFILE reached (in a subprocess): the error says so."""
    async with RawServer(keep_alive) as srv:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FD_EXHAUSTION, str(srv.url), stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert out.decode().startswith("fd_exhausted "), out
    assert b"out of file descriptors" in out


async def test_out_of_file_descriptors_is_said() -> None:
    def no_more_fds(info: Any) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    client = Client(socket_factory=no_more_fds)
    try:
        with pytest.raises(ConnectError) as info:
            await post(client, URL("http://127.0.0.1:9/v1/x"))
    finally:
        await client.close()
    assert info.value.kind == "fd_exhausted"
    assert "file descriptors" in str(info.value)  # the operator's hint, not a classification


async def test_unknown_host_is_an_upstream_error(client: Client) -> None:
    with pytest.raises(ConnectError) as info:
        await client.request(
            target(URL("http://no-such-host.invalid/v1/x")), b"", b"", total_secs=5
        )
    assert info.value.kind == "dns"
    assert not client._resolving
