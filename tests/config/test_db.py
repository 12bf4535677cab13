"""Database mode against a real PostgreSQL: migrations, psql-style edits reaching running
proxies through LISTEN/NOTIFY, rejected edits, listener outages, streams during reloads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from llm_proxy.config import migrate
from llm_proxy.config.database import StartupError, build_config, fetch, initial_load, read_cache
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.listener import LISTENER_APP_NAME
from llm_proxy.config.model import Config
from llm_proxy.testing.mock import RECORDED, MockOptions, create_mock_app
from tests.helpers import ProxyFactory, Upstream, eventually, sample, scrape, serve
from tests.helpers.db import (
    OPEN,
    add_provider,
    db_version,
    start_db_proxy,
    version_of,
    wait_listener,
    wait_version,
)


async def rejected(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """/metrics once `url` counted a rejected reload (an edit its rules refuse)."""

    async def counted() -> dict[str, Any] | None:
        families = await scrape(http, url)
        return (
            families if sample(families, "llm_proxy_config_reloads_total", result="error") else None
        )

    return await eventually(counted, what="a rejected reload counted")


# Migrations


async def test_migrations_from_empty_rerun_and_concurrent(pg_dsn: str) -> None:
    first, second = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        assert await migrate.applied(first) == {}
        # Two instances starting together: the advisory lock serialises them.
        ran_a, ran_b = await asyncio.gather(migrate.migrate_up(first), migrate.migrate_up(second))
        assert sorted(len(r) for r in (ran_a, ran_b)) == [0, len(migrate.discover())]
        assert await migrate.migrate_up(first) == []  # re-run: no-op
        assert set(await migrate.applied(first)) == {m.version for m in migrate.discover()}
        status = await migrate.status_lines(first)
        assert all("applied" in line for line in status)
        assert await first.fetchval("SELECT version FROM config_version") == 1
        everything = len(migrate.discover())
        reverted = await migrate.migrate_down(first, everything)
        assert [m.version for m in reverted] == list(range(everything, 0, -1))
        assert await first.fetchval("SELECT to_regclass('providers')") is None
        assert len(await migrate.migrate_up(first)) == everything
    finally:
        await first.close()
        await second.close()


def test_migrations_ship_inside_the_package() -> None:
    import llm_proxy

    shipped = Path(llm_proxy.__file__).parent / "config" / "sql"
    assert [m.up.parent for m in migrate.discover()] == [shipped] * len(migrate.discover())
    repo_sql = Path(__file__).resolve().parents[2] / "sql"
    assert sorted(p.name for p in repo_sql.iterdir()) == sorted(p.name for p in shipped.iterdir())


async def test_database_refuses_bad_rows(sql: asyncpg.Connection) -> None:
    for statement in (
        "INSERT INTO providers (name, api_base, weight) VALUES ('x', 'http://a/v1', 0)",
        "INSERT INTO providers (name, api_base) VALUES ('x', 'ftp://nope')",
        "INSERT INTO providers (name, api_base, model_mapping) VALUES ('x', 'http://a', '[]')",
        "INSERT INTO credentials (name) VALUES ('no-key')",
        "INSERT INTO credentials (name, key) VALUES ('short', 'sk-1')",
        "INSERT INTO credentials (name, key, rate_limit_burst) VALUES ('k', 'sk-12345678', 5)",
    ):
        with pytest.raises((asyncpg.CheckViolationError, asyncpg.NotNullViolationError)):
            await sql.execute(statement)


# Keys inserted in plain SQL


async def test_plaintext_key_insert_stores_only_hash(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await add_provider(sql, "alpha", upstream.api_base, {"m": None})
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team-a', 'sk-team-a-secret')")
    row = await sql.fetchrow("SELECT key, key_hash, key_prefix FROM credentials")
    assert row["key"] is None
    assert bytes(row["key_hash"]) == hashlib.sha256(b"sk-team-a-secret").digest()
    assert row["key_prefix"] == "sk-tea..."
    dump = str(await sql.fetch("SELECT * FROM credentials"))
    assert "sk-team-a-secret" not in dump

    url = await start_db_proxy(start_proxy, config_dsn, Config())
    ok = {"Authorization": "Bearer sk-team-a-secret"}
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=ok) as r:
        assert r.status == 200
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as r:
        assert r.status == 401
    # Disabling the key in SQL reaches the running proxy.
    await sql.execute("UPDATE credentials SET is_enabled = false")
    await wait_version(http, url, await db_version(sql))
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=ok) as r:
        assert r.status == 401


async def test_deleting_every_credential_locks_the_proxy(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await add_provider(sql, "alpha", upstream.api_base, {"m": None})
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team-a', 'sk-team-a-secret')")
    url = await start_db_proxy(start_proxy, config_dsn, Config())
    ok = {"Authorization": "Bearer sk-team-a-secret"}
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=ok) as r:
        assert r.status == 200
    # Revoking every key during an incident, in psql: the proxy locks, it does not open.
    await sql.execute("DELETE FROM credentials")
    await wait_version(http, url, await db_version(sql))
    for headers in ({}, ok):
        async with http.post(
            url + "/v1/chat/completions", json={"model": "m"}, headers=headers
        ) as r:
            assert r.status == 401
            body = await r.json()
        assert body["error"]["code"] == "invalid_api_key"
        assert "every key was revoked" in body["error"]["message"]
    # A new key opens it again, for that key only.
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team-b', 'sk-team-b-secret')")
    await wait_version(http, url, await db_version(sql))
    new = {"Authorization": "Bearer sk-team-b-secret"}
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=new) as r:
        assert r.status == 200
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as r:
        assert r.status == 401


# Numbers the database accepts and the proxy must not


async def test_infinite_rate_in_a_row_is_a_config_error_at_startup(
    config_dsn: str, sql: asyncpg.Connection, tmp_path: Path
) -> None:
    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None})
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team-a', 'sk-team-a-secret')")
    cache = tmp_path / "config-cache.json"
    base = Config(config_cache_path=str(cache))
    await initial_load(config_dsn, base)  # a good config, cached
    row_id = await sql.fetchval("SELECT id FROM credentials")
    await sql.execute("UPDATE credentials SET rate_limit_rps = 'Infinity'")
    with pytest.raises(ConfigError) as exc:
        await initial_load(config_dsn, Config(), timeout_secs=1)
    assert str(exc.value) == (
        "master_keys[0].rate_limit.requests_per_second (table credentials, "
        f"row id={row_id} ('team-a'), column rate_limit_rps/rate_limit_burst): "
        "must be a finite positive number, got inf"
    )
    # With a cache, the proxy starts from the last good configuration.
    config, _ = await initial_load(config_dsn, base)
    assert config.master_keys[0].rate_limit is None


async def test_a_params_key_cannot_override_a_column(sql: asyncpg.Connection) -> None:
    """`params` holds only the settings without a column: `{"api_base": ...}` there would
    silently send the provider's key elsewhere; it is refused, naming where."""
    await add_provider(sql, "alpha", "https://api.example/v1", {"m": None})
    await sql.execute("""UPDATE providers SET params = '{"api_base": "https://evil.example/v1"}'""")
    with pytest.raises(ConfigError) as caught:
        build_config(Config(require_auth=False), await fetch(sql))
    text = str(caught.value)
    assert "params.api_base" in text and "table providers" in text


