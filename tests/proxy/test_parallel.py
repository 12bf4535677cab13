"""Parallel requests of one key: `max_parallel_requests` (slots given back however a request
ends, shared by two instances through Redis, counted locally when Redis is down), and the
reservation made at admission that keeps N parallel streams from spending N times a dollar
budget or a tokens-per-minute allowance.

The upstream here holds every stream at a gate the test opens, so that "in flight at once" is
a state the test waits for, never a timing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import redis.asyncio
from aiohttp import web

from llm_proxy.config.model import MasterKey
from llm_proxy.proxy.keyring import KeyRing
from llm_proxy.proxy.limiter import Limiter
from tests.helpers import (
    REDIS_URL,
    ProxyFactory,
    Upstream,
    eventually,
    make_config,
    provider,
    sample,
    scrape,
    sdk,
    serve,
)

KEY = "sk-parallel-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Every stream is answered with this usage: the prompt the estimate finds (at most), and as
# many completion tokens as the request's max_tokens allowed.
PROMPT_TOKENS = 2


class GatedUpstream:
    """A chat upstream that streams one chunk, then waits for `gate`, then, by model:
    `hold` finishes with a usage chunk, `endless` streams until the proxy hangs up, `break`
    drops the connection, `fail` (before any byte) answers 500."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.arrived = 0  # requests received
        self.active = 0  # requests still being answered

    async def chat(self, request: web.Request) -> web.StreamResponse:
        data = await request.json()
        self.arrived += 1
        self.active += 1
        try:
            return await self._answer(request, data)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        model = data["model"]
        if model == "fail":
            await self.gate.wait()
            return web.json_response(
                {"error": {"message": "boom", "type": "server_error"}}, status=500
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": model,
                 "choices": [{"index": 0, "delta": {"content": "x"}}]}  # fmt: skip
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await self.gate.wait()
        if model == "break":
            assert request.transport is not None
            request.transport.abort()
            return resp
        if model == "endless":
            while True:  # until the proxy, its client gone, closes the connection
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                await asyncio.sleep(0.01)
        completion = data.get("max_tokens") or 1
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion,
                 "total_tokens": PROMPT_TOKENS + completion}  # fmt: skip
        tail = {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [],
                "usage": usage}  # fmt: skip
        await resp.write(b"data: " + orjson.dumps(tail) + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp


@pytest.fixture
async def gated() -> AsyncIterator[tuple[GatedUpstream, str]]:
    fake = GatedUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    async with serve(app) as url:
        yield fake, url + "/v1"
    fake.gate.set()


def config(api_base: str, key: dict[str, Any], name: str = "team", **top: Any) -> Any:
    free = {"name": "free", "key": "sk-free-0123456789ab"}
    return make_config(
        provider("up", api_base, {"hold": None, "endless": None, "break": None, "fail": None}),
        master_keys=[{"name": name, "key": KEY, **key}, free],
        **top,
    )


async def stream(
    http: aiohttp.ClientSession, url: str, model: str = "hold", **body: Any
) -> tuple[int, bytes, dict[str, str], Any]:
    """One streamed chat call to the end: status, body, headers, error (JSON) if any."""
    payload = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + "/v1/chat/completions", json={**payload, **body}, headers=AUTH) as r:
        raw = await r.read()
        error = orjson.loads(raw) if r.status != 200 else None
        return r.status, raw, dict(r.headers), error


# Reservations: a budget and a tokens-per-minute allowance hold against N parallel streams.


