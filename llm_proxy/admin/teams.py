"""Teams through the admin API: `/teams` (list, read; the writes are `resources`'s generic
ones, validated and attributed like every config write), a team's keys (`/teams/{id}/members`:
listed, added by key name, removed), and its spend (`/teams/{id}/usage`).

A key's team is its `credentials.team`, so a membership change is a write of the key's row
(as `PATCH /credentials/{id} {"team": ...}`): validated with the whole configuration (a key
whose allowed_models are not within the team's is a 400 naming `allowed_models`). A team
that still has keys cannot be deleted (409 `team_has_members`). In YAML mode the reads
answer from the loaded file (ids are positions in its sections) and the writes are 409
`read_only_config`.

The usage is this instance's limiter's: the spend of the team's budget this period as this
process counts it (with Redis, every instance's, as of the last exchange with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from llm_proxy.admin import resources
from llm_proxy.admin.http import Conn, body_of, int_param, json_response
from llm_proxy.admin.tables import CREDENTIALS, TEAMS, view
from llm_proxy.admin.views import team_view
from llm_proxy.config.model import Config, Team
from llm_proxy.config.teams import TEAM_PREFIX
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import DSN, LIMITER, STATE

if TYPE_CHECKING:
    from llm_proxy.proxy.budgets import BudgetVerdict

_TEAMS_SQL: Final = """
SELECT t.*, (SELECT count(*) FROM credentials c WHERE c.team = t.name) AS members
FROM teams t"""
_MEMBERS_SQL: Final = """
SELECT id, name, is_enabled, key_prefix FROM credentials
WHERE team = $1 ORDER BY id"""


def _row_id(request: web.Request, name: str = "id") -> int:
    row_id = int_param(request.match_info[name], name, 1)
    assert row_id is not None
    return row_id


def _not_found(row_id: int) -> ProxyError:
    return ProxyError(404, f"No team with id {row_id}.", code="not_found")


def _file_mode(request: web.Request) -> bool:
    return DSN not in request.config_dict


def _config(request: web.Request) -> Config:
    return request[STATE].snapshot.config


def _file_team(request: web.Request, row_id: int) -> tuple[Team, dict[str, Any]]:
    """YAML mode: the team at position `row_id` of the file, and its view."""
    config = _config(request)
    if not 1 <= row_id <= len(config.teams):
        raise _not_found(row_id)
    team = config.teams[row_id - 1]
    shown = team_view(team, config)
    members = len(shown.pop("keys"))
    return team, {"id": row_id, **shown, "members": members}


def _file_members(config: Config, team: str) -> list[dict[str, Any]]:
    """YAML mode: the team's keys (ids are positions in `master_keys`; no key prefix)."""
    return [
        {"id": i + 1, "name": k.name, "enabled": k.enabled, "key_prefix": None}
        for i, k in enumerate(config.master_keys)
        if k.team == team
    ]


async def _db_team(request: web.Request, row_id: int) -> dict[str, Any]:
    async with Conn(request, "Reading") as conn:
        row = await conn.fetchrow(_TEAMS_SQL + " WHERE t.id = $1", row_id)
    if row is None:
        raise _not_found(row_id)
    return view(TEAMS, row)


async def _db_members(request: web.Request, team: str) -> list[dict[str, Any]]:
    async with Conn(request, "Reading") as conn:
        rows = await conn.fetch(_MEMBERS_SQL, team)
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "enabled": r["is_enabled"],
            "key_prefix": r["key_prefix"],
        }
        for r in rows
    ]


# Handlers


async def list_teams(request: web.Request) -> web.Response:
    """`GET /teams`: every team, with how many keys it has (`members`)."""
    if _file_mode(request):
        config = _config(request)
        data = [_file_team(request, i + 1)[1] for i in range(len(config.teams))]
        return json_response({"data": data, "source": "file"})
    async with Conn(request, "Listing") as conn:
        rows = await conn.fetch(_TEAMS_SQL + " ORDER BY t.id")
    return json_response({"data": [view(TEAMS, r) for r in rows], "source": "database"})


async def get_team(request: web.Request) -> web.Response:
    row_id = _row_id(request)
    if _file_mode(request):
        return json_response(_file_team(request, row_id)[1])
    return json_response(await _db_team(request, row_id))


