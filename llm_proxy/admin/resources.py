"""Providers, master keys (`credentials`, also `/master-keys`) and the writes of teams through
the admin API (their reads, members and usage are `admin.teams`'s).

Every write is one database transaction: the admin key's name is set as the change's actor
(config history), the row is written, the whole configuration is read back inside the same
transaction and validated by the same rules as YAML files and psql edits
(`config.database.build_config`), the written provider row alone too (a disabled one is not
in that configuration, and must not keep a bad value until it is enabled), and only then
committed; a bad write is a 400 naming the field and leaves nothing behind.
`If-Match: <config version>` makes a write conditional (412 when the configuration changed
meanwhile). The answer carries the new config version and comes once this instance serves it.
Secrets are write-only: a provider's `api_key` is shown masked, and so is each value of its
`params.headers` and `params.query_params` whose name is not known to be public, each cloud
credential in `params` (`credentials_json`, `aws_access_key_id`, `aws_secret_access_key`,
`aws_session_token`), and the `user:password@` of its `params.proxy` (a masked value sent
back unchanged keeps the stored one), a master key in full only in the answer that created
or rotated it. The tables' fields, the checks of a body and the views of a row are
`admin.tables`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from llm_proxy.admin.aliases import our_names, uses_original_names
from llm_proxy.admin.http import (
    PREFIX,
    Conn,
    begin_change,
    body_of,
    int_param,
    json_response,
    serve_version,
)
from llm_proxy.admin.tables import (
    CREDENTIALS,
    DEFAULTS,
    PROVIDERS,
    SECRET_PARAMS,
    SHOWN_ONLY,
    TEAMS,
    Table,
    fields_of,
    new_master_key,
    param_of,
    view,
)
from llm_proxy.admin.views import mask, provider_view, shown_proxy
from llm_proxy.config.clouds import SECRET_CLOUD_FIELDS
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.master_keys import expiry_text
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import DSN, STATE

if TYPE_CHECKING:
    import asyncpg


async def _keep_masked_params(
    conn: asyncpg.Connection, row_id: int | None, values: dict[str, Any]
) -> None:
    """A header or query parameter value, a cloud credential or a proxy URL, sent back as
    the API shows it (masked) keeps the stored value, as an omitted `api_key` is kept:
    reading a provider, editing and writing it back never replaces a secret with its mask."""
    params: Any = values.get("params")
    if not isinstance(params, dict) or row_id is None:
        return
    stored = await conn.fetchval("SELECT params FROM providers WHERE id = $1", row_id)
    old = orjson.loads(stored) if stored is not None else None
    if not isinstance(old, dict):
        return
    kept = dict(params)
    proxy = old.get("proxy")
    sent_proxy = params.get("proxy")
    if isinstance(proxy, str) and sent_proxy != proxy and sent_proxy == shown_proxy(proxy):
        kept["proxy"] = proxy
    for name in SECRET_CLOUD_FIELDS:
        secret, sent_secret = old.get(name), params.get(name)
        if isinstance(secret, str) and sent_secret != secret and sent_secret == mask(secret):
            kept[name] = secret
    # Header names are matched ignoring case (as HTTP does), query names exactly.
    for name, fold in (("headers", str.lower), ("query_params", str)):
        sent, before = params.get(name), old.get(name)
        if not isinstance(sent, dict) or not isinstance(before, dict):
            continue
        previous = {fold(k): v for k, v in before.items() if isinstance(v, str)}
        show = SECRET_PARAMS[name]
        merged = dict(sent)
        for key, value in sent.items():
            secret = previous.get(fold(key))
            if secret is not None and value != secret and value == show({key: secret})[key]:
                merged[key] = secret
        kept[name] = merged
    values["params"] = kept


async def write(
    request: web.Request, table: Table, action: str, row_id: int | None, values: dict[str, Any]
) -> tuple[dict[str, Any] | None, int]:
    """Run one write (`insert`, `update`, `delete`) in a validated, attributed transaction.
    Returns the row as written (None after a delete) and the new config version."""
    import asyncpg

    from llm_proxy.config.database import build_config, check_provider_row, read_rows

    async with Conn(request, "Changing the configuration") as conn:
        try:
            async with conn.transaction():
                await begin_change(conn, request)
                if table is PROVIDERS and action == "update":
                    await _keep_masked_params(conn, row_id, values)
                    await _keep_masked_key(conn, row_id, values)
                row = await _statement(conn, table, action, row_id, values)
                try:
                    if table is PROVIDERS and row is not None:  # disabled ones too
                        await check_provider_row(conn, row["id"])
                    build_config(request[STATE].snapshot.config, await read_rows(conn))
                except ConfigError as exc:
                    issue = exc.issues[0]
                    raise bad_param(param_of(issue.path) or "", str(issue)) from None
                version = int(await conn.fetchval("SELECT version FROM config_version"))
        except asyncpg.UniqueViolationError:
            raise ProxyError(
                409,
                f"A {table.what} with this name already exists.",
                code="duplicate_name",
                param="name",
            ) from None
        except asyncpg.ForeignKeyViolationError:
            raise _no_such_team(table, values.get("team")) from None
        except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError) as exc:
            raise bad_param(_column_param(table, exc), _check_message(exc)) from None
        except asyncpg.DataError as exc:
            raise bad_param("", f"Invalid value: {exc}") from None
    await serve_version(request, version)
    return row, version


def _no_such_team(table: Table, team: Any) -> ProxyError:
    """What `credentials.team`'s foreign key refused: a team deleted while keys are in it
    (409), or a key put in a team that does not exist (400)."""
    if table is TEAMS:
        return ProxyError(
            409,
            "This team still has keys: move them to another team (PATCH "
            '/admin/v1/credentials/{id} {"team": ...}) or delete them first.',
            code="team_has_members",
        )
    return bad_param("team", f"No team named {team!r}.")


def _column_param(table: Table, exc: Any) -> str:
    """The API field a constraint violation names (`providers_weight_check` -> weight)."""
    column = getattr(exc, "column_name", None)
    if not column:
        constraint = getattr(exc, "constraint_name", None) or ""
        column = constraint.removeprefix(table.name + "_").removesuffix("_check")
    if not column:  # raised by a trigger: its message names `table.column`
        for field in table.fields.values():
            if f"{table.name}.{field.column} " in str(exc):
                column = field.column
    for name, field in table.fields.items():
        if field.column == column:
            return name
    return column or ""


def _check_message(exc: Any) -> str:
    message = str(exc).splitlines()[0]
    return f"Rejected by the database: {message}"


async def _statement(
    conn: asyncpg.Connection, table: Table, action: str, row_id: int | None, values: dict[str, Any]
) -> dict[str, Any] | None:
    columns, params = [], []
    for name, value in values.items():
        field = table.fields[name]
        columns.append(field.column)
        params.append(orjson.dumps(value).decode() if field.json else value)
    casts = [
        f"${i + 1}::jsonb" if table.fields[n].json else f"${i + 1}" for i, n in enumerate(values)
    ]
    if action == "insert":
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(casts)}) "  # noqa: S608 (whitelisted columns)
            f"RETURNING *{_extra(table)}"
        )
        row = await conn.fetchrow(sql, *params)
    elif action == "update":
        sets = ", ".join(f"{c} = {v}" for c, v in zip(columns, casts, strict=True))
        sql = (
            f"UPDATE {table.name} SET {sets} WHERE id = ${len(params) + 1} "  # noqa: S608
            f"RETURNING *{_extra(table)}"
        )
        row = await conn.fetchrow(sql, *params, row_id)
    else:
        row = await conn.fetchrow(f"DELETE FROM {table.name} WHERE id = $1 RETURNING *", row_id)  # noqa: S608
        if row is None:
            raise _not_found(table, row_id)
        return None
    if row is None:
        raise _not_found(table, row_id)
    found = dict(row)
    if table is TEAMS:  # (counted after the statement: a rename has carried its keys along)
        found["members"] = await conn.fetchval(MEMBERS_SQL, found["name"])
    return found


MEMBERS_SQL: Final = "SELECT count(*) FROM credentials WHERE team = $1"

# A master key's last use as the database has it (every proxy writes there about once a
# minute, `KeyUsageWriter`); `_shown` adds this process's own, when later.
_LAST_USED: Final = (
    ", (SELECT u.last_used_at FROM key_last_used u WHERE u.key_hash = credentials.key_hash)"
    " AS last_used_at"
)


def _extra(table: Table) -> str:
    return _LAST_USED if table is CREDENTIALS else ""


def _shown(request: web.Request, table: Table, row: Any) -> dict[str, Any]:
    """`view(table, row)`; a master key's `last_used_at` the later of the database's and this
    process's."""
    shown = view(table, row)
    if table is CREDENTIALS:
        seen = request[STATE].snapshot.keys.used_at(bytes(row["key_hash"]))
        stored = row.get("last_used_at")
        if seen is not None and (stored is None or seen > stored.timestamp()):
            shown["last_used_at"] = expiry_text(seen)
    return shown


