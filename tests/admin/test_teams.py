"""Teams through the admin API (`/admin/v1/teams`), against a real PostgreSQL and running
proxies: create/read/update/delete (bad values are 400s naming the field and write nothing),
membership by `PATCH /credentials/{id} {"team": ...}` and by `/teams/{id}/members`, a key's
models within its team's, a team with keys refused deletion (409), the team's usage (its
budget's spend as this instance's limiter counts it), the config history and rollback, and
YAML mode's answers from the file."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import asyncpg

from llm_proxy.app import DatabaseMode
from llm_proxy.config.database import initial_load
from llm_proxy.config.model import Config
from tests.helpers import FakeClock, ProxyFactory, Upstream, chat, make_config, provider
from tests.helpers.admin import KEYED, assert_error, call
from tests.helpers.db import add_provider

ONE = "sk-team-one-0123456789"
TWO = "sk-team-two-0123456789"
PRICING = '{"m": {"input_per_mtok": 100000, "output_per_mtok": 100000}}'  # $1 a call
NOON = 1_749_902_400.0  # 2025-06-14T12:00:00Z
# (a call without max_tokens holds 1 output token's price while it runs)
BASE = dataclasses.replace(KEYED, reserve_output_tokens=1)


async def start(start_proxy: ProxyFactory, dsn: str, base: Config = BASE) -> str:
    config, version = await initial_load(dsn, base, timeout_secs=5)
    return await start_proxy(
        config, version=version, database=DatabaseMode(dsn, base), clock=FakeClock(NOON)
    )


async def priced(dsn: str, api_base: str) -> None:
    sql = await asyncpg.connect(dsn)
    try:
        await add_provider(sql, "alpha", api_base, {"m": None, "gpt-4o": None})
        await sql.execute(
            "UPDATE providers SET params = jsonb_build_object('pricing', $1::jsonb)", PRICING
        )
    finally:
        await sql.close()


async def test_team_lifecycle_and_bad_values(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    await priced(config_dsn, upstream.api_base)
    url = await start(start_proxy, config_dsn)
    teams = url + "/admin/v1/teams"
    new = {
        "name": "search",
        "allowed_models": ["gpt-4o", "m"],
        "rate_limit_rps": 5,
        "rate_limit_burst": 10,
        "tokens_per_minute": 10_000,
        "max_budget_usd": 25,
        "budget_period": "daily",
        "max_parallel_requests": 4,
        "shared_objects": True,
        "metadata": {"cost_center": "c-42"},
    }
    status, created = await call(http, "POST", teams, json=new)
    assert status == 201, created
    assert {k: created[k] for k in new} == new
    assert created["members"] == 0 and created["config_version"] >= 1
    assert {"id", "created_at", "updated_at"} <= created.keys()
    tid = created["id"]
    status, listed = await call(http, "GET", teams)
    assert status == 200 and listed["source"] == "database"
    assert [(t["name"], t["members"]) for t in listed["data"]] == [("search", 0)]
    status, config = await call(http, "GET", url + "/admin/v1/config")
    assert config["teams"][0]["name"] == "search" and "teams" not in config["settings"]
    # A duplicate name is a 409; bad values are 400s naming the field, and change nothing.
    status, answer = await call(http, "POST", teams, json={"name": "search"})
    assert status == 409
    assert_error(answer, "duplicate_name")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
        ({"allowed_models": "gpt-4o"}, "allowed_models"),
        ({"allowed_models": [1]}, "allowed_models"),
        ({"allowed_models": []}, "allowed_models"),
        ({"rate_limit_rps": 0}, "rate_limit_rps"),
        ({"rate_limit_rps": None}, "rate_limit_burst"),  # a burst left without a rate
        ({"tokens_per_minute": -1}, "tokens_per_minute"),
        ({"tokens_per_minute": 2**40}, "tokens_per_minute"),
        ({"max_budget_usd": "5"}, "max_budget_usd"),
        ({"max_budget_usd": 1e10}, "max_budget_usd"),
        ({"budget_period": "weekly"}, "budget_period"),
        ({"max_budget_usd": None}, "budget_period"),  # daily left without a budget
        ({"max_parallel_requests": 0}, "max_parallel_requests"),
        ({"shared_objects": "yes"}, "shared_objects"),
        ({"metadata": [1]}, "metadata"),
        ({"metadata": {"a": "x" * 17_000}}, "metadata"),
        ({"enabled": False}, "enabled"),  # a team has no such field
    ]
    for body, field in bad:
        status, answer = await call(http, "PATCH", f"{teams}/{tid}", json=body)
        assert (status, answer["error"]["param"]) == (400, field), (body, answer)
    status, row = await call(http, "GET", f"{teams}/{tid}")
    assert {k: row[k] for k in new} == new
    status, answer = await call(http, "POST", teams, json={"rate_limit_rps": 1})
    assert (status, answer["error"]["param"]) == (400, "name")
    # PATCH one field; PUT: the omitted ones back to their defaults (a row read back is taken).
    status, patched = await call(http, "PATCH", f"{teams}/{tid}", json={"max_budget_usd": 30})
    assert (status, patched["max_budget_usd"], patched["budget_period"]) == (200, 30, "daily")
    status, replaced = await call(http, "PUT", f"{teams}/{tid}", json={**patched, "name": "find"})
    assert status == 200 and replaced["name"] == "find" and replaced["max_budget_usd"] == 30
    status, replaced = await call(http, "PUT", f"{teams}/{tid}", json={"name": "find"})
    assert status == 200 and replaced["allowed_models"] is None
    assert (replaced["max_budget_usd"], replaced["metadata"], replaced["shared_objects"]) == (
        None,
        {},
        False,
    )
    status, answer = await call(http, "PUT", f"{teams}/{tid}", json={"rate_limit_rps": 1})
    assert (status, answer["error"]["param"]) == (400, "name")
    # Deleted; then 404.
    status, gone = await call(http, "DELETE", f"{teams}/{tid}")
    assert (status, gone["deleted"]) == (200, True)
    for method in ("GET", "DELETE"):
        status, answer = await call(http, method, f"{teams}/{tid}")
        assert status == 404
        assert_error(answer, "not_found")
    # Every write is in the history (`?table=teams`) as this admin key's change.
    status, hist = await call(http, "GET", url + "/admin/v1/config/history?table=teams")
    assert status == 200 and {c["changed_by"] for c in hist["data"]} == {"admin:ops"}
    assert [c["operation"] for c in hist["data"]] == [
        "DELETE",
        "UPDATE",
        "UPDATE",
        "UPDATE",
        "INSERT",
    ]


async def test_members_models_deletion_and_usage(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    await priced(config_dsn, upstream.api_base)
    url = await start(start_proxy, config_dsn)
    admin = url + "/admin/v1"
    status, team = await call(
        http,
        "POST",
        admin + "/teams",
        json={"name": "search", "allowed_models": ["m"], "max_budget_usd": 3},
    )
    assert status == 201, team
    tid = team["id"]
    status, one = await call(http, "POST", admin + "/credentials", json={"name": "one", "key": ONE})
    status, two = await call(
        http,
        "POST",
        admin + "/credentials",
        json={"name": "two", "key": TWO, "allowed_models": ["gpt-4o"], "max_budget_usd": 10},
    )
    assert status == 201 and one["team"] is None
    # By the key's row: a team that does not exist is a 400 naming `team`.
    status, answer = await call(
        http, "PATCH", f"{admin}/credentials/{one['id']}", json={"team": "nobody"}
    )
    assert (status, answer["error"]["param"]) == (400, "team")
    status, joined = await call(
        http, "PATCH", f"{admin}/credentials/{one['id']}", json={"team": "search"}
    )
    assert (status, joined["team"]) == (200, "search")
    # A key whose models are outside the team's: a 400 naming allowed_models, nothing written.
    status, answer = await call(http, "POST", f"{admin}/teams/{tid}/members", json={"key": "two"})
    assert (status, answer["error"]["param"]) == (400, "allowed_models"), answer
    assert "not within the models of its team 'search'" in answer["error"]["message"]
    status, _ = await call(
        http,
        "PATCH",
        f"{admin}/credentials/{two['id']}",
        json={"allowed_models": None},
    )
    assert status == 200
    # By the team's members: add by name (404 for no such key or team), list, remove.
    status, answer = await call(http, "POST", f"{admin}/teams/{tid}/members", json={"key": "x"})
    assert status == 404 and answer["error"]["param"] == "key"
    status, answer = await call(http, "POST", f"{admin}/teams/999/members", json={"key": "two"})
    assert status == 404
    status, answer = await call(http, "POST", f"{admin}/teams/{tid}/members", json={"name": "two"})
    assert (status, answer["error"]["param"]) == (400, "key")
    status, added = await call(http, "POST", f"{admin}/teams/{tid}/members", json={"key": "two"})
    assert status == 201 and (added["name"], added["team"]) == ("two", "search")
    assert added["config_version"] >= 1
    status, members = await call(http, "GET", f"{admin}/teams/{tid}/members")
    assert status == 200 and [m["name"] for m in members["data"]] == ["one", "two"]
    assert set(members["data"][0]) == {"id", "name", "enabled", "key_prefix"}
    assert members["data"][0]["key_prefix"] == ONE[:6] + "..."
    status, shown = await call(http, "GET", f"{admin}/teams/{tid}")
    assert shown["members"] == 2
    # The served config: the key's models are its team's; the team's budget spent by both.
    assert (await chat(http, url, "gpt-4o", key=TWO)).status == 403
    assert [(await chat(http, url, key=k)).status for k in (ONE, TWO, ONE, TWO)] == [
        200,
        200,
        200,
        429,
    ]
    status, used = await call(http, "GET", f"{admin}/teams/{tid}/usage")
    assert status == 200, used
    assert (used["name"], used["max_budget_usd"], used["budget_period"]) == ("search", 3, "monthly")
    assert (used["spent_usd"], used["remaining_usd"]) == (3, 0)
    assert used["resets_at"] == "2025-07-01T00:00:00Z"
    keys = {k["name"]: k for k in used["keys"]}
    assert keys["one"]["spent_usd"] is None  # no budget of its own
    assert (keys["two"]["spent_usd"], keys["two"]["remaining_usd"]) == (1, 9)
    # Narrowing the team's models below a key's own: a 400 naming allowed_models.
    await call(http, "PATCH", f"{admin}/credentials/{one['id']}", json={"allowed_models": ["m"]})
    status, answer = await call(
        http, "PATCH", f"{admin}/teams/{tid}", json={"allowed_models": ["gpt-4o"]}
    )
    assert (status, answer["error"]["param"]) == (400, "allowed_models"), answer
    assert "table credentials" in answer["error"]["message"]
    # A team with keys cannot be deleted.
    status, answer = await call(http, "DELETE", f"{admin}/teams/{tid}")
    assert status == 409
    assert_error(answer, "team_has_members")
    # Renamed: its keys follow it.
    status, renamed = await call(http, "PATCH", f"{admin}/teams/{tid}", json={"name": "find"})
    assert (status, renamed["members"]) == (200, 2)
    status, key = await call(http, "GET", f"{admin}/credentials/{one['id']}")
    assert key["team"] == "find"
    # Removed (404 for a key not in it); then the team is deleted.
    status, left = await call(http, "DELETE", f"{admin}/teams/{tid}/members/{one['id']}")
    assert (status, left["team"]) == (200, None)
    status, answer = await call(http, "DELETE", f"{admin}/teams/{tid}/members/{one['id']}")
    assert status == 404
    status, _ = await call(http, "PATCH", f"{admin}/credentials/{two['id']}", json={"team": None})
    assert status == 200
    status, gone = await call(http, "DELETE", f"{admin}/teams/{tid}")
    assert status == 200 and gone["deleted"] is True
    assert (await chat(http, url, "gpt-4o", key=TWO)).status == 200


async def test_a_rollback_through_the_api_restores_a_team(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    await priced(config_dsn, upstream.api_base)
    url = await start(start_proxy, config_dsn)
    admin = url + "/admin/v1"
    status, team = await call(
        http, "POST", admin + "/teams", json={"name": "search", "max_budget_usd": 2}
    )
    status, key = await call(
        http, "POST", admin + "/credentials", json={"name": "one", "key": ONE, "team": "search"}
    )
    assert status == 201 and key["team"] == "search"
    version = key["config_version"]
    await call(http, "PATCH", f"{admin}/credentials/{key['id']}", json={"team": None})
    status, _ = await call(http, "DELETE", f"{admin}/teams/{team['id']}")
    assert status == 200
    status, back = await call(http, "POST", admin + "/config/rollback", json={"version": version})
    assert status == 200 and back["served"] is True, back
    status, restored = await call(http, "GET", f"{admin}/teams/{team['id']}")
    assert status == 200 and (restored["name"], restored["max_budget_usd"]) == ("search", 2)
    assert restored["members"] == 1
    assert [(await chat(http, url, key=ONE)).status for _ in range(3)] == [200, 200, 429]


async def test_yaml_mode_answers_from_the_file_and_refuses_writes(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("alpha", upstream.api_base, {"m": None}),
        teams=[{"name": "search", "max_budget_usd": 5, "rate_limit": {"requests_per_second": 2}}],
        master_keys=[
            {"name": "free", "key": TWO},
            {"name": "one", "key": ONE, "team": "search"},
        ],
        admin_keys={"ops": "adm-ops-0123456789abcdef"},
        pricing={"m": {"input_per_mtok": 100_000, "output_per_mtok": 100_000}},
        reserve_output_tokens=1,
    )
    url = await start_proxy(config)
    admin = url + "/admin/v1"
    status, listed = await call(http, "GET", admin + "/teams")
    assert status == 200 and listed["source"] == "file"
    (team,) = listed["data"]
    assert (team["id"], team["name"], team["members"]) == (1, "search", 1)
    status, one = await call(http, "GET", admin + "/teams/1")
    assert one == team and "keys" not in one
    assert (team["rate_limit_rps"], team["rate_limit_burst"], team["budget_period"]) == (
        2,
        2,
        "monthly",
    )
    status, members = await call(http, "GET", admin + "/teams/1/members")
    assert members["data"] == [{"id": 2, "name": "one", "enabled": True, "key_prefix": None}]
    status, key = await call(http, "GET", admin + "/credentials/2")
    assert key["team"] == "search"
    assert (await chat(http, url, key=ONE)).status == 200
    status, used = await call(http, "GET", admin + "/teams/1/usage")
    assert (used["spent_usd"], used["remaining_usd"]) == (1, 4)
    status, answer = await call(http, "GET", admin + "/teams/2")
    assert status == 404
    for method, path, body in (
        ("POST", "/teams", {"name": "x"}),
        ("PATCH", "/teams/1", {"max_budget_usd": 2}),
        ("PUT", "/teams/1", {"name": "search"}),
        ("DELETE", "/teams/1", None),
        ("POST", "/teams/1/members", {"key": "free"}),
        ("DELETE", "/teams/1/members/2", None),
    ):
        status, answer = await call(http, method, admin + path, json=body)
        assert status == 409, (method, path, answer)
        assert_error(answer, "read_only_config")


async def test_a_psql_team_reaches_the_api(
    config_dsn: str, sql: asyncpg.Connection, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    await sql.execute("INSERT INTO teams (name, metadata) VALUES ('search', '{\"a\": 1}')")
    await sql.execute(
        f"INSERT INTO credentials (name, key, team) VALUES ('one', '{ONE}', 'search')"
    )
    url = await start(start_proxy, config_dsn)
    status, listed = await call(http, "GET", url + "/admin/v1/teams")
    assert [(t["name"], t["metadata"], t["members"]) for t in listed["data"]] == [
        ("search", {"a": 1}, 1)
    ]
    status, used = await call(http, "GET", f"{url}/admin/v1/teams/{listed['data'][0]['id']}/usage")
    assert status == 200
    assert (used["max_budget_usd"], used["spent_usd"], used["budget_period"]) == (None, None, None)
    assert [k["name"] for k in used["keys"]] == ["one"]
