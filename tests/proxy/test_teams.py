"""Teams (issue 32) on the request path: a request of a team's key passes the key's limits and
the team's, its spend counts against both, its models are within both, and the keys of a team
with `shared_objects` see each other's stored objects (never another team's). The official
openai SDK against the mock upstream; two instances on one Redis for the shared limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio
from aiohttp import web

from llm_proxy.app import create_app
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import MasterKey, RateLimit, Team
from llm_proxy.config.validate import parse_config
from llm_proxy.keys import LIMITER
from llm_proxy.proxy.keyring import KeyEntry, KeyRing
from llm_proxy.proxy.limiter import Limiter, TeamRefused
from llm_proxy.proxy.verdicts import Reservation
from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import (
    REDIS_URL,
    FakeClock,
    ProxyFactory,
    Upstream,
    chat,
    eventually,
    make_config,
    provider,
    ring,
    sample,
    scrape,
    sdk,
    serve,
)
from tests.proxy.test_objects import jsonl
from tests.proxy.test_parallel import GatedUpstream

# Every mock call reports 5 prompt and 5 completion tokens: at these prices each costs $1.
PRICING = {"m": {"input_per_mtok": 100_000, "output_per_mtok": 100_000}}
ANN = "sk-team-ann-0123456789"
BEN = "sk-team-ben-0123456789"
OUT = "sk-outsider-0123456789"
NOON = 1_750_000_000.0


def _config(api_base: str, team: dict[str, Any], **top: Any) -> Any:
    return make_config(
        provider("a", api_base, {"m": None, "other": None}),
        teams=[{"name": "search", **team}],
        master_keys=[
            {"name": "ann", "key": ANN, "team": "search", "max_budget_usd": 3},
            {"name": "ben", "key": BEN, "team": "search", "max_budget_usd": 3},
            {"name": "out", "key": OUT},
        ],
        pricing=PRICING,
        reserve_output_tokens=1,
        **top,
    )


async def test_two_keys_of_a_team_exhaust_its_budget_together(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        _config(upstream.api_base, {"max_budget_usd": 4}), clock=FakeClock(NOON)
    )
    # $1 a call: each key alone may spend $3, the team $4 in all.
    statuses = [(await chat(http, url, key=k)).status for k in (ANN, BEN, ANN, BEN)]
    assert statuses == [200, 200, 200, 200]
    refused = await chat(http, url, key=ANN)
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert error["code"] == "budget_exceeded"
    assert "team 'search'" in error["message"]
    assert (await chat(http, url, key=BEN)).status == 429  # spent by both, refused to both
    assert (await chat(http, url, key=OUT)).status == 200  # not in the team
    # The SDK sees OpenAI's spent-quota error.
    async with sdk(url, ANN) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.code == "budget_exceeded"


async def test_the_keys_own_budget_still_applies_within_the_team(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        _config(upstream.api_base, {"max_budget_usd": 100}), clock=FakeClock(NOON)
    )
    statuses = [(await chat(http, url, key=ANN)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    body = await (await chat(http, url, key=ANN)).json()
    assert "key 'ann'" in body["error"]["message"]
    assert (await chat(http, url, key=BEN)).status == 200
    # Refusals count by whose limit refused, and which.
    families = await scrape(http, url)
    refusals = {"key_name": "ann", "team": "search", "limit": "budget"}
    assert sample(families, "llm_proxy_rate_limited_total", by="key", **refusals) == 2
    assert sample(families, "llm_proxy_rate_limited_total", by="team", **refusals) is None


async def test_team_rate_and_parallel_limits(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    team = {"rate_limit": {"requests_per_second": 0.001, "burst_size": 3}}
    url = await start_proxy(_config(upstream.api_base, team), clock=FakeClock(NOON))
    statuses = [(await chat(http, url, key=k)).status for k in (ANN, BEN, ANN, BEN)]
    assert statuses == [200, 200, 200, 429]
    body = await (await chat(http, url, key=ANN)).json()
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert "team 'search' (requests per second)" in body["error"]["message"]
    families = await scrape(http, url)
    for key in ("ann", "ben"):
        labels = {"key_name": key, "team": "search", "by": "team", "limit": "requests"}
        assert sample(families, "llm_proxy_rate_limited_total", **labels) == 1


async def test_a_team_rate_limit_holds_across_two_instances_on_one_redis(
    upstream: Upstream, http: aiohttp.ClientSession, redis_client: redis.asyncio.Redis
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        teams=[{"name": name, "rate_limit": {"requests_per_second": 0.01, "burst_size": 4}}],
        master_keys=[
            {"name": f"{name}-ann", "key": ANN, "team": name},
            {"name": f"{name}-ben", "key": BEN, "team": name},
        ],
        rate_limit_backend=REDIS_URL,
    )
    apps = [create_app(config), create_app(config)]
    async with serve(apps[0]) as first, serve(apps[1]) as second:
        statuses = []
        for url, key in [(first, ANN), (second, BEN)] * 3:
            statuses.append((await chat(http, url, key=key)).status)
        # One bucket of 4 for the team across both instances and both keys.
        assert statuses == [200, 200, 200, 200, 429, 429]
        for app in apps:
            await app[LIMITER].flush()
    stored = [k async for k in redis_client.scan_iter(match=f"llm_proxy:ratelimit:team:{name}:*")]
    assert stored, "the team's bucket is in Redis under its team name"
    await redis_client.delete(*stored)


async def test_models_are_within_the_teams(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(_config(upstream.api_base, {"allowed_models": ["m"]}))
    assert (await chat(http, url, key=ANN)).status == 200
    refused = await chat(http, url, "other", key=ANN)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "model_not_allowed"
    assert (await chat(http, url, "other", key=OUT)).status == 200
    async with sdk(url, ANN) as client:
        assert [m.id for m in (await client.models.list()).data] == ["m"]


def test_a_key_outside_its_teams_models_is_a_config_error_naming_the_field() -> None:
    base = {
        "teams": [{"name": "search", "allowed_models": ["gpt-4o*", "m"]}],
        "master_keys": [
            {"name": "ann", "key": ANN, "team": "search", "allowed_models": ["gpt-4o-mini"]},
            {"name": "ben", "key": BEN, "team": "search", "allowed_models": ["m", "claude-*"]},
            {"name": "cid", "key": OUT, "team": "nobody"},
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(base)
    text = str(info.value)
    assert (
        "master_keys[1].allowed_models[1]: 'claude-*' is not within the models of its team "
        "'search' (gpt-4o*, m)" in text
    )
    assert "master_keys[2].team: names no team: 'nobody' (teams: search)" in text
    assert "master_keys[0]" not in text  # an exact name the team's pattern serves
    assert ANN not in text
    # A key naming no models gets its team's; a key named as a team's limits are is refused.
    config = parse_config({**base, "master_keys": [{"name": "ann", "key": ANN, "team": "search"}]})
    assert config.master_keys[0].allowed_models == ("gpt-4o*", "m")
    with pytest.raises(ConfigError, match=r"master_keys\[0\].name: 'team:search' is the name"):
        parse_config({**base, "master_keys": [{"name": "team:search", "key": ANN}]})
    with pytest.raises(ConfigError, match=r"teams\[1\].name: duplicate team name 'search'"):
        parse_config({"teams": [{"name": "search"}, {"name": "search"}]})
    with pytest.raises(ConfigError, match=r"teams\[0\].max_parallel_requests: must be a positive"):
        parse_config({"teams": [{"name": "s", "max_parallel_requests": 0}]})


# Stored objects: shared in a team that says so, never across teams.

OBJECT_KEYS = [
    {"name": "ann", "key": ANN, "team": "search"},
    {"name": "ben", "key": BEN, "team": "search"},
    {"name": "out", "key": OUT, "team": "ads"},
]
LINES = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'


@pytest.fixture
async def account() -> AsyncIterator[str]:
    async with serve(create_mock_app(MockOptions(name="acct"))) as url:
        yield url + "/v1"


async def _objects_proxy(start_proxy: ProxyFactory, account: str, shared: bool) -> str:
    return await start_proxy(
        make_config(
            provider("acct", account, {"m": None}),
            teams=[{"name": "search", "shared_objects": shared}, {"name": "ads"}],
            master_keys=OBJECT_KEYS,
        )
    )


async def test_team_shared_objects_are_visible_to_teammates_only(
    start_proxy: ProxyFactory, account: str
) -> None:
    url = await _objects_proxy(start_proxy, account, shared=True)
    async with sdk(url, ANN) as ann, sdk(url, BEN) as ben, sdk(url, OUT) as out:
        mine = await ann.files.create(file=("a.jsonl", LINES), purpose="batch")
        theirs = await out.files.create(file=("o.jsonl", LINES), purpose="batch")
        assert (await ben.files.retrieve(mine.id)).id == mine.id
        assert (await ben.files.content(mine.id)).content == LINES
        assert [f.id for f in (await ben.files.list()).data] == [mine.id]
        batch = await ben.batches.create(
            input_file_id=mine.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert (await ann.batches.retrieve(batch.id)).id == batch.id
        for call in (out.files.retrieve(mine.id), out.batches.retrieve(batch.id)):
            with pytest.raises(openai.NotFoundError):
                await call
        with pytest.raises(openai.NotFoundError):
            await ann.files.retrieve(theirs.id)
        assert [f.id for f in (await out.files.list()).data] == [theirs.id]


async def test_without_shared_objects_teammates_are_tenants(
    start_proxy: ProxyFactory, account: str
) -> None:
    url = await _objects_proxy(start_proxy, account, shared=False)
    async with sdk(url, ANN) as ann, sdk(url, BEN) as ben:
        mine = await ann.files.create(file=("a.jsonl", LINES), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            await ben.files.retrieve(mine.id)
        assert (await ben.files.list()).data == []


@pytest.fixture
async def gated() -> AsyncIterator[tuple[GatedUpstream, str]]:
    """An upstream holding every stream at a gate the test opens (`test_parallel`'s)."""
    fake = GatedUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    async with serve(app) as url:
        yield fake, url + "/v1"
    fake.gate.set()


async def test_a_teams_parallel_requests_are_shared_by_its_keys(
    gated: tuple[GatedUpstream, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    fake, api_base = gated
    config = make_config(
        provider("up", api_base, {"hold": None}),
        teams=[{"name": "search", "max_parallel_requests": 2, "tokens_per_minute": 1000}],
        master_keys=[
            {"name": "ann", "key": ANN, "team": "search"},
            {"name": "ben", "key": BEN, "team": "search"},
            {"name": "out", "key": OUT},
        ],
    )
    url = await start_proxy(config)

    async def held(key: str) -> int:
        body = {"model": "hold", "stream": True, "max_tokens": 8, "messages": []}
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
            return r.status

    calls = [asyncio.create_task(held(k)) for k in (ANN, BEN)]
    await eventually(lambda: fake.arrived == 2)
    third = await chat(http, url, "hold", key=ANN, max_tokens=8)
    assert third.status == 429
    error = (await third.json())["error"]
    assert error["code"] == "parallel_requests_exceeded"
    assert "team 'search' (parallel requests): at most 2" in error["message"]
    outsider = asyncio.create_task(held(OUT))  # another team's key is not held back
    await eventually(lambda: fake.arrived == 3)
    fake.gate.set()
    assert [await c for c in calls] == [200, 200] and await outsider == 200
    assert (await chat(http, url, "hold", key=BEN, max_tokens=8)).status == 200


async def test_a_finished_batch_is_charged_to_its_team_too(
    account: str, start_proxy: ProxyFactory
) -> None:
    # $1 per input token, $2 per output token: a two-line batch (20 in, 10 out) costs $40.
    config = make_config(
        provider("acct", account, {"gpt-4o-mini": None, "free": None}),
        teams=[{"name": "search", "max_budget_usd": 70}],
        master_keys=[{"name": "ann", "key": ANN, "team": "search"}],
        pricing={"gpt-4o-mini": {"input_per_mtok": 1e6, "output_per_mtok": 2e6}},
    )
    url = await start_proxy(config)
    chat_call = {"model": "free", "messages": [{"role": "user", "content": "hi"}]}
    async with sdk(url, ANN) as client:
        file = await client.files.create(
            file=("in.jsonl", jsonl("gpt-4o-mini", "gpt-4o-mini")), purpose="batch"
        )
        for _ in range(2):  # $40, then $80 in all: over the team's $70
            await client.chat.completions.create(**chat_call)
            batch = await client.batches.create(
                input_file_id=file.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"mock_complete": "true"},
            )
            assert batch.status == "completed"
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(**chat_call)
        assert caught.value.code == "budget_exceeded"
        assert "team 'search'" in str(caught.value)


async def test_a_team_budget_is_one_budget_across_two_instances_on_redis(
    upstream: Upstream, http: aiohttp.ClientSession, redis_client: redis.asyncio.Redis
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        teams=[{"name": name, "max_budget_usd": 4}],
        master_keys=[
            {"name": f"{name}-ann", "key": ANN, "team": name},
            {"name": f"{name}-ben", "key": BEN, "team": name},
        ],
        pricing=PRICING,
        reserve_output_tokens=1,
        rate_limit_backend=REDIS_URL,
    )
    clock = FakeClock(NOON)
    apps = [create_app(config, clock=clock), create_app(config, clock=clock)]
    try:
        async with serve(apps[0]) as first, serve(apps[1]) as second:
            statuses = []
            for url, key in [(first, ANN), (second, BEN)] * 4:
                statuses.append((await chat(http, url, key=key)).status)
                for app in apps:
                    await app[LIMITER].flush()
            # $4 for the team across both instances and both keys, not $4 per instance.
            assert statuses == [200, 200, 200, 200, 429, 429, 429, 429]
            stored = await redis_client.get(f"llm_proxy:budget:team:{name}:2025-06")
            assert float(stored) == 4.0
    finally:
        found = [k async for k in redis_client.scan_iter(match=f"llm_proxy:*team:{name}*")]
        if found:
            await redis_client.delete(*found)


async def test_cache_namespace_team_shares_entries_within_a_team_only(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    solo = "sk-solo-key-0123456789"
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        teams=[{"name": "search"}, {"name": "ads"}],
        master_keys=[
            {"name": "ann", "key": ANN, "team": "search"},
            {"name": "ben", "key": BEN, "team": "search"},
            {"name": "out", "key": OUT, "team": "ads"},
            {"name": "solo", "key": solo},
            {"name": "solo2", "key": "sk-solo2-key-012345678"},
        ],
        cache={"backend": "memory", "namespace": "team"},
    )
    url = await start_proxy(config)

    async def said(key: str) -> str:
        resp = await chat(http, url, key=key, temperature=0, messages=[])
        assert resp.status == 200
        return resp.headers["x-llm-proxy-cache"]

    assert await said(ANN) == "miss"
    assert await said(BEN) == "hit"  # a teammate's entry
    assert await said(OUT) == "miss"  # another team's: never
    assert await said(solo) == "miss"  # a key in no team keeps its own
    assert await said("sk-solo2-key-012345678") == "miss"
    assert await said(solo) == "hit"
    with pytest.raises(ConfigError, match=r"cache.namespace: must be key, team or global"):
        parse_config({"cache": {"namespace": "org"}})


async def test_a_teams_tokens_per_minute_are_spent_by_all_its_keys(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    # Each mock call uses 10 tokens: the team's minute holds two calls, each key's ten.
    team = {"tokens_per_minute": 20}
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        teams=[{"name": "search", **team}],
        master_keys=[
            {"name": "ann", "key": ANN, "team": "search", "tokens_per_minute": 100},
            {"name": "ben", "key": BEN, "team": "search", "tokens_per_minute": 100},
        ],
        reserve_output_tokens=1,
    )
    clock = FakeClock(NOON)
    url = await start_proxy(config, clock=clock)
    assert (await chat(http, url, key=ANN)).status == 200
    assert (await chat(http, url, key=BEN)).status == 200
    refused = await chat(http, url, key=ANN)
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "team 'search' (tokens per minute)" in error["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "100"  # the key's own headers
    clock.advance(60)
    assert (await chat(http, url, key=BEN)).status == 200


# The team's one-step path without Redis (`Limiter.team_admit`, `team_reserve`,
# `team_settle`), on a hand-moved clock: what it admits and refuses is what the generic
# per-subject path does for a key with the same limits.


def _team_ring(team: Team, **key: Any) -> KeyRing:
    """A ring with a key `solo` (no team) of `key`'s limits and a key `member` of `team`."""
    return KeyRing(
        [MasterKey("solo", "sk-solo", **key), MasterKey("member", "sk-member", team=team.name)],
        [],
        teams=[team],
    )


def _refusal(limiter: Limiter, team: KeyEntry) -> TeamRefused | None:
    try:
        limiter.team_admit(team)
    except TeamRefused as refusal:
        return refusal
    return None


@pytest.mark.parametrize(
    ("rps", "burst"), [(2.0, 5), (1 / 3600, 1), (0.3, 2), (1000.0, 1), (7.0, 3)]
)
def test_a_teams_request_rate_admits_exactly_what_pyrate_limiters_bucket_does(
    rps: float, burst: int
) -> None:
    """The admitting half of the token bucket is inline for a team (pyrate-limiter's step
    only makes its refusals): over an irregular arrival sequence, the team admits and refuses
    the same requests, with the same wait, as pyrate-limiter does for a key of that limit."""
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    limit = RateLimit(requests_per_second=rps, burst_size=burst)
    keys = _team_ring(Team("t", rate_limit=limit), rate_limit=limit)
    limiter.sync(keys.subjects())
    team = keys.teams["t"]
    gaps = [0.0, 0.0001, 0.2, 0.0, 0.49, 0.51, 0.001, 3.0, 0.0, 0.0, 0.0, 0.333, 0.167, 1e-4]
    gaps *= 6
    gaps += [1 / rps, 0.0, 1 / rps - 0.0005, 0.0006, 0.0]
    admitted, refused = 0, 0
    for gap in gaps:
        clock.advance(gap)
        solo = limiter.check_local("solo")
        assert solo is not None
        refusal = _refusal(limiter, team)
        assert (refusal is None) == solo.allowed, f"the team and the key differ after {gap}"
        if refusal is not None:
            assert refusal.what == "requests per second"
            assert refusal.detail.retry_after_secs == solo.retry_after_secs > 0
            refused += 1
        else:
            admitted += 1
    assert admitted and refused  # the sequence meets both


def test_a_teams_limits_refuse_in_one_step_and_hold_nothing_then() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    team = Team("t", tokens_per_minute=1000, max_budget_usd=1.0, max_parallel_requests=2)
    keys = _team_ring(team)
    limiter.sync(keys.subjects())
    entry = keys.teams["t"]
    first = limiter.team_admit(entry)
    second = limiter.team_admit(entry)
    assert first is second is not None  # the team's state: each holds a slot of it
    with pytest.raises(TeamRefused) as refused:
        limiter.team_admit(entry)
    assert refused.value.what == "parallel requests" and refused.value.detail == 2
    first.leave()
    # Tokens per minute: a reservation beyond what is left is refused, holding nothing.
    held = limiter.team_reserve(entry, 800, 0.5)
    assert held == Reservation(800, 0.5)
    with pytest.raises(TeamRefused) as refused:
        limiter.team_reserve(entry, 300, 0.1)
    assert refused.value.what == "tokens per minute"
    # The budget: 0.5 held, 0.6 more does not fit; nothing of it is held, neither its
    # tokens (the rest of the minute, exactly, fits after it) nor its cost.
    with pytest.raises(TeamRefused) as refused:
        limiter.team_reserve(entry, 200, 0.6)
    assert refused.value.what == "budget"
    assert limiter.team_reserve(entry, 200, 0.5) == Reservation(200, 0.5)
    # Settled at what they used: 1,000 tokens of the minute and $1.00 spent.
    limiter.team_settle(entry, 900, 0.9, held)
    limiter.team_settle(entry, 100, 0.1, Reservation(200, 0.5))
    with pytest.raises(TeamRefused) as refused:
        limiter.team_admit(entry)
    assert refused.value.what == "budget"
    assert refused.value.detail.remaining_usd == 0
    second.leave()
    # A new budget period (a month on), and a minute on: admitted again.
    clock.advance(32 * 86_400)
    assert limiter.team_admit(entry) is not None


def test_a_teams_slots_in_flight_stay_counted_across_a_reload() -> None:
    """A reload that changes the team keeps its state object: a request admitted before it
    gives its slot back to the count that the requests after it are held to."""
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    keys = _team_ring(Team("t", max_parallel_requests=1))
    limiter.sync(keys.subjects())
    slot = limiter.team_admit(keys.teams["t"])
    assert slot is not None
    reloaded = _team_ring(Team("t", max_parallel_requests=1, tokens_per_minute=10_000))
    limiter.sync(reloaded.subjects())
    with pytest.raises(TeamRefused):
        limiter.team_admit(reloaded.teams["t"])
    slot.leave()
    assert limiter.team_admit(reloaded.teams["t"]) is not None
    # A team removed while a request of it was on its way: nothing of it is limited.
    limiter.sync(ring(MasterKey("solo", "sk-solo")).subjects())
    assert limiter.team_admit(reloaded.teams["t"]) is None
    assert limiter.team_reserve(reloaded.teams["t"], 100, 1.0) is None
    limiter.team_settle(reloaded.teams["t"], 100, 1.0, None)
