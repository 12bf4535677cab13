"""One upstream HTTP/1.1 connection and its answer (`llm_proxy.proxy.client.http11` and
`.response`) against real servers on loopback: the request/answer cycle, bodies, broken
connections, response-head limits, flow control, timeouts and TLS. Raw TCP servers
(`tests.helpers.upstreams`) where the test needs byte-for-byte (mis)behaviour, aiohttp where not.

Every async test runs on uvloop (tests/conftest.py); a few scenarios run once more on asyncio's
own loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from llm_proxy.proxy.client import (
    HIGH_WATER,
    Client,
    Disconnected,
    FirstByteTimeout,
    ProtocolError,
    ReadTimeout,
    UpstreamError,
    target,
)
from llm_proxy.proxy.client.http11 import MAX_HEAD_BYTES
from tests.helpers import eventually, serve
from tests.helpers.upstreams import (
    RawServer,
    answer_with,
    keep_alive,
    post,
    read_all,
    response,
    server_tls,
)

pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


SOCKET_READ = 256 * 1024  # the most one socket read delivers (asyncio's and uvloop's buffers)


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
        await eventually(lambda: srv.hangups == 1)
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
        await eventually(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0


async def test_endless_headers_are_an_error_with_bounded_memory(client: Client) -> None:
    # The upstream sends header lines and never ends the head, but it sends only as many bytes as
    # the client may hold (the head cap plus the one socket read that may overshoot it), then
    # waits for the client to hang up. A client that buffered past the cap would wait for more
    # and hang here (the timeout is only that hang's guard), so the bound holds whatever the load.
    budget = MAX_HEAD_BYTES + SOCKET_READ

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):  # the client may hang up mid-write
            for i in range(budget // 20):
                writer.write(b"X-%07d: %s\r\n" % (i, b"v" * 8))  # 20 bytes
            await writer.drain()
        await server.until_eof(reader)

    async with RawServer(handler) as srv:
        with pytest.raises(ProtocolError) as info:
            await asyncio.wait_for(post(client, srv.url), 30)
        assert info.value.kind == "protocol"
        await eventually(lambda: srv.hangups == 1)  # the client hung up, not only gave up
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
        await eventually(lambda: srv.hangups == 1)  # the connection was dropped
        assert client.idle_connections() == 0


async def test_head_at_the_limits_is_accepted(client: Client) -> None:
    headers = tuple(b"X-%02d: " % i + b"v" * 600 for i in range(99))  # ~60 KiB, 99 + 1 fields
    async with RawServer(keep_alive) as srv:
        srv.handler = functools.partial(answer_with, response(b"ok", "200 OK", headers))
        resp = await post(client, srv.url)
        assert len(resp.raw_headers) == 100
        assert await read_all(resp) == b"ok"


async def test_bare_lf_and_folded_header_lines_are_accepted(client: Client) -> None:
    """What old servers send, and aiohttp's client accepts."""
    answer = b"HTTP/1.1 200 OK\nX-Folded: a\r\n  b\nContent-Length: 2\n\nhi"
    async with RawServer(keep_alive) as srv:
        srv.handler = functools.partial(answer_with, answer)
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
        await eventually(lambda: client.idle_connections() == 0)
        assert await read_all(await post(client, srv.url)) == b"one"
        assert srv.connections == 2


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
        await eventually(lambda: srv.hangups == 1)
        assert not resp.complete
        assert client.idle_connections() == 0


async def test_response_close_after_body_keeps_the_connection(client: Client) -> None:
    async with RawServer(keep_alive) as srv:
        resp = await post(client, srv.url, b"a")
        await eventually(lambda: resp.complete)
        resp.close()  # whole but unread: still reusable
        assert client.idle_connections() == 1
        resp = await post(client, srv.url, b"b")
        assert await read_all(resp) == b"echo:b"
        resp.close()
        assert client.idle_connections() == 1
        assert srv.connections == 1
        assert srv.hangups == 0


@pytest.mark.parametrize("when", ["waiting for headers", "reading the body"])
async def test_cancelled_request_drops_the_connection(client: Client, when: str) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        if when == "reading the body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await server.until_eof(reader)

    headed = asyncio.Event()

    async def call() -> bytes:
        resp = await post(client, srv.url)
        headed.set()
        return await read_all(resp)

    async with RawServer(handler) as srv:
        task = asyncio.ensure_future(call())
        await eventually(lambda: len(srv.requests) == 1)  # sent; no head comes
        if when == "reading the body":
            await headed.wait()  # the head is in, half the body will never come
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0


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
        # Not early; and well before the 10 s total (or post's 5 s guard): this timer fired.
        # (The upper bound is loose on purpose: a loaded machine is late, never early.)
        assert 0.15 <= elapsed < 4.0
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, UpstreamError)
        assert info.value.kind == "first_byte_timeout"
        await eventually(lambda: srv.hangups == 1)  # the connection was dropped
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
        # Not early; and well before the 5 s total: the idle timer fired.
        assert 0.25 <= time.monotonic() - started < 4.0
        await eventually(lambda: srv.hangups == 1)
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
        # Not early; and far before the 20 s the trickle lasts: the total deadline fired.
        assert 0.45 <= time.monotonic() - started < 4.0
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
        assert time.monotonic() - started < 4.0  # the 0.3 s cap, not the 5 s total


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


OTHER_LOOP_SCENARIOS: list[Callable[..., Awaitable[None]]] = [
    test_post_round_trip,
    functools.partial(test_chunked_body, byte_by_byte=False),
    test_body_delimited_by_connection_close,
    test_backpressure_bounds_buffering,
    test_response_close_mid_body_aborts_the_connection,
    test_idle_timeout_between_chunks,
    functools.partial(test_invalid_response_is_an_error, answer=b"garbage\r\n\r\n"),
]


@pytest.mark.parametrize(
    "scenario",
    [*OTHER_LOOP_SCENARIOS, "tls"],
    ids=lambda s: s if isinstance(s, str) else getattr(s, "func", s).__name__,
)
def test_on_asyncio_loop(scenario: Any, tls_cert: tuple[Path, Path]) -> None:
    if scenario == "tls":
        scenario = functools.partial(test_tls_without_verification, tls_cert=tls_cert)

    async def run() -> None:
        client = Client()
        try:
            await scenario(client)
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(run())
