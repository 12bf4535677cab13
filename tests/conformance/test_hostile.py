"""Upstreams that misbehave on purpose: a head that never ends."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.conformance.conftest import chat, new_id, start_in_front
from tests.helpers import ProxyFactory

_CAP = 16 * 1024 * 1024  # the server gives up here: a client without a limit reads it all


async def test_endless_headers(start_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    """Header lines forever: the proxy drops the connection after its head limit (64 KiB) and
    answers 502 at once, instead of buffering until the total timeout. Sent once (one attempt
    allowed), since the upstream did receive it."""
    requests = 0
    sent = 0
    dropped = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests, sent
        await reader.readuntil(b"\r\n\r\n")
        requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        try:
            while sent < _CAP:
                writer.write(line * 16)
                sent += len(line) * 16
                await writer.drain()
        except ConnectionError:
            dropped.set()
        finally:
            writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proxy = await start_in_front(
            start_proxy, f"http://127.0.0.1:{port}/v1", max_attempts=1, request_timeout_secs=30
        )
        started = time.monotonic()
        answer = await chat(http, proxy, new_id("endless"))
        assert answer.status == 502, answer.body
        assert time.monotonic() - started < 3
        await asyncio.wait_for(dropped.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert requests == 1
    assert sent < _CAP  # the proxy hung up long before; loopback buffers hold the rest