def _not_found(table: Table, row_id: int | None) -> ProxyError:
    return ProxyError(404, f"No {table.what} with id {row_id}.", code="not_found")


def _table(request: web.Request) -> Table:
    """Which table a route is about: its first path segment under the admin prefix."""
    resource = request.match_info.route.resource
    path = resource.canonical.removeprefix(PREFIX) if resource is not None else ""
    if path.startswith("/providers"):
        return PROVIDERS
    return TEAMS if path.startswith("/teams") else CREDENTIALS


def _row_id(request: web.Request) -> int:
    row_id = int_param(request.match_info["id"], "id", 1)
    assert row_id is not None
    return row_id


def _fields(
    table: Table, body: dict[str, Any], row_id: int | None, *, partial: bool
) -> dict[str, Any]:
    """The body's fields, the original llm-proxy's names read as ours (`admin.aliases`), what
    is only shown (`created_at`, ...) left out, checked against `table`."""
    data = our_names(table.name, body, row_id)
    return fields_of(table, {k: v for k, v in data.items() if k not in SHOWN_ONLY}, partial=partial)


async def _keep_masked_key(
    conn: asyncpg.Connection, row_id: int | None, values: dict[str, Any]
) -> None:
    """A provider's `api_key` sent back as the API shows it (masked) keeps the stored key."""
    sent = values.get("api_key")
    if sent is None or row_id is None:
        return
    stored = await conn.fetchval("SELECT api_key FROM providers WHERE id = $1", row_id)
    if isinstance(stored, str) and sent != stored and sent == mask(stored):
        values["api_key"] = stored


