"""The per-key settings `shared_objects` and `max_parallel_requests`, end to end: YAML, the
`credentials` columns (migration 007, history rows recorded before it included), the admin API,
export and import, rollback, check-config, down to the compiled `KeyEntry`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from ruamel.yaml import YAML
from structlog.testing import capture_logs

from llm_proxy.cli.check import summarize
from llm_proxy.config.database import load
from llm_proxy.config.export import export_yaml
from llm_proxy.config.history import rollback
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.migrate import SQL_DIR, migrate_up
from llm_proxy.config.validate import parse_config
from llm_proxy.config.yaml_file import apply_env_overrides
from llm_proxy.proxy.keyring import KeyRing
from tests.helpers import ProxyFactory
from tests.helpers.admin import KEYED, call
from tests.helpers.db import start_db_proxy

SECRET = "sk-account-wide-0123456789"


def _keys(entry: dict[str, Any]) -> dict[str, Any]:
    return {"providers": [], "master_keys": [{"name": "ops", "key": SECRET, **entry}]}


def test_yaml_reads_both_settings_and_defaults() -> None:
    config = parse_config(_keys({"shared_objects": True, "max_parallel_requests": 3}))
    (key,) = config.master_keys
    assert (key.shared_objects, key.max_parallel_requests) == (True, 3)
    (entry,) = KeyRing(config.master_keys, []).__iter__()
    assert (entry.shared_objects, entry.max_parallel_requests) == (True, 3)
    (plain,) = parse_config(_keys({})).master_keys
    assert (plain.shared_objects, plain.max_parallel_requests) == (False, None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"shared_objects": "yes"}, "master_keys[0].shared_objects: must be true or false"),
        ({"max_parallel_requests": 0}, "master_keys[0].max_parallel_requests: must be a positive"),
        (
            {"max_parallel_requests": 1.5},
            "master_keys[0].max_parallel_requests: must be a positive",
        ),
    ],
)
def test_yaml_refuses_bad_values_naming_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_keys(entry))
    assert message in str(info.value)
    assert SECRET not in str(info.value)


def test_export_and_check_config_show_them() -> None:
    config = parse_config(_keys({"shared_objects": True, "max_parallel_requests": 3}))
    text = export_yaml(config, version="1")
    exported = YAML(typ="safe").load(text)["master_keys"][0]
    assert exported["shared_objects"] is True and exported["max_parallel_requests"] == 3
    assert SECRET not in text
    # The export reads back as the same key.
    (again,) = parse_config(YAML(typ="safe").load(text)).master_keys
    assert (again.shared_objects, again.max_parallel_requests) == (True, 3)
    # A default key exports neither.
    plain = YAML(typ="safe").load(export_yaml(parse_config(_keys({})), version="1"))
    assert not {"shared_objects", "max_parallel_requests"} & set(plain["master_keys"][0])
    assert "ops (3 parallel; shared objects)" in summarize("c.yaml", config)


async def _served_key(dsn: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        config, _ = await load(conn, KEYED)
    finally:
        await conn.close()
    (entry,) = KeyRing(config.master_keys, []).__iter__()
    return entry


async def test_admin_api_round_trip_database_row_and_rollback(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, KEYED)
    admin = url + "/admin/v1/credentials"
    body = {"name": "ops", "key": SECRET, "shared_objects": True, "max_parallel_requests": 4}
    status, created = await call(http, "POST", admin, json=body)
    assert status == 201, created
    assert (created["shared_objects"], created["max_parallel_requests"]) == (True, 4)
    kid, first = created["id"], created["config_version"]
    sql = await asyncpg.connect(config_dsn)
    try:
        row = await sql.fetchrow(
            "SELECT shared_objects, max_parallel_requests FROM credentials WHERE id = $1", kid
        )
        assert tuple(row) == (True, 4)
        entry = await _served_key(config_dsn)
        assert (entry.shared_objects, entry.max_parallel_requests) == (True, 4)
        # PATCH, PUT (omitted: the defaults), and bad values named.
        status, patched = await call(
            http, "PATCH", f"{admin}/{kid}", json={"shared_objects": False}
        )
        assert (status, patched["shared_objects"], patched["max_parallel_requests"]) == (
            200,
            False,
            4,
        )
        status, put = await call(http, "PUT", f"{admin}/{kid}", json={"name": "ops"})
        assert (status, put["shared_objects"], put["max_parallel_requests"]) == (200, False, None)
        for bad in ({"shared_objects": "yes"}, {"max_parallel_requests": 0}):
            status, error = await call(http, "PATCH", f"{admin}/{kid}", json=bad)
            assert status == 400 and error["error"]["param"] == next(iter(bad)), error
        status, listed = await call(http, "GET", admin)
        assert listed["data"][0]["shared_objects"] is False
        # Rollback brings back both, as they were at the first version.
        await rollback(sql, first, "cli:test")
        row = await sql.fetchrow("SELECT shared_objects, max_parallel_requests FROM credentials")
        assert tuple(row) == (True, 4)
        history = await sql.fetchval(
            "SELECT after::text FROM config_history WHERE version = $1", first
        )
        assert SECRET not in history and '"shared_objects": true' in history
    finally:
        await sql.close()


async def test_history_from_before_the_migration_still_rolls_back(
    pg_dsn: str, tmp_path: Path
) -> None:
    older = tmp_path / "sql"
    older.mkdir()
    for path in SQL_DIR.glob("00[1-6]_*.sql"):
        shutil.copy(path, older / path.name)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate_up(conn, older)
        await conn.execute(f"INSERT INTO credentials (name, key) VALUES ('old', '{SECRET}')")
        before = await conn.fetchval("SELECT version FROM config_version")
        await migrate_up(conn)
        await conn.execute("UPDATE credentials SET shared_objects = true")
        await rollback(conn, int(before), "cli:test")
        assert await conn.fetchval("SELECT shared_objects FROM credentials") is False
    finally:
        await conn.close()


# Key strength: a minimum length, and a warning for weak keys at startup.


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (_keys({}) | {"master_keys": [{"name": "ops", "key": "sk-1234"}]}, "master_keys[0].key"),
        ({"admin_key": "sk-1234"}, "admin_key"),
        ({"admin_keys": {"ci": "sk-1234"}}, "admin_keys.ci"),
    ],
)
def test_keys_shorter_than_8_characters_are_refused_naming_the_field(
    data: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    text = str(info.value)
    assert f"{where}: must be at least 8 characters (it has 7)" in text
    assert "sk-1234" not in text


@pytest.mark.parametrize("variable", ["ADMIN_KEY", "ADMIN_KEYS"])
def test_short_admin_keys_from_the_environment_are_refused(variable: str) -> None:
    value = "a1" if variable == "ADMIN_KEY" else "ci:a1"
    with pytest.raises(ConfigError) as info:
        apply_env_overrides(parse_config({}), {variable: value})
    assert "must be at least 8 characters (it has 2)" in str(info.value)
    assert "a1" not in str(info.value).replace("at least", "")


async def test_weak_keys_are_warned_about_at_startup_by_name_only(
    start_proxy: ProxyFactory,
) -> None:
    config = parse_config(
        {
            "providers": [],
            "master_keys": [
                {"name": "repeated", "key": "abababababababababab"},
                {"name": "short", "key": "sk-team1"},
                {"name": "strong", "key": SECRET},
                {"name": "hashed", "key_sha256": "ab" * 32},
            ],
            "admin_keys": {"ops": "adm-ops-0123456789abcdef", "ci": "cicicicici"},
        }
    )
    with capture_logs() as logs:
        await start_proxy(config)
    (weak,) = [e for e in logs if e["event"] == "weak_keys"]
    assert weak["log_level"] == "warning"
    assert weak["keys"] == ["master_keys.repeated", "master_keys.short", "admin_keys.ci"]
    shown = str(logs)
    assert "abababab" not in shown and "sk-team1" not in shown and "cicicici" not in shown
    with capture_logs() as logs:
        await start_proxy(parse_config({"master_keys": [{"name": "strong", "key": SECRET}]}))
    assert not [e for e in logs if e["event"] == "weak_keys"]
