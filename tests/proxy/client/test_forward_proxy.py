"""HTTP forward proxies: CONNECT tunnels for https (TLS with the origin inside), absolute form for
http, proxy credentials and failures, and `proxy_from_env`."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from llm_proxy.proxy.client import (
    Client,
    ConnectError,
    proxy_from_env,
    target,
)
from tests.helpers.upstreams import (
    RawServer,
    connect_proxy,
    keep_alive,
    read_all,
    response,
    server_tls,
)

pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


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


async def test_a_407_from_the_proxy_is_a_proxy_failure_not_an_answer(client: Client) -> None:
    """Through a forward proxy, plain-http requests can be refused by the proxy itself: that
    407 is the proxy's failure (origins never send it), like a refused CONNECT."""

    async def refuses(server: RawServer, reader: Any, writer: Any) -> None:
        while await server.read_request(reader) is not None:
            writer.write(response(b"", "407 Proxy Authentication Required"))

    async with RawServer(refuses) as proxy:
        t = target(URL("http://origin.invalid/v1/x"), proxy=URL(f"http://127.0.0.1:{proxy.port}"))
        with pytest.raises(ConnectError) as info:
            await client.request(t, b"", b"x", total_secs=5)
        assert info.value.kind == "proxy" and "407" in str(info.value)
    # Directly, a 407 is just an answer (no proxy involved).
    async with RawServer(refuses) as origin:
        resp = await client.request(target(origin.url), b"", b"x", total_secs=5)
        assert resp.status == 407
        resp.close()


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
