"""Which provider owns which object: files, batches, vector stores and responses live in one
provider account, so every later call about them (`GET /v1/files/{id}`, a Responses follow-up
with `previous_response_id`) must go there, not wherever round-robin would send it.

The proxy learns an owner when a provider's answer creates an object (its `"id"`), and keeps
it in a bounded map that outlives config reloads. In database mode it is also written to the
`object_owners` table (migration 005), off the request path, so that every instance knows: an
instance that does not know an id asks the table (a call naming an object is rare next to
chat traffic, and one indexed lookup is cheap), waiting briefly for a write still on its way
from the instance that saw it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from typing import Any, Final

import structlog

from llm_proxy.tasks import stop_task

log = structlog.get_logger()

LOCAL_OWNERS: Final = 100_000  # ids remembered in memory (LRU)
_LOOKUP_RETRIES: Final = (0.0, 0.05, 0.1, 0.2, 0.4)  # seconds: a write may be on its way
_QUERY_TIMEOUT_SECS: Final = 2.0
KEEP_DAYS: Final = 30  # rows of the table older than this are deleted (hourly)
_PRUNE_EVERY_SECS: Final = 3600.0
_PRUNE = """
DELETE FROM object_owners WHERE id = ANY (ARRAY(
    SELECT id FROM object_owners WHERE created_at < now() - make_interval(days => $1)
    LIMIT 5000))
"""
# The object's id at the top of a JSON answer (OpenAI puts it first): `{"id": "file-abc", ...`
_ID: Final = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_\-.:]{1,200})"')
# In a Responses stream, the first event names the response.
_STREAM_ID: Final = re.compile(rb'"response"\s*:\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_\-.:]{1,200})"')


def created_id(body: bytes, stream: bool = False) -> str | None:
    """The id of the object an answer created (None when it names none)."""
    match = _STREAM_ID.search(body[:8192]) if stream else _ID.match(body[:512])
    return match.group(1).decode() if match else None


class Owners:
    """The bounded map, and the table behind it in database mode."""

    def __init__(self, dsn: str | None = None, size: int = LOCAL_OWNERS) -> None:
        self._local: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._dsn = dsn
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        self._pruner: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._dsn is not None:
            self._pruner = asyncio.get_running_loop().create_task(self._prune_hourly())

    async def _prune_hourly(self) -> None:
        while True:
            try:
                pool = await self._connection_pool()
                while True:
                    deleted = await pool.execute(_PRUNE, KEEP_DAYS)
                    if deleted.endswith(" 0"):
                        break
            except Exception as exc:  # retried next hour
                log.warning("object_owner_prune_failed", error=type(exc).__name__)
            await asyncio.sleep(_PRUNE_EVERY_SECS)

    def remember(self, object_id: str, provider: str, kind: str) -> None:
        """`provider` created `object_id` (a `kind`: file, batch, vector_store, response)."""
        local = self._local
        local[object_id] = provider
        local.move_to_end(object_id)
        if len(local) > self._size:
            local.popitem(last=False)
        if self._dsn is not None:
            task = asyncio.get_running_loop().create_task(self._write(object_id, provider, kind))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def known(self, object_id: str) -> str | None:
        """The owner if this instance knows it (no I/O)."""
        provider = self._local.get(object_id)
        if provider is not None:
            self._local.move_to_end(object_id)
        return provider

    async def owner(self, object_id: str) -> str | None:
        """The owner: this instance's map, else (database mode) the table."""
        provider = self.known(object_id)
        if provider is not None or self._dsn is None:
            return provider
        for pause in _LOOKUP_RETRIES:
            if pause:
                await asyncio.sleep(pause)
            try:
                provider = await self._read(object_id)
            except Exception as exc:  # the table is a help, not a dependency
                log.warning("object_owner_lookup_failed", error=type(exc).__name__)
                return None
            if provider is not None:
                self._local[object_id] = provider
                return provider
        return None

    async def _connection_pool(self) -> Any:
        import asyncpg

        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=2,
                    timeout=_QUERY_TIMEOUT_SECS,
                    command_timeout=_QUERY_TIMEOUT_SECS,
                    server_settings={"application_name": "llm-proxy owners"},
                )
        return self._pool

    async def _read(self, object_id: str) -> str | None:
        pool = await self._connection_pool()
        async with asyncio.timeout(_QUERY_TIMEOUT_SECS):
            value = await pool.fetchval(
                "SELECT provider FROM object_owners WHERE id = $1", object_id
            )
        return str(value) if value is not None else None

    async def _write(self, object_id: str, provider: str, kind: str) -> None:
        try:
            pool = await self._connection_pool()
            async with asyncio.timeout(_QUERY_TIMEOUT_SECS):
                await pool.execute(
                    "INSERT INTO object_owners (id, provider, kind) VALUES ($1, $2, $3) "
                    "ON CONFLICT (id) DO UPDATE SET provider = EXCLUDED.provider",
                    object_id,
                    provider,
                    kind,
                )
        except Exception as exc:  # known locally still; other instances fall back
            log.warning("object_owner_write_failed", error=type(exc).__name__, kind=kind)

    async def close(self) -> None:
        await stop_task(self._pruner)
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=2)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._pool.close()
