"""`/admin/v1/routing`: the routing served in both modes (`GET`), replaced in database mode
(`PUT`: validated, one recorded change, read-your-writes; 409 in YAML mode), and the request
log's routing columns with the `fallback` and `rule` filters."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import aiohttp
import asyncpg

from llm_proxy.config import history
from llm_proxy.config.model import RequestLogSettings
from llm_proxy.config.routing import routing_data
from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.request_log import DatabaseLog
from tests.helpers import ProxyFactory, Upstream, eventually, make_config, provider
from tests.helpers.admin import ADMIN, SETTINGS, assert_error, call
from tests.helpers.db import OPEN, add_provider, db_version, start_db_proxy

ADMINISTERED = dataclasses.replace(OPEN, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
SECTION: dict[str, Any] = {
    "fallbacks": {"gpt-4o": ["gpt-4o-mini", "claude-sonnet"]},
    "retry": {"attempts": 3, "on": ["connect", "429"]},
    "strategy": {"default": "weighted", "claude-sonnet": "cost"},
    "models": {"gpt-4o": {"strategy": "latency", "context_window": 128000}},
    "rules": [
        {"name": "eu", "match": {"header": {"x-region": "eu"}}, "providers": ["anthropic"]},
        {"match": {"tags": ["batch"]}, "model": "gpt-4o-mini"},
    ],
}
MAPPINGS = {
    "openai": {"gpt-4o": None, "gpt-4o-mini": None},
    "anthropic": {"claude-sonnet": None},
}


async def db_proxy(
    config_dsn: str, sql: asyncpg.Connection, upstream: Upstream, start_proxy: ProxyFactory
) -> str:
    for name, mapping in MAPPINGS.items():
        await add_provider(sql, name, upstream.api_base, mapping)
    return await start_db_proxy(start_proxy, config_dsn, ADMINISTERED)


async def test_file_mode_reads_the_section_and_refuses_writes(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        *(provider(name, upstream.api_base, mapping) for name, mapping in MAPPINGS.items()),
        routing=SECTION,
        **SETTINGS,
    )
    url = await start_proxy(config)
    status, served = await call(http, "GET", url + "/admin/v1/routing")
    assert status == 200
    expected = {"source": "file", "writable": False, "version": 1}
    assert served == {**expected, "routing": routing_data(config.routing)}
    status, answer = await call(http, "PUT", url + "/admin/v1/routing", json=SECTION)
    assert status == 409
    assert_error(answer, "read_only_config")
    status, answer = await call(http, "GET", url + "/admin/v1/routing", headers={})
    assert status == 401


async def test_put_replaces_the_tables_and_answers_once_served(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    url = await db_proxy(config_dsn, sql, upstream, start_proxy)
    status, served = await call(http, "GET", url + "/admin/v1/routing")
    assert (status, served["source"], served["routing"]["rules"]) == (200, "file", [])
    assert served["writable"]  # database mode: the tables may be written, even empty

    status, written = await call(http, "PUT", url + "/admin/v1/routing", json=SECTION)
    assert status == 200, written
    version = int(await db_version(sql))
    assert (written["source"], written["version"], written["served"]) == ("database", version, True)
    _, served = await call(http, "GET", url + "/admin/v1/routing")
    assert served == {k: v for k, v in written.items() if k != "served"}
    assert served["routing"]["fallbacks"] == SECTION["fallbacks"]
    assert served["routing"]["models"]["claude-sonnet"]["strategy"] == "cost"
    # As rows an operator reads with psql: only what the section gave.
    rows = await sql.fetch("SELECT model, strategy, retry, context_window FROM routing_settings")
    assert {r["model"]: (r["strategy"], r["context_window"]) for r in rows} == {
        "*": ("weighted", None),
        "gpt-4o": ("latency", 128000),
        "claude-sonnet": ("cost", None),
    }
    rules = await sql.fetch("SELECT position, name FROM routing_rules ORDER BY position")
    assert [(r["position"], r["name"]) for r in rules] == [(10, "eu"), (20, None)]
    changes = await history.change(sql, version)
    assert {c.changed_by for c in changes} == {"admin:ops"}
    assert len(changes) == 6  # a fallback, three settings rows, two rules

    # What GET answers, sent back: nothing changes, no new version.
    status, again = await call(http, "PUT", url + "/admin/v1/routing", json=served["routing"])
    assert status == 200 and again["version"] == version == int(await db_version(sql))

    # One chain changed: one row updated, the rest left alone.
    edited = {**SECTION, "fallbacks": {"gpt-4o": ["claude-sonnet"]}}
    status, answer = await call(
        http, "PUT", url + "/admin/v1/routing", json=edited, headers={**ADMIN, "If-Match": "1"}
    )
    assert status == 412
    assert_error(answer, "precondition_failed")
    status, answer = await call(
        http,
        "PUT",
        url + "/admin/v1/routing",
        json=edited,
        headers={**ADMIN, "If-Match": str(version)},
    )
    assert status == 200 and answer["routing"]["fallbacks"] == {"gpt-4o": ["claude-sonnet"]}
    changed = await history.change(sql, answer["version"])
    assert [(c.table, c.operation, c.fields_changed()) for c in changed] == [
        ("model_fallbacks", "UPDATE", ["chain"])
    ]

    # An empty section empties the tables: the settings file's (none here) routes again.
    status, answer = await call(http, "PUT", url + "/admin/v1/routing", json={})
    assert status == 200 and answer["source"] == "file"
    assert answer["routing"]["fallbacks"] == {} and answer["routing"]["rules"] == []
    for table in ("model_fallbacks", "routing_rules", "routing_settings"):
        assert await sql.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_a_bad_section_is_400_naming_the_field_and_writes_nothing(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    url = await db_proxy(config_dsn, sql, upstream, start_proxy)
    version = await db_version(sql)
    for body, param, words in (
        ({"fallbacks": {"gpt-4o": ["gpt-5"]}}, "fallbacks['gpt-4o'][0]", "no provider serves"),
        (
            {"fallbacks": {"gpt-4o": ["gpt-4o-mini"], "gpt-4o-mini": ["gpt-4o"]}},
            "fallbacks['gpt-4o']",
            "loops back",
        ),
        ({"retry": {"backoff_ms": -1}}, "retry.backoff_ms", "zero or a positive number"),
        ({"strategy": "fastest"}, "strategy", "unknown strategy"),
        ({"rules": [{"match": {}, "providers": ["azure"]}]}, "rules[0].providers[0]", "azure"),
        ({"models": {"*": {"strategy": "cost"}}}, "models['*']", "every model"),
        ({"routes": {}}, "routes", "unknown key"),
        ({"fallbacks": {"gpt-4o\x00": ["gpt-4o-mini"]}}, "", "Invalid value"),
    ):
        status, answer = await call(http, "PUT", url + "/admin/v1/routing", json=body)
        assert status == 400, (body, answer)
        assert_error(answer, "invalid_value")
        assert answer["error"]["param"] == param, answer
        assert words in answer["error"]["message"], answer
    assert await db_version(sql) == version


def logged_request(
    ts: float, request_id: str, fallback_from: str | None, reason: str | None, rule: str | None
) -> RequestRecord:
    return RequestRecord(
        ts, request_id, "k", "curl", "POST", "/v1/chat/completions", "gpt-4o", "gpt-4o-mini",
        "openai", ["openai"], 200, 1.0, None, 1, 2, None, False, None,
        fallback_from=fallback_from, fallback_reason=reason, rule=rule,
    )  # fmt: skip


async def test_the_request_log_keeps_fallbacks_and_rules(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    url = await db_proxy(config_dsn, sql, upstream, start_proxy)
    sink = DatabaseLog(config_dsn, RequestLogSettings())
    await sink.start()
    now = time.time()
    for i, (fallback_from, reason, rule) in enumerate(
        [("gpt-4o", "context_window", None), (None, None, "eu"), (None, None, None)]
    ):
        sink.submit(logged_request(now + i, f"r{i}", fallback_from, reason, rule))
    await sink.close()
    logs = url + "/admin/v1/logs/requests"

    async def logged() -> bool:
        status, page = await call(http, "GET", logs)
        return status == 200 and len(page["data"]) == 3

    await eventually(logged, what="three requests logged")
    _, page = await call(http, "GET", logs + "?fallback=true")
    assert [(r["request_id"], r["fallback_from"], r["fallback_reason"]) for r in page["data"]] == [
        ("r0", "gpt-4o", "context_window")
    ]
    _, page = await call(http, "GET", logs + "?fallback=false")
    assert [r["request_id"] for r in page["data"]] == ["r2", "r1"]
    _, page = await call(http, "GET", logs + "?rule=eu")
    assert [(r["request_id"], r["rule"]) for r in page["data"]] == [("r1", "eu")]
    status, answer = await call(http, "GET", logs + "?fallback=yes")
    assert status == 400 and answer["error"]["param"] == "fallback"


def test_the_documented_history_tables_are_the_recorded_ones() -> None:
    from llm_proxy.admin.openapi import HISTORY_TABLES

    assert HISTORY_TABLES == history.TABLES
