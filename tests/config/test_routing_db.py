"""Routing in database mode against a real PostgreSQL (migration 014): the three tables load
into the same Routing as the equivalent YAML, a psql UPDATE reaches a running proxy through
NOTIFY, a bad row is refused with the old config serving and the error naming table, row and
column, the history records every change and a rollback restores the rows, and the cache
file carries them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from llm_proxy.config import history
from llm_proxy.config.database import build_config, fetch, read_cache, routing_note, write_cache
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.yaml_file import load_config_text
from tests.config.test_db import rejected
from tests.helpers import ProxyFactory, Upstream
from tests.helpers.admin import ADMIN, call
from tests.helpers.db import OPEN, add_provider, db_version, start_db_proxy, wait_version

# Database mode without client authentication, with the `ops` admin key of tests.helpers.admin.
ADMINISTERED = dataclasses.replace(OPEN, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))

ROUTING_YAML = """\
routing:
  fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}
  context_window_fallbacks: {gpt-4o-mini: [gpt-4.1]}
  retry: {attempts: 3, on: [connect, "429"], backoff_ms: 100}
  deadline_secs: 60
  strategy: weighted
  models:
    gpt-4o: {strategy: latency, retry: {attempts: 5}, context_window: 128000}
    "claude-*": {strategy: cost}
  rules:
    - name: eu
      match: {key: [eu-*], header: {x-region: eu}}
      providers: [anthropic]
    - match: {tags: [batch]}
      model: gpt-4o-mini
