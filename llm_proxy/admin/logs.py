"""The request log through the admin API: `GET /logs/requests`, `/logs/requests/{request_id}`,
`/logs/errors` (filters, newest first, cursor paging) and `GET /usage` (sums by key, team,
model, provider and day, from the `usage_daily` rollup).

Read from the request log's database (database mode's own, or `request_log.database_url`)
through a pool of at most two connections opened on first use; every query runs under a
statement timeout, so a heavy filter cannot hold a connection for long.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from llm_proxy.admin.http import MAX_ID, int_param, json_response
from llm_proxy.admin.pool import AdminPool
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import LOG_DSN, LOGS_DB
from llm_proxy.observe.records import CACHE_RESULTS

if TYPE_CHECKING:
    import asyncpg

_MAX_PAGE: Final = 200
_DEFAULT_PAGE: Final = 50
_STATEMENT_TIMEOUT_MS: Final = 10_000
_USAGE_DEFAULT_DAYS: Final = 30
_MAX_USAGE_DAYS: Final = 3660
GROUPS: Final = ("key", "team", "model", "provider", "day")
_GROUP_COLUMNS: Final = {
    "key": "key_name",
    "team": "team",
    "model": "model",
    "provider": "provider",
    "day": "day",
}

_REQUEST_FIELDS: Final = (
    "id, ts, request_id, key_name, client, method, path, model, model_sent, provider, "
    "attempts, status, duration_ms, ttft_ms, prompt_tokens, completion_tokens, cost_usd, "
    "streamed, error_code, prompt, completion, trace_id, fallback_from, fallback_reason, rule, "
    "cache, team"
)
_ERROR_FIELDS: Final = "id, ts, request_id, provider, outcome, upstream_status, body, detail"


# The request log's database may be another than the config's: its own pool, whose every
# query runs under a statement timeout.
_SERVER_SETTINGS: Final = {
    "statement_timeout": str(_STATEMENT_TIMEOUT_MS),
    "application_name": "llm-proxy admin",
}


def add_routes(app: web.Application) -> None:
    app[LOGS_DB] = AdminPool(_SERVER_SETTINGS)
    app.cleanup_ctx.append(_pool)
    app.router.add_get("/logs/requests", requests_page)
    app.router.add_get("/logs/requests/{request_id}", request_detail)
    app.router.add_get("/logs/errors", errors_page)
    app.router.add_get("/usage", usage)


async def _pool(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[LOGS_DB].close()


async def fetch(request: web.Request, query: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of `query` on the request log's database (409 when the log is not in one,
    503 when it cannot be reached), under the statement timeout."""
    import asyncpg

    dsn = request.config_dict.get(LOG_DSN)
    if dsn is None:
        raise ProxyError(
            409,
            "The request log is not in a database: it is kept in database mode, or with "
            "request_log.database_url set.",
            code="request_log_disabled",
        )
    try:
        pool = await request.app[LOGS_DB].get(dsn)
        async with pool.acquire() as conn:
            return list(await conn.fetch(query, *args))
    except asyncpg.QueryCanceledError:
        raise ProxyError(
            503,
            "The query took too long: narrow it (a time range, a key, a provider).",
            type="api_error",
            code="query_timeout",
        ) from None
    except asyncpg.UndefinedTableError:
        raise ProxyError(
            503,
            "The request log's tables do not exist: run `llm-proxy migrate up`.",
            type="api_error",
            code="request_log_missing",
        ) from None
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        raise ProxyError(
            503,
            f"The request log's database is unreachable ({type(exc).__name__}).",
            type="api_error",
            code="request_log_unavailable",
        ) from None


# Parameters


