"""The original llm-proxy's request-log paths, as compatibility aliases of ours (`admin.logs`):
`GET /logs`, `/logs/stats`, `/logs/{id}`, `/error-logs`, `/error-logs/{id}`, with its query
parameters (page, page_size, provider_name, credential_name, start_time, ...) and its answers'
shapes (`items`, `total`, `page`, `page_size`, `total_pages`; its field names), read from our
`request_logs` and `error_logs`.

What our log does not record is null in these answers (a request's provider type and
protocols, its request headers; an error's key, model and endpoint). Its deletes
(`DELETE /logs/{id}`, `batch-delete`) are not offered: our log is append-only, kept as long
as `request_log.retention_days` says.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from llm_proxy.admin.http import int_param, json_response
from llm_proxy.admin.logs import Where, fetch, text_param, time_param
from llm_proxy.errors import ProxyError, bad_param

_MAX_PAGE_SIZE: Final = 200  # the original's bound too
_MAX_PAGE: Final = 1_000_000
_REQUEST_SORTS: Final = {
    "timestamp": "ts",
    "status_code": "status",
    "total_duration_ms": "duration_ms",
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "total_tokens": "(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0))",
}
_REQUEST_COLUMNS: Final = (
    "id, ts, request_id, key_name, client, path, model, model_sent, provider, status, "
    "duration_ms, ttft_ms, prompt_tokens, completion_tokens, streamed, error_code, trace_id"
)
_ERROR_COLUMNS: Final = "id, ts, request_id, provider, outcome, upstream_status, detail"


def _timestamp(record: Any) -> str:
    return str(record["ts"].isoformat().replace("+00:00", "Z"))


def _whole(value: float | None) -> int | None:
    return round(value) if value is not None else None


def request_item(record: Any) -> dict[str, Any]:
    """One `request_logs` row as the original's `RequestLogItem`."""
    prompt, completion = record["prompt_tokens"] or 0, record["completion_tokens"] or 0
    return {
        "id": record["id"],
        "timestamp": _timestamp(record),
        "request_id": record["request_id"],
        "endpoint": record["path"],
        "credential_name": record["key_name"],
        "model_requested": record["model"],
        "model_mapped": record["model_sent"],
        "provider_name": record["provider"],
        "provider_type": None,
        "client_protocol": None,
        "provider_protocol": None,
        "is_streaming": record["streamed"],
        "status_code": record["status"],
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "total_duration_ms": _whole(record["duration_ms"]),
        "ttft_ms": _whole(record["ttft_ms"]),
        "error_category": record["error_code"],
        "error_message": None,
        "client": record["client"],
        "trace_id": record["trace_id"],
    }


def error_item(record: Any) -> dict[str, Any]:
    """One `error_logs` row (a failed upstream attempt) as the original's `ErrorLogItem`."""
    return {
        "id": record["id"],
        "timestamp": _timestamp(record),
        "request_id": record["request_id"],
        "error_category": record["outcome"],
        "error_code": record["upstream_status"],
        "error_message": record["detail"],
        "provider_name": record["provider"],
        "credential_name": None,
        "model_requested": None,
        "model_mapped": None,
        "endpoint": None,
        "client_protocol": None,
        "provider_protocol": None,
        "is_streaming": None,
        "total_duration_ms": None,
    }