@pytest.mark.parametrize("instances", [1, 2], ids=["one-instance", "two-instances-redis"])
@pytest.mark.parametrize(
    ("limit", "measure"),
    [
        # $0.0001 per token either way: a call of 2 + 8 tokens costs $0.001; the budget pays
        # for five of them.
        ({"max_budget_usd": 0.005}, "usd"),
        ({"tokens_per_minute": 50}, "tokens"),
    ],
)
async def test_parallel_streams_spend_at_most_the_limit(
    gated: tuple[GatedUpstream, str],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    redis_client: redis.asyncio.Redis,
    limit: dict[str, Any],
    measure: str,
    instances: int,
) -> None:
    fake, api_base = gated
    pricing = {"hold": {"input_per_mtok": 100, "output_per_mtok": 100}}
    name = f"team-{uuid.uuid4().hex[:8]}"
    shared = {"rate_limit_backend": REDIS_URL} if instances == 2 else {}
    cfg = config(api_base, limit, name, pricing=pricing, **shared)
    urls = [await start_proxy(cfg) for _ in range(instances)]
    n = 20
    calls = [asyncio.create_task(stream(http, urls[i % instances], max_tokens=8)) for i in range(n)]
    refused = lambda: sum(1 for c in calls if c.done())  # noqa: E731 (held calls never end)
    # Every call is either at the upstream (admitted, held at the gate) or refused.
    await eventually(lambda: fake.arrived + refused() == n, timeout=10)
    admitted = fake.arrived
    fake.gate.set()
    results = await asyncio.gather(*calls)
    assert sorted(status for status, *_ in results) == [200] * admitted + [429] * (n - admitted)
    for status, _, _, error in results:
        if status == 429:
            code = "budget_exceeded" if measure == "usd" else "rate_limit_exceeded"
            assert error["error"]["code"] == code, error
    # Each call reserved its estimated prompt (1 token for "hi": 3 characters a token) plus
    # its 8 output tokens, and used 2 + 8: the limit bounds the spend, in-flight calls
    # included, up to the estimate's error (1 token a call).
    error_tokens = admitted * (PROMPT_TOKENS - 1)
    # Redis unreachable for a moment (its 250 ms connect timeout, on a loaded machine, while
    # 20 calls open connections at once) is the documented fallback: each instance holds
    # the limit on its own for a while. The bound is then the instances' sum, never more.
    shares = 1
    if instances == 2:
        families = [await scrape(http, url) for url in urls]
        failures = sum(
            sample(f, "llm_proxy_rate_limit_backend_errors_total") or 0 for f in families
        )
        shares = instances if failures else 1
    if measure == "usd":
        spent = 0.0
        for url in urls:
            families_now = await scrape(http, url)
            spent += sample(families_now, "llm_proxy_cost_usd_total", api_key_name=name) or 0.0
        assert spent <= 0.005 * shares + error_tokens * 100 / 1e6 + 1e-9
        assert spent == pytest.approx(admitted * 0.001)
    else:
        assert admitted * (PROMPT_TOKENS + 8) <= 50 * shares + error_tokens
    assert admitted >= 4, results  # the limit is spent, not refused early


