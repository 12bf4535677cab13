"""Key lifetimes and descriptions (issue 32): `expires_at` (refused from that second on, with
a 401 that says so), `metadata` (free JSON the admin API returns and routing rules match),
`created_by`, and each key's last use (this process's, and the database's `key_last_used`,
written by every proxy and at shutdown), end to end: YAML, the `credentials` columns
(migration 016, history rows recorded before it included), the admin API, export, check-config,
rollback."""

from __future__ import annotations

import datetime
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
import pytest
from ruamel.yaml import YAML

from llm_proxy.cli.check import summarize
from llm_proxy.config.export import export_yaml
from llm_proxy.config.history import rollback
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.key_usage import KeyUsageWriter
from llm_proxy.config.migrate import SQL_DIR, migrate_up
from llm_proxy.config.validate import parse_config
from llm_proxy.proxy.keyring import KeyRing, digest_key
from tests.helpers import ProxyFactory, Upstream, chat, eventually, make_config, provider, sdk
from tests.helpers.admin import KEYED, call
from tests.helpers.db import start_db_proxy

SECRET = "sk-lifetime-key-0123456789"
OTHER = "sk-other-key-0123456789ab"


def _keys(entry: dict[str, Any]) -> dict[str, Any]:
    return {"providers": [], "master_keys": [{"name": "dev", "key": SECRET, **entry}]}


def _utc(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def test_yaml_reads_expiry_metadata_and_author() -> None:
    config = parse_config(
        _keys(
            {
                "expires_at": "2027-01-31T12:00:00+02:00",
                "metadata": {"team": "search", "tier": 2, "tags": ["a", "b"]},
                "created_by": "alice",
            }
        )
    )
    (key,) = config.master_keys
    assert key.expires_at == _utc("2027-01-31T10:00:00+00:00")
    assert key.metadata == {"team": "search", "tier": 2, "tags": ["a", "b"]}
    assert key.created_by == "alice"
    # A date is its midnight, UTC; YAML's own (unquoted) timestamps are read too.
    (dated,) = parse_config(_keys({"expires_at": "2027-01-31"})).master_keys
    assert dated.expires_at == _utc("2027-01-31T00:00:00+00:00")
    loaded = YAML(typ="rt").load(
        f"master_keys:\n  - name: dev\n    key: {SECRET}\n"
        "    expires_at: 2027-01-31T00:00:00Z\n    metadata: {since: 2026-12-01}\n"
    )
    (typed,) = parse_config(loaded).master_keys
    assert typed.expires_at == _utc("2027-01-31T00:00:00+00:00")
    assert typed.metadata == {"since": "2026-12-01"}
    (plain,) = parse_config(_keys({})).master_keys
    assert (plain.expires_at, plain.metadata, plain.created_by) == (None, {}, None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"expires_at": "next week"}, "master_keys[0].expires_at: must be an ISO-8601"),
        ({"expires_at": "2027-01-31T00:00:00"}, "master_keys[0].expires_at: must say its time"),
        ({"expires_at": 1767225600}, "master_keys[0].expires_at: must be an ISO-8601"),
        ({"metadata": ["a"]}, "master_keys[0].metadata: must be a mapping"),
        ({"metadata": {"blob": "x" * 17000}}, "master_keys[0].metadata: is larger than 16 KiB"),
        ({"created_by": 3}, "master_keys[0].created_by: must be a string"),
    ],
)
def test_yaml_refuses_bad_values_naming_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_keys(entry))
    assert message in str(info.value)
    assert SECRET not in str(info.value)


def test_export_and_check_config_show_them() -> None:
    config = parse_config(
        _keys(
            {
                "expires_at": "2027-01-31T00:00:00Z",
                "metadata": {"team": "search"},
                "created_by": "alice",
            }
        )
    )
    text = export_yaml(config, version="1")
    exported = YAML(typ="safe").load(text)["master_keys"][0]
    assert exported["expires_at"] == "2027-01-31T00:00:00Z"
    assert exported["metadata"] == {"team": "search"} and exported["created_by"] == "alice"
    assert SECRET not in text
    (again,) = parse_config(YAML(typ="safe").load(text)).master_keys
    assert (again.expires_at, again.metadata, again.created_by) == (
        config.master_keys[0].expires_at,
        {"team": "search"},
        "alice",
    )
    plain = YAML(typ="safe").load(export_yaml(parse_config(_keys({})), version="1"))
    assert not {"expires_at", "metadata", "created_by"} & set(plain["master_keys"][0])
    assert "expires 2027-01-31T00:00:00Z" in summarize("c.yaml", config)
    expired = parse_config(_keys({"expires_at": "2020-01-01"}))
    assert "EXPIRED 2020-01-01T00:00:00Z" in summarize("c.yaml", expired)


