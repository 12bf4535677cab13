"""Opening upstream connections: DNS (cache, TTL, resolver seam), Happy Eyeballs across
addresses, and each connect failure (TLS verification too) as its `ConnectError` kind or
`ConnectTimeout`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from llm_proxy.proxy.client import (
    Client,
    ConnectError,
    ConnectTimeout,
    target,
)
from tests.helpers import FakeClock
from tests.helpers.upstreams import (
    FakeResolver,
    RawServer,
    addr,
    full_backlog,
    keep_alive,
    post,
    reachable,
    read_all,
    server_tls,
    slow_body,
)

pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


async def test_connect_refused(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await post(client, URL(f"http://127.0.0.1:{port}/v1/x"), connect_secs=1.0)
    assert info.value.kind == "refused"
    assert "connection refused" in str(info.value)  # the log detail says it in words, on any loop
    assert time.monotonic() - started < 4.0  # at once, not after post's 5 s guard


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
    assert elapsed < 4.0  # about the 0.2 s connect timeout, not post's 5 s guard
    if where == "full-backlog":
        assert isinstance(info.value, ConnectTimeout)
    if isinstance(info.value, ConnectTimeout):
        assert elapsed >= 0.15
    else:
        assert info.value.kind == "unreachable"
    assert client.idle_connections() == 0


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
        clock = FakeClock()
        client = Client(keepalive_secs=0.0, dns_ttl_secs=300.0, resolver=resolver, clock=clock)
        try:
            await read_all(await post(client, srv.url.with_host("api.test")))
            clock.advance(299.0)
            await read_all(await post(client, srv.url.with_host("api.test")))
            assert resolver.lookups == 1
            clock.advance(1.0)
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
                # the 0.25 s head start, not the 5 s connect timeout
                assert 0.2 <= time.monotonic() - started < 4.0
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
from llm_proxy.proxy.client import Client, ConnectError, target

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
    assert client.connector.lookups_in_flight() == 0


async def test_tls_verification_rejects_self_signed(
    client: Client, tls_cert: tuple[Path, Path]
) -> None:
    async with RawServer(keep_alive, server_tls(tls_cert)) as srv:
        with pytest.raises(ConnectError) as info:
            await client.request(target(srv.url, verify=True), b"", b"{}", total_secs=5)
        assert info.value.kind == "tls"
        assert srv.requests == []
        assert client.idle_connections() == 0