"""
# The same section as rows, written as an operator would with psql.
ROUTING_ROWS = [
    """INSERT INTO model_fallbacks (model, reason, chain) VALUES
       ('gpt-4o', 'any', '{gpt-4o-mini,claude-sonnet}'),
       ('gpt-4o-mini', 'context_window', '{gpt-4.1}')""",
    """INSERT INTO routing_settings (model, strategy, retry, deadline_secs) VALUES
       ('*', 'weighted', '{"attempts": 3, "on": ["connect", "429"], "backoff_ms": 100}', 60)""",
    """INSERT INTO routing_settings (model, strategy, retry, context_window) VALUES
       ('gpt-4o', 'latency', '{"attempts": 5}', 128000)""",
    "INSERT INTO routing_settings (model, strategy) VALUES ('claude-*', 'cost')",
    """INSERT INTO routing_rules (position, name, match, providers) VALUES
       (10, 'eu', '{"key": ["eu-*"], "header": {"x-region": "eu"}}', '{anthropic}')""",
    """INSERT INTO routing_rules (position, match, model, is_enabled) VALUES
       (15, '{}', 'nowhere', false)""",  # disabled: not read (its model would be refused)
    """INSERT INTO routing_rules (position, match, model) VALUES
       (20, '{"tags": ["batch"]}', 'gpt-4o-mini')""",
]
MAPPINGS = {
    "openai": {"gpt-4o": None, "gpt-4o-mini": None, "gpt-4.1*": None},
    "anthropic": {"claude-sonnet": None},
}


def yaml_providers(api_base: str) -> str:
    return "providers:\n" + "".join(
        f"  - {{name: {name}, api_base: '{api_base}', model_mapping: "
        f"{{{', '.join(repr(m) + ': null' for m in mapping)}}}}}\n"
        for name, mapping in MAPPINGS.items()
    )


async def seed_routing(sql: asyncpg.Connection, api_base: str = "http://127.0.0.1:9/v1") -> None:
    """The providers of MAPPINGS and the routing rows of ROUTING_ROWS, as with psql."""
    for name, mapping in MAPPINGS.items():
        await add_provider(sql, name, api_base, mapping)
    async with sql.transaction():
        for statement in ROUTING_ROWS:
            await sql.execute(statement)


async def test_rows_load_into_the_same_routing_as_the_yaml(sql: asyncpg.Connection) -> None:
    await seed_routing(sql)
    from_yaml = load_config_text(yaml_providers("http://127.0.0.1:9/v1") + ROUTING_YAML, {})
    fetched = await fetch(sql)
    config = build_config(OPEN, fetched)
    assert config.routing == from_yaml.routing
    assert config.routing_from_rows and not from_yaml.routing_from_rows
    assert [r.name for r in config.routing.rules] == ["eu", "rules[1]"]
    assert routing_note(OPEN, fetched) is None
    # A settings file with its own section: the rows route, and startup says so.
    settings = dataclasses.replace(OPEN, routing=from_yaml.routing)
    note = routing_note(settings, fetched)
    assert note is not None and "ignored" in note
    # Empty tables: the settings file's section routes.
    async with sql.transaction():
        for table in ("model_fallbacks", "routing_rules", "routing_settings"):
            await sql.execute(f"DELETE FROM {table}")
    emptied = await fetch(sql)
    assert not emptied.has_routing and routing_note(settings, emptied) is None
    assert build_config(settings, emptied).routing == from_yaml.routing
    assert not build_config(OPEN, emptied).routing.configured


async def test_the_cache_file_carries_the_routing_rows(
    sql: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed_routing(sql)
    fetched = await fetch(sql)
    write_cache(str(tmp_path / "cache.json"), fetched)
    cached = read_cache(str(tmp_path / "cache.json"))
    assert cached is not None and cached.has_routing
    assert build_config(OPEN, cached).routing == build_config(OPEN, fetched).routing


BAD_ROWS = [
    pytest.param(
        "INSERT INTO model_fallbacks (model, chain) VALUES ('gpt-4o-mini', '{gpt-4o}')",
        r"routing\.fallbacks\['gpt-4o'\] \(table model_fallbacks, row id=\d+ \(gpt-4o, any\), "
        r"column chain\): loops back: gpt-4o -> gpt-4o-mini -> gpt-4o",
        id="cycle",
    ),
    pytest.param(
        "UPDATE model_fallbacks SET chain = '{gpt-4o-mini,gpt-5}' WHERE model = 'gpt-4o'",
        r"routing\.fallbacks\['gpt-4o'\]\[1\] \(table model_fallbacks, row id=\d+ "
        r"\(gpt-4o, any\), column chain\): names 'gpt-5', which no provider serves",
        id="unknown-model",
    ),
    pytest.param(
        "UPDATE routing_rules SET providers = '{azure-eu}' WHERE name = 'eu'",
        r"routing\.rules\[0\]\.providers\[0\] \(table routing_rules, row position=10 "
        r"\('eu'\), column providers\): names no provider: 'azure-eu'",
        id="unknown-provider",
    ),
    pytest.param(
        """UPDATE routing_settings SET retry = '{"backoff_ms": -1}' WHERE model = 'gpt-4o'""",
        r"routing\.models\['gpt-4o'\]\.retry\.backoff_ms \(table routing_settings, "
        r"row id=\d+ \(gpt-4o\), column retry\)",
        id="negative-backoff",
    ),
    pytest.param(
        """UPDATE routing_settings SET retry = '{"attempts": 0}' WHERE model = '*'""",
        r"routing\.retry\.attempts \(table routing_settings, row id=\d+ \(\*\), column retry\)",
        id="defaults-row",
    ),
]


@pytest.mark.parametrize(("edit", "error"), BAD_ROWS)
async def test_a_bad_row_is_refused_and_the_old_routing_keeps_serving(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    edit: str,
    error: str,
) -> None:
    await seed_routing(sql, upstream.api_base)
    url = await start_db_proxy(start_proxy, config_dsn, ADMINISTERED)
    status, before = await call(http, "GET", url + "/admin/v1/routing")
    assert status == 200 and before["source"] == "database"

    await sql.execute(edit)
    await rejected(http, url)
    status, after = await call(http, "GET", url + "/admin/v1/routing")
    assert after == before  # the old routing, at the old version
    with pytest.raises(ConfigError, match=error):
        build_config(OPEN, await fetch(sql))


async def test_a_psql_update_reaches_a_running_proxy(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await seed_routing(sql, upstream.api_base)
    url = await start_db_proxy(start_proxy, config_dsn, ADMINISTERED)
    # At 3 a.m.: gpt-4o is down, send it to claude-sonnet first. One plain UPDATE.
    await sql.execute(
        "UPDATE model_fallbacks SET chain = '{claude-sonnet,gpt-4o-mini}' "
        "WHERE model = 'gpt-4o' AND reason = 'any'"
    )
    await wait_version(http, url, await db_version(sql), ADMIN)
    status, served = await call(http, "GET", url + "/admin/v1/routing")
    assert status == 200
    assert served["version"] == int(await db_version(sql))
    assert served["routing"]["fallbacks"] == {"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}
    # Renumbering the rules in one statement (position is unique, but deferrable).
    await sql.execute("UPDATE routing_rules SET position = position + 10")
    await sql.execute("UPDATE routing_rules SET is_enabled = false WHERE name = 'eu'")
    await wait_version(http, url, await db_version(sql), ADMIN)
    _, served = await call(http, "GET", url + "/admin/v1/routing")
    assert [r["name"] for r in served["routing"]["rules"]] == ["rules[0]"]


async def test_history_records_routing_rows_and_rollback_restores_them(
    sql: asyncpg.Connection,
) -> None:
    await seed_routing(sql)
    good = int(await db_version(sql))
    await sql.execute("UPDATE model_fallbacks SET chain = '{claude-sonnet}' WHERE model = 'gpt-4o'")
    await sql.execute("DELETE FROM routing_rules WHERE name = 'eu'")
    await sql.execute("INSERT INTO routing_settings (model, strategy) VALUES ('gpt-4.1', 'cost')")
    await sql.execute("TRUNCATE routing_settings")
    changes = await history.history(sql, limit=4)
    assert [(c.table, c.operation, c.name) for c in changes if c.table != "routing_settings"] == [
        ("routing_rules", "DELETE", "eu"),
        ("model_fallbacks", "UPDATE", "gpt-4o (any)"),
    ]
    assert changes[-1].fields_changed() == ["chain"] and {c.changed_by for c in changes} == {
        "db:postgres"
    }
    truncated = await history.change(sql, int(await db_version(sql)))
    assert {c.name for c in truncated} == {"*", "gpt-4o", "claude-*", "gpt-4.1"}
    assert await history.history(sql, table="routing_settings", limit=1)

    done = await history.rollback(sql, good, "cli:test")
    assert done.version == int(await db_version(sql))
    assert (
        build_config(OPEN, await fetch(sql)).routing
        == load_config_text(yaml_providers("http://127.0.0.1:9/v1") + ROUTING_YAML, {}).routing
    )
    # Back before any routing row: the tables are emptied.
    first, _ = await history.bounds(sql)
    await history.rollback(sql, first, "cli:test")
    for table in ("model_fallbacks", "routing_rules", "routing_settings"):
        assert await sql.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_the_tables_refuse_what_cannot_be_routing(sql: asyncpg.Connection) -> None:
    for statement in (
        "INSERT INTO model_fallbacks (model, reason, chain) VALUES ('m', 'sometimes', '{a}')",
        "INSERT INTO model_fallbacks (model, chain) VALUES ('m', '{}')",
        "INSERT INTO routing_rules (position, match) VALUES (1, '{}')",  # goes nowhere
        "INSERT INTO routing_rules (position, match, model) VALUES (1, '[]', 'm')",
        "INSERT INTO routing_settings (model, strategy) VALUES ('m', 'fastest')",
        "INSERT INTO routing_settings (model, context_window) VALUES ('*', 1000)",
        "INSERT INTO routing_settings (model, deadline_secs) VALUES ('m', 0)",
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await sql.execute(statement)