def time_param(value: str | None, name: str) -> datetime | None:
    """ISO 8601 (a date, or a time with its offset; without one, UTC) or epoch seconds."""
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_param(
            name, f"`{name}` must be an ISO 8601 time (2026-11-26T10:00:00Z) or epoch seconds."
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _day(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad_param(name, f"`{name}` must be a date, YYYY-MM-DD.") from None


def text_param(query: Any, name: str) -> str | None:
    """The query parameter `name` as a filter value (None: not given), bounded and checked."""
    value = query.get(name)
    if value is None or value == "":
        return None
    return _checked(str(value), name, 1000)


def _checked(value: str, name: str, longest: int) -> str:
    """A filter value as PostgreSQL takes it (no NUL, valid UTF-8), bounded."""
    if len(value) > longest:
        raise bad_param(name, f"`{name}` is longer than {longest} characters.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise bad_param(name, f"`{name}` is not valid UTF-8.") from None
    if "\x00" in value:
        raise bad_param(name, f"`{name}` contains a NUL character.")
    return value


def _status(value: str | None) -> tuple[int, int] | None:
    """`200`, `4xx`, `5xx` or `error` (any status >= 400), as a [low, high] range."""
    if value is None or value == "":
        return None
    if value == "error":
        return 400, 999
    if len(value) == 3 and value[0] in "12345" and value[1:] == "xx":
        low = int(value[0]) * 100
        return low, low + 99
    number = int_param(value, "status", 100, 999)
    assert number is not None
    return number, number


def _encode_cursor(ts: datetime, row_id: int) -> str:
    raw = f"{ts.timestamp():.6f}:{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str | None) -> tuple[datetime, int] | None:
    if value is None or value == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        seconds, row_id = raw.split(":")
        ts, number = datetime.fromtimestamp(float(seconds), UTC), int(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError, OSError):
        raise bad_param("cursor", _NOT_A_CURSOR) from None
    # Row ids are bigint identities: anything else (a crafted cursor) would reach PostgreSQL.
    if not 1 <= number <= MAX_ID:
        raise bad_param("cursor", _NOT_A_CURSOR)
    return ts, number


_NOT_A_CURSOR: Final = "`cursor` is not one this API returned."


class Where:
    """WHERE clauses with numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def add(self, clause: str, *values: Any) -> None:
        for value in values:
            self.args.append(value)
            clause = clause.replace("?", f"${len(self.args)}", 1)
        self.clauses.append(clause)

    @property
    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""


def _common(request: web.Request) -> tuple[Where, int]:
    query = request.query
    where = Where()
    since, until = time_param(query.get("since"), "since"), time_param(query.get("until"), "until")
    if since is not None:
        where.add("ts >= ?", since)
    if until is not None:
        where.add("ts < ?", until)
    cursor = _decode_cursor(query.get("cursor"))
    if cursor is not None:
        ts, row_id = cursor
        where.add("(ts < ? OR (ts = ? AND id < ?))", ts, ts, row_id)
    for name, column in (("provider", "provider"), ("request_id", "request_id")):
        value = text_param(query, name)
        if value is not None:
            where.add(f"{column} = ?", value)
    limit = int_param(query.get("limit"), "limit", 1, _MAX_PAGE) or _DEFAULT_PAGE
    return where, limit


async def _page(
    request: web.Request, fields: str, table: str, where: Where, limit: int
) -> web.Response:
    """A page of `table`, newest first, and the cursor of the next one (None: no more); one
    row beyond the page is read to know."""
    rows = await fetch(
        request,
        f"SELECT {fields} FROM {table}{where.sql} "  # noqa: S608 (constants and $n parameters only)
        f"ORDER BY ts DESC, id DESC LIMIT {limit + 1}",
        *where.args,
    )
    data = [_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return json_response(
        {
            "data": data,
            "next_cursor": _encode_cursor(last["ts"], last["id"]) if last is not None else None,
        }
    )


def _row(record: asyncpg.Record) -> dict[str, Any]:
    out = dict(record)
    out["ts"] = record["ts"].isoformat().replace("+00:00", "Z")
    if "attempts" in out:
        out["attempts"] = list(out["attempts"])
    return out


# Handlers


async def requests_page(request: web.Request) -> web.Response:
    """`GET /logs/requests?since=&until=&key=&team=&model=&provider=&status=&request_id=
    &trace_id=&fallback=&rule=&cache=&limit=&cursor=`: requests, newest first; `next_cursor`
    fetches the next page. `team` keeps the requests of keys in that team (when they made
    them); `fallback=true` the requests a fallback model answered (`false`: the others);
    `cache=hit|miss|bypass` those the response cache answered, missed or kept out of."""
    where, limit = _common(request)
    query = request.query
    for name, column in (
        ("key", "key_name"),
        ("team", "team"),
        ("model", "model"),
        ("trace_id", "trace_id"),
        ("rule", "rule"),
    ):
        value = text_param(query, name)
        if value is not None:
            where.add(f"{column} = ?", value)
    fallback = query.get("fallback")
    if fallback not in (None, "", "true", "false"):
        raise bad_param("fallback", "`fallback` must be true or false.")
    if fallback:
        where.add(f"fallback_from IS {'NOT ' if fallback == 'true' else ''}NULL")
    cache = query.get("cache")
    if cache:
        if cache not in CACHE_RESULTS:
            raise bad_param("cache", "`cache` must be hit, miss or bypass.")
        where.add("cache = ?", cache)
    status = _status(query.get("status"))
    if status is not None:
        if status[0] == status[1]:
            where.add("status = ?", status[0])
        else:
            where.add("status BETWEEN ? AND ?", *status)
    return await _page(request, _REQUEST_FIELDS, "request_logs", where, limit)


async def request_detail(request: web.Request) -> web.Response:
    """`GET /logs/requests/{request_id}`: the request (every one, if a client reused the
    id) and its failed upstream attempts."""
    request_id = _checked(request.match_info["request_id"], "request_id", 128)
    rows = await fetch(
        request,
        f"SELECT {_REQUEST_FIELDS} FROM request_logs WHERE request_id = $1 "  # noqa: S608 (constants and $n parameters only)
        "ORDER BY ts DESC, id DESC LIMIT 20",
        request_id,
    )
    if not rows:
        raise ProxyError(
            404, f"No request {request_id!r} in the request log.", code="request_not_found"
        )
    errors = await fetch(
        request,
        f"SELECT {_ERROR_FIELDS} FROM error_logs WHERE request_id = $1 ORDER BY ts, id LIMIT 100",  # noqa: S608 (constants and $n parameters only)
        request_id,
    )
    return json_response({"data": [_row(r) for r in rows], "errors": [_row(e) for e in errors]})


async def errors_page(request: web.Request) -> web.Response:
    """`GET /logs/errors?since=&until=&provider=&outcome=&status=&request_id=&limit=&cursor=`:
    failed upstream attempts, newest first."""
    where, limit = _common(request)
    outcome = text_param(request.query, "outcome")
    if outcome is not None:
        where.add("outcome = ?", outcome)
    status = _status(request.query.get("status"))
    if status is not None:
        where.add("upstream_status BETWEEN ? AND ?", *status)
    return await _page(request, _ERROR_FIELDS, "error_logs", where, limit)


async def usage(request: web.Request) -> web.Response:
    """`GET /usage?group_by=key,team,model,provider,day&since=&until=&key=&team=&model=
    &provider=`: requests, errors, tokens and cost per group, over days `since` to `until`
    (UTC, both included; the last 30 days by default), largest cost first. A key's team is
    the one it was in when it made the request; `team` is null for requests of keys in none."""
    query = request.query
    groups = [g.strip() for g in (query.get("group_by") or "key").split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups or len(set(groups)) != len(groups):
        raise bad_param(
            "group_by", f"`group_by` is a comma-separated subset of {', '.join(GROUPS)}."
        )
    today = datetime.now(UTC).date()
    until = _day(query.get("until"), "until") or today
    since = _day(query.get("since"), "since")
    if since is None:
        try:
            since = until - timedelta(days=_USAGE_DEFAULT_DAYS - 1)
        except OverflowError:
            since = date.min
    if since > until:
        raise bad_param("since", "`since` is after `until`.")
    if (until - since).days >= _MAX_USAGE_DAYS:
        raise bad_param("since", f"At most {_MAX_USAGE_DAYS} days at once.")
    where = Where()
    where.add("day BETWEEN ? AND ?", since, until)
    for name, column in (
        ("key", "key_name"),
        ("team", "team"),
        ("model", "model"),
        ("provider", "provider"),
    ):
        value = text_param(query, name)
        if value is not None:
            where.add(f"{column} = ?", value)
    columns = [_GROUP_COLUMNS[g] for g in groups]
    selected = ", ".join(columns)
    rows = await fetch(
        request,
        f"SELECT {selected}, {_SUMS} FROM usage_daily{where.sql} "  # noqa: S608 (constants and $n parameters only)
        f"GROUP BY {selected} ORDER BY cost_usd DESC, requests DESC, {selected} "
        f"LIMIT {_MAX_GROUPS + 1}",
        *where.args,
    )
    (totals,) = await fetch(request, f"SELECT {_SUMS} FROM usage_daily{where.sql}", *where.args)  # noqa: S608 (constants and $n parameters only)
    data = []
    for r in rows[:_MAX_GROUPS]:
        item: dict[str, Any] = {g: r[_GROUP_COLUMNS[g]] for g in groups}
        if "day" in item:
            item["day"] = item["day"].isoformat()
        if "team" in item:
            item["team"] = item["team"] or None  # '' in the rollup: in no team
        item.update(_sums(r))
        data.append(item)
    return json_response(
        {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "group_by": groups,
            "data": data,
            "truncated": len(rows) > _MAX_GROUPS,  # more groups than one answer holds
            "total": _sums(totals),
        }
    )


_MAX_GROUPS: Final = 10_000
_SUMS: Final = (
    "coalesce(sum(requests), 0) AS requests, coalesce(sum(errors), 0) AS errors, "
    "coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
    "coalesce(sum(completion_tokens), 0) AS completion_tokens, "
    "coalesce(sum(cost_usd), 0) AS cost_usd"
)


def _sums(r: asyncpg.Record) -> dict[str, Any]:
    requests, errors = int(r["requests"]), int(r["errors"])
    prompt, completion = int(r["prompt_tokens"]), int(r["completion_tokens"])
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_usd": round(float(r["cost_usd"]), 10),
    }
