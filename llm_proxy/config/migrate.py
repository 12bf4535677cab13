"""Schema migrations: numbered plain-SQL files shipped inside the package
(`llm_proxy/config/sql`, also reachable as `sql/` in the repository), applied in order, each in
its own transaction, recorded in `schema_migrations`, under an advisory lock so that instances
starting together never race."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import asyncpg

SQL_DIR: Final = Path(__file__).resolve().parent / "sql"
# pg_advisory_lock key for migrations ("llmp" in ASCII); any constant unique to us works.
LOCK_KEY: Final = 0x6C6C6D70
_FILE_RE: Final = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.up\.sql$")

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up: Path
    down: Path | None


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.up.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise ValueError(f"migration file name not NNN_name.up.sql: {path.name}")
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        found.append(Migration(int(match[1]), match[2], path, down if down.exists() else None))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


async def _locked(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    await conn.execute(_CREATE_TABLE)


async def _unlock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def applied(conn: asyncpg.Connection) -> dict[int, datetime]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
    return {r["version"]: r["applied_at"] for r in rows}


async def migrate_up(conn: asyncpg.Connection, directory: Path = SQL_DIR) -> list[Migration]:
    """Apply every pending migration; returns those applied (none when up to date)."""
    migrations = discover(directory)
    await _locked(conn)
    try:
        done = await applied(conn)
        ran = []
        for m in migrations:
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.up.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
            ran.append(m)
        return ran
    finally:
        await _unlock(conn)


async def migrate_down(
    conn: asyncpg.Connection, steps: int = 1, directory: Path = SQL_DIR
) -> list[Migration]:
    """Revert the last `steps` applied migrations (each needs a .down.sql file)."""
    by_version = {m.version: m for m in discover(directory)}
    await _locked(conn)
    try:
        done = sorted(await applied(conn), reverse=True)[:steps]
        reverted = []
        for version in done:
            m = by_version.get(version)
            if m is None or m.down is None:
                raise ValueError(f"migration {version} has no down migration; refusing")
            async with conn.transaction():
                await conn.execute(m.down.read_text(encoding="utf-8"))
                await conn.execute("DELETE FROM schema_migrations WHERE version = $1", version)
            reverted.append(m)
        return reverted
    finally:
        await _unlock(conn)


async def status_lines(conn: asyncpg.Connection, directory: Path = SQL_DIR) -> list[str]:
    done = await applied(conn)
    lines = []
    for m in discover(directory):
        at = done.get(m.version)
        state = f"applied {at:%Y-%m-%d %H:%M:%S%z}" if at else "pending"
        lines.append(f"{m.version:03d} {m.name:<30} {state}")
    return lines
