"""`/admin/v1/cache`: the response cache's stats (`GET`) and purges (`DELETE ?key=&model=`), on
a real proxy whose cache answers real requests (memory, and redis shared by two instances);
the cache off; the parameters refused; the admin guard; the purge's log line."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import redis.asyncio
import structlog

from tests.helpers import ProxyFactory, Upstream, free_port, make_config, provider
from tests.helpers.admin import ADMIN, SETTINGS, assert_error, call

KEYS = [
    {"name": "team-a", "key": "sk-team-a-0123456789"},
    {"name": "team-b", "key": "sk-team-b-0123456789"},
]
# A Redis database of its own: a purge of everything here touches no other test's entries.
CACHE_REDIS = "redis://127.0.0.1:6379/11"
ZERO = {"hits": 0, "misses": 0, "bypasses": 0, "stored": 0, "evictions": 0, "errors": 0}


def cached_proxy(upstream: Upstream, **cache: Any) -> Any:
    return make_config(
        provider("up", upstream.api_base, {"m1": None, "m2": None}),
        master_keys=KEYS,
        cache={"backend": "memory", **cache},
        **SETTINGS,
    )


async def ask(http: aiohttp.ClientSession, url: str, key: str, model: str) -> str:
    """One deterministic chat completion; what the cache said (`x-llm-proxy-cache`)."""
    async with http.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 0},
        headers={"Authorization": f"Bearer sk-{key}-0123456789"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
        return resp.headers["x-llm-proxy-cache"]


async def stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    status, answer = await call(http, "GET", url + "/admin/v1/cache")
    assert status == 200, answer
    return dict(answer)


async def purge(http: aiohttp.ClientSession, url: str, **params: str) -> int:
    status, answer = await call(http, "DELETE", url + "/admin/v1/cache", params=params)
    assert status == 200, answer
    assert list(answer) == ["purged"]
    return int(answer["purged"])


async def test_off_without_a_cache_section(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(provider("up", upstream.api_base, {"m1": None}), master_keys=KEYS, **SETTINGS)
    )
    async with http.post(
        url + "/v1/chat/completions",
        json={"model": "m1", "messages": [], "temperature": 0},
        headers={"Authorization": "Bearer sk-team-a-0123456789"},
    ) as resp:
        assert resp.status == 200 and "x-llm-proxy-cache" not in resp.headers
    answer = await stats(http, url)
    assert answer["enabled"] is False and answer["backend"] is None
    assert {name: answer[name] for name in ZERO} == ZERO
    assert (answer["entries"], answer["bytes"]) == (0, 0)
    assert await purge(http, url) == 0
    assert await purge(http, url, key="team-a", model="m1") == 0


async def test_stats_count_what_the_cache_did_and_purges_remove_what_they_name(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(cached_proxy(upstream))
    fresh = await stats(http, url)
    assert fresh["enabled"] is True and fresh["backend"] == "memory"
    assert fresh["max_bytes"] > 0 and (fresh["entries"], fresh["bytes"]) == (0, 0)
    calls = [("team-a", "m1"), ("team-a", "m1"), ("team-a", "m2"), ("team-b", "m1")]
    assert [await ask(http, url, key, model) for key, model in calls] == [
        "miss",
        "hit",
        "miss",
        "miss",
    ]
    answer = await stats(http, url)
    assert (answer["hits"], answer["misses"], answer["stored"], answer["entries"]) == (1, 3, 3, 3)
    assert answer["bytes"] > 0 and answer["errors"] == 0

    with structlog.testing.capture_logs() as logs:
        assert await purge(http, url, key="team-b") == 1  # team-b's only: its m1
        assert await purge(http, url, model="m2") == 1  # team-a's m2
        assert await purge(http, url, key="team-a", model="m2") == 0  # gone already
    purges = [e for e in logs if e["event"] == "cache_purged"]
    assert [(e["by"], e["key"], e["model"], e["purged"]) for e in purges] == [
        ("admin:ops", "team-b", None, 1),
        ("admin:ops", None, "m2", 1),
        ("admin:ops", "team-a", "m2", 0),
    ]
    assert all(e["log_level"] == "info" and e["request_id"] for e in purges)
    assert (await stats(http, url))["entries"] == 1
    assert await ask(http, url, "team-a", "m1") == "hit"  # kept
    assert await ask(http, url, "team-b", "m1") == "miss"  # purged
    assert await purge(http, url) == 2  # everything
    after = await stats(http, url)
    assert (after["entries"], after["bytes"]) == (0, 0)
    assert (after["hits"], after["misses"]) == (2, 4)  # counters are kept
    assert await ask(http, url, "team-a", "m1") == "miss"


async def test_the_global_namespace_is_purged_as_the_key_global(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(cached_proxy(upstream, namespace="global"))
    assert await ask(http, url, "team-a", "m1") == "miss"
    assert await ask(http, url, "team-b", "m1") == "hit"  # shared
    assert await purge(http, url, key="team-a") == 0  # no entry is team-a's own
    assert await purge(http, url, key="global") == 1


async def test_redis_entries_are_every_instances_and_a_purge_reaches_them_all(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    redis_client: redis.asyncio.Redis,
) -> None:
    shared = redis.asyncio.Redis.from_url(CACHE_REDIS)
    try:
        await shared.flushdb()
        config = cached_proxy(upstream, backend="redis", url=CACHE_REDIS)
        first, second = await start_proxy(config), await start_proxy(config)
        assert await ask(http, first, "team-a", "m1") == "miss"
        assert await ask(http, second, "team-a", "m2") == "miss"
        assert await ask(http, second, "team-a", "m1") == "hit"  # first's entry
        one, two = await stats(http, first), await stats(http, second)
        assert one["backend"] == two["backend"] == "redis"
        assert one["entries"] == two["entries"] == 2  # the backend's: both instances'
        assert (one["hits"], one["misses"], two["hits"], two["misses"]) == (0, 1, 1, 1)
        assert await purge(http, first, model="m1") == 1
        assert await ask(http, second, "team-a", "m1") == "miss"
        assert await purge(http, second) == 2
        assert (await stats(http, first))["entries"] == 0
    finally:
        await shared.flushdb()
        await shared.aclose()


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"keys": "team-a"}, "keys"),  # misspelt: never "purge everything"
        ({"key": "team-a", "namespace": "x"}, "namespace"),
        ({"key": ""}, "key"),  # an unset shell variable: never "purge everything"
        ({"model": ""}, "model"),
        ([("key", "team-a"), ("key", "team-b")], "key"),
        ({"model": "m\x001"}, "model"),
        ({"key": "k" * 1001}, "key"),
    ],
)
async def test_a_purge_with_a_wrong_parameter_is_a_400_and_purges_nothing(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    params: Any,
    param: str,
) -> None:
    url = await start_proxy(cached_proxy(upstream))
    assert await ask(http, url, "team-a", "m1") == "miss"
    status, answer = await call(http, "DELETE", url + "/admin/v1/cache", params=params)
    assert status == 400, answer
    assert_error(answer, "invalid_value")
    assert answer["error"]["param"] == param
    assert (await stats(http, url))["entries"] == 1


async def test_the_cache_routes_are_guarded_like_every_admin_route(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(cached_proxy(upstream))
    assert await ask(http, url, "team-a", "m1") == "miss"
    for method in ("GET", "DELETE"):
        for headers in ({}, {"Authorization": "Bearer sk-team-a-0123456789"}):  # none; a master key
            status, answer = await call(http, method, url + "/admin/v1/cache", headers=headers)
            assert status == 401, (method, headers)
            assert_error(answer, "invalid_admin_key")
    assert (await stats(http, url))["entries"] == 1
    status, answer = await call(http, "POST", url + "/admin/v1/cache", headers=ADMIN)
    assert status == 405
    no_admin = make_config(
        provider("up", upstream.api_base, {"m1": None}), master_keys=KEYS, cache={}
    )
    other = await start_proxy(no_admin)
    status, answer = await call(http, "DELETE", other + "/admin/v1/cache")
    assert status == 503
    assert_error(answer, "admin_disabled")


async def test_a_redis_that_does_not_answer_is_a_503_for_a_purge_and_an_error_count(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    url = await start_proxy(cached_proxy(upstream, backend="redis", url=dead))
    assert await ask(http, url, "team-a", "m1") == "bypass"  # the request still answered
    answer = await stats(http, url)
    assert (answer["enabled"], answer["backend"], answer["entries"]) == (True, "redis", 0)
    assert answer["errors"] >= 1
    with structlog.testing.capture_logs() as logs:
        status, body = await call(http, "DELETE", url + "/admin/v1/cache", params={"key": "x"})
    assert status == 503, body
    assert_error(body, "cache_unavailable")
    (failed,) = [e for e in logs if e["event"] == "cache_purge_failed"]
    assert (failed["by"], failed["key"], failed["error"]) == ("admin:ops", "x", "ConnectionError")
