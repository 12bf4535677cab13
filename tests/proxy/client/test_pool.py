"""The upstream client's pool limits: the per-origin cap with its first-come-first-served wait and
`PoolTimeout`, and the sweep that closes idle connections of origins no longer used."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from yarl import URL

from llm_proxy.proxy.client import (
    Client,
    ClientClosed,
    ConnectError,
    PoolTimeout,
)
from tests.upstream_fakes import (
    RawServer,
    held,
    keep_alive,
    post,
    read_all,
    response,
    slow_body,
    until,
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
            await until(lambda: srv.hangups == 1, timeout=1.0)
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
