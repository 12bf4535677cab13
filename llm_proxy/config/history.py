"""Config history and rollback, read and driven from Python. The recording itself is done by
the database (migration 002: triggers on providers and credentials; 014: on the routing
tables; 017: on teams), so an edit made with plain psql is in the history exactly like one
made by the proxy's tools.

* `history(conn, ...)`: the changes, newest first, paged by version;
* `change(conn, version)`: every row one version changed (both read a row a rollback deleted
  and re-inserted as one UPDATE: `_paired`); `pending(conn)`: those of the caller's open
  transaction;
* `rollback(conn, version, actor)`: providers, credentials, teams and the routing tables back
  to exactly their state at `version`, in one transaction that is itself one recorded change
  (and reloads every running instance through NOTIFY, as any change does); master keys
  revoked since stay revoked unless asked (`restore_revoked_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

TABLES: Final = (
    "providers",
    "credentials",
    "model_fallbacks",
    "routing_rules",
    "routing_settings",
    "teams",
)


class HistoryError(Exception):
    """A history request the database refused (a version outside the history, a provider key
    no longer kept): the message says why, and nothing was changed."""


@dataclass(frozen=True, slots=True)
class Change:
    """One row changed by one config version. Secrets are never in `before`/`after`: a
    provider's `api_key` is masked (with its SHA-256 in `api_key_sha256`), a master key is
    known only by its hash and prefix."""

    version: int
    changed_at: datetime
    table: str
    row_id: int
    operation: str  # INSERT, UPDATE, DELETE
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changed_by: str  # "admin:<key name>", "cli:<user>", "db:<role>", "migration"

    @property
    def name(self) -> str | None:
        """The row's name; a routing row's model (and a fallback's reason), a rule's name
        else its position."""
        row = self.after or self.before or {}
        name = row.get("name")
        if isinstance(name, str):
            return name
        if self.table == "model_fallbacks":
            return f"{row.get('model')} ({row.get('reason')})"
        if self.table == "routing_settings":
            return str(row.get("model"))
        if self.table == "routing_rules":
            return f"position {row.get('position')}"
        return None

    def fields_changed(self) -> list[str]:
        """The columns an UPDATE changed (timestamps aside)."""
        if self.before is None or self.after is None:
            return []
        keys = (set(self.before) | set(self.after)) - {"updated_at"}
        return sorted(k for k in keys if self.before.get(k) != self.after.get(k))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "changed_at": self.changed_at.isoformat(),
            "table": self.table,
            "row_id": self.row_id,
            "name": self.name,
            "operation": self.operation,
            "fields_changed": self.fields_changed(),
            "before": self.before,
            "after": self.after,
            "changed_by": self.changed_by,
        }


_COLUMNS: Final = "version, changed_at, table_name, row_id, operation, before, after, changed_by"


def _paired(changes: list[Change]) -> list[Change]:
    """`changes` with each DELETE and INSERT of the same row in one version shown as one
    UPDATE (the DELETE's before, the INSERT's after), in the DELETE's place.

    A rollback restores a row that differs by deleting it and inserting it back (migration
    010's `llm_proxy_rollback`, which keeps the row's id): recorded as is, a weight put back
    would read "provider deleted" and "provider created" with every column listed. The
    recording stays true to what the database did; it is read as the edit it amounts to.
    """
    inserts = {(c.version, c.table, c.row_id): c for c in changes if c.operation == "INSERT"}
    deleted = {(c.version, c.table, c.row_id) for c in changes if c.operation == "DELETE"}
    out: list[Change] = []
    for c in changes:
        key = (c.version, c.table, c.row_id)
        if c.operation == "DELETE" and key in inserts:
            out.append(replace(c, operation="UPDATE", after=inserts[key].after))
        elif not (c.operation == "INSERT" and key in deleted):
            out.append(c)
    return out


def _change(row: asyncpg.Record) -> Change:
    def load(value: str | None) -> dict[str, Any] | None:
        return orjson.loads(value) if value is not None else None

    return Change(
        version=row["version"],
        changed_at=row["changed_at"],
        table=row["table_name"],
        row_id=row["row_id"],
        operation=row["operation"],
        before=load(row["before"]),
        after=load(row["after"]),
        changed_by=row["changed_by"],
    )


async def history(
    conn: asyncpg.Connection,
    *,
    table: str | None = None,
    row_id: int | None = None,
    before_version: int | None = None,
    limit: int = 50,
) -> list[Change]:
    """Changes, newest first: those of versions below `before_version` (the cursor: the
    last version of the previous page), optionally of one table and row."""
    if table is not None and table not in TABLES:
        raise HistoryError(f"table must be one of {', '.join(TABLES)}")
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM config_history "  # noqa: S608 (constant columns)
        "WHERE ($1::text IS NULL OR table_name = $1) AND ($2::bigint IS NULL OR row_id = $2) "
        "AND ($3::bigint IS NULL OR version < $3) "
        "AND version IN (SELECT DISTINCT version FROM config_history "
        "  WHERE ($1::text IS NULL OR table_name = $1) AND ($2::bigint IS NULL OR row_id = $2) "
        "  AND ($3::bigint IS NULL OR version < $3) ORDER BY version DESC LIMIT $4) "
        "ORDER BY version DESC, id",
        table,
        row_id,
        before_version,
        limit,
    )
    return _paired([_change(r) for r in rows])


async def change(conn: asyncpg.Connection, version: int) -> list[Change]:
    """Every row that config `version` changed (empty: no such version in the history)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM config_history WHERE version = $1 ORDER BY id",  # noqa: S608
        version,
    )
    return _paired([_change(r) for r in rows])


async def pending(conn: asyncpg.Connection) -> list[Change]:
    """Every row the caller's transaction has changed so far, not yet committed (what
    `import-config --dry-run` shows before it rolls back)."""
    return await change(conn, await conn.fetchval("SELECT llm_proxy_pending_version()"))


async def bounds(conn: asyncpg.Connection) -> tuple[int, int]:
    """The oldest version a rollback can reach, and the current version."""
    row = await conn.fetchrow(
        "SELECT (SELECT version FROM config_history_start) AS first, "
        "(SELECT version FROM config_version) AS current"
    )
    assert row is not None
    return int(row["first"]), int(row["current"])


@dataclass(frozen=True, slots=True)
class RolledBack:
    """What a rollback did: the new config version (the current one when nothing differed),
    and the master keys it kept revoked, as (name, "rotated" | "deleted")."""

    version: int
    keys_left_out: tuple[tuple[str, str], ...] = ()


async def rollback(
    conn: asyncpg.Connection, version: int, actor: str, *, restore_revoked_keys: bool = False
) -> RolledBack:
    """Restore providers, credentials, teams and routing tables to their state at `version`.
    `actor` is recorded as who did it. A master key revoked since (rotated: it keeps today's
    key; deleted: it stays deleted) is not revived unless `restore_revoked_keys`: a key
    rotated because it leaked must not come back with a rollback (migration 010)."""
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('llm_proxy.actor', $1, true)", actor)
            done = orjson.loads(
                await conn.fetchval(
                    "SELECT llm_proxy_rollback($1, $2)::text", version, restore_revoked_keys
                )
            )
    except asyncpg.InvalidParameterValueError as exc:
        raise HistoryError(str(exc)) from None
    left_out = tuple((k["name"], k["reason"]) for k in done["keys_left_out"])
    return RolledBack(int(done["version"]), left_out)
