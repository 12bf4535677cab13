"""nginx cases: an early 413 (sent before the upload finished) and an upstream on IPv6."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from tests.conformance.conftest import (
    assert_answered,
    assert_once,
    chat,
    new_id,
    seen,
    start_in_front,
)
from tests.conformance.servers import Server, nginx
from tests.helpers import ProxyFactory, free_port


def _location(address: str) -> str:
    return f"""
        location / {{
            proxy_pass http://{address};
            proxy_http_version 1.1;
            proxy_buffering off;
        }}"""


async def test_early_413_before_the_upload_finished(
    conformance_tmp: Path,
    backend: Server,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    """nginx refuses a body over `client_max_body_size` from its Content-Length, before it has
    read the body: the proxy relays that 413, and the next request gets through."""
    port = free_port()
    address = backend.url.removeprefix("http://")
    servers = f"""
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2k;
        {_location(address)}
    }}"""
    with nginx(servers, conformance_tmp):
        proxy = await start_in_front(start_proxy, f"http://127.0.0.1:{port}/v1")
        refused, small = new_id("big"), new_id("small")
        padding = [{"role": "user", "content": "x" * 500_000}]
        big = await chat(http, proxy, refused, messages=[{"content": refused}, *padding])
        assert big.status == 413
        assert b"413 Request Entity Too Large" in big.body
        assert_answered(await chat(http, proxy, small), small, stream=False)
    counts = await seen(http, backend.url)
    assert refused not in counts
    assert_once(counts, [small])


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_upstream_on_ipv6(
    conformance_tmp: Path,
    backend: Server,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    if not _has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    port = free_port()
    servers = f"""
    server {{
        listen [::1]:{port};
        {_location(backend.url.removeprefix("http://"))}
    }}"""
    with nginx(servers, conformance_tmp):
        proxy = await start_in_front(start_proxy, f"http://[::1]:{port}/v1")
        ids = [new_id("v6") for _ in range(4)]
        for i, request_id in enumerate(ids):
            answer = await chat(http, proxy, request_id, stream=i % 2 == 0)
            assert_answered(answer, request_id, stream=i % 2 == 0)
    assert_once(await seen(http, backend.url), ids)
