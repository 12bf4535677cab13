"""PostgreSQL for the tests: the server, found or started, and the database-mode helpers (a
provider row written as an operator would, the stored config version, a proxy in database mode,
waiting for a proxy to serve a version).

The server:

1. `LLM_PROXY_TEST_DSN` when set;
2. else the server on 127.0.0.1:5432 (user postgres, trust auth) when it answers;
3. else a throwaway cluster made with `initdb` and started with `pg_ctl` on a free port,
   stopped when the test session ends.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from llm_proxy.app import DatabaseMode
from llm_proxy.config.database import initial_load
from llm_proxy.config.listener import LISTENER_APP_NAME
from llm_proxy.config.migrate import migrate_up
from llm_proxy.config.model import Config
from tests.helpers import ProxyFactory, eventually, free_port

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; run the throwaway cluster as the postgres user then.
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _start_throwaway() -> str:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError(
            "no PostgreSQL for the tests: set LLM_PROXY_TEST_DSN, run one on 127.0.0.1:5432, "
            "or install the server binaries (initdb, pg_ctl)"
        )
    root = Path(tempfile.mkdtemp(prefix="llm-proxy-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def server_dsn() -> str:
    configured = os.environ.get("LLM_PROXY_TEST_DSN")
    if configured:
        return configured
    if asyncio.run(_answers(DEFAULT_DSN)):
        return DEFAULT_DSN
    return _start_throwaway()


def with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


@asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """A new, empty database on `server` (its DSN), dropped at the end."""
    name = f"llm_proxy_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(server, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def migrated(dsn: str) -> None:
    """The config schema migrated up, in the database at `dsn`."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate_up(conn)
    finally:
        await conn.close()


async def add_provider(
    sql: asyncpg.Connection, name: str, api_base: str, mapping: dict[str, Any], weight: int = 1
) -> None:
    await sql.execute(
        "INSERT INTO providers (name, api_base, api_key, weight, model_mapping) "
        "VALUES ($1, $2, $3, $4, $5::jsonb)",
        name,
        api_base,
        f"sk-{name}-provider-key",
        weight,
        orjson.dumps(mapping).decode(),
    )


async def db_version(sql: asyncpg.Connection) -> str:
    return str(await sql.fetchval("SELECT version FROM config_version"))


# Settings for the tests that add no credentials: serve without authentication.
OPEN = Config(require_auth=False)


async def start_db_proxy(
    start_proxy: ProxyFactory, dsn: str, base: Config = OPEN, **kwargs: Any
) -> str:
    config, version = await initial_load(dsn, base, timeout_secs=5)
    return await start_proxy(config, version=version, database=DatabaseMode(dsn, base, **kwargs))


async def version_of(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> str:
    """The config version `url` serves (from /health/detailed: with admin keys, pass one)."""
    async with http.get(url + "/health/detailed", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["config_version"])


async def wait_version(
    http: aiohttp.ClientSession,
    url: str,
    version: str | int,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> float:
    """Wait until `url` serves config `version` (or a later one); the seconds it took."""
    started = time.perf_counter()

    async def reached() -> bool:
        return int(await version_of(http, url, headers)) >= int(version)

    await eventually(reached, timeout=timeout, interval=0.002, what=f"{url} at version {version}")
    return time.perf_counter() - started


async def wait_listener(sql: asyncpg.Connection) -> int:
    """The backend pid of this database's listener, once it is connected."""

    async def pid() -> Any:
        return await sql.fetchval(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_APP_NAME,
        )

    return int(await eventually(pid, what="the listener connected"))


async def rows(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def wait_rows(dsn: str, query: str, count: int, *args: Any) -> list[asyncpg.Record]:
    """The rows of `query` once there are at least `count` of them (a request log writes in
    batches)."""

    async def enough() -> list[asyncpg.Record]:
        found = await rows(dsn, query, *args)
        assert len(found) >= count, f"{len(found)} rows, expected {count}: {query}"
        return found

    return await eventually(enough, timeout=10, interval=0.05)
