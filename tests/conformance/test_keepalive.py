"""Every server, its connections closed under the proxy: keep-alive timeouts of 1 s (the proxy
keeps idle connections for 60 s), nginx closing after 3 requests per connection, and requests
sent just before, at and after the timeout. No request may be lost or sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conformance.conftest import assert_once, burst, seen, start_in_front
from tests.conformance.servers import PYTHON_SERVERS, Server, haproxy, nginx, python_server
from tests.helpers import ProxyFactory, free_port

FRONTS = ("nginx", "haproxy")


@pytest.fixture(scope="module", params=PYTHON_SERVERS + FRONTS)
def server(
    request: pytest.FixtureRequest, conformance_tmp: Path, backend: Server
) -> Iterator[tuple[str, str]]:
    """(api base for the proxy, URL where the backend counts requests)."""
    kind: str = request.param
    if kind in PYTHON_SERVERS:
        with python_server(kind, conformance_tmp) as served:
            yield served.url + "/v1", served.url
        return
    port = free_port()
    backend_address = backend.url.removeprefix("http://")
    if kind == "haproxy":
        with haproxy(port, backend_address, conformance_tmp):
            yield f"http://127.0.0.1:{port}/v1", backend.url
        return
    servers = f"""
    upstream app {{ server {backend_address}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_timeout 1s;
        keepalive_requests 3;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
    """
    with nginx(servers, conformance_tmp):
        yield f"http://127.0.0.1:{port}/v1", backend.url


async def test_no_request_lost_or_duplicated(
    server: tuple[str, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    api_base, counter = server
    proxy = await start_in_front(start_proxy, api_base)
    ids = await burst(http, proxy, "seq", 7, concurrent=False)
    ids += await burst(http, proxy, "par", 16, concurrent=True)
    # The pool now holds connections the server closes after 1 s idle: reuse them just
    # before, around and after that moment.
    for pause in (0.97, 0.03, 0.03):
        await asyncio.sleep(pause)  # real time: the server's idle timeout runs on its clock
        ids += await burst(http, proxy, "race", 8, concurrent=True)
        ids += await burst(http, proxy, "after", 3, concurrent=False)
    assert_once(await seen(http, counter), ids)