def _bool(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value not in ("true", "false"):
        raise bad_param(name, f"`{name}` must be true or false.")
    return value == "true"


def _filters(query: Any, columns: dict[str, str]) -> Where:
    """Its filters: the text ones named in `columns` (its name -> our column), and its
    `start_time` / `end_time` (both included, as it did)."""
    where = Where()
    for name, column in columns.items():
        value = text_param(query, name)
        if value is not None:
            where.add(f"{column} = ?", value)
    start, end = (
        time_param(query.get("start_time"), "start_time"),
        time_param(query.get("end_time"), "end_time"),
    )
    if start is not None:
        where.add("ts >= ?", start)
    if end is not None:
        where.add("ts <= ?", end)
    return where


async def _paged(
    request: web.Request, table: str, columns: str, where: Where, order: str
) -> tuple[list[Any], dict[str, int]]:
    """A page (`page`, `page_size`) of `table` and the original's paging fields."""
    query = request.query
    page = int_param(query.get("page"), "page", 1, _MAX_PAGE) or 1
    size = int_param(query.get("page_size"), "page_size", 1, _MAX_PAGE_SIZE) or 50
    direction = "ASC" if query.get("sort_order") == "asc" else "DESC"
    (count,) = await fetch(request, f"SELECT count(*) AS n FROM {table}{where.sql}", *where.args)  # noqa: S608 (constants and $n parameters only)
    rows = await fetch(
        request,
        f"SELECT {columns} FROM {table}{where.sql} "  # noqa: S608 (constants and $n parameters only)
        f"ORDER BY {order} {direction}, id {direction} LIMIT {size} OFFSET {(page - 1) * size}",
        *where.args,
    )
    total = int(count["n"])
    paging = {"total": total, "page": page, "page_size": size, "total_pages": -(-total // size)}
    return rows, paging


_STATS: Final = (
    "SELECT count(*) AS requests, "
    "count(*) FILTER (WHERE status >= 400 OR error_code IS NOT NULL) AS errors, "
    "coalesce(sum(prompt_tokens), 0) AS input, coalesce(sum(completion_tokens), 0) AS output, "
    "avg(duration_ms)::float8 AS duration, avg(ttft_ms)::float8 AS ttft"
)


# Handlers


async def logs_page(request: web.Request) -> web.Response:
    """`GET /logs?page=&page_size=&request_id=&provider_name=&model=&credential_name=
    &status_code=&is_streaming=&error_only=&start_time=&end_time=&sort_by=&sort_order=`."""
    query = request.query
    where = _filters(
        query,
        {
            "request_id": "request_id",
            "provider_name": "provider",
            "model": "model",
            "credential_name": "key_name",
        },
    )
    status = int_param(query.get("status_code"), "status_code", 100, 999)
    if status is not None:
        where.add("status = ?", status)
    streaming = _bool(query.get("is_streaming"), "is_streaming")
    if streaming is not None:
        where.add("streamed = ?", streaming)
    if _bool(query.get("error_only"), "error_only"):
        where.add("(status >= 400 OR error_code IS NOT NULL)")
    order = _REQUEST_SORTS.get(query.get("sort_by") or "timestamp", "ts")
    rows, paging = await _paged(request, "request_logs", _REQUEST_COLUMNS, where, order)
    return json_response({"items": [request_item(r) for r in rows], **paging})


async def _by_id(request: web.Request, table: str, columns: str) -> Any:
    """The row of `table` (request_logs, error_logs: constants) whose id the path names; a
    404 when there is none."""
    row_id = int_param(request.match_info["id"], "id", 1)
    rows = await fetch(
        request,
        f"SELECT {columns} FROM {table} WHERE id = $1",  # noqa: S608 (constants and $n parameters only)
        row_id,
    )
    if not rows:
        what = "request" if table == "request_logs" else "error"
        raise ProxyError(404, f"No {what} log entry with id {row_id}.", code="not_found")
    return rows[0]


async def log_detail(request: web.Request) -> web.Response:
    """`GET /logs/{id}`: one request by its row id, with what was captured of it."""
    record = await _by_id(request, "request_logs", f"{_REQUEST_COLUMNS}, prompt, completion")
    return json_response(
        {
            **request_item(record),
            "request_headers": None,
            "request_body": record["prompt"],
            "response_body": record["completion"],
        }
    )


async def log_stats(request: web.Request) -> web.Response:
    """`GET /logs/stats?provider_name=&model=&start_time=&end_time=`: its sums."""
    where = _filters(request.query, {"provider_name": "provider", "model": "model"})
    (totals,) = await fetch(request, f"{_STATS} FROM request_logs{where.sql}", *where.args)
    by: dict[str, dict[str, int]] = {}
    for name, column in (("provider", "provider"), ("model", "model"), ("status", "status")):
        rows = await fetch(
            request,
            f"SELECT {column}::text AS label, count(*) AS n FROM request_logs{where.sql} "  # noqa: S608 (constants and $n parameters only)
            f"GROUP BY {column} ORDER BY n DESC LIMIT 1000",
            *where.args,
        )
        by[name] = {str(r["label"]) if r["label"] is not None else "": int(r["n"]) for r in rows}
    requests, errors = int(totals["requests"]), int(totals["errors"])
    return json_response(
        {
            "total_requests": requests,
            "total_errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "total_input_tokens": int(totals["input"]),
            "total_output_tokens": int(totals["output"]),
            "avg_duration_ms": totals["duration"],
            "avg_ttft_ms": totals["ttft"],
            "requests_by_provider": by["provider"],
            "requests_by_model": by["model"],
            "requests_by_status": by["status"],
        }
    )


async def error_logs_page(request: web.Request) -> web.Response:
    """`GET /error-logs?page=&page_size=&request_id=&provider_name=&error_category=
    &start_time=&end_time=&sort_order=`: failed upstream attempts."""
    where = _filters(
        request.query,
        {"request_id": "request_id", "provider_name": "provider", "error_category": "outcome"},
    )
    rows, paging = await _paged(request, "error_logs", _ERROR_COLUMNS, where, "ts")
    return json_response({"items": [error_item(r) for r in rows], **paging})


async def error_log_detail(request: web.Request) -> web.Response:
    """`GET /error-logs/{id}`: one failed attempt, with the upstream's answer."""
    record = await _by_id(request, "error_logs", f"{_ERROR_COLUMNS}, body")
    return json_response(
        {
            **error_item(record),
            "request_body": None,
            "response_body": record["body"],
            "provider_request_body": None,
            "provider_request_headers": None,
        }
    )


def add_routes(app: web.Application) -> None:
    """After `logs.add_routes` (its pool): `/logs/stats` before `/logs/{id}`."""
    app.router.add_get("/logs", logs_page)
    app.router.add_get("/logs/stats", log_stats)
    app.router.add_get("/logs/{id}", log_detail)  # after the fixed /logs/... paths
    app.router.add_get("/error-logs", error_logs_page)
    app.router.add_get("/error-logs/{id}", error_log_detail)