async def test_a_call_that_could_cost_more_than_is_left_is_refused_up_front(
    gated: tuple[GatedUpstream, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    fake, api_base = gated
    fake.gate.set()
    pricing = {"hold": {"input_per_mtok": 100, "output_per_mtok": 100}}
    url = await start_proxy(
        config(api_base, {"max_budget_usd": 0.01}, pricing=pricing, reserve_output_tokens=1000)
    )
    # Without max_tokens: reserve_output_tokens (1000 tokens, $0.1) is more than the budget.
    status, _, headers, error = await stream(http, url)
    assert status == 429 and error["error"]["code"] == "budget_exceeded"
    assert error["error"]["type"] == "insufficient_quota"
    assert "could cost up to $0.1001" in error["error"]["message"]
    assert headers["x-llm-proxy-budget-remaining-usd"] == "0.01"
    assert fake.arrived == 0
    # With max_tokens it fits, and the reservation is settled to what the call used.
    status, *_ = await stream(http, url, max_tokens=10)
    assert status == 200
    status, _, headers, _ = await stream(http, url, max_tokens=10)
    assert status == 200 and headers["x-llm-proxy-budget-remaining-usd"] == "0.0088"


async def test_the_openai_sdk_gets_the_reservation_refusal(
    gated: tuple[GatedUpstream, str], start_proxy: ProxyFactory
) -> None:
    fake, api_base = gated
    fake.gate.set()
    url = await start_proxy(config(api_base, {"tokens_per_minute": 100}))
    async with sdk(url, KEY) as client:
        # 1 prompt token + 60 x 2 choices: more than the 100 a minute allows... capped at 100,
        # which fits an unspent minute.
        ok = await client.chat.completions.create(
            model="hold", messages=[{"role": "user", "content": "hi"}], max_tokens=60, n=2,
            stream=True,
        )  # fmt: skip
        async for _ in ok:
            pass
        # Then 62 of the 100 are spent: 1 + 40 more do not fit.
        with pytest.raises(openai.RateLimitError) as exc:
            await client.chat.completions.create(
                model="hold", messages=[{"role": "user", "content": "hi"}], max_tokens=40
            )
    assert exc.value.code == "rate_limit_exceeded" and exc.value.type == "tokens"
    assert "tokens per minute" in exc.value.message


async def test_a_reservation_ends_with_its_call_however_it_ends(
    gated: tuple[GatedUpstream, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    fake, api_base = gated
    # One call in flight at a time fits: each reserves 1 + 8 tokens, $0.0009 of $0.0015.
    pricing = {"*": {"input_per_mtok": 100, "output_per_mtok": 100}}
    budget = {"max_budget_usd": 0.0015}
    url = await start_proxy(config(api_base, budget, pricing=pricing, reserve_output_tokens=8))

    async def refused_for_budget() -> None:
        async with asyncio.timeout(5):
            status, _, headers, error = await stream(http, url, max_tokens=8)
        assert status == 429 and error["error"]["code"] == "budget_exceeded", error
        assert headers["Retry-After"] == "1"  # a reservation in flight may come back

    # The client hangs up mid-stream: the call is charged what was relayed, no more.
    session = aiohttp.ClientSession()
    r = await session.post(
        url + "/v1/chat/completions",
        json={"model": "endless", "stream": True, "max_tokens": 8},
        headers=AUTH,
    )
    await r.content.readuntil(b"\n\n")
    await refused_for_budget()
    fake.gate.set()
    r.close()
    await session.close()
    await eventually(lambda: fake.active == 0, timeout=10)

    async def charged() -> float:
        families = await scrape(http, url)
        return sample(families, "llm_proxy_cost_usd_total", api_key_name="team") or 0.0

    # Without usage from the upstream the relayed text is counted (tiktoken, in the
    # background); the reservation ends when that count is charged.
    await eventually(charged, timeout=10)
    assert await charged() < 0.0009  # what was relayed: far less than it reserved
    fake.gate.clear()
    # Upstream failures cost nothing: their reservation is given back.
    for model in ("fail", "break"):
        calls = await fill(http, url, fake, 1, model)
        await refused_for_budget()
        fake.gate.set()
        await asyncio.gather(*calls, return_exceptions=True)
        fake.gate.clear()
    fake.gate.set()
    await admitted_again(http, url, fake)


async def test_calls_that_generate_nothing_reserve_their_input_only(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    key = {"name": "team", "key": KEY, "tokens_per_minute": 1000}
    url = await start_proxy(
        make_config(provider("a", upstream.api_base, {"e": None}), master_keys=[key])
    )
    # An embedding has no output: it does not hold reserve_output_tokens (4096, cut to the
    # minute's 1000, which would leave no room for a second call).
    for _ in range(3):
        async with http.post(
            url + "/v1/embeddings", json={"model": "e", "input": "hello"}, headers=AUTH
        ) as r:
            assert r.status == 200, await r.text()


# max_parallel_requests


async def fill(
    http: aiohttp.ClientSession, url: str, fake: GatedUpstream, k: int, model: str = "hold"
) -> list[asyncio.Task[Any]]:
    """k calls held at the upstream."""
    before = fake.arrived
    calls = [asyncio.create_task(stream(http, url, model)) for _ in range(k)]
    await eventually(lambda: fake.arrived == before + k, timeout=10)
    return calls


async def refused_for_parallel(http: aiohttp.ClientSession, url: str) -> None:
    # A refusal is immediate; a call let through would wait at the gate (a bound, not a wait).
    async with asyncio.timeout(5):
        status, _, headers, error = await stream(http, url)
    assert status == 429, error
    assert error["error"]["code"] == "parallel_requests_exceeded"
    assert "parallel requests" in error["error"]["message"]
    assert headers["Retry-After"] == "1"
    assert headers["x-ratelimit-limit-parallel-requests"] == "2"


async def admitted_again(http: aiohttp.ClientSession, url: str, fake: GatedUpstream) -> None:
    """A slot is free again: a call gets through (the gate is open by now)."""

    async def once() -> bool:
        return (await stream(http, url))[0] == 200

    await eventually(once)


async def test_the_k_plus_first_call_is_refused_and_slots_come_back_however_calls_end(
    gated: tuple[GatedUpstream, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    fake, api_base = gated
    url = await start_proxy(config(api_base, {"max_parallel_requests": 2}))
    # Completion.
    calls = await fill(http, url, fake, 2)
    await refused_for_parallel(http, url)
    # Another key is not limited by it.
    async with http.post(
        url + "/v1/chat/completions",
        json={"model": "hold", "stream": True},
        headers={"Authorization": "Bearer sk-free-0123456789ab"},
    ) as r:
        assert r.status == 200 and "x-ratelimit-limit-parallel-requests" not in r.headers
        fake.gate.set()
        await r.read()
    assert [(await c)[0] for c in calls] == [200, 200]
    await admitted_again(http, url, fake)
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_rate_limited_total", key_name="team") == 1

    # Upstream failure: a 500 before any byte, and a connection dropped mid-stream.
    fake.gate.clear()
    calls = await fill(http, url, fake, 1, "fail") + await fill(http, url, fake, 1, "break")
    await refused_for_parallel(http, url)
    fake.gate.set()
    failed, cut = await asyncio.gather(*calls, return_exceptions=True)
    assert not isinstance(failed, BaseException) and failed[0] >= 500, failed
    # The cut stream: a 200 whose body ends early (the proxy closes the connection).
    assert isinstance(cut, aiohttp.ClientError) or cut[0] == 200, cut
    await admitted_again(http, url, fake)

    # The client hangs up mid-stream (the upstream would go on for ever).
    fake.gate.clear()
    sessions = [aiohttp.ClientSession() for _ in range(2)]
    responses = []
    for session in sessions:
        r = await session.post(
            url + "/v1/chat/completions", json={"model": "endless", "stream": True}, headers=AUTH
        )
        assert r.status == 200
        await r.content.readuntil(b"\n\n")  # the first chunk: the call is in flight
        responses.append(r)
    await refused_for_parallel(http, url)
    fake.gate.set()
    for session, r in zip(sessions, responses, strict=True):
        r.close()
        await session.close()
    await eventually(lambda: fake.active == 0, timeout=10)  # the proxy let go of the upstream
    await admitted_again(http, url, fake)


async def test_redis_down_still_limits_per_instance(
    gated: tuple[GatedUpstream, str],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    unused_tcp_port: int,
) -> None:
    fake, api_base = gated
    backend = f"redis://127.0.0.1:{unused_tcp_port}/0"
    url = await start_proxy(
        config(api_base, {"max_parallel_requests": 2}, rate_limit_backend=backend)
    )
    calls = await fill(http, url, fake, 2)
    await refused_for_parallel(http, url)
    fake.gate.set()
    assert [(await c)[0] for c in calls] == [200, 200]
    await admitted_again(http, url, fake)
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_rate_limit_backend_up") == 0


async def test_two_instances_share_the_slots_through_redis(
    gated: tuple[GatedUpstream, str],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    redis_client: redis.asyncio.Redis,
) -> None:
    fake, api_base = gated
    name = f"team-{uuid.uuid4().hex[:8]}"
    slots = f"llm_proxy:parallel:{name}"
    # A crashed instance's leases, expired (never renewed): they hold no slot.
    await redis_client.zadd(slots, {"crashed:1": 1, "crashed:2": 2})
    cfg = make_config(
        provider("up", api_base, {"hold": None}),
        master_keys=[{"name": name, "key": KEY, "max_parallel_requests": 2}],
        rate_limit_backend=REDIS_URL,
    )
    one, two = await start_proxy(cfg), await start_proxy(cfg)
    try:
        calls = await fill(http, one, fake, 1) + await fill(http, two, fake, 1)
        # One slot held on each instance: both refuse a third.
        await refused_for_parallel(http, one)
        await refused_for_parallel(http, two)
        assert await redis_client.zcard(slots) == 2
        fake.gate.set()
        assert [(await c)[0] for c in calls] == [200, 200]
        await admitted_again(http, two, fake)
        families = await scrape(http, one)
        assert sample(families, "llm_proxy_rate_limit_backend_up") == 1
    finally:
        await redis_client.delete(slots)


async def test_a_crashed_instances_reservations_stop_counting(
    redis_client: redis.asyncio.Redis,
) -> None:
    name = f"team-{uuid.uuid4().hex[:8]}"
    held = f"llm_proxy:reserved:{name}"
    # Two instances that crashed holding reservations: one lease long past (never renewed),
    # one still running.
    await redis_client.hset(held, mapping={"gone": "0.004:1", "alive": "0.002:99999999999999"})
    limiter = Limiter(redis=redis_client)
    limiter.sync(KeyRing([MasterKey(name, KEY, max_budget_usd=0.005)], []))
    try:
        # $0.005 - $0.002 held by the live lease: $0.003 fits, $0.0031 does not.
        assert (await limiter.budgets.reserve(name, 0.0031))[1] is not None
        assert await limiter.budgets.reserve(name, 0.003) == (0.003, None)
        assert not await redis_client.hexists(held, "gone")
    finally:
        await limiter.flush()
        await redis_client.delete(held)