async def test_an_expired_key_is_refused_at_the_exact_second(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    # The next whole second but one: requests before it pass, from it on they are refused.
    at = int(time.time()) + 2
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat()
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[
            {"name": "dev", "key": SECRET, "expires_at": moment},
            {"name": "ops", "key": OTHER},
        ],
    )
    url = await start_proxy(config)
    passed = 0
    while True:
        before = time.time()
        resp = await chat(http, url, key=SECRET)
        after = time.time()
        if resp.status != 200:
            break
        assert before < at, "a request after the expiry passed"
        passed += 1
    assert after >= at, "refused before its second"
    assert passed > 0
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["code"] == "expired_api_key"
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC)
    assert error["message"] == f"This API key expired at {stamp:%Y-%m-%dT%H:%M:%S}Z."

    # The official SDK reads it as an authentication error; the other key is untouched.
    async with sdk(url, SECRET) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        assert "expired" in str(info.value)
    assert (await chat(http, url, key=OTHER)).status == 200


async def test_routing_rules_match_the_keys_metadata(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None, "big": None}),
        master_keys=[
            {"name": "gold", "key": SECRET, "metadata": {"tier": "gold", "level": 3}},
            {"name": "free", "key": OTHER, "metadata": {"tier": "free", "level": "3"}},
        ],
        routing={
            "rules": [
                {"name": "gold-big", "match": {"key_metadata": {"tier": "gold"}}, "model": "big"},
                {
                    "name": "level",
                    "match": {"key_metadata": {"level": [3, 4]}, "model": "m"},
                    "model": "big",
                },
            ]
        },
    )
    url = await start_proxy(config)
    gold = await chat(http, url, key=SECRET)
    assert gold.status == 200 and gold.headers["x-llm-proxy-model"] == "big"
    # "3" (a string) is not 3: the free key matches no rule.
    free = await chat(http, url, key=OTHER)
    assert free.status == 200 and free.headers["x-llm-proxy-model"] == "m"
    assert json.loads(upstream.recorded[-1].body)["model"] == "m"
    with pytest.raises(ConfigError) as info:
        make_config(
            routing={"rules": [{"match": {"key_metadata": {"tier": {"a": 1}}}, "model": "m"}]}
        )
    assert "routing.rules[0].match.key_metadata.tier: must be a string, number" in str(info.value)


async def test_last_use_is_shown_by_the_admin_api_and_carried_across_reloads(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[{"name": "dev", "key": SECRET}, {"name": "ops", "key": OTHER}],
        admin_keys={"ops": "adm-ops-0123456789abcdef"},
    )
    url = await start_proxy(config)
    admin = url + "/admin/v1/credentials"
    _, listed = await call(http, "GET", admin)
    assert [k["last_used_at"] for k in listed["data"]] == [None, None]
    sent = time.time()
    assert (await chat(http, url, key=SECRET)).status == 200
    _, listed = await call(http, "GET", admin)
    dev, ops = listed["data"]
    assert ops["last_used_at"] is None
    assert abs(_utc(dev["last_used_at"]) - sent) < 5


async def test_database_mode_columns_admin_api_last_use_and_rollback(
    config_dsn: str,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, KEYED)
    admin = url + "/admin/v1/credentials"
    sql = await asyncpg.connect(config_dsn)
    try:
        await sql.execute(
            "INSERT INTO providers (name, api_base, model_mapping) "
            "VALUES ('a', $1, '{\"m\": null}')",
            upstream.api_base,
        )
        body = {
            "name": "dev",
            "key": SECRET,
            "expires_at": "2030-01-01T00:00:00+01:00",
            "metadata": {"team": "search"},
            "created_by": "ignored: shown only",
        }
        status, created = await call(http, "POST", admin, json=body)
        assert status == 201, created
        assert created["expires_at"] == "2029-12-31T23:00:00Z"
        assert created["metadata"] == {"team": "search"}
        assert created["created_by"] == "admin:ops"
        assert created["last_used_at"] is None
        kid, first = created["id"], created["config_version"]
        row = await sql.fetchrow(
            "SELECT expires_at, metadata::text, created_by FROM credentials WHERE id = $1", kid
        )
        assert row["expires_at"].timestamp() == _utc("2029-12-31T23:00:00+00:00")
        assert row["created_by"] == "admin:ops"
        # A psql insert is made by its role.
        await sql.execute(f"INSERT INTO credentials (name, key) VALUES ('psql', '{OTHER}')")
        assert (
            await sql.fetchval("SELECT created_by FROM credentials WHERE name = 'psql'")
            == "db:postgres"
        )
        # Bad values are a 400 naming the field; nothing changes.
        for bad, param in (
            ({"expires_at": "soon"}, "expires_at"),
            ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
            ({"metadata": ["x"]}, "metadata"),
            ({"metadata": {"x": "y" * 17000}}, "metadata"),
        ):
            status, error = await call(http, "PATCH", f"{admin}/{kid}", json=bad)
            assert status == 400 and error["error"]["param"] == param, error
        # The key works until it expires: set it in the past, and it is refused at once.
        await eventually(lambda: _answers(http, url, SECRET, 200))
        status, patched = await call(
            http, "PATCH", f"{admin}/{kid}", json={"expires_at": "2020-01-01T00:00:00Z"}
        )
        assert status == 200, patched
        await eventually(lambda: _answers(http, url, SECRET, 401))
        status, listed = await call(http, "GET", f"{admin}/{kid}")
        assert listed["last_used_at"] is not None  # this process saw it used
        # Rollback brings back the expiry and metadata as they were.
        await rollback(sql, first, "cli:test")
        row = await sql.fetchrow("SELECT expires_at, metadata::text FROM credentials")
        assert row["expires_at"].timestamp() == _utc("2029-12-31T23:00:00+00:00")
        assert row["metadata"] == '{"team": "search"}'
        history = await sql.fetchval(
            "SELECT after::text FROM config_history WHERE version = $1", first
        )
        assert SECRET not in history and '"team": "search"' in history
    finally:
        await sql.close()


