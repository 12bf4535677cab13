"""Per-key cost budgets (`max_budget_usd` per UTC day or month): validation, the limiter on a
hand-moved clock (period ends, reloads), the official openai SDK spending a budget and getting
429 `budget_exceeded`, one budget shared by two instances through Redis, Redis down, and
database mode (admin API, psql, history rollback, export and import)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
import pytest
import redis.asyncio
from ruamel.yaml import YAML

from llm_proxy.app import DatabaseMode, create_app
from llm_proxy.cli import main
from llm_proxy.config import history
from llm_proxy.config.database import initial_load
from llm_proxy.config.export import export_yaml, key_variable
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.migrate import SQL_DIR, migrate_up
from llm_proxy.config.model import Config, MasterKey
from llm_proxy.config.validate import parse_config
from llm_proxy.keys import LIMITER
from llm_proxy.proxy.budgets import budget_period
from llm_proxy.proxy.limiter import Limiter
from tests.helpers import (
    REDIS_URL,
    FakeClock,
    ProxyFactory,
    Upstream,
    chat,
    make_config,
    provider,
    ring,
    sample,
    scrape,
    sdk,
    serve,
)
from tests.helpers.admin import ADMIN, call
from tests.helpers.db import add_provider, db_version, wait_version

# The mock upstream reports 5 prompt and 5 completion tokens per call: at $100,000 per million
# tokens either way, every call costs exactly $1.
PRICING = {"m": {"input_per_mtok": 100_000, "output_per_mtok": 100_000}}
# What a call without max_tokens reserves at admission: at these prices, 1 output token (and
# about a token of prompt) holds $0.1-0.2 of the budget while the call runs.
RESERVE = 1
NOON = datetime(2025, 6, 14, 12, 0, tzinfo=UTC).timestamp()
KEY = "sk-team-budget-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def budget_config(api_base: str, **key: Any) -> Config:
    return make_config(
        provider("a", api_base, {"m": None}),
        master_keys=[{"name": "team", "key": KEY, **key}],
        pricing=PRICING,
        reserve_output_tokens=RESERVE,
    )


async def post(http: aiohttp.ClientSession, url: str, key: str = KEY) -> aiohttp.ClientResponse:
    """A chat completion as `key` (by default the budgeted one)."""
    return await chat(http, url, key=key)


# Configuration


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_budget_usd": -5}, "master_keys[0].max_budget_usd: must be a positive number"),
        ({"max_budget_usd": 0}, "master_keys[0].max_budget_usd: must be a positive number"),
        ({"max_budget_usd": "ten"}, "master_keys[0].max_budget_usd: must be a positive number"),
        (
            {"max_budget_usd": float("nan")},
            "master_keys[0].max_budget_usd: must be a finite positive number",
        ),
        (
            {"max_budget_usd": 5, "budget_period": "weekly"},
            "master_keys[0].budget_period: must be daily or monthly, got 'weekly'",
        ),
        (
            {"budget_period": "daily"},
            "master_keys[0].budget_period: needs max_budget_usd (a period without a budget "
            "limits nothing)",
        ),
        ({"max_budget_usd": 5, "budget_pariod": "daily"}, "budget_pariod: unknown key"),
    ],
)
def test_bad_budgets_are_clear_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"master_keys": [{"name": "team", "key": KEY, **fields}]})
    assert len(exc.value.issues) == 1 and message in str(exc.value.issues[0])


def test_budget_defaults_to_monthly_and_exports_both_fields() -> None:
    config = parse_config(
        {
            "master_keys": [
                {"name": "team", "key": KEY, "max_budget_usd": 25},
                {"name": "ci", "key": KEY + "-ci", "max_budget_usd": 0.5, "budget_period": "daily"},
                {"name": "free", "key": KEY + "-free"},
            ]
        }
    )
    assert [(k.max_budget_usd, k.budget_period) for k in config.master_keys] == [
        (25.0, "monthly"),
        (0.5, "daily"),
        (None, "monthly"),
    ]
    again = parse_config(YAML(typ="safe").load(export_yaml(config, version="1")))
    # The keys come back as their hashes, with their budgets.
    assert again.master_keys == tuple(
        dataclasses.replace(k, key="", key_sha256=k.digest) for k in config.master_keys
    )


def test_periods_are_utc_days_and_calendar_months() -> None:
    assert budget_period("daily", at(2025, 6, 14, 23, 59, 59)) == (
        at(2025, 6, 14),
        at(2025, 6, 15),
        "2025-06-14",
    )
    assert budget_period("monthly", at(2025, 2, 28, 12)) == (
        at(2025, 2, 1),
        at(2025, 3, 1),
        "2025-02",
    )
    assert budget_period("monthly", at(2025, 12, 31, 23)) == (
        at(2025, 12, 1),
        at(2026, 1, 1),
        "2025-12",
    )
    assert budget_period("daily", at(2024, 12, 31, 1))[1:] == (at(2025, 1, 1), "2024-12-31")


# The limiter on a hand-moved clock


def test_spend_is_refused_once_it_reaches_the_budget_and_resets_at_midnight_utc() -> None:
    clock = FakeClock(NOON)
    limiter = Limiter(clock=clock)
    limiter.sync(ring(MasterKey("k", "sk", max_budget_usd=1.0, budget_period="daily")))
    verdict = limiter.budget_verdict("k")
    assert verdict is not None and verdict.allowed
    assert verdict.headers() == [
        ("x-llm-proxy-budget-limit-usd", "1"),
        ("x-llm-proxy-budget-remaining-usd", "1"),
        ("x-llm-proxy-budget-reset", "2025-06-15T00:00:00Z"),
    ]
    limiter.charge_cost("k", 0.6)
    assert limiter.budget_verdict("k").remaining_usd == pytest.approx(0.4)  # type: ignore[union-attr]
    limiter.charge_cost("k", 0.6)  # charged after the call: may overspend
    refused = limiter.budget_verdict("k")
    assert refused is not None and not refused.allowed and refused.remaining_usd == 0
    assert refused.retry_after_secs == 12 * 3600 and refused.period == "day"
    clock.now = at(2025, 6, 14, 23, 59, 59)
    assert not limiter.budget_verdict("k").allowed  # type: ignore[union-attr]
    clock.advance(1)  # midnight UTC: a new day, nothing spent
    verdict = limiter.budget_verdict("k")
    assert verdict is not None and verdict.allowed and verdict.remaining_usd == 1.0
    assert verdict.resets_at == "2025-06-16T00:00:00Z"
    assert limiter.budget_verdict("nobody") is None
    limiter.charge_cost("nobody", 5.0)  # a key without a budget: nothing to charge


def test_monthly_budget_resets_on_the_first_of_the_month() -> None:
    clock = FakeClock(at(2025, 1, 31, 22))
    limiter = Limiter(clock=clock)
    limiter.sync(ring(MasterKey("k", "sk", max_budget_usd=10.0)))
    limiter.charge_cost("k", 10.0)
    refused = limiter.budget_verdict("k")
    assert refused is not None and not refused.allowed and refused.period == "month"
    assert refused.resets_at == "2025-02-01T00:00:00Z" and refused.retry_after_secs == 7200
    clock.now = at(2025, 2, 1)
    assert limiter.budget_verdict("k").allowed  # type: ignore[union-attr]
    # A charge that arrives after the period ended counts in the new one.
    limiter.charge_cost("k", 4.0)
    assert limiter.budget_verdict("k").remaining_usd == 6.0  # type: ignore[union-attr]


def test_reload_keeps_the_spend_unless_the_period_kind_changes() -> None:
    clock = FakeClock(NOON)
    limiter = Limiter(clock=clock)
    limiter.sync(ring(MasterKey("k", "sk", max_budget_usd=5.0)))
    limiter.charge_cost("k", 5.0)
    assert not limiter.budget_verdict("k").allowed  # type: ignore[union-attr]
    # The same budget (the key rotated): still spent.
    limiter.sync(ring(MasterKey("k", "sk-rotated", max_budget_usd=5.0)))
    assert not limiter.budget_verdict("k").allowed  # type: ignore[union-attr]
    # Raised: what was spent counts against the new amount (lowering it cannot reset it).
    limiter.sync(ring(MasterKey("k", "sk", max_budget_usd=8.0)))
    verdict = limiter.budget_verdict("k")
    assert verdict is not None and verdict.allowed and verdict.remaining_usd == 3.0
    # Another period kind is another count: this day's spend starts at nothing.
    limiter.sync(ring(MasterKey("k", "sk", max_budget_usd=8.0, budget_period="daily")))
    assert limiter.budget_verdict("k").remaining_usd == 8.0  # type: ignore[union-attr]
    # No budget any more: no verdict, no state.
    limiter.sync(ring(MasterKey("k", "sk")))
    assert limiter.budget_verdict("k") is None


# End to end, with the official SDK


async def test_the_openai_sdk_spends_a_budget_then_gets_429_budget_exceeded(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(NOON)
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[
            {"name": "team", "key": KEY, "max_budget_usd": 3, "budget_period": "daily"},
            {"name": "other", "key": "sk-other-0123"},
        ],
        pricing=PRICING,
        reserve_output_tokens=RESERVE,
    )
    url = await start_proxy(config, clock=clock)
    messages: Any = [{"role": "user", "content": "hi"}]
    async with sdk(url, KEY) as client:
        remaining = []
        for stream in (False, True, False):  # a stream is charged too (its usage is asked for)
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=messages, stream=stream
            )
            answer = raw.parse()
            if stream:
                async for _ in answer:  # type: ignore[union-attr]
                    pass
            remaining.append(raw.headers["x-llm-proxy-budget-remaining-usd"])
            assert raw.headers["x-llm-proxy-budget-limit-usd"] == "3"
            assert raw.headers["x-llm-proxy-budget-reset"] == "2025-06-15T00:00:00Z"
        assert remaining == ["3", "2", "1"]  # before each call's own cost
        with pytest.raises(openai.RateLimitError) as exc:
            await client.chat.completions.create(model="m", messages=messages)
    error = exc.value
    assert error.status_code == 429 and error.code == "budget_exceeded"
    assert error.type == "insufficient_quota"
    assert error.body["message"] == (
        "The budget of $3 for this day of key 'team' is spent; it resets at 2025-06-15T00:00:00Z."
    )
    assert error.response.headers["retry-after"] == str(12 * 3600)
    assert error.response.headers["x-llm-proxy-budget-remaining-usd"] == "0"
    assert len(upstream.recorded) == 3  # the refused call never reached the upstream
    # Another key is not affected, and carries no budget headers.
    other = await post(http, url, "sk-other-0123")
    assert other.status == 200 and "x-llm-proxy-budget-limit-usd" not in other.headers
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_rate_limited_total", key_name="team") == 1
    assert sample(families, "llm_proxy_cost_usd_total", api_key_name="team") == 3
    # Midnight UTC: a new day's budget.
    clock.now = at(2025, 6, 15)
    resp = await post(http, url)
    assert resp.status == 200 and resp.headers["x-llm-proxy-budget-remaining-usd"] == "3"
    assert resp.headers["x-llm-proxy-budget-reset"] == "2025-06-16T00:00:00Z"


async def test_unpriced_models_and_failed_calls_cost_nothing(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None, "unpriced": None}),
        master_keys=[{"name": "team", "key": KEY, "max_budget_usd": 1}],
        pricing=PRICING,
        reserve_output_tokens=RESERVE,
    )
    url = await start_proxy(config, clock=FakeClock(NOON))
    for body, status in (({"model": "unpriced"}, 200), ({"model": "m", "mock_status": 400}, 400)):
        async with http.post(url + "/v1/chat/completions", json=body, headers=AUTH) as r:
            await r.read()
            assert r.status == status
            assert r.headers["x-llm-proxy-budget-remaining-usd"] == "1"
    assert (await post(http, url)).status == 200
    refused = await post(http, url)
    assert refused.status == 429


# Shared through Redis


async def drop_budget_keys(client: redis.asyncio.Redis, key_name: str) -> None:
    """Delete this test's keys only (each test's key name is unique)."""
    found = [k async for k in client.scan_iter(match=f"llm_proxy:budget:{key_name}:*")]
    if found:
        await client.delete(*found)


async def test_two_limiters_on_one_redis_see_each_others_spend(
    redis_client: redis.asyncio.Redis,
) -> None:
    name = f"budget-{uuid.uuid4().hex[:8]}"
    clock = FakeClock(NOON)
    one = Limiter(clock=clock, redis=redis.asyncio.Redis.from_url(REDIS_URL))
    two = Limiter(clock=clock, redis=redis.asyncio.Redis.from_url(REDIS_URL))
    try:
        for limiter in (one, two):
            limiter.sync(ring(MasterKey(name, "sk", max_budget_usd=4.0)))
            await limiter.flush()  # each read the (empty) total as it adopted the key
        one.charge_cost(name, 3.0)
        await one.flush()
        redis_key = f"llm_proxy:budget:{name}:2025-06"
        assert float(await redis_client.get(redis_key)) == 3.0
        ttl = await redis_client.ttl(redis_key)
        assert 16 * 86400 < ttl <= (16.5 + 1) * 86400  # past the end of June, by a day
        # The second learns it when its view is a second old: the check never waits on Redis,
        # it starts a refresh.
        assert two.budget_verdict(name).remaining_usd == 4.0  # type: ignore[union-attr]
        clock.advance(1.0)
        assert two.budget_verdict(name).remaining_usd == 4.0  # type: ignore[union-attr]
        await two.flush()
        assert two.budget_verdict(name).remaining_usd == 1.0  # type: ignore[union-attr]
        # Its own charge returns the shared total.
        two.charge_cost(name, 1.0)
        assert not two.budget_verdict(name).allowed  # type: ignore[union-attr]  # counted here
        await two.flush()
        assert not two.budget_verdict(name).allowed  # type: ignore[union-attr]
        clock.advance(1.0)
        one.budget_verdict(name)
        await one.flush()
        assert not one.budget_verdict(name).allowed  # type: ignore[union-attr]
        # A new instance reads the total as it adopts the key.
        three = Limiter(clock=clock, redis=redis.asyncio.Redis.from_url(REDIS_URL))
        three.sync(ring(MasterKey(name, "sk", max_budget_usd=4.0)))
        await three.flush()
        assert not three.budget_verdict(name).allowed  # type: ignore[union-attr]
        await three._redis.aclose()
        # Deleting the period's total in Redis resets the budget everywhere.
        await redis_client.delete(redis_key)
        clock.advance(1.0)
        one.budget_verdict(name)
        await one.flush()
        assert one.budget_verdict(name).remaining_usd == 4.0  # type: ignore[union-attr]
    finally:
        for limiter in (one, two):
            await limiter.flush()
            await limiter._redis.aclose()
        await drop_budget_keys(redis_client, name)


async def test_two_proxies_sharing_redis_enforce_one_budget(
    redis_client: redis.asyncio.Redis, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    name = f"budget-{uuid.uuid4().hex[:8]}"
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[{"name": name, "key": KEY, "max_budget_usd": 4}],
        pricing=PRICING,
        reserve_output_tokens=RESERVE,
        rate_limit_backend=REDIS_URL,
    )
    clock = FakeClock(NOON)  # not moved: each proxy learns the total from its own charges
    apps = [create_app(config, clock=clock), create_app(config, clock=clock)]
    try:
        async with serve(apps[0]) as first, serve(apps[1]) as second:
            for app in apps:
                await app[LIMITER].flush()
            statuses = []
            for i in range(8):
                statuses.append((await post(http, [first, second][i % 2])).status)
                for app in apps:
                    await app[LIMITER].flush()
            # $4 for both, not $4 each (8 calls): each call's reservation is checked in
            # Redis against the shared spend, so not even the other's last call passes.
            assert statuses == [200, 200, 200, 200, 429, 429, 429, 429]
            assert float(await redis_client.get(f"llm_proxy:budget:{name}:2025-06")) == 4.0
            families = await scrape(http, first)
            assert sample(families, "llm_proxy_rate_limit_backend_up") == 1
    finally:
        await drop_budget_keys(redis_client, name)


async def test_redis_down_still_enforces_the_budget_per_instance(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    unused_tcp_port: int,
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[{"name": "team", "key": KEY, "max_budget_usd": 3}],
        pricing=PRICING,
        reserve_output_tokens=RESERVE,
        rate_limit_backend=f"redis://127.0.0.1:{unused_tcp_port}/0",
    )
    url = await start_proxy(config, clock=FakeClock(NOON))
    statuses = [(await post(http, url)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # no request failed for want of Redis
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_rate_limit_backend_up") == 0
    assert (sample(families, "llm_proxy_rate_limit_backend_errors_total") or 0) >= 1


# Database mode

KEYED = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),), reserve_output_tokens=RESERVE)


async def start_db(
    start_proxy: ProxyFactory, dsn: str, clock: FakeClock, base: Config = KEYED
) -> str:
    config, version = await initial_load(dsn, base, timeout_secs=5)
    return await start_proxy(config, version=version, database=DatabaseMode(dsn, base), clock=clock)


async def add_priced_provider(dsn: str, api_base: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await add_provider(conn, "alpha", api_base, {"m": None})
        await conn.execute(
            """UPDATE providers SET params = jsonb_build_object('pricing', $1::jsonb)""",
            '{"m": {"input_per_mtok": 100000, "output_per_mtok": 100000}}',
        )
    finally:
        await conn.close()


async def test_a_budget_set_through_the_admin_api_is_enforced_and_validated(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    await add_priced_provider(config_dsn, upstream.api_base)
    url = await start_db(start_proxy, config_dsn, FakeClock(NOON))
    admin = url + "/admin/v1/credentials"
    new = {"name": "team", "key": KEY, "max_budget_usd": 2, "budget_period": "daily"}
    status, created = await call(http, "POST", admin, json=new)
    assert status == 201, created
    assert (created["max_budget_usd"], created["budget_period"]) == (2, "daily")
    assert [(await post(http, url)).status for _ in range(3)] == [200, 200, 429]
    # Raised: what was spent today still counts.
    status, patched = await call(
        http, "PATCH", f"{admin}/{created['id']}", json={"max_budget_usd": 2.5}
    )
    assert status == 200 and patched["max_budget_usd"] == 2.5
    resp = await post(http, url)
    assert resp.status == 200 and resp.headers["x-llm-proxy-budget-remaining-usd"] == "0.5"
    assert (await post(http, url)).status == 429
    # Bad values are 400s naming the field, and change nothing.
    bad: list[tuple[dict[str, Any], str]] = [
        ({"max_budget_usd": -1}, "max_budget_usd"),
        ({"max_budget_usd": 0}, "max_budget_usd"),
        ({"max_budget_usd": "5"}, "max_budget_usd"),
        ({"max_budget_usd": 1e10}, "max_budget_usd"),
        ({"budget_period": "weekly"}, "budget_period"),
        ({"budget_period": 7}, "budget_period"),
        ({"max_budget_usd": None}, "budget_period"),  # daily left without a budget
    ]
    for body, field in bad:
        status, answer = await call(http, "PATCH", f"{admin}/{created['id']}", json=body)
        assert (status, answer["error"]["param"]) == (400, field), (body, answer)
    status, row = await call(http, "GET", f"{admin}/{created['id']}")
    assert (row["max_budget_usd"], row["budget_period"]) == (2.5, "daily")
    # Both cleared (PUT without them): no budget, no budget headers.
    status, put = await call(http, "PUT", f"{admin}/{created['id']}", json={"name": "team"})
    assert status == 200 and put["max_budget_usd"] is None and put["budget_period"] is None
    resp = await post(http, url)
    assert resp.status == 200 and "x-llm-proxy-budget-limit-usd" not in resp.headers
    status, config = await call(http, "GET", url + "/admin/v1/config")
    assert config["master_keys"][0]["max_budget_usd"] is None


async def test_a_budget_set_with_psql_is_enforced_and_rolled_back_exactly(
    pg_dsn: str,
    tmp_path: Path,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    # A key made before migration 004: its history rows have no budget columns.
    before_004 = tmp_path / "sql"
    before_004.mkdir()
    for path in sorted(SQL_DIR.glob("00[123]_*.sql")):
        (before_004 / path.name).write_text(path.read_text())
    sql = await asyncpg.connect(pg_dsn)
    try:
        await migrate_up(sql, before_004)
        await sql.execute(f"INSERT INTO credentials (name, key) VALUES ('team', '{KEY}')")
        await add_priced_provider(pg_dsn, upstream.api_base)
        old = int(await db_version(sql))
        assert next(iter(await migrate_up(sql))).name == "key_budgets"
        url = await start_db(start_proxy, pg_dsn, FakeClock(NOON))
        assert (await post(http, url)).status == 200
        await sql.execute("UPDATE credentials SET max_budget_usd = 0.1")  # (monthly)
        await wait_version(http, url, await db_version(sql), ADMIN)
        resp = await post(http, url)
        assert resp.status == 200 and resp.headers["x-llm-proxy-budget-limit-usd"] == "0.1"
        assert (await post(http, url)).status == 429
        await sql.execute("UPDATE credentials SET max_budget_usd = 12.34, budget_period = 'daily'")
        daily = int(await db_version(sql))
        await sql.execute("UPDATE credentials SET max_budget_usd = 7")
        for bad in (
            "max_budget_usd = -1",
            "max_budget_usd = 'NaN'",
            "max_budget_usd = 'Infinity'",
            "budget_period = 'weekly'",
            "max_budget_usd = NULL",  # leaving budget_period = 'daily' without a budget
        ):
            with pytest.raises(asyncpg.CheckViolationError):
                await sql.execute(f"UPDATE credentials SET {bad}")
        # Back to exactly the row of that version, then to before the columns existed.
        await history.rollback(sql, daily, "admin:ops")
        row = await sql.fetchrow("SELECT max_budget_usd, budget_period FROM credentials")
        assert row is not None and tuple(row) == (12.34, "daily")
        latest = (await history.rollback(sql, old, "admin:ops")).version
        row = await sql.fetchrow("SELECT max_budget_usd, budget_period FROM credentials")
        assert row is not None and tuple(row) == (None, None)
        await wait_version(http, url, latest, ADMIN)
        resp = await post(http, url)
        assert resp.status == 200 and "x-llm-proxy-budget-limit-usd" not in resp.headers
        changes = await history.change(sql, daily)
        assert changes[0].after is not None and changes[0].after["max_budget_usd"] == 12.34
    finally:
        await sql.close()


async def test_export_and_import_round_trip_the_budget(
    config_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None})
        await sql.execute(
            "INSERT INTO credentials (name, key, max_budget_usd, budget_period) VALUES "
            f"('team', '{KEY}', 12.5, 'daily'), ('ci', 'sk-ci-budget-0123', 0.1, NULL), "
            "('free', 'sk-free-budget-0123', NULL, NULL)"
        )
        exported = tmp_path / "exported.yaml"

        def run(*args: str) -> tuple[int, str]:
            code = main(list(args))
            return code, capsys.readouterr().out

        code, _ = await asyncio.to_thread(
            run, "export-config", "--db-url", config_dsn, "-o", str(exported)
        )
        assert code == 0
        text = exported.read_text()
        assert "max_budget_usd: 12.5\n  budget_period: daily" in text
        assert "max_budget_usd: 0.1\n  budget_period: monthly" in text
        monkeypatch.setenv(key_variable("alpha"), "sk-alpha-provider-key")
        await sql.execute("DELETE FROM credentials")
        code, out = await asyncio.to_thread(
            run, "import-config", str(exported), "--db-url", config_dsn
        )
        assert (code, out.strip()) == (0, "imported 1 providers and 3 master keys")
        rows = await sql.fetch(
            "SELECT name, max_budget_usd, budget_period FROM credentials ORDER BY name"
        )
        assert [tuple(r) for r in rows] == [
            ("ci", 0.1, "monthly"),
            ("free", None, None),
            ("team", 12.5, "daily"),
        ]
        code, again = await asyncio.to_thread(run, "export-config", "--db-url", config_dsn)
        assert code == 0 and again.splitlines()[1:] == text.splitlines()[1:]
    finally:
        await sql.close()


async def test_a_restart_keeps_the_spend_recorded_in_the_request_log(
    upstream: Upstream, config_dsn: str, http: aiohttp.ClientSession
) -> None:
    """Without Redis a budget is counted in the process; with the request log in PostgreSQL,
    a restarted proxy starts from what each key spent this period: today's rows, and the daily
    rollup for the month's earlier days (whose rows may have expired). Earlier periods do not
    count."""
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[
            {"name": "team", "key": KEY, "max_budget_usd": 5},
            {"name": "day", "key": KEY + "-day", "max_budget_usd": 5, "budget_period": "daily"},
        ],
        pricing=PRICING,  # $1 a call
        reserve_output_tokens=RESERVE,
        request_log={"database_url": config_dsn, "flush_interval_secs": 0.1},
    )
    async with serve(create_app(config)) as url:
        for key in (KEY, KEY, KEY + "-day"):
            assert (await post(http, url, key)).status == 200
    # Stopped: what was queued is written. Earlier days, as the rollup alone keeps them.
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).date()
    last_month = (now.replace(day=1) - timedelta(days=1)).date()
    conn = await asyncpg.connect(config_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM request_logs") == 3
        await conn.executemany(
            "INSERT INTO usage_daily (day, key_name, model, provider, requests, cost_usd) "
            "VALUES ($1, $2, 'm', 'a', 1, 1.0)",
            [(yesterday, "team"), (yesterday, "day"), (last_month, "team")],
        )
    finally:
        await conn.close()
    earlier = 1 if yesterday.month == now.month else 0  # (on the 1st, yesterday was last month)
    async with serve(create_app(config)) as url:
        team = await post(http, url)
        day = await post(http, url, KEY + "-day")
    assert team.headers["x-llm-proxy-budget-remaining-usd"] == str(5 - 2 - earlier)
    assert day.headers["x-llm-proxy-budget-remaining-usd"] == "4"  # today only

    # A database that cannot be reached: the proxy starts anyway, budgets from zero.
    down = dataclasses.replace(
        config,
        request_log=dataclasses.replace(
            config.request_log, database_url="postgresql://postgres@127.0.0.1:1/nowhere"
        ),
    )
    async with serve(create_app(down)) as url:
        assert (await post(http, url)).headers["x-llm-proxy-budget-remaining-usd"] == "5"


async def test_a_restart_keeps_a_teams_spend_recorded_in_the_request_log(
    upstream: Upstream, config_dsn: str, http: aiohttp.ClientSession
) -> None:
    """A team's budget survives a restart as a key's does: its spend is what every request of
    a key in the team spent (the log's `team` column, as the key was then), today's rows and
    the rollup's earlier days. A key named `team:<x>` when no team is `x` is a key."""
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        teams=[{"name": "search", "max_budget_usd": 10}],
        master_keys=[
            {"name": "one", "key": KEY, "team": "search"},
            {"name": "two", "key": KEY + "-two", "team": "search", "max_budget_usd": 10},
            {"name": "team:solo", "key": KEY + "-solo", "max_budget_usd": 10},
        ],
        pricing=PRICING,  # $1 a call
        reserve_output_tokens=RESERVE,
        request_log={"database_url": config_dsn, "flush_interval_secs": 0.1},
    )
    async with serve(create_app(config)) as url:
        for key in (KEY, KEY + "-two", KEY + "-two", KEY + "-solo"):
            assert (await post(http, url, key)).status == 200
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).date()
    conn = await asyncpg.connect(config_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM request_logs WHERE team = 'search'") == 3
        # Yesterday: key `gone`, in the team then, and key `one` before it joined.
        await conn.executemany(
            "INSERT INTO usage_daily (day, key_name, team, model, provider, requests, cost_usd) "
            "VALUES ($1, $2, $3, 'm', 'a', 1, 1.0)",
            [(yesterday, "gone", "search"), (yesterday, "one", "")],
        )
    finally:
        await conn.close()
    earlier = 1 if yesterday.month == now.month else 0  # (on the 1st, yesterday was last month)
    app = create_app(config)
    async with serve(app):
        budgets = app[LIMITER].budgets
        spent = {}
        for name in ("team:search", "two", "team:solo"):
            verdict = budgets.verdict(name)
            assert verdict is not None
            spent[name] = 10 - verdict.remaining_usd
    assert spent == {"team:search": 3 + earlier, "two": 2, "team:solo": 1}