# Handlers


async def list_rows(request: web.Request) -> web.Response:
    """`GET /providers` (`?enabled=true|false`), `GET /credentials`."""
    table = _table(request)
    enabled = request.query.get("enabled")
    if enabled not in (None, "true", "false"):
        raise bad_param("enabled", "`enabled` must be true or false.")
    if DSN not in request.config_dict:
        return json_response({"data": _snapshot_rows(request, table), "source": "file"})
    async with Conn(request, "Listing") as conn:
        rows = await conn.fetch(
            f"SELECT *{_extra(table)} FROM {table.name} "  # noqa: S608
            "WHERE ($1::boolean IS NULL OR is_enabled = $1) ORDER BY id",
            None if enabled is None else enabled == "true",
        )
    return json_response({"data": [_shown(request, table, r) for r in rows], "source": "database"})


def _snapshot_rows(request: web.Request, table: Table) -> list[dict[str, Any]]:
    """YAML mode: what the loaded file configures (ids are positions in the file)."""
    config = request[STATE].snapshot.config
    if table is PROVIDERS:
        return [{"id": i + 1, **provider_view(p)} for i, p in enumerate(config.providers)]
    keys = request[STATE].snapshot.keys
    out = []
    for i, k in enumerate(config.master_keys):
        seen = keys.used_at(k.digest)
        out.append(
            {
                "id": i + 1,
                "name": k.name,
                "enabled": k.enabled,
                "expires_at": expiry_text(k.expires_at) if k.expires_at is not None else None,
                "metadata": dict(k.metadata),
                "created_by": k.created_by,
                "team": k.team,
                "last_used_at": expiry_text(seen) if seen is not None else None,
            }
        )
    return out


async def get_row(request: web.Request) -> web.Response:
    table, row_id = _table(request), _row_id(request)
    if DSN not in request.config_dict:
        rows = _snapshot_rows(request, table)
        if not 1 <= row_id <= len(rows):
            raise _not_found(table, row_id)
        return json_response(rows[row_id - 1])
    async with Conn(request, "Reading") as conn:
        row = await conn.fetchrow(
            f"SELECT *{_extra(table)} FROM {table.name} WHERE id = $1",  # noqa: S608
            row_id,
        )
    if row is None:
        raise _not_found(table, row_id)
    return json_response(_shown(request, table, row))