async def _answers(http: aiohttp.ClientSession, url: str, key: str, status: int) -> bool:
    return (await chat(http, url, key=key)).status == status


async def test_the_usage_writer_keeps_the_latest_and_drops_gone_keys(config_dsn: str) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await sql.execute(f"INSERT INTO credentials (name, key) VALUES ('dev', '{SECRET}')")
        used: dict[bytes, float] = {}
        writer = KeyUsageWriter(config_dsn, lambda: used)
        await writer.flush()
        assert writer.flushes == 0  # nothing used: nothing written
        used[digest_key(SECRET)] = time.perf_counter()
        used[digest_key("sk-deleted-key-000000")] = time.perf_counter()
        await writer.flush()
        stored = await sql.fetch("SELECT key_hash, last_used_at FROM key_last_used")
        assert [bytes(r["key_hash"]) for r in stored] == [digest_key(SECRET)]
        assert abs(stored[0]["last_used_at"].timestamp() - time.time()) < 5
        # Another proxy wrote a later use: an earlier one never moves it back.
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        await sql.execute("UPDATE key_last_used SET last_used_at = $1", later)
        used[digest_key(SECRET)] = time.perf_counter()
        await writer.flush()
        assert await sql.fetchval("SELECT last_used_at FROM key_last_used") == later
        # Writing a use is no config change: no new version, no history.
        assert (
            await sql.fetchval(
                "SELECT count(*) FROM config_history WHERE table_name = 'credentials'"
            )
            == 1
        )
        # A database that cannot be reached: a warning, no exception, written later.
        dead = KeyUsageWriter("postgresql://postgres@127.0.0.1:9/x", lambda: used)
        await dead.flush()
        assert dead.flushes == 0
    finally:
        await sql.close()


async def test_history_from_before_the_migration_still_rolls_back(
    pg_dsn: str, tmp_path: Path
) -> None:
    older = tmp_path / "sql"
    older.mkdir()
    for path in SQL_DIR.glob("*.sql"):
        if int(path.name[:3]) < 16:  # (the later ones need 016's columns)
            shutil.copy(path, older / path.name)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate_up(conn, older)
        await conn.execute(f"INSERT INTO credentials (name, key) VALUES ('old', '{SECRET}')")
        before = await conn.fetchval("SELECT version FROM config_version")
        await migrate_up(conn)
        assert await conn.fetchval("SELECT created_by FROM credentials") is None
        await conn.execute("UPDATE credentials SET metadata = '{\"a\": 1}', expires_at = now()")
        await rollback(conn, int(before), "cli:test")
        row = await conn.fetchrow("SELECT metadata::text, expires_at FROM credentials")
        assert (row["metadata"], row["expires_at"]) == ("{}", None)
    finally:
        await conn.close()


def test_keyring_carries_last_uses_to_the_next_snapshot() -> None:
    config = parse_config(
        {"master_keys": [{"name": "dev", "key": SECRET}, {"name": "ops", "key": OTHER}]}
    )
    old = KeyRing(config.master_keys, [])
    old.authenticate(SECRET, time.perf_counter())
    old.authenticate(OTHER, time.perf_counter())
    kept = parse_config({"master_keys": [{"name": "dev", "key": SECRET}]})
    new = KeyRing(kept.master_keys, [])
    new.carry_usage(old)
    assert set(new.used) == {digest_key(SECRET)}
    seen = new.used_at(digest_key(SECRET))
    assert seen is not None and abs(seen - time.time()) < 5
    assert new.used_at(digest_key(OTHER)) is None
    # A request authenticated on the old ring after the swap (it was on its way): its use is
    # seen by the new one, not lost with the old snapshot.
    later = time.perf_counter()
    old.authenticate(SECRET, later)
    assert new.used[digest_key(SECRET)] == later
    # And so on, snapshot after snapshot: one dict.
    newer = KeyRing(kept.master_keys, [])
    newer.carry_usage(new)
    new.authenticate(SECRET, later + 1)
    assert newer.used[digest_key(SECRET)] == later + 1