async def members(request: web.Request) -> web.Response:
    """`GET /teams/{id}/members`: the team's keys (id, name, enabled, key_prefix)."""
    row_id = _row_id(request)
    if _file_mode(request):
        team, _ = _file_team(request, row_id)
        return json_response({"data": _file_members(_config(request), team.name), "source": "file"})
    shown = await _db_team(request, row_id)
    return json_response({"data": await _db_members(request, shown["name"]), "source": "database"})


async def add_member(request: web.Request) -> web.Response:
    """`POST /teams/{id}/members {"key": "<key name>"}`: the key joins the team (leaving the
    one it was in)."""
    row_id = _row_id(request)
    body = await body_of(request)
    if set(body) != {"key"} or not isinstance(body["key"], str):
        raise bad_param("key", 'The body must be {"key": "<the name of a master key>"}.')
    async with Conn(request, "Changing the configuration") as conn:
        team = await conn.fetchval("SELECT name FROM teams WHERE id = $1", row_id)
        key_id = await conn.fetchval("SELECT id FROM credentials WHERE name = $1", body["key"])
    if team is None:
        raise _not_found(row_id)
    if key_id is None:
        raise ProxyError(
            404, f"No master key named {body['key']!r}.", code="not_found", param="key"
        )
    return await _set_team(request, key_id, team, 201)


async def remove_member(request: web.Request) -> web.Response:
    """`DELETE /teams/{id}/members/{key_id}`: the key leaves the team (it stays, in no team)."""
    row_id, key_id = _row_id(request), _row_id(request, "key_id")
    async with Conn(request, "Changing the configuration") as conn:
        team = await conn.fetchval("SELECT name FROM teams WHERE id = $1", row_id)
        current = await conn.fetchrow("SELECT team FROM credentials WHERE id = $1", key_id)
    if team is None:
        raise _not_found(row_id)
    if current is None or current["team"] != team:
        raise ProxyError(
            404, f"The master key with id {key_id} is not in team {team!r}.", code="not_found"
        )
    return await _set_team(request, key_id, None, 200)


async def _set_team(
    request: web.Request, key_id: int, team: str | None, status: int
) -> web.Response:
    row, version = await resources.write(request, CREDENTIALS, "update", key_id, {"team": team})
    assert row is not None
    member = {
        "id": row["id"],
        "name": row["name"],
        "enabled": row["is_enabled"],
        "key_prefix": row["key_prefix"],
        "team": row["team"],
    }
    return json_response({**member, "config_version": version}, status=status)


async def usage(request: web.Request) -> web.Response:
    """`GET /teams/{id}/usage`: the team's budget and what this instance's limiter counts
    spent of it this period, and each of its keys (with its own budget, if any)."""
    row_id = _row_id(request)
    if _file_mode(request):
        _, shown = _file_team(request, row_id)
        keys = _file_members(_config(request), shown["name"])
    else:
        shown = await _db_team(request, row_id)
        keys = await _db_members(request, shown["name"])
    limiter = request.config_dict[LIMITER]
    for key in keys:
        key.update(_spend(limiter.budget_verdict(key["name"])))
    return json_response(
        {
            "id": shown["id"],
            "name": shown["name"],
            "max_budget_usd": shown["max_budget_usd"],
            "budget_period": shown["budget_period"]
            or ("monthly" if shown["max_budget_usd"] is not None else None),
            **_spend(limiter.budget_verdict(TEAM_PREFIX + shown["name"])),
            "keys": keys,
        }
    )


def _spend(verdict: BudgetVerdict | None) -> dict[str, Any]:
    """A budget verdict as the usage shows it (all null: no budget is counted, e.g. a team
    written but not yet served)."""
    if verdict is None:
        return {"spent_usd": None, "remaining_usd": None, "resets_at": None}
    return {
        "spent_usd": round(verdict.limit_usd - verdict.remaining_usd, 9),
        "remaining_usd": verdict.remaining_usd,
        "resets_at": verdict.resets_at,
    }


def add_routes(app: web.Application) -> None:
    app.router.add_get("/teams", list_teams)
    app.router.add_post("/teams", resources.create_row)
    app.router.add_get("/teams/{id}", get_team)
    app.router.add_put("/teams/{id}", resources.replace_row)
    app.router.add_patch("/teams/{id}", resources.update_row)
    app.router.add_delete("/teams/{id}", resources.delete_row)
    app.router.add_get("/teams/{id}/members", members)
    app.router.add_post("/teams/{id}/members", add_member)
    app.router.add_delete("/teams/{id}/members/{key_id}", remove_member)
    app.router.add_get("/teams/{id}/usage", usage)
