"""`/routing`: the routing section (fallbacks, retries, strategies, rules) served, in the
YAML's shape (`GET`, both modes), and in database mode its replacement (`PUT`).

`PUT /routing` takes the whole section as a JSON object in the YAML's shape (what `GET`
answers under `routing`, or a subset: what it leaves out is unset) and makes the routing
tables hold exactly that, in one transaction recorded as one change by this admin key:
checked first on its own and against the providers and keys served (a 400 naming the field),
then written and validated again with the whole configuration read back inside the
transaction (`config.database.build_config`, as every admin write). An empty section empties
the tables: the settings file's `routing:` (if any) serves again; a section the tables
already hold (in any form: `GET`'s answer sent back) writes nothing. `If-Match: <config version>`
makes it conditional (412). The answer comes once this instance serves the new version. In
YAML mode the section is the file's: `PUT` is 409 `read_only_config`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llm_proxy.admin.http import (
    Conn,
    begin_change,
    body_of,
    json_response,
    serve_version,
    version_number,
)
from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import ConfigError, Issue, format_path
from llm_proxy.config.model import Config, Routing
from llm_proxy.config.routing import parse_routing, routing_data, routing_issues
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import DSN, LISTENER, STATE

if TYPE_CHECKING:
    import asyncpg


def add_routes(app: web.Application) -> None:
    app.router.add_get("/routing", get_routing)
    app.router.add_put("/routing", put_routing)


def _answer(config: Config, version: int | str, writable: bool) -> dict[str, Any]:
    """`source`: where the routing served comes from; `writable`: whether PUT may change it
    (database mode: also while the file's section serves, the tables being empty)."""
    return {
        "source": "database" if config.routing_from_rows else "file",
        "writable": writable,
        "version": version,
        "routing": routing_data(config.routing),
    }


def _refused(issue: Issue) -> ProxyError:
    """A routing issue as the API's 400: `param` is the field's path in the body."""
    path = issue.path[1:] if issue.path[:1] == ("routing",) else issue.path
    return bad_param(format_path(path) if path else "", str(issue))


async def _holds(conn: asyncpg.Connection, base: Config, routing: Routing) -> bool:
    """Do the routing tables already hold `routing` (valid, in whatever form)? Then a PUT
    writes nothing: what `GET` answered (every default written out) sent back unchanged
    makes no new version."""
    from llm_proxy.config.database import build_config, read_rows

    current = await read_rows(conn)
    if not current.has_routing:
        return False
    try:
        return build_config(base, current).routing == routing
    except ConfigError:
        return False  # a bad psql edit being refused: this write is its fix


# Handlers


async def get_routing(request: web.Request) -> web.Response:
    """`GET /routing`: `{"source": "file" | "database", "version": N, "routing": {...}}`;
    `source` says where the routing served comes from (the settings file's section, or the
    routing tables in database mode)."""
    snapshot = request[STATE].snapshot
    writable = DSN in request.config_dict
    return json_response(_answer(snapshot.config, version_number(snapshot.version), writable))


async def put_routing(request: web.Request) -> web.Response:
    """`PUT /routing`: replace the routing section (database mode)."""
    import asyncpg

    from llm_proxy.config.database import build_config, read_rows
    from llm_proxy.config.db_write import replace_routing

    conn_for = Conn(request, "Changing the routing")  # 409 in YAML mode, before the body
    body = await body_of(request)
    check = Checker(None)
    routing = parse_routing(check, body)
    served = request[STATE].snapshot.config
    issues = check.issues or routing_issues(dataclasses.replace(served, routing=routing))
    if issues:
        raise _refused(issues[0])
    listener = request.config_dict.get(LISTENER)
    base = listener.base if listener is not None else served
    async with conn_for as conn:
        try:
            async with conn.transaction():
                await begin_change(conn, request)
                if not await _holds(conn, base, routing):
                    await replace_routing(conn, body)
                try:
                    config = build_config(base, await read_rows(conn))
                except ConfigError as exc:
                    raise _refused(exc.issues[0]) from None
                version = int(await conn.fetchval("SELECT version FROM config_version"))
        except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError) as exc:
            raise bad_param("", f"Rejected by the database: {str(exc).splitlines()[0]}") from None
        except asyncpg.DataError as exc:  # a NUL in a string, ...
            raise bad_param("", f"Invalid value: {exc}") from None
    served_now = await serve_version(request, version)
    return json_response({**_answer(config, version, True), "served": served_now})
