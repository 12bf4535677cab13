"""When each master key was last used, written to the database's `key_last_used` table
(migration 016) by every running proxy in database mode: about once a minute, and once more at
shutdown. The table has no trigger: a use is no configuration change (no history, no NOTIFY).

The request path only notes a key's use in memory (`KeyRing.used`: one dict store per request);
this writer turns those notes into rows off the request path, with one statement per flush for
every key used since the last one, keeping the later of what is stored and what it saw (two
proxies on one database, or a clock a little behind, never move a time back). Rows of keys
no longer configured (deleted, or rotated: a row is per key hash) are dropped in the same
transaction. A database that cannot be reached costs one warning per outage; the uses seen
meanwhile are written on the next flush that succeeds.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Mapping
from typing import Final

import structlog

from llm_proxy.config.database import connect

log = structlog.get_logger()

FLUSH_EVERY_SECS: Final = 60.0
_TIMEOUT_SECS: Final = 5.0
_UPSERT: Final = """
INSERT INTO key_last_used (key_hash, last_used_at)
SELECT * FROM unnest($1::bytea[], $2::timestamptz[])
ON CONFLICT (key_hash) DO UPDATE
SET last_used_at = greatest(key_last_used.last_used_at, EXCLUDED.last_used_at)
"""
_PRUNE: Final = """
DELETE FROM key_last_used u
WHERE NOT EXISTS (SELECT 1 FROM credentials c WHERE c.key_hash = u.key_hash)
"""


class KeyUsageWriter:
    """`used()`: each key's last use by digest, as `time.perf_counter()` readings."""

    def __init__(
        self,
        dsn: str,
        used: Callable[[], Mapping[bytes, float]],
        every_secs: float = FLUSH_EVERY_SECS,
    ) -> None:
        self._dsn = dsn
        self._used = used
        self._every = every_secs
        self._written: dict[bytes, float] = {}
        self._failing = False
        self.flushes = 0  # successful writes (for tests and `/health/detailed`-style checks)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.flush()

    async def flush(self) -> None:
        """Write the uses seen since the last successful flush (nothing when there are none)."""
        fresh = {d: t for d, t in self._used().items() if self._written.get(d, -1.0) < t}
        if not fresh:
            return
        offset = time.time() - time.perf_counter()
        moments = [
            datetime.datetime.fromtimestamp(offset + t, datetime.UTC) for t in fresh.values()
        ]
        try:
            conn = await connect(
                self._dsn, connect_timeout=_TIMEOUT_SECS, name="llm-proxy key usage"
            )
            try:
                async with conn.transaction():
                    await conn.execute(_UPSERT, list(fresh), moments, timeout=_TIMEOUT_SECS)
                    await conn.execute(_PRUNE, timeout=_TIMEOUT_SECS)
            finally:
                await conn.close(timeout=_TIMEOUT_SECS)
        except Exception as exc:  # (asyncpg's, OSError, timeouts: none stops the writer)
            if not self._failing:
                self._failing = True
                log.warning("key_usage_write_failed", error=type(exc).__name__, keys=len(fresh))
            return
        if self._failing:
            self._failing = False
            log.info("key_usage_write_recovered", keys=len(fresh))
        self._written.update(fresh)
        self.flushes += 1
