"""Per-provider call settings (`llm_proxy.proxy.upstream`): the URLs a provider's api_base gives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from llm_proxy.config.issues import ConfigError
from llm_proxy.proxy.upstream import endpoint_url
from tests.helpers import ProxyFactory, make_config, provider, serve


@pytest.mark.parametrize(
    ("api_base", "endpoint", "expected"),
    [
        ("http://h:1/v1", "/chat/completions", "/v1/chat/completions"),
        ("http://h:1/v1/", "/chat/completions", "/v1/chat/completions"),
        ("http://h:1", "/models", "/models"),
        (
            "https://x.openai.azure.com/openai/deployments/gpt4o?api-version=2024-06-01",
            "/chat/completions",
            "/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01",
        ),
    ],
)
def test_endpoint_goes_before_the_query(api_base: str, endpoint: str, expected: str) -> None:
    assert endpoint_url(api_base, endpoint).raw_path_qs == expected


async def test_api_base_with_a_query_string_reaches_the_right_url(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    seen: list[str] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response({"choices": []})

    app = web.Application()
    app.router.add_post("/openai/deployments/d1/chat/completions", chat)
    async with serve(app) as up:
        base = up + "/openai/deployments/d1?api-version=2024-06-01"
        url = await start_proxy(make_config(provider("azure", base, {"m": None})))
        async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as resp:
            assert resp.status == 200
    assert seen == ["/openai/deployments/d1/chat/completions?api-version=2024-06-01"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("api_base", "http://user:pw@h:1/v1", "must not carry user:password@"),
        ("api_base", "http://h:1/v1#frag", "must not have a #fragment"),
        ("proxy", "socks5://p:1080", "must be an http:// proxy URL or false"),
        ("proxy", "http://", "must be an http:// proxy URL or false"),
    ],
)
def test_unsupported_urls_are_clear_config_errors(field: str, value: str, message: str) -> None:
    fields = {"api_base": "http://h:1/v1", field: value}
    with pytest.raises(ConfigError) as exc:
        make_config({"name": "p", "api_key": "sk-p", "model_mapping": {"m": None}, **fields})
    assert message in str(exc.value)
    assert "pw" not in str(exc.value)


def test_proxy_settings_parse() -> None:
    config = make_config(
        provider("env", "http://h:1/v1", {"a": None}),
        provider("none", "http://h:1/v1", {"b": None}, proxy=False),
        provider("own", "http://h:1/v1", {"c": None}, proxy="http://u:s@proxy:3128"),
        trust_env=False,
        max_connections_per_provider=8,
        pool_timeout_secs=2,
        dns_ttl_secs=30,
    )
    assert [p.proxy for p in config.providers] == [None, False, "http://u:s@proxy:3128"]
    assert "u:s" not in repr(config.providers[2])
    assert (config.trust_env, config.max_connections_per_provider) == (False, 8)
    assert (config.pool_timeout_secs, config.dns_ttl_secs) == (2, 30)


@pytest.fixture
async def forward_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP forward proxy that answers absolute-form requests itself (and records them)."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.url}")
        return web.json_response({"choices": [], "via": "proxy"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serve(app) as url:
        yield url, seen


async def test_forward_proxy_from_the_environment_or_the_provider(
    forward_proxy: tuple[str, list[str]],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy_url, seen = forward_proxy
    # A host only the proxy can reach: direct, it does not even resolve.
    base = "http://upstream.invalid:8080/v1"
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = await start_proxy(
        make_config(
            provider("env", base, {"env": None}),
            provider("direct", base, {"direct": None}, proxy=False),
            max_attempts=1,
        )
    )
    async with http.post(url + "/v1/chat/completions", json={"model": "env"}) as resp:
        assert resp.status == 200 and (await resp.json())["via"] == "proxy"
    assert seen == ["POST http://upstream.invalid:8080/v1/chat/completions"]
    async with http.post(url + "/v1/chat/completions", json={"model": "direct"}) as resp:
        assert resp.status == 502
        assert "does not resolve" in (await resp.json())["error"]["message"]

    # trust_env: false ignores the environment; a provider's own proxy still applies.
    url = await start_proxy(
        make_config(
            provider("env", base, {"env": None}),
            provider("own", base, {"own": None}, proxy=proxy_url),
            trust_env=False,
            max_attempts=1,
        )
    )
    async with http.post(url + "/v1/chat/completions", json={"model": "env"}) as resp:
        assert resp.status == 502
    async with http.post(url + "/v1/chat/completions", json={"model": "own"}) as resp:
        assert resp.status == 200
    assert len(seen) == 2
