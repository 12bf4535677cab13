"""Health probes through the admin API against a fake upstream with a healthy, a failing and
a slow model: per-model status and latency, bounded by timeout_secs, never fed to the breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import ProxyFactory, make_config, provider, serve
from tests.helpers.admin import ADMIN, assert_error, call

SETTINGS = {"admin_keys": {"ops": "adm-ops-0123456789abcdef"}}


@pytest.fixture
async def models_upstream() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    seen: list[dict[str, object]] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if body["model"] == "up-bad":
            return web.json_response({"error": {"message": "down"}}, status=500)
        if body["model"] == "up-slow":
            await asyncio.sleep(2)
        return web.json_response({"choices": [], "usage": {"prompt_tokens": 1, "total_tokens": 2}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serve(app) as url:
        yield url + "/v1", seen


async def test_probe_reports_each_model_and_spares_the_breaker(
    models_upstream: tuple[str, list[dict[str, object]]],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    base, seen = models_upstream
    mapping = {"good": "up-good", "bad": "up-bad", "slow": "up-slow", "fam-*": None}
    url = await start_proxy(make_config(provider("a", base, mapping), **SETTINGS))
    started = time.monotonic()
    status, body = await call(
        http,
        "POST",
        url + "/admin/v1/providers/1/health",
        json={"models": ["good", "bad", "slow", "fam-x", "other"], "timeout_secs": 0.5},
    )
    assert status == 200, body
    assert time.monotonic() - started < 1.5  # the slow one is cut at timeout_secs
    results = {r["model"]: r for r in body["results"]}
    assert body["provider"] == "a" and body["healthy"] is False
    assert results["good"]["ok"] and results["good"]["status"] == 200
    assert results["good"]["upstream_model"] == "up-good" and results["good"]["latency_ms"] >= 0
    assert (results["bad"]["ok"], results["bad"]["status"], results["bad"]["error"]) == (
        False,
        500,
        "http_500",
    )
    assert (results["slow"]["status"], results["slow"]["error"]) == (None, "timeout")
    assert results["fam-x"]["ok"] and results["fam-x"]["upstream_model"] == "fam-x"
    assert results["other"]["error"] == "not_served"
    assert {b["max_tokens"] for b in seen} == {1}
    # A probe is the operator's test, not traffic: the provider is not ejected.
    async with http.get(url + "/health/detailed", headers=ADMIN) as r:
        assert (await r.json())["providers"][0]["state"] == "healthy"
    # Without models: the provider's exact names.
    status, body = await call(
        http, "POST", url + "/admin/v1/health/check", json={"timeout_secs": 0.5}
    )
    assert status == 200
    (only,) = body["providers"]
    assert sorted(r["model"] for r in only["results"]) == ["bad", "good", "slow"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/providers/1/health", {"max_concurrent": 0}, "max_concurrent"),
        ("/providers/1/health", {"timeout_secs": 0}, "timeout_secs"),
        ("/providers/1/health", {"models": "good"}, "models"),
        ("/providers/1/health", {"colour": 1}, "colour"),
        ("/health/check", {"providers": ["nope"]}, "providers"),
    ],
)
async def test_bad_probe_requests(
    models_upstream: tuple[str, list[dict[str, object]]],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    path: str,
    body: dict[str, object],
    param: str,
) -> None:
    base, _ = models_upstream
    url = await start_proxy(make_config(provider("a", base, {"good": "up-good"}), **SETTINGS))
    status, answer = await call(http, "POST", url + "/admin/v1" + path, json=body)
    assert status == 400 and answer["error"]["param"] == param
    status, answer = await call(http, "POST", url + "/admin/v1/providers/9/health", json={})
    assert status == 404
    assert_error(answer, "not_found")
