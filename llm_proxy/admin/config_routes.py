"""The admin API's config endpoints: the config version, the effective config (masked), its
YAML export, reload, and the config history with rollback.

In database mode, reads of the history and every write go through PostgreSQL (the admin
pool), so a change made here is recorded and announced like any other and reaches every
instance through NOTIFY. A write answers once this instance serves the new version
(read-your-writes). In YAML mode the config is file-driven: reads answer from the loaded
snapshot, writes are 409 `read_only_config`.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from llm_proxy.admin.http import (
    Conn,
    body_of,
    int_param,
    json_response,
    serve_version,
    version_number,
    version_param,
)
from llm_proxy.admin.views import config_view
from llm_proxy.config.export import export_yaml
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import ADMIN_NAME, CONFIG_FILE, DSN, METRICS, STATE, STORE
from llm_proxy.reload import reload_store

_MAX_PAGE: Final = 200


def add_routes(app: web.Application) -> None:
    app.router.add_get("/config/version", config_version)
    app.router.add_get("/config", effective_config)
    app.router.add_get("/config/export", export)
    app.router.add_post("/config/reload", reload)
    app.router.add_get("/config/history", history_page)
    app.router.add_get("/config/history/{version}", history_version)
    app.router.add_post("/config/rollback", rollback)


def _source(request: web.Request) -> str:
    return "database" if DSN in request.config_dict else "file"


# Handlers


async def config_version(request: web.Request) -> web.Response:
    snapshot = request[STATE].snapshot
    return json_response(
        {
            "version": version_number(snapshot.version),
            "loaded_at": snapshot.loaded_at,
            "source": _source(request),
        }
    )


async def effective_config(request: web.Request) -> web.Response:
    """`GET /config`: the configuration being served, secrets masked."""
    snapshot = request[STATE].snapshot
    return json_response(
        {
            "version": version_number(snapshot.version),
            "source": _source(request),
            **config_view(snapshot.config),
        }
    )


async def export(request: web.Request) -> web.Response:
    """`GET /config/export`: the providers and master keys served, as YAML for YAML mode or
    `import-config`; provider keys as ${LLM_PROXY_KEY_<NAME>} references, master keys as
    their SHA-256 (no secret leaves through the API)."""
    snapshot = request[STATE].snapshot
    text = export_yaml(snapshot.config, version=snapshot.version)
    return web.Response(text=text, content_type="application/yaml")


async def reload(request: web.Request) -> web.Response:
    """`POST /config/reload`: read the configuration again now (as SIGHUP does)."""
    if DSN in request.config_dict:
        async with Conn(request, "Reloading") as conn:
            version = int(await conn.fetchval("SELECT version FROM config_version"))
        served = await serve_version(request, version)
        return json_response(
            {
                "version": version_number(request.config_dict[STORE].current.version),
                "served": served,
            }
        )
    path = request.config_dict.get(CONFIG_FILE)
    if path is None:
        raise ProxyError(409, "No config file to reload from.", code="read_only_config")
    store = request.config_dict[STORE]
    if not reload_store(store, path, request.config_dict[METRICS]):
        raise ProxyError(
            400,
            f"The config file {str(path)!r} is invalid; the old configuration keeps serving "
            "(the log line `config_reload_rejected` names each problem).",
            code="invalid_config",
        )
    return json_response({"version": version_number(store.current.version), "served": True})


async def history_page(request: web.Request) -> web.Response:
    """`GET /config/history?table=&row_id=&before=&limit=`: changes, newest version first.
    Paged by version: pass the answer's `next_before` as `before` for the next page."""
    from llm_proxy.config import history

    query = request.query
    table = query.get("table") or None
    if table is not None and table not in history.TABLES:
        raise bad_param("table", f"`table` must be one of {', '.join(history.TABLES)}.")
    row_id = int_param(query.get("row_id"), "row_id", 1)
    before = int_param(query.get("before"), "before", 1)
    limit = int_param(query.get("limit"), "limit", 1, _MAX_PAGE) or 50
    async with Conn(request, "The config history") as conn:
        changes = await history.history(
            conn, table=table, row_id=row_id, before_version=before, limit=limit
        )
        first, current = await history.bounds(conn)
    versions = sorted({c.version for c in changes}, reverse=True)
    return json_response(
        {
            "data": [c.as_dict() for c in changes],
            "next_before": versions[-1] if len(versions) == limit else None,
            "first_version": first,
            "current_version": current,
        }
    )


async def history_version(request: web.Request) -> web.Response:
    """`GET /config/history/{version}`: every row that version changed."""
    from llm_proxy.config import history

    version = int_param(request.match_info["version"], "version", 1)
    assert version is not None
    async with Conn(request, "The config history") as conn:
        changes = await history.change(conn, version)
    if not changes:
        raise ProxyError(404, f"No config version {version} in the history.", code="not_found")
    return json_response({"version": version, "changes": [c.as_dict() for c in changes]})


async def rollback(request: web.Request) -> web.Response:
    """`POST /config/rollback {"version": N}` (N or "N"): providers and master keys back to
    exactly their state at version N, in one transaction recorded as a change by this admin
    key. Master keys revoked since (rotated, deleted) stay revoked unless
    `"restore_revoked_keys": true`; the answer names them (`keys_left_out`, by name and
    reason, never a key)."""
    from llm_proxy.config import history

    data = await body_of(request)
    version = version_param(data.get("version"))
    restore = data.get("restore_revoked_keys", False)
    if not isinstance(restore, bool):
        raise bad_param("restore_revoked_keys", "`restore_revoked_keys` must be true or false.")
    async with Conn(request, "Rollback") as conn:
        try:
            done = await history.rollback(
                conn, version, f"admin:{request[ADMIN_NAME]}", restore_revoked_keys=restore
            )
        except history.HistoryError as exc:
            raise bad_param("version", str(exc)) from None
    served = await serve_version(request, done.version)
    left_out = [{"name": name, "reason": reason} for name, reason in done.keys_left_out]
    return json_response(
        {
            "version": done.version,
            "rolled_back_to": version,
            "served": served,
            "keys_left_out": left_out,
        }
    )
