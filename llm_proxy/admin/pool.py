"""The admin plane's PostgreSQL pool: at most two connections, opened on the first request
that needs one, so the admin plane costs the proxy nothing until it is used.

One class for both of the admin plane's databases: the config's (database mode) and the
request log's (database mode's own, or `request_log.database_url`, which may name another
database and has a statement timeout of its own), opened with `config.database.create_pool`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncpg (3 MB) is imported on the first database request, not at startup
    import asyncpg


class AdminPool:
    """`await pool.get(dsn)`: the pool, opened against `dsn` on the first call;
    `server_settings` are the connections' PostgreSQL settings."""

    def __init__(self, server_settings: dict[str, str] | None = None) -> None:
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def get(self, dsn: str) -> asyncpg.Pool:
        from llm_proxy.config.database import create_pool  # (imports asyncpg)

        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(
                    dsn, connect_timeout=10, command_timeout=30, settings=self._server_settings
                )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
