"""Compiling an upstream URL into a `Target` (`llm_proxy.proxy.client.target`): the request
line and Host header, what is refused (not http(s), user:password@, a proxy that is not
http://host[:port]), and the pool key (apart per proxy and per proxy credentials)."""

from __future__ import annotations

import ssl

import pytest
from yarl import URL

from llm_proxy.proxy.client import target


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
