"""Endpoints and the bad-input matrix: every proxy-made error is OpenAI-shaped."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ProxyFactory, Upstream, make_config, provider, sdk


async def post(http: aiohttp.ClientSession, url: str, data: Any, **kw: Any) -> tuple[int, Any]:
    async with http.post(url, data=data, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


def assert_openai_error(body: Any, code: str | None, param: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["code"] == code
    assert body["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_request_body", None),
        (b'"text"', 400, "invalid_request_body", None),
        (b"{}", 400, "invalid_value", "model"),
        (b'{"model": 5}', 400, "invalid_value", "model"),
        (b'{"model": ""}', 400, "invalid_value", "model"),
        (b'{"model": "gpt-4o", "stream": "yes"}', 400, "invalid_value", "stream"),
        (b'{"model": "unknown"}', 404, "model_not_found", "model"),
    ],
)
async def test_bad_requests(
    proxy_url: str,
    http: aiohttp.ClientSession,
    body: bytes,
    status: int,
    code: str,
    param: str | None,
) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        got_status, got = await post(http, proxy_url + path, body)
        assert got_status == status, (path, got)
        assert_openai_error(got, code, param)


async def test_body_limit_413_with_and_without_content_length(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(provider("a", upstream.api_base, {"m": None}), max_request_body_mb=0.001)
    )
    big = b'{"model": "m", "pad": "' + b"x" * 2000 + b'"}'
    status, body = await post(http, url + "/v1/chat/completions", big)
    assert status == 413
    assert_openai_error(body, "request_too_large")

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 300

    status, body = await post(http, url + "/v1/chat/completions", chunks())
    assert status == 413
    small = b'{"model": "m"}'
    assert (await post(http, url + "/v1/chat/completions", small))[0] == 200


async def test_wrong_content_type_415(proxy_url: str, http: aiohttp.ClientSession) -> None:
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
        status, body = await post(
            http,
            proxy_url + "/v1/chat/completions",
            b'{"model": "gpt-4o"}',
            headers={"Content-Type": content_type},
        )
        assert status == 415
        assert_openai_error(body, "unsupported_media_type")
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        status, _ = await post(
            http,
            proxy_url + "/v1/chat/completions",
            b'{"model": "gpt-4o"}',
            headers={"Content-Type": content_type},
        )
        assert status == 200


async def test_absurd_headers_rejected_by_server_limits(
    proxy_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        proxy_url + "/v1/chat/completions",
        json={"model": "gpt-4o"},
        headers={"X-Huge": "x" * 100_000},
    ) as resp:
        assert resp.status == 431  # past the 64 KiB bound of a whole head, before the line's
        assert_openai_error(await resp.json(), "request_header_fields_too_large")
    async with http.get(proxy_url + "/health") as resp:  # and the proxy is fine
        assert resp.status == 200


async def test_unknown_route_and_method(proxy_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy_url + "/v2/nothing") as resp:
        assert resp.status == 404
        assert_openai_error(await resp.json(), "not_found")
    async with http.get(proxy_url + "/v1/chat/completions") as resp:
        assert resp.status == 405
        assert_openai_error(await resp.json(), "method_not_allowed")


async def test_models_lists_exact_names_only(proxy_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy_url + "/v1/models") as resp:
        body = await resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    assert all(m["object"] == "model" for m in body["data"])


async def test_provider_suffix_end_to_end(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(provider("a", upstream.api_base, {"gpt-4": None}), provider_suffix="Proxy")
    )
    status, _ = await post(http, url + "/v1/chat/completions", b'{"model":"Proxy/gpt-4"}')
    assert status == 200
    assert upstream.recorded[-1].body == b'{"model":"gpt-4"}'
    status, _ = await post(http, url + "/v1/chat/completions", b'{"model":"Other/gpt-4"}')
    assert status == 404


async def test_health_and_detailed(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"m": None}, weight=2),
            provider("down", f"http://127.0.0.1:{unused_tcp_port}/v1", {"d": None}),
        )
    )
    async with http.get(url + "/health") as resp:
        assert resp.status == 200 and await resp.json() == {"status": "ok"}
    await post(http, url + "/v1/chat/completions", b'{"model":"m"}')
    await post(http, url + "/v1/chat/completions", b'{"model":"d"}')
    async with http.get(url + "/health/detailed") as resp:
        detail = await resp.json()
        text = await resp.text()
    assert detail["status"] == "degraded"
    up, down = detail["providers"]
    assert (up["name"], up["weight"], up["models"], up["healthy"]) == ("up", 2, ["m"], True)
    assert up["last_status"] == 200
    # One request, three attempts on its only provider: three failures in a row eject it.
    assert (down["healthy"], down["last_error"], down["state"]) == (
        False,
        "connect_error",
        "ejected",
    )
    assert "sk-up-secret" not in text and "sk-down-secret" not in text


async def test_metrics_parse_and_count(proxy_url: str, http: aiohttp.ClientSession) -> None:
    for _ in range(3):
        await post(http, proxy_url + "/v1/chat/completions", b'{"model":"gpt-4o"}')
    await post(http, proxy_url + "/v1/chat/completions", b'{"model":"gpt-4.1-nano"}')
    await post(http, proxy_url + "/v1/chat/completions", b'{"model":"nope"}')
    async with http.get(proxy_url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["endpoint"], s.labels["model"], s.labels["provider"], s.labels["status_code"]): (
            s.value
        )
        for s in families["llm_proxy_requests"].samples
        if s.name == "llm_proxy_requests_total"
    }
    assert requests[("/v1/chat/completions", "gpt-4o", "alpha", "200")] == 3
    assert requests[("/v1/chat/completions", "gpt-4.1*", "beta", "200")] == 1
    assert requests[("/v1/chat/completions", "other", "none", "404")] == 1
    counts = [
        s.value
        for s in families["llm_proxy_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels.get("model") == "gpt-4o"
    ]
    assert counts == [3]
    active = families["llm_proxy_active_requests"].samples[0].value
    assert active == 1  # the /metrics request itself
    assert "sk-alpha-secret" not in text


async def test_a_budget_refusal_logs_the_model_the_body_named(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """The budget is checked before the handler reads the body: the refused request's access
    line still names its model (read from the body in that error path)."""
    key = "sk-team-budget-0123"
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[{"name": "team", "key": key, "max_budget_usd": 1}],
        # 5 prompt and 5 completion tokens a call at $100,000 per million: $1 a call.
        pricing={"m": {"input_per_mtok": 100_000, "output_per_mtok": 100_000}},
        reserve_output_tokens=1,
    )
    url = await start_proxy(config)
    auth = {"Authorization": f"Bearer {key}"}
    with structlog.testing.capture_logs() as logs:
        for body in ({"model": "m"}, {"model": "m", "messages": []}):  # $1 spent, then refused
            async with http.post(url + "/v1/chat/completions", json=body, headers=auth) as r:
                last = r.status, await r.json()
        form = aiohttp.FormData({"model": "m"})
        form.add_field("file", b"x", filename="a.wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form, headers=auth) as r:
            assert r.status == 429  # a form is not read for its model: refused all the same
    assert last[0] == 429 and last[1]["error"]["code"] == "budget_exceeded"
    lines = [e for e in logs if e["event"] == "request"]
    assert [(e["status"], e["model"]) for e in lines] == [(200, "m"), (429, "m"), (429, None)]


async def test_retrieve_answers_for_every_name_chat_serves_the_key(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """`models.retrieve` answers exactly when a chat would be routed: exact names, names a
    wildcard, regex or `"*"` mapping serves, and only those the key may use."""
    keys = [
        {"name": "all", "key": "sk-all-0123456789abcdef"},
        {"name": "some", "key": "sk-some-0123456789abcdef", "allowed_models": ["gpt-4.1*"]},
    ]
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"gpt-4o": None, "gpt-4.1*": None}),
            provider("b", upstream.api_base, {"claude-(opus|sonnet)-4": "c4"}),
            master_keys=keys,
        )
    )
    catch_all = await start_proxy(
        make_config(provider("a", upstream.api_base, {"*": None}), master_keys=keys)
    )

    async def retrieve(base: str, key: str, name: str) -> str | None:
        async with sdk(base, key) as c:
            try:
                return (await c.models.retrieve(name)).id
            except openai.NotFoundError:
                return None

    every, some = keys[0]["key"], keys[1]["key"]
    for name in ("gpt-4o", "gpt-4.1-mini", "claude-opus-4"):
        assert await retrieve(url, every, name) == name
    for name in ("gpt-5", "claude-haiku-4", "x" * 300):
        assert await retrieve(url, every, name) is None  # nothing serves it
    assert await retrieve(url, some, "gpt-4.1-nano") == "gpt-4.1-nano"
    for name in ("gpt-4o", "claude-opus-4"):
        assert await retrieve(url, some, name) is None  # served, not to this key
    assert await retrieve(catch_all, every, "any-model/at:all") == "any-model/at:all"
    assert await retrieve(catch_all, some, "gpt-4.1") == "gpt-4.1"
    assert await retrieve(catch_all, some, "o3") is None
    async with openai.AsyncOpenAI(api_key=every, base_url=catch_all + "/v1") as client:
        assert [m.id async for m in client.models.list()] == []  # the list: exact names only
