"""Master keys: Bearer and x-api-key, wrong/disabled keys, allowed_models, /v1/models."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.helpers import ProxyFactory, Upstream, make_config, provider, scrape, sdk

KEYS = [
    {"name": "all-models", "key": "sk-all-0123456789"},
    {"name": "limited", "key": "sk-limited-0123456789", "allowed_models": ["gpt-4o", "gpt-4.1*"]},
    {"name": "off", "key": "sk-off-0123456789", "enabled": False},
]


@pytest.fixture
async def keyed_url(upstream: Upstream, start_proxy: ProxyFactory) -> str:
    config = make_config(
        provider(
            "alpha",
            upstream.api_base,
            {"gpt-4o": None, "gpt-4o-mini": None, "gpt-4.1*": None, "o3": None},
        ),
        master_keys=KEYS,
        metrics_token="metrics-secret",
        admin_key="admin-secret-0123",
    )
    return await start_proxy(config)


async def chat_with_headers(
    http: aiohttp.ClientSession, url: str, model: str, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.post(
        url + "/v1/chat/completions", json={"model": model}, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_bearer_and_x_api_key(
    keyed_url: str, http: aiohttp.ClientSession, upstream: Upstream
) -> None:
    status, _ = await chat_with_headers(
        http, keyed_url, "o3", {"Authorization": "Bearer sk-all-0123456789"}
    )
    assert status == 200
    status, _ = await chat_with_headers(http, keyed_url, "o3", {"x-api-key": "sk-all-0123456789"})
    assert status == 200
    # The client's key never reaches the provider.
    assert "sk-all-0123456789" not in str(dict(upstream.recorded[-1].headers))


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "didn't provide an API key"),
        ({"Authorization": "Bearer sk-wrong-key-xyz"}, "Incorrect API key"),
        ({"x-api-key": "sk-wrong-key-xyz"}, "Incorrect API key"),
        ({"Authorization": "Basic c2stYWxs"}, "didn't provide"),
        ({"Authorization": "Bearer sk-off-0123456789"}, "disabled"),
    ],
)
async def test_rejected_keys_get_401(
    keyed_url: str, http: aiohttp.ClientSession, headers: dict[str, str], fragment: str
) -> None:
    status, body = await chat_with_headers(http, keyed_url, "o3", headers)
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert fragment in body["error"]["message"]
    assert "sk-wrong-key-xyz" not in str(body) and "sk-off" not in str(body)


async def test_allowed_models_exact_and_pattern(
    keyed_url: str, http: aiohttp.ClientSession
) -> None:
    limited = {"Authorization": "Bearer sk-limited-0123456789"}
    assert (await chat_with_headers(http, keyed_url, "gpt-4o", limited))[0] == 200
    assert (await chat_with_headers(http, keyed_url, "gpt-4.1-mini", limited))[0] == 200
    status, body = await chat_with_headers(http, keyed_url, "o3", limited)
    assert status == 403
    assert body["error"]["code"] == "model_not_allowed"
    assert body["error"]["type"] == "permission_error"
    # /v1/models lists only what the key may use (exact names; patterns never listed).
    async with http.get(keyed_url + "/v1/models", headers=limited) as resp:
        assert [m["id"] for m in (await resp.json())["data"]] == ["gpt-4o"]
    async with http.get(
        keyed_url + "/v1/models", headers={"x-api-key": "sk-all-0123456789"}
    ) as resp:
        assert [m["id"] for m in (await resp.json())["data"]] == ["gpt-4o", "gpt-4o-mini", "o3"]


async def test_sdk_sees_typed_auth_errors(keyed_url: str) -> None:
    async with sdk(keyed_url, "sk-nope-123") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    async with sdk(keyed_url, "sk-limited-0123456789") as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="o3", messages=[])
        reply = await client.chat.completions.create(model="gpt-4o", messages=[])
        assert reply.choices[0].message.content


async def test_health_open_metrics_token(keyed_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(keyed_url + "/health") as resp:
        assert resp.status == 200
    # /health/detailed names keys and providers: it needs the admin key or the metrics
    # token once one is set (a master key is not enough).
    for headers in ({}, {"Authorization": "Bearer sk-all-0123456789"}):
        async with http.get(keyed_url + "/health/detailed", headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
    for secret in ("metrics-secret", "admin-secret-0123"):
        headers = {"Authorization": f"Bearer {secret}"}
        async with http.get(keyed_url + "/health/detailed", headers=headers) as resp:
            assert resp.status == 200
            detail = await resp.json()
            text = await resp.text()
        assert detail["auth"] == {
            "required": True,
            "locked": False,
            "keys": ["all-models", "limited", "off"],
        }
        assert detail["warnings"] == []
        assert detail["config_source"] == "file" and detail["database"] is None
        assert "0123456789" not in text and "secret" not in text
    async with http.get(keyed_url + "/metrics") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    # The metrics token, not a master key, opens /metrics.
    async with http.get(
        keyed_url + "/metrics", headers={"Authorization": "Bearer sk-all-0123456789"}
    ) as resp:
        assert resp.status == 401
    families = await scrape(http, keyed_url, headers={"Authorization": "Bearer metrics-secret"})
    assert "llm_proxy_requests" in families


async def test_no_keys_means_auth_off_and_says_so(
    proxy_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(proxy_url + "/v1/chat/completions", json={"model": "gpt-4o"}) as resp:
        assert resp.status == 200
    async with http.get(proxy_url + "/health/detailed") as resp:
        detail = await resp.json()
    assert detail["auth"]["required"] is False
    assert "authentication is OFF" in detail["warnings"][0]


async def test_no_enabled_key_locks_instead_of_opening(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """require_auth defaults to true: zero keys, or only disabled ones, refuse everything."""
    alpha = provider("alpha", upstream.api_base, {"o3": None})
    only_disabled = [{"name": "off", "key": "sk-off-0123456789", "enabled": False}]
    for keys in ([], only_disabled):
        url = await start_proxy(make_config(alpha, master_keys=keys, require_auth=True))
        for headers in ({}, {"Authorization": "Bearer sk-off-0123456789"}):
            status, body = await chat_with_headers(http, url, "o3", headers)
            assert status == 401
            assert body["error"]["code"] == "invalid_api_key"
            assert "No master key is enabled" in body["error"]["message"]
            assert "require_auth: false" in body["error"]["message"]
        async with http.get(url + "/v1/models") as resp:
            assert resp.status == 401
        async with http.get(url + "/health") as resp:
            assert resp.status == 200  # health stays public
    assert not upstream.recorded
    async with sdk(url, "x") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_require_auth_false_serves_without_a_key(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(provider("alpha", upstream.api_base, {"o3": None}), require_auth=False)
    assert config.require_auth is False
    url = await start_proxy(config)
    assert (await chat_with_headers(http, url, "o3", {}))[0] == 200
    assert (await chat_with_headers(http, url, "o3", {"Authorization": "Bearer anything"}))[
        0
    ] == 200


def test_locked_state_is_logged_at_start_and_on_every_reload_that_leaves_it() -> None:
    from structlog.testing import capture_logs

    from llm_proxy.proxy.snapshot import ConfigStore, compile_snapshot

    alpha = provider("alpha", "http://127.0.0.1:9/v1", {"o3": None})
    keyed = make_config(alpha, master_keys=KEYS[:1])
    with capture_logs() as logs:
        store = ConfigStore(compile_snapshot(make_config(alpha, require_auth=True)))
        store.swap(compile_snapshot(keyed, "2"))
        store.swap(compile_snapshot(make_config(alpha, master_keys=KEYS[2:]), "3"))
        store.swap(compile_snapshot(make_config(alpha), "4"))  # require_auth: false
    locked = [e for e in logs if e["event"] == "authentication_locked"]
    assert [(e["log_level"], e["config_version"]) for e in locked] == [
        ("warning", "1"),
        ("warning", "3"),
    ]
    assert "every /v1 request is refused" in locked[0]["reason"]
    assert store.current.keys.warning is not None
    assert "require_auth: false" in store.current.keys.warning
