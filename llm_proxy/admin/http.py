"""What every admin route module shares: the prefix, JSON answers, query and body parsing, a
pooled connection to the config's database (`Conn`), and read-your-writes (`serve_version`).
Imports no other admin module, so any of them may import it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from llm_proxy.errors import ProxyError, bad_param, invalid_json
from llm_proxy.keys import ADMIN_DB, ADMIN_NAME, DSN, LISTENER, STORE

if TYPE_CHECKING:  # asyncpg (3 MB) is imported on the first database request, not at startup
    import asyncpg

PREFIX: Final = "/admin/v1"
MAX_ID: Final = 2**63 - 1  # PostgreSQL's bigint: ids and versions beyond it do not exist
_SERVED_WAIT_SECS: Final = 5.0


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class Conn:
    """`async with Conn(request) as conn`: a pooled connection; 409 in YAML mode."""

    def __init__(self, request: web.Request, what: str) -> None:
        if DSN not in request.config_dict:
            raise ProxyError(
                409,
                f"{what} needs database mode: this proxy's config is file-driven (YAML mode); "
                "edit the file and reload instead.",
                code="read_only_config",
            )
        self._db = request.app[ADMIN_DB]
        self._dsn = request.config_dict[DSN]
        self._conn: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        pool = await self._db.get(self._dsn)
        self._conn = await pool.acquire()
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None
        await (await self._db.get(self._dsn)).release(self._conn)


async def body_of(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise invalid_json(str(exc)) from None
    if not isinstance(data, dict):
        raise ProxyError(
            400, "The request body must be a JSON object.", code="invalid_request_body"
        )
    return data


def int_param(value: str | None, name: str, minimum: int, maximum: int = MAX_ID) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad_param(name, f"`{name}` must be an integer.") from None
    if not minimum <= number <= maximum:
        raise bad_param(name, f"`{name}` must be between {minimum} and {maximum}.")
    return number


def version_number(version: str) -> int | str:
    """A served config version as the API shows it: a number, as every version this proxy
    makes is one (database mode's `config_version`, YAML mode's reload count), so that what
    `/config/version` answers is what `/config/rollback` and `If-Match` take back."""
    return int(version) if version.isdigit() else version


def version_param(value: object, name: str = "version") -> int:
    """A config version given in a body: a positive integer, or its decimal string (what
    `/config/version` answered before it answered numbers, and what old scripts send)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise bad_param(name, f"`{name}` must be a positive integer.")
    return value


async def serve_version(request: web.Request, version: int) -> bool:
    """Make this instance serve config `version` (or newer) before answering a write: reload
    at once rather than wait for the NOTIFY, then wait for the swap (bounded)."""
    listener = request.config_dict.get(LISTENER)
    if listener is not None:
        listener.request_reload()
    store = request.config_dict[STORE]
    deadline = time.monotonic() + _SERVED_WAIT_SECS
    while time.monotonic() < deadline:
        current = store.current.version
        if current.isdigit() and int(current) >= version:
            return True
        await asyncio.sleep(0.01)
    return False


async def begin_change(conn: asyncpg.Connection, request: web.Request) -> None:
    """The start of a write's transaction: the config version locked (a 412 when the
    client's `If-Match` names another: it read an older configuration), and the change
    recorded in the history as the admin key's."""
    if_match = request.headers.get("If-Match")
    current = await conn.fetchval("SELECT version FROM config_version FOR UPDATE")
    if if_match is not None and if_match.strip('"') != str(current):
        raise ProxyError(
            412,
            f"The configuration is at version {current}, not {if_match}: read it again and retry.",
            code="precondition_failed",
        )
    await conn.execute(
        "SELECT set_config('llm_proxy.actor', $1, true)", f"admin:{request[ADMIN_NAME]}"
    )
