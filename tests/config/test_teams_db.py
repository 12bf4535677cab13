"""Teams in database mode (migration 017): rows written with psql reach a running proxy through
NOTIFY and their limits apply; a key whose models are not within its team's is refused naming
the row (and the YAML entry); a team with keys cannot be deleted; history and rollback restore
teams (renamed, deleted, swapped names); export -> import round trips them; check-config
summarizes them; the migration goes down and up."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from llm_proxy.app import DatabaseMode
from llm_proxy.cli import main
from llm_proxy.cli.check import summarize
from llm_proxy.config import history, migrate
from llm_proxy.config.database import initial_load, load_once
from llm_proxy.config.export import export_yaml, key_variable
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config
from llm_proxy.config.validate import parse_config
from tests.helpers import FakeClock, ProxyFactory, Upstream, chat
from tests.helpers.admin import ADMIN, KEYED
from tests.helpers.db import add_provider, db_version, wait_version

# The mock upstream reports 5 prompt and 5 completion tokens per call: at $100,000 per million
# tokens either way, every call costs exactly $1.
PRICING = '{"m": {"input_per_mtok": 100000, "output_per_mtok": 100000}}'
ONE = "sk-team-one-0123456789"
TWO = "sk-team-two-0123456789"
NOON = 1_749_902_400.0  # 2025-06-14T12:00:00Z
IN_SEARCH = f"INSERT INTO credentials (name, key, team) VALUES ('one', '{ONE}', 'search')"


async def priced_provider(sql: asyncpg.Connection, api_base: str) -> None:
    await add_provider(sql, "alpha", api_base, {"m": None, "other": None})
    await sql.execute(
        "UPDATE providers SET params = jsonb_build_object('pricing', $1::jsonb)", PRICING
    )


async def test_a_team_written_with_psql_is_served_and_its_budget_is_shared_by_its_keys(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await priced_provider(sql, upstream.api_base)
    await sql.execute(
        f"INSERT INTO credentials (name, key, max_budget_usd) VALUES ('one', '{ONE}', 10), "
        f"('two', '{TWO}', 10)"
    )
    # (a call without max_tokens holds 1 output token's price while it runs: $0.1)
    base = dataclasses.replace(KEYED, reserve_output_tokens=1)
    config, version = await initial_load(config_dsn, base, timeout_secs=5)
    url = await start_proxy(
        config, version=version, database=DatabaseMode(config_dsn, base), clock=FakeClock(NOON)
    )
    assert (await chat(http, url, key=ONE)).status == 200
    # The team and the keys' membership, in one psql transaction: one version, one NOTIFY.
    async with sql.transaction():
        await sql.execute(
            "INSERT INTO teams (name, max_budget_usd, budget_period, allowed_models) "
            "VALUES ('search', 3, 'daily', '{m}')"
        )
        await sql.execute("UPDATE credentials SET team = 'search'")
    await wait_version(http, url, await db_version(sql), ADMIN)
    # The team's models hold for its keys: `other` is served, but not to them.
    assert (await chat(http, url, "other", key=ONE)).status == 403
    # Two keys of the team spend its $3 together, each far under its own $10.
    statuses = [(await chat(http, url, key=key)).status for key in (ONE, TWO, ONE)]
    assert statuses == [200, 200, 200]
    refused = await chat(http, url, key=TWO)
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert error["code"] == "budget_exceeded" and "team 'search'" in error["message"]
    assert (await chat(http, url, key=ONE)).status == 429
    # Out of the team: only the key's own budget counts again.
    await sql.execute("UPDATE credentials SET team = NULL WHERE name = 'two'")
    await wait_version(http, url, await db_version(sql), ADMIN)
    assert (await chat(http, url, key=TWO)).status == 200
    assert (await chat(http, url, key=ONE)).status == 429


async def test_a_key_outside_its_teams_models_is_refused_naming_the_row(
    config_dsn: str, sql: asyncpg.Connection
) -> None:
    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None, "gpt-4o": None})
    await sql.execute("INSERT INTO teams (name, allowed_models) VALUES ('search', '{gpt-4o}')")
    await sql.execute(
        f"INSERT INTO credentials (name, key, team, allowed_models) "
        f"VALUES ('one', '{ONE}', 'search', '{{gpt-4o, m}}')"
    )
    key_id = await sql.fetchval("SELECT id FROM credentials")
    with pytest.raises(ConfigError) as exc:
        await load_once(config_dsn, KEYED)
    (issue,) = exc.value.issues
    assert f"table credentials, row id={key_id} ('one'), column allowed_models" in str(issue)
    assert "'m' is not within the models of its team 'search'" in str(issue)
    # A team row's own bad value names the teams row.
    await sql.execute("UPDATE credentials SET allowed_models = NULL")
    await sql.execute("UPDATE teams SET allowed_models = '{}'")
    team_id = await sql.fetchval("SELECT id FROM teams")
    with pytest.raises(ConfigError) as exc:
        await load_once(config_dsn, KEYED)
    assert f"table teams, row id={team_id} ('search'), column allowed_models" in str(exc.value)
    # A key without models of its own gets the team's.
    await sql.execute("UPDATE teams SET allowed_models = '{gpt-4o}'")
    config, _ = await load_once(config_dsn, KEYED)
    assert config.master_keys[0].allowed_models == ("gpt-4o",)
    assert [t.name for t in config.teams] == ["search"]


def test_in_yaml_a_key_outside_its_teams_models_names_the_entry() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            {
                "teams": [{"name": "search", "allowed_models": ["gpt-4o"]}],
                "master_keys": [
                    {"name": "free", "key": TWO},
                    {
                        "name": "one",
                        "key": ONE,
                        "team": "search",
                        "allowed_models": ["gpt-4o", "m"],
                    },
                ],
            }
        )
    (issue,) = exc.value.issues
    assert str(issue).startswith("master_keys[1].allowed_models[1]:")


async def test_the_database_keeps_teams_consistent(sql: asyncpg.Connection) -> None:
    await sql.execute("INSERT INTO teams (name) VALUES ('search')")
    await sql.execute(IN_SEARCH)
    # A team with keys cannot be deleted; a key cannot name a team that does not exist.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await sql.execute("DELETE FROM teams")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await sql.execute("UPDATE credentials SET team = 'nobody'")
    # A rename carries the keys along.
    await sql.execute("UPDATE teams SET name = 'find'")
    assert await sql.fetchval("SELECT team FROM credentials") == "find"
    for bad in (
        "name = ''",
        "rate_limit_rps = 0",
        "rate_limit_burst = 2",  # without a rate
        "tokens_per_minute = -1",
        "max_budget_usd = 'NaN'",
        "budget_period = 'daily'",  # without a budget
        "max_parallel_requests = 0",
        "metadata = '[1]'",
        f'metadata = \'{{"a": "{"x" * 17000}"}}\'',
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await sql.execute(f"UPDATE teams SET {bad}")


async def test_history_and_rollback_restore_teams(sql: asyncpg.Connection) -> None:
    await sql.execute("INSERT INTO teams (name, max_budget_usd) VALUES ('search', 5)")
    await sql.execute(IN_SEARCH)
    start = int(await db_version(sql))
    # Renamed and changed, a new team taking the old name and the key, then the first deleted.
    await sql.execute("UPDATE teams SET name = 'find', max_budget_usd = 7")
    await sql.execute("INSERT INTO teams (name, tokens_per_minute) VALUES ('search', 100)")
    await sql.execute("UPDATE credentials SET team = 'search'")
    await sql.execute("DELETE FROM teams WHERE name = 'find'")
    changes = await history.history(sql, table="teams", row_id=None, before_version=None, limit=50)
    assert [c.operation for c in changes] == ["DELETE", "INSERT", "UPDATE", "INSERT"]
    assert {c.table for c in changes} == {"teams"}
    done = await history.rollback(sql, start, "admin:ops")
    rows = await sql.fetch("SELECT id, name, max_budget_usd, tokens_per_minute FROM teams")
    assert [tuple(r) for r in rows] == [(1, "search", 5.0, None)]
    assert await sql.fetchval("SELECT team FROM credentials") == "search"
    assert done.version == int(await db_version(sql))
    # Back to before any team: the teams go, the key leaves its team.
    await history.rollback(sql, 1, "admin:ops", restore_revoked_keys=True)
    assert await sql.fetchval("SELECT count(*) FROM teams") == 0
    assert await sql.fetchval("SELECT count(*) FROM credentials") == 0
    # A rollback that cannot complete changes nothing (teams included).
    await sql.execute("INSERT INTO teams (name) VALUES ('x')")
    with pytest.raises(history.HistoryError):
        await history.rollback(sql, 10_000, "admin:ops")
    assert await sql.fetchval("SELECT name FROM teams") == "x"


async def test_history_from_before_the_migration_rolls_back_keys_to_no_team(
    pg_dsn: str, tmp_path: Path
) -> None:
    older = tmp_path / "sql"
    older.mkdir()
    for path in migrate.SQL_DIR.glob("*.sql"):
        if int(path.name[:3]) < 17:
            (older / path.name).write_text(path.read_text())
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate.migrate_up(conn, older)
        await conn.execute(f"INSERT INTO credentials (name, key) VALUES ('one', '{ONE}')")
        before = int(await db_version(conn))
        await migrate.migrate_up(conn)
        await conn.execute("INSERT INTO teams (name) VALUES ('search')")
        await conn.execute("UPDATE credentials SET team = 'search'")
        await history.rollback(conn, before, "cli:test")
        assert await conn.fetchval("SELECT team FROM credentials") is None
        assert await conn.fetchval("SELECT count(*) FROM teams") == 0
    finally:
        await conn.close()


async def test_export_and_import_round_trip_teams(
    config_dsn: str,
    other_config_dsn: str,
    sql: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None, "gpt-4o": None})
    await sql.execute(
        "INSERT INTO teams (name, allowed_models, rate_limit_rps, rate_limit_burst, "
        "tokens_per_minute, max_budget_usd, budget_period, max_parallel_requests, "
        "shared_objects, metadata) VALUES "
        "('search', '{gpt-4o, m}', 5, 10, 1000, 12.5, 'daily', 4, true, '{\"cost\": \"c-1\"}'), "
        "('empty', NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, '{}')"
    )
    await sql.execute(
        f"INSERT INTO credentials (name, key, team, allowed_models) VALUES "
        f"('one', '{ONE}', 'search', NULL), ('two', '{TWO}', 'search', '{{m}}')"
    )

    def run(*args: str) -> str:
        assert main(list(args)) == 0
        return capsys.readouterr().out

    text = await asyncio.to_thread(run, "export-config", "--db-url", config_dsn)
    assert "teams:\n- name: search\n  allowed_models:\n  - gpt-4o\n  - m\n" in text
    assert "  metadata:\n    cost: c-1\n" in text and "- name: empty\n" in text
    # A key with its team's models names none: it keeps following the team's.
    one = text[text.index("- name: one") : text.index("- name: two")]
    assert "team: search" in one and "allowed_models" not in one
    exported = tmp_path / "exported.yaml"
    exported.write_text(text)
    monkeypatch.setenv(key_variable("alpha"), "sk-alpha-provider-key")
    out = await asyncio.to_thread(run, "import-config", str(exported), "--db-url", other_config_dsn)
    assert out.strip() == "imported 1 providers and 2 master keys, 2 teams"
    again = await asyncio.to_thread(run, "export-config", "--db-url", other_config_dsn)
    assert again.splitlines()[1:] == text.splitlines()[1:]
    other = await asyncpg.connect(other_config_dsn)
    try:
        keys = await other.fetch("SELECT name, team, allowed_models FROM credentials ORDER BY id")
        assert [tuple(r) for r in keys] == [("one", "search", None), ("two", "search", ["m"])]
        # Imported again unchanged: no row changes, no new version.
        version = await db_version(other)
        await asyncio.to_thread(run, "import-config", str(exported), "--db-url", other_config_dsn)
        assert await db_version(other) == version
    finally:
        await other.close()
    # The effective configuration's export (the admin API's) holds them as well.
    config, version = await load_once(config_dsn, Config())
    assert export_yaml(config, version=version).splitlines()[1:] == text.splitlines()[1:]


def test_check_config_summarizes_teams() -> None:
    config = parse_config(
        {
            "teams": [
                {
                    "name": "search",
                    "allowed_models": ["gpt-4o"],
                    "rate_limit": {"requests_per_second": 5, "burst_size": 10},
                    "tokens_per_minute": 1000,
                    "max_budget_usd": 12.5,
                    "budget_period": "daily",
                    "max_parallel_requests": 4,
                    "shared_objects": True,
                },
                {"name": "empty"},
            ],
            "master_keys": [
                {"name": "one", "key": ONE, "team": "search"},
                {"name": "two", "key": TWO, "team": "search"},
            ],
        }
    )
    line = summarize("c.yaml", config).splitlines()[-1]
    assert line == (
        "teams (2): search (models gpt-4o; 5 rps, burst 10; 1000 tokens/min; $12.5 daily; "
        "4 parallel; shared objects; 2 keys), empty (0 keys)"
    )


async def test_the_migration_goes_down_and_up(sql: asyncpg.Connection) -> None:
    await sql.execute("INSERT INTO teams (name) VALUES ('search')")
    await sql.execute(IN_SEARCH)
    since = sum(1 for m in migrate.discover() if m.version >= 17)  # 017 and those after it
    reverted = await migrate.migrate_down(sql, since)
    assert reverted[-1].name == "teams"
    assert await sql.fetchval("SELECT to_regclass('teams')") is None
    assert await sql.fetchval("SELECT count(*) FROM config_history WHERE table_name = 'teams'") == 0
    before = int(await db_version(sql))
    assert (await migrate.migrate_up(sql))[0].name == "teams"
    assert await sql.fetchval("SELECT team FROM credentials") is None
    await sql.execute("INSERT INTO teams (name) VALUES ('search')")
    await sql.execute("UPDATE credentials SET team = 'search'")
    # A rollback across the migration: the key back as it was (its history lacks `team`).
    await history.rollback(sql, before, "cli:test")
    assert await sql.fetchval("SELECT team FROM credentials") is None
