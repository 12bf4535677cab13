"""Rate limits: token-bucket semantics on a hand-moved clock, headers, TPM, reloads, Redis."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from llm_proxy.config.model import MasterKey, RateLimit
from llm_proxy.proxy.limiter import Limiter
from tests.helpers import (
    FakeClock,
    ProxyFactory,
    Upstream,
    chat,
    make_config,
    provider,
    ring,
    sample,
    scrape,
)


async def test_burst_then_refill_at_rate() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    limiter.sync(ring(MasterKey("k", "sk", RateLimit(requests_per_second=2, burst_size=5))))
    verdicts = [await limiter.check("k") for _ in range(6)]
    assert [v.allowed for v in verdicts if v] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts if v] == [4, 3, 2, 1, 0, 0]
    denied = verdicts[-1]
    assert denied is not None
    assert denied.retry_after_secs == pytest.approx(0.5, abs=0.002)
    # One token comes back every 1/R = 0.5 s, not a whole window at once.
    clock.advance(0.49)
    assert not (await limiter.check("k")).allowed  # type: ignore[union-attr]
    clock.advance(0.02)
    assert (await limiter.check("k")).allowed  # type: ignore[union-attr]
    assert not (await limiter.check("k")).allowed  # type: ignore[union-attr]
    # Sustained: over 10 s at most 2/s more pass.
    passed = 0
    for _ in range(100):
        clock.advance(0.1)
        passed += bool((await limiter.check("k")).allowed)  # type: ignore[union-attr]
    assert passed == 20
    # Idle long enough, the full burst is back.
    clock.advance(10)
    assert [(await limiter.check("k")).allowed for _ in range(6)] == [True] * 5 + [False]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rps", "period"), [(1 / 3600, 3600.0), (1 / 86400, 86400.0), (0.0004, 2500.0), (0.3, 10 / 3)]
)
async def test_tiny_rates_are_exact(rps: float, period: float) -> None:
    """Below 0.0005/s a rate used to round up to one per 1000 s (1/hour became 3.6/hour)."""
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    limiter.sync(ring(MasterKey("k", "sk", RateLimit(requests_per_second=rps, burst_size=1))))
    assert (await limiter.check("k")).allowed  # type: ignore[union-attr]
    denied = await limiter.check("k")
    assert denied is not None and not denied.allowed
    assert denied.retry_after_secs == pytest.approx(period, abs=0.002)
    clock.advance(period - 0.01)
    assert not (await limiter.check("k")).allowed  # type: ignore[union-attr]
    clock.advance(0.02)
    assert (await limiter.check("k")).allowed  # type: ignore[union-attr]


async def test_state_survives_reload_unless_limit_changed() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    limit = RateLimit(requests_per_second=1, burst_size=2)
    limiter.sync(ring(MasterKey("k", "sk", limit), MasterKey("other", "sk2", limit)))
    assert (await limiter.check("k")).allowed  # type: ignore[union-attr]
    assert (await limiter.check("k")).allowed  # type: ignore[union-attr]
    limiter.sync(ring(MasterKey("k", "sk-rotated", limit)))  # same limits: state kept
    assert not (await limiter.check("k")).allowed  # type: ignore[union-attr]
    assert await limiter.check("other") is None  # removed key: no state left
    limiter.sync(ring(MasterKey("k", "sk", RateLimit(requests_per_second=1, burst_size=3))))
    assert (await limiter.check("k")).allowed  # type: ignore[union-attr]


def test_tokens_per_minute_budget() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    limiter.sync(ring(MasterKey("k", "sk", tokens_per_minute=100)))
    assert limiter.tokens_verdict("k").allowed  # type: ignore[union-attr]
    limiter.charge_tokens("k", 60)
    verdict = limiter.tokens_verdict("k")
    assert verdict is not None and verdict.allowed and verdict.remaining == 40
    limiter.charge_tokens("k", 60)  # charged after the fact: may overdraw
    assert not limiter.tokens_verdict("k").allowed  # type: ignore[union-attr]
    clock.advance(13)  # 20 tokens owed beyond a minute -> 12 s, plus one token's worth
    assert limiter.tokens_verdict("k").allowed  # type: ignore[union-attr]


LIMITED_KEY = {
    "name": "team",
    "key": "sk-team-0123",
    "rate_limit": {"requests_per_second": 1, "burst_size": 3},
}
AUTH = {"Authorization": "Bearer sk-team-0123"}


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> aiohttp.ClientResponse:
    """A chat completion as the limited key."""
    return await chat(http, url, key=LIMITED_KEY["key"], **body)


async def test_429_with_openai_headers_end_to_end(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[LIMITED_KEY, {"name": "free", "key": "sk-free-0123"}],
    )
    url = await start_proxy(config, clock=clock)
    statuses = []
    for _ in range(3):
        resp = await post(http, url, {"model": "m"})
        statuses.append(resp.status)
        assert resp.headers["x-ratelimit-limit-requests"] == "3"
    assert statuses == [200, 200, 200]
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["x-ratelimit-reset-requests"] == "3s"
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=AUTH) as r:
        assert r.status == 429
        body = await r.json()
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert r.headers["Retry-After"] == "1"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    clock.advance(1.0)
    # Streams carry the headers too (they are sent before the first chunk).
    async with http.post(
        url + "/v1/chat/completions", json={"model": "m", "stream": True}, headers=AUTH
    ) as r:
        assert r.status == 200
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        await r.read()
    # An unlimited key is not limited and gets no rate headers.
    async with http.post(
        url + "/v1/chat/completions",
        json={"model": "m"},
        headers={"Authorization": "Bearer sk-free-0123"},
    ) as r:
        assert r.status == 200
        assert "x-ratelimit-limit-requests" not in r.headers
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_rate_limited_total", key_name="team") == 1


async def test_tokens_per_minute_end_to_end(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    key = {"name": "tpm", "key": "sk-team-0123", "tokens_per_minute": 25}
    url = await start_proxy(
        make_config(provider("a", upstream.api_base, {"m": None}), master_keys=[key]),
        clock=clock,
    )
    # The mock reports 10 tokens (5 prompt + 5 completion) per non-streamed call; each call
    # reserves its max_tokens (5, and no prompt text) at admission, settled to 10 at its end.
    small = {"model": "m", "max_tokens": 5}
    assert (await post(http, url, small)).status == 200
    resp = await post(http, url, small)
    assert resp.status == 200
    assert resp.headers["x-ratelimit-remaining-tokens"] == "15"  # before this call's charge
    assert (await post(http, url, small)).status == 200  # 20 spent -> still 5 left
    refused = await post(http, url, small)
    assert refused.status == 429
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.advance(60)
    assert (await post(http, url, small)).status == 200


async def test_redis_backend_shared_by_two_instances(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        await client.ping()
    except (OSError, redis.RedisError):
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")
    finally:
        await client.aclose()
    key = {
        "name": f"shared-{uuid.uuid4().hex[:8]}",
        "key": "sk-team-0123",
        "rate_limit": {"requests_per_second": 0.01, "burst_size": 4},
    }
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[key],
        rate_limit_backend="redis://127.0.0.1:6379/0",
    )
    first, second = await start_proxy(config), await start_proxy(config)
    statuses = [(await post(http, url, {"model": "m"})).status for url in [first, second] * 3]
    # One bucket of 4 across both instances, not 4 each.
    assert statuses == [200, 200, 200, 200, 429, 429]
    families = await scrape(http, first)
    assert sample(families, "llm_proxy_rate_limit_backend_up") == 1


async def test_redis_down_fails_open_visibly(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    unused_tcp_port: int,
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[LIMITED_KEY],
        rate_limit_backend=f"redis://127.0.0.1:{unused_tcp_port}/0",
    )
    url = await start_proxy(config, clock=FakeClock())
    statuses = [(await post(http, url, {"model": "m"})).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # per-instance limits still apply
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_rate_limit_backend_up") == 0
    assert (sample(families, "llm_proxy_rate_limit_backend_errors_total") or 0) >= 1


async def test_every_kind_of_response_carries_request_id_and_rate_headers_once(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A whole answer, a stream, a proxy-made error, an unknown URL and /v1/models: each has
    one x-request-id and one set of x-ratelimit-* headers (set before it is sent)."""
    key = {
        "name": "team",
        "key": "sk-team-0123",
        "rate_limit": {"requests_per_second": 100, "burst_size": 100},
    }
    url = await start_proxy(
        make_config(provider("a", upstream.api_base, {"m": None}), master_keys=[key])
    )
    calls = [
        ("POST", "/v1/chat/completions", {"model": "m"}, 200),
        ("POST", "/v1/chat/completions", {"model": "m", "stream": True}, 200),
        ("POST", "/v1/chat/completions", {"model": "unknown"}, 404),
        ("POST", "/v1/chat/completions", {"model": 1}, 400),
        ("GET", "/v1/models", None, 200),
        ("POST", "/v1/nothing-here", {}, 404),
    ]
    for i, (method, path, body, status) in enumerate(calls):
        headers = {**AUTH, "x-request-id": f"rid-{i}"}
        async with http.request(method, url + path, json=body, headers=headers) as resp:
            await resp.read()
            assert resp.status == status, path
            assert resp.headers.getall("x-request-id") == [f"rid-{i}"], path
            if path != "/v1/nothing-here":  # (no limit is spent on an unknown URL)
                assert len(resp.headers.getall("x-ratelimit-remaining-requests")) == 1, path