async def create_row(request: web.Request) -> web.Response:
    table = _table(request)
    values = _fields(table, await body_of(request), None, partial=False)
    key = None
    if table is CREDENTIALS:
        key = values.get("key") or new_master_key()
        values["key"] = key
    row, version = await write(request, table, "insert", None, values)
    assert row is not None
    answer = {**_shown(request, table, row), "config_version": version}
    if key is not None:
        answer["key"] = key  # shown once, now
    return json_response(answer, status=201)


async def replace_row(request: web.Request) -> web.Response:
    """`PUT`: every field as given, omitted ones back to their defaults (a write-only secret
    omitted is kept). A body in the original llm-proxy's shape (one of its field names, or no
    `name`: its PUT had none for providers) is read as it read it: only the fields given
    change, as with PATCH."""
    table, row_id = _table(request), _row_id(request)
    body = await body_of(request)
    original = uses_original_names(table.name, body) or "name" not in body
    if original and table is not TEAMS:  # (a team has no original: its PUT is ours only)
        values = _fields(table, body, row_id, partial=True)
        if not values:
            raise bad_param("", "Nothing to change: the body names no field.")
    else:
        values = {**DEFAULTS[table.name], **_fields(table, body, row_id, partial=False)}
    row, version = await write(request, table, "update", row_id, values)
    assert row is not None
    return json_response({**_shown(request, table, row), "config_version": version})


async def update_row(request: web.Request) -> web.Response:
    """`PATCH`: the fields given, nothing else."""
    table, row_id = _table(request), _row_id(request)
    values = _fields(table, await body_of(request), row_id, partial=True)
    if not values:
        raise bad_param("", "Nothing to change: the body names no field.")
    row, version = await write(request, table, "update", row_id, values)
    assert row is not None
    return json_response({**_shown(request, table, row), "config_version": version})


async def set_status(request: web.Request) -> web.Response:
    """`PATCH .../status {"enabled": bool}` (or the original's `is_enabled`)."""
    table, row_id = _table(request), _row_id(request)
    data = our_names(table.name, await body_of(request), row_id)
    if set(data) != {"enabled"} or not isinstance(data["enabled"], bool):
        raise bad_param("enabled", 'The body must be {"enabled": true} or {"enabled": false}.')
    row, version = await write(request, table, "update", row_id, data)
    assert row is not None
    return json_response({**_shown(request, table, row), "config_version": version})


async def delete_row(request: web.Request) -> web.Response:
    table, row_id = _table(request), _row_id(request)
    _, version = await write(request, table, "delete", row_id, {})
    return json_response({"id": row_id, "deleted": True, "config_version": version})


async def rotate(request: web.Request) -> web.Response:
    """`POST /credentials/{id}/rotate` (`{"key": ...}` optional, or the original's
    `credential_key`): a new key, shown once; the old one stops working as soon as the answer
    comes."""
    row_id = _row_id(request)
    data = our_names(CREDENTIALS.name, await body_of(request), row_id)
    unknown = set(data) - {"key"}
    if unknown:
        raise bad_param(sorted(unknown)[0], "Only `key` may be given to rotate.")
    key = data.get("key") or new_master_key()
    if not isinstance(key, str):
        raise bad_param("key", "`key` must be a string.")
    fields_of(CREDENTIALS, {"key": key}, partial=True)  # its length, as on a create
    row, version = await write(request, CREDENTIALS, "update", row_id, {"key": key})
    assert row is not None
    return json_response(
        {**_shown(request, CREDENTIALS, row), "key": key, "config_version": version}
    )


def add_routes(app: web.Application) -> None:
    # /master-keys: the seed's name for /credentials, answered the same.
    for prefix in ("/providers", "/credentials", "/master-keys"):
        app.router.add_get(prefix, list_rows)
        app.router.add_post(prefix, create_row)
        app.router.add_get(prefix + "/{id}", get_row)
        app.router.add_put(prefix + "/{id}", replace_row)
        app.router.add_patch(prefix + "/{id}", update_row)
        app.router.add_delete(prefix + "/{id}", delete_row)
        app.router.add_patch(prefix + "/{id}/status", set_status)
        if prefix != "/providers":
            app.router.add_post(prefix + "/{id}/rotate", rotate)
