"""The upstream client's pool (`llm_proxy.proxy.client.pool`) against real servers on loopback:
keep-alive reuse and expiry (on a hand-moved clock), retiring the oldest idle connection, the
re-send rule for a stale pooled connection, no reuse of one whose streamed body an early
answer cut short, closing the client, the per-origin cap with its
first-come-first-served wait and `PoolTimeout`, and the sweep that closes idle connections of
origins no longer used."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from yarl import URL

from llm_proxy.proxy.client import (
    Client,
    ClientClosed,
    ConnectError,
    Disconnected,
    PoolTimeout,
    ProtocolError,
    StreamedBody,
    target,
)
from tests.helpers import FakeClock, eventually
from tests.helpers.upstreams import (
    RawHandler,
    RawServer,
    held,
    keep_alive,
    post,
    read_all,
    response,
    slow_body,
)

pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


async def test_idle_sockets_of_an_unused_origin_are_swept() -> None:
    """No later request to this origin: the sweep still closes its idle connection. On the
    real clock: the sweep's own timer firing is what is tested (it waits for the condition,
    about `keepalive_secs`)."""
    client = Client(keepalive_secs=0.1)
    try:
        async with RawServer(keep_alive) as srv:
            await read_all(await post(client, srv.url))
            assert client.idle_connections() == 1
            await eventually(lambda: srv.hangups == 1, timeout=1.0)
            assert client.idle_connections() == 0
    finally:
        await client.close()


async def test_max_per_origin_queues_requests_in_order() -> None:
    client = Client(max_per_origin=2)
    try:
        async with RawServer(held) as srv:
            calls = []
            for i in range(6):
                calls.append(asyncio.ensure_future(post(client, srv.url, b"%d" % i)))
                # A known arrival order: each call reached the server or joined the queue.
                await eventually(lambda n=i + 1: len(srv.requests) + client.waiting() == n)
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
            # Not early; the bound above is loose (a loaded machine is late, never early).
            assert 0.08 <= time.monotonic() - started < 4.0
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
        await eventually(lambda: client.waiting() == 1)
        await client.close()
        with pytest.raises(ClientClosed):
            await waiting
        busy.close()


async def test_a_handed_over_connection_that_dies_is_not_used() -> None:
    """The answer comes with unrequested bytes: the connection is handed to the waiting request
    and made unusable in the same read. The waiter opens a new one instead of hanging on it."""

    async def extra_answer(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            await asyncio.sleep(0.05)
            writer.write(response(b"one") + response(b"two"))

    client = Client(max_per_origin=1, pool_timeout_secs=2.0)
    try:
        async with RawServer(extra_answer) as srv:
            started = time.monotonic()
            answers = await asyncio.gather(post(client, srv.url), post(client, srv.url))
            assert [await read_all(resp) for resp in answers] == [b"one", b"one"]
            assert time.monotonic() - started < 1.0
            assert srv.connections == 2
    finally:
        await client.close()


async def test_keep_alive_reuses_one_connection(client: Client) -> None:
    async with RawServer(keep_alive) as srv:
        for i in range(3):
            resp = await post(client, srv.url, b"n%d" % i)
            assert await read_all(resp) == b"echo:n%d" % i
            assert client.idle_connections() == 1
        assert srv.connections == 1
        assert [body for _, body in srv.requests] == [b"n0", b"n1", b"n2"]


async def test_connection_close_answer_is_not_pooled(client: Client) -> None:
    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        assert await server.read_request(reader) is not None
        writer.write(response(b"bye", headers=(b"Connection: close",)))
        await server.until_eof(reader)  # the client, not the server, closes it

    async with RawServer(handler) as srv:
        resp = await post(client, srv.url)
        assert await read_all(resp) == b"bye"
        await eventually(lambda: srv.hangups == 1)
        assert client.idle_connections() == 0
        resp = await post(client, srv.url)
        assert await read_all(resp) == b"bye"
        assert srv.connections == 2


def early_413(after_413: list[bytes], read_on: asyncio.Event | None = None) -> RawHandler:
    """The first connection: a keep-alive 413 as soon as the request's head is in, none of
    the body read (with `read_on`, nothing read until it is set); then everything else that
    comes on it is kept in `after_413` and answered, as a desynchronised upstream would answer
    the next request read as the rest of the body. Later connections: `keep_alive`."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        if server.connections > 1:
            await keep_alive(server, reader, writer)
            return
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response(b"too large", "413 Payload Too Large"))
        if read_on is not None:
            await read_on.wait()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                after_413.append(data)
                writer.write(response(b"desync"))
        server.hangups += 1

    return handler