# Edits reach running proxies


async def test_weight_update_reroutes_and_two_proxies_converge(
    config_dsn: str, sql: asyncpg.Connection, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    apps = [create_mock_app(MockOptions(record=True)) for _ in range(2)]
    async with serve(apps[0]) as url_a, serve(apps[1]) as url_b:
        await add_provider(sql, "a", url_a + "/v1", {"m": None}, weight=1)
        await add_provider(sql, "b", url_b + "/v1", {"m": None}, weight=1)
        proxies = [await start_db_proxy(start_proxy, config_dsn) for _ in range(2)]

        latencies = []
        for weights in ((9, 1), (1, 4), (3, 2)):
            # Real time: apart from the previous change by more than the listener's minimum
            # reload interval, so this measures a lone edit's latency, not burst coalescing.
            await asyncio.sleep(0.05)
            await sql.execute(
                "UPDATE providers SET weight = CASE name WHEN 'a' THEN $1::int ELSE $2::int END",
                *weights,
            )
            version = await db_version(sql)
            waits = await asyncio.gather(*(wait_version(http, p, version) for p in proxies))
            latencies.extend(waits)
            for proxy in proxies:
                seen: Counter[str] = Counter()
                for _ in range(sum(weights)):
                    async with http.post(proxy + "/v1/chat/completions", json={"model": "m"}):
                        pass
                for name, app in (("a", apps[0]), ("b", apps[1])):
                    seen[name] = len(app[RECORDED])
                    app[RECORDED].clear()
                assert (seen["a"], seen["b"]) == weights
        latencies.sort()
        print(
            f"NOTIFY-to-effect latency over {len(latencies)} changes: "
            f"median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )
        # Disabling a provider removes it from routing everywhere.
        await sql.execute("UPDATE providers SET is_enabled = false WHERE name = 'b'")
        version = await db_version(sql)
        for proxy in proxies:
            await wait_version(http, proxy, version)
            async with http.get(proxy + "/health/detailed") as resp:
                assert [p["name"] for p in (await resp.json())["providers"]] == ["a"]


# Edits the database accepts and the proxy's rules refuse: rejected once, loudly, while the old
# config serves on; a later fix is taken as usual.
BAD_EDITS = [
    pytest.param(
        # require_auth comes from the settings, never from rows: a key beside
        # require_auth: false would never be checked.
        "INSERT INTO credentials (name, key) VALUES ('team-a', 'sk-team-a-secret')",
        r"^require_auth \(settings file or environment",
        "DELETE FROM credentials",
        id="key-without-auth",
    ),
    pytest.param(
        # jsonb keeps 1e999 as a number; Python's json reads it as inf.
        """UPDATE providers SET params = '{"request_timeout_secs": 1e999}'""",
        None,  # past validation, it fails compiling the snapshot: the listener's own guard
        """UPDATE providers SET params = '{}'""",
        id="infinite-timeout",
    ),
    pytest.param(
        # A regex that does not compile passes every database constraint.
        """UPDATE providers SET model_mapping = '{"bad-(*": "x"}'""",
        r"^providers\[0\]\.model_mapping\['bad-\(\*'\] \(table providers, row id=\d+ "
        r"\('alpha'\), column model_mapping\): invalid regular expression",
        """UPDATE providers SET model_mapping = '{"m": null, "fixed": null}'""",
        id="bad-regex",
    ),
]


@pytest.mark.parametrize(("edit", "error", "fix"), BAD_EDITS)
async def test_a_bad_edit_is_rejected_once_the_old_config_serves_a_fix_recovers(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    edit: str,
    error: str | None,
    fix: str,
) -> None:
    await add_provider(sql, "alpha", upstream.api_base, {"m": None})
    url = await start_db_proxy(start_proxy, config_dsn)
    good = await version_of(http, url)
    listener_pid = await wait_listener(sql)

    await sql.execute(edit)
    await rejected(http, url)
    # Real time: nothing is to happen (a crash loop would reconnect ~9 times a second).
    await asyncio.sleep(0.5)
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_config_reloads_total", result="error") == 1
    assert sample(families, "llm_proxy_config_version") == float(good)
    assert await version_of(http, url) == good
    assert await wait_listener(sql) == listener_pid  # the same connection: no reconnects
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as resp:
        assert resp.status == 200  # still serving the old config
    # /health/detailed says so: which version was refused, and that the listener is up.
    async with http.get(url + "/health/detailed") as resp:
        detail = await resp.json()
    assert detail["config_source"] == "database"
    database = detail["database"]
    assert database["listener_connected"] is True
    assert database["rejected_version"] == await db_version(sql)
    assert database["last_check_at"] > time.time() - 60
    assert "@" not in database["database"]  # never the DSN's credentials
    if error is not None:  # the same rows, read and validated directly: the error says where
        with pytest.raises(ConfigError, match=error):
            build_config(OPEN, await fetch(sql))

    await sql.execute(fix)
    await wait_version(http, url, await db_version(sql))
    assert await version_of(http, url) == await db_version(sql)
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as resp:
        assert resp.status == 200


async def test_burst_of_updates_is_coalesced(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await add_provider(sql, "alpha", upstream.api_base, {"m": None})
    url = await start_db_proxy(start_proxy, config_dsn)
    before = sample(await scrape(http, url), "llm_proxy_config_reloads_total", result="ok") or 0
    # 100 separate transactions, each a NOTIFY, in one round trip.
    burst = "".join(f"BEGIN; UPDATE providers SET weight = {w}; COMMIT;" for w in range(2, 102))
    started = time.monotonic()
    await sql.execute(burst)
    burst_secs = time.monotonic() - started
    await wait_version(http, url, await db_version(sql))
    families = await scrape(http, url)
    reloads = (sample(families, "llm_proxy_config_reloads_total", result="ok") or 0) - before
    # The listener's guarantee, whatever the load: reloads start at least the rate limit apart,
    # so those that saw a change are the ones started while the burst ran, plus the one in flight
    # when it began and the one that reads its end. (The rate limit is taken as 20 ms, not
    # 25, for timer rounding.) A listener that reloaded per NOTIFY would do about 100.
    bound = int(burst_secs / 0.020) + 3
    print(f"100 UPDATEs in {burst_secs * 1000:.0f} ms caused {reloads:g} reloads (at most {bound})")
    assert 1 <= reloads <= bound
    async with http.get(url + "/health/detailed") as resp:
        assert (await resp.json())["providers"][0]["weight"] == 101


async def test_listener_killed_while_requests_flow(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await add_provider(sql, "alpha", upstream.api_base, {"before": None})
    url = await start_db_proxy(start_proxy, config_dsn, check_interval_secs=60)
    results: Counter[int] = Counter()
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            async with http.post(url + "/v1/chat/completions", json={"model": "before"}) as r:
                results[r.status] += 1

    runner = asyncio.create_task(traffic())
    await eventually(lambda: results[200] > 0)
    # Kill the listener's backend and change the config in the same breath: the NOTIFY is
    # sent while nobody listens, so only the post-reconnect version check can catch it.
    killed = await sql.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database()",
        LISTENER_APP_NAME,
    )
    assert killed == 1
    await sql.execute("""UPDATE providers SET model_mapping = '{"before": null, "after": null}'""")
    await wait_version(http, url, await db_version(sql), timeout=10)
    async with http.post(url + "/v1/chat/completions", json={"model": "after"}) as r:
        assert r.status == 200
    stop.set()
    await runner
    assert set(results) == {200}, results
    assert results[200] > 10


async def test_streams_during_50_reloads(
    config_dsn: str, sql: asyncpg.Connection, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    async with serve(create_mock_app(MockOptions(delay_ms=2))) as mock:
        await add_provider(sql, "alpha", mock + "/v1", {"m": "upstream-0"})
        url = await start_db_proxy(start_proxy, config_dsn)

        async def stream(chunks: int) -> set[str]:
            body = {"model": "m", "stream": True, "mock_chunks": chunks}
            async with http.post(url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                raw = await resp.read()
            events = [e for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
            assert len(events) == chunks + 2  # role + content + finish; usage chunk stripped
            assert raw.endswith(b"data: [DONE]\n\n")
            return {orjson.loads(e[6:])["model"] for e in events}

        # Long streams span all 50 reloads; shorter ones start between reloads.
        streams = [asyncio.create_task(stream(2000)) for _ in range(10)]

        async def streaming() -> bool:  # (the /metrics request is active too)
            active = sample(await scrape(http, url), "llm_proxy_active_requests")
            return (active or 0) >= 11

        await eventually(streaming)
        for i in range(1, 51):
            mapping = orjson.dumps({"m": f"upstream-{i}"}).decode()
            await sql.execute("UPDATE providers SET model_mapping = $1::jsonb", mapping)
            await wait_version(http, url, await db_version(sql))  # one reload per edit
            if i % 5 == 0:
                streams.append(asyncio.create_task(stream(40)))
        assert not any(s.done() for s in streams[:10]), "long streams ended before the reloads"
        models = await asyncio.gather(*streams)
    # Every stream was served from one snapshot: one upstream model name throughout.
    assert all(len(m) == 1 for m in models)
    assert len({next(iter(m)) for m in models}) > 1  # and snapshots did change meanwhile
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_config_reloads_total", result="ok") == 50


# Startup when the database is down


async def test_startup_without_database(
    config_dsn: str, tmp_path: Path, unused_tcp_port: int, sql: asyncpg.Connection
) -> None:
    down = f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/nope"
    started = time.monotonic()
    with pytest.raises(StartupError) as exc:
        await initial_load(down, Config(), timeout_secs=0.5)
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{unused_tcp_port}/nope" in str(exc.value)
    assert "config_cache_path" in str(exc.value)

    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"cached-model": None})
    cache = tmp_path / "state" / "config-cache.json"
    base = Config(config_cache_path=str(cache))
    config, version = await initial_load(config_dsn, base)  # writes the cache
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    cached = read_cache(str(cache))
    assert cached is not None and cached.version == version

    config, cached_version = await initial_load(down, base, cache_grace_secs=0.3)
    assert cached_version == version
    assert [p.name for p in config.providers] == ["alpha"]
    assert config.providers[0].api_key == "sk-alpha-provider-key"


async def test_unmigrated_database_fails_clearly(pg_dsn: str) -> None:
    with pytest.raises(StartupError, match="migrate up"):
        await initial_load(pg_dsn, Config(), timeout_secs=1)


def test_wheel_contains_the_migrations_and_the_ui(tmp_path: Path) -> None:
    """`llm-proxy migrate` must find its SQL after `pip install`, not only in a checkout; and
    `/ui/` every file of the admin UI (one wheel built for both: it takes seconds)."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("llm_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("llm_proxy/config/sql/"))
    assert shipped == sorted(f"llm_proxy/config/sql/{p.name}" for p in migrate.SQL_DIR.iterdir())
    static = root / "llm_proxy" / "ui" / "static"
    assets = {f"llm_proxy/ui/static/{p.relative_to(static)}" for p in static.rglob("*.*")}
    assert len(assets) > 10 and assets <= set(names)