async def test_body_cut_short_by_an_early_answer_is_not_pooled(client: Client) -> None:
    """An upstream answers a streamed upload early and whole (a keep-alive 413) while the
    body waits for its next chunk: that connection is closed, never pooled, for its upstream
    would read the next request (maybe another tenant's, with its headers) as the rest of the
    body. The next request goes on a new connection; the first sees a hang-up and no more."""
    after_413: list[bytes] = []
    more = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        await more.wait()  # the body stalls before its first chunk
        yield b"x" * 10

    async with RawServer(early_413(after_413)) as srv:
        upload = asyncio.create_task(
            client.request(target(srv.url), b"", StreamedBody(10, chunks), total_secs=5.0)
        )
        # The 413 is read whole (its connection pooled or closed) while the body stalls.
        await eventually(lambda: client.idle_connections() or srv.hangups)
        more.set()
        resp = await upload
        assert resp.status == 413 and await read_all(resp) == b"too large"
        resp = await post(client, srv.url, b"tenant b", headers=b"Authorization: Bearer b\r\n")
        body = await read_all(resp)
        assert (body, after_413, srv.hangups, srv.connections) == (b"echo:tenant b", [], 1, 2)


async def test_body_cut_short_while_the_socket_is_full_is_not_pooled(client: Client) -> None:
    """The same while the body waits for the socket (the upstream reads no more of it, as
    with most 413s): the answer stands, the rest of the body is not sent, the connection is
    closed, and the next request goes on a new one."""
    after_413: list[bytes] = []
    read_on = asyncio.Event()
    chunk, count = b"x" * 65536, 1024  # 64 MiB: far more than the socket buffers hold
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(count):
            pulled += 1
            yield chunk

    async with RawServer(early_413(after_413, read_on)) as srv:
        body = StreamedBody(count * len(chunk), chunks)
        resp = await client.request(target(srv.url), b"", body, total_secs=3.0)
        assert resp.status == 413 and await read_all(resp) == b"too large"
        read_on.set()
        await eventually(lambda: srv.hangups)
        resp = await post(client, srv.url, b"tenant b", headers=b"Authorization: Bearer b\r\n")
        assert await read_all(resp) == b"echo:tenant b"
        assert b"tenant b" not in b"".join(after_413)
        assert (pulled < count, srv.hangups, srv.connections) == (True, 1, 2)


async def test_idle_connections_expire_after_keepalive_secs() -> None:
    clock = FakeClock()
    client = Client(keepalive_secs=60.0, clock=clock)
    try:
        async with RawServer(keep_alive) as srv:
            assert await read_all(await post(client, srv.url, b"1")) == b"echo:1"
            clock.advance(59.9)
            assert await read_all(await post(client, srv.url, b"2")) == b"echo:2"
            assert srv.connections == 1  # within keepalive_secs: reused
            clock.advance(60.1)
            assert await read_all(await post(client, srv.url, b"3")) == b"echo:3"
            assert srv.connections == 2
            await eventually(lambda: srv.hangups == 1)  # the expired one was closed
    finally:
        await client.close()


async def test_pool_retires_its_oldest_idle_connection() -> None:
    clock = FakeClock()
    client = Client(keepalive_secs=60.0, clock=clock)
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
            clock.advance(20.0)
            # The most recently used connection is taken; the other one ages in the pool.
            first = await read_all(await post(client, srv.url))
            clock.advance(45.0)
            # Past keepalive_secs for the one that aged, but not for the one just used: when
            # that comes back, the aged one is closed.
            assert await read_all(await post(client, srv.url)) == first
            await eventually(lambda: len(gone) == 1)
            assert gone == [3 - int(first)]
            assert srv.connections == 2
            assert client.idle_connections() == 1
    finally:
        await client.close()


@pytest.mark.parametrize("pause", [False, True])
async def test_upstream_closing_idle_connection(client: Client, pause: bool) -> None:
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
        if pause:  # the client notices the hang-up by itself: nothing idle is left
            await eventually(lambda: client.idle_connections() == 0)
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
        await eventually(lambda: srv.hangups == 2)
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
        await eventually(lambda: len(srv.requests) == 1)
        await client.close()
        resp = await pending  # the request in flight still gets its answer...
        assert await read_all(resp) == b"late"
        await eventually(lambda: srv.hangups == 1)  # ...but its connection is not kept
        assert client.idle_connections() == 0


# The pool's rules where the transport matters (a write on a connection the upstream closed),
# once more on asyncio's own loop (every other test runs on uvloop).
OTHER_LOOP_SCENARIOS: list[Callable[..., Awaitable[None]]] = [
    test_keep_alive_reuses_one_connection,
    test_stale_pooled_connection_is_retried_once_on_a_new_one,
    functools.partial(test_upstream_closing_idle_connection, pause=0.0),
]


@pytest.mark.parametrize(
    "scenario",
    OTHER_LOOP_SCENARIOS,
    ids=lambda s: getattr(s, "func", s).__name__,
)
def test_on_asyncio_loop(scenario: Any) -> None:
    async def run() -> None:
        client = Client()
        try:
            await scenario(client)
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(run())
