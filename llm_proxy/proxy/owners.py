"""Who owns which object: files, batches, vector stores, conversations and responses live in
one provider account, so every later call about them (`GET /v1/files/{id}`, a Responses
follow-up with `previous_response_id`) must go there, not wherever round-robin would send it;
and they belong to the master key that created them, so that no other key sees them
(`llm_proxy.proxy.objects` decides who may; this module only remembers).

The proxy learns an owner when a provider's answer creates an object (its `"id"`), and keeps
it in a bounded map that outlives config reloads. The map is bounded per key
(`PER_KEY_OWNERS`) and in total (`LOCAL_OWNERS`): a key only ever evicts its own oldest
entries, and when the total is full the key holding the most entries gives up its oldest, so
one busy tenant cannot make the proxy forget another's objects. In database mode every entry
is also written to the `object_owners` table (migrations 005, 008), off the request path, so
that every instance knows: an instance that does not know an id asks the table (a call naming
an object is rare next to chat traffic, and one indexed lookup is cheap), waiting briefly for
a write still on its way from the instance that saw it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from llm_proxy.tasks import stop_task

log = structlog.get_logger()

LOCAL_OWNERS: Final = 100_000  # ids remembered in memory, all keys together
PER_KEY_OWNERS: Final = 20_000  # ids remembered in memory per key (its oldest go first)
_CHARGED_IDS: Final = 10_000  # batches charged, remembered locally (without a database)
_LOOKUP_RETRIES: Final = (0.0, 0.05, 0.1, 0.2, 0.4)  # seconds: a write may be on its way
_QUERY_TIMEOUT_SECS: Final = 2.0
KEEP_DAYS: Final = 30  # response rows older than this are deleted (hourly)
_PRUNE_EVERY_SECS: Final = 3600.0
# Only responses expire at the provider (30 days); files, batches, vector stores and
# conversations live until deleted, and their row is what lets their key reach them.
_PRUNE = """
DELETE FROM object_owners WHERE id = ANY (ARRAY(
    SELECT id FROM object_owners
    WHERE kind = 'response' AND created_at < now() - make_interval(days => $1)
    LIMIT 5000))
"""
_SELECT = "SELECT id, provider, key_name, models FROM object_owners WHERE id = ANY($1::text[])"
_INSERT = """
INSERT INTO object_owners (id, provider, kind, key_name, models) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET provider = EXCLUDED.provider, key_name = EXCLUDED.key_name,
    models = EXCLUDED.models
"""
# The row may not be there yet (its write is on its way) or any more (pruned): a charge
# never depends on it.
_CHARGE = """
INSERT INTO object_owners AS o (id, provider, kind, key_name, charged_at)
VALUES ($1, $2, 'batch', $3, now())
ON CONFLICT (id) DO UPDATE SET charged_at = now() WHERE o.charged_at IS NULL
"""
# The id of the object at the top of a JSON answer (OpenAI puts it first): `{"id": "file-abc", ...`
_ID: Final = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_\-.:]{1,200})"')
# In a Responses stream, the first event names the response.
_STREAM_ID: Final = re.compile(rb'"response"\s*:\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_\-.:]{1,200})"')


def created_id(body: bytes, stream: bool = False) -> str | None:
    """The id of the object an answer created (None when it names none)."""
    match = _STREAM_ID.search(body[:8192]) if stream else _ID.match(body[:512])
    return match.group(1).decode() if match else None


@dataclass(frozen=True, slots=True)
class Owner:
    provider: str  # the provider account holding the object
    key: str | None  # the name of the master key that created it; None: no key (auth off)
    # A batch input file uploaded through the proxy: the models its lines name (None: unknown).
    models: frozenset[str] | None = None


class Owners:
    """The bounded map, and the table behind it in database mode."""

    def __init__(
        self, dsn: str | None = None, size: int = LOCAL_OWNERS, per_key: int = PER_KEY_OWNERS
    ) -> None:
        self._local: dict[str, Owner] = {}
        # Per creating key, its ids from least to most recently used: eviction order.
        self._by_key: dict[str | None, OrderedDict[str, None]] = {}
        self._size = size
        self._per_key = per_key
        self._charged: OrderedDict[str, None] = OrderedDict()
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

    def remember(
        self,
        object_id: str,
        provider: str,
        kind: str,
        key: str | None = None,
        models: frozenset[str] | None = None,
    ) -> None:
        """`provider` created `object_id` (a `kind`: file, batch, vector_store, response,
        conversation, upload) for the master key named `key`."""
        self._keep(object_id, Owner(provider, key, models))
        if self._dsn is not None:
            task = asyncio.get_running_loop().create_task(
                self._write(object_id, provider, kind, key, models)
            )
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _keep(self, object_id: str, owner: Owner) -> None:
        local = self._local
        previous = local.get(object_id)
        if previous is not None and previous.key != owner.key:
            self._by_key[previous.key].pop(object_id, None)
        local[object_id] = owner
        ids = self._by_key.get(owner.key)
        if ids is None:
            ids = self._by_key[owner.key] = OrderedDict()
        ids[object_id] = None
        ids.move_to_end(object_id)
        if len(ids) > self._per_key:
            self._evict(owner.key)
        if len(local) > self._size:
            # The key holding the most entries gives up its oldest (rare: only creates
            # get here, and there are few keys).
            self._evict(max(self._by_key, key=lambda k: len(self._by_key[k])))

    def _evict(self, key: str | None) -> None:
        ids = self._by_key[key]
        oldest, _ = ids.popitem(last=False)
        del self._local[oldest]
        if not ids:
            del self._by_key[key]

    def forget(self, object_id: str) -> None:
        """`object_id` was deleted: no key owns it any more."""
        owner = self._local.pop(object_id, None)
        if owner is not None:
            ids = self._by_key[owner.key]
            ids.pop(object_id, None)
            if not ids:
                del self._by_key[owner.key]
        if self._dsn is not None:
            task = asyncio.get_running_loop().create_task(self._delete(object_id))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def known(self, object_id: str) -> Owner | None:
        """The owner if this instance knows it (no I/O)."""
        owner = self._local.get(object_id)
        if owner is not None:
            self._by_key[owner.key].move_to_end(object_id)
        return owner

    async def owner(self, object_id: str) -> Owner | None:
        """The owner: this instance's map, else (database mode) the table."""
        owner = self.known(object_id)
        if owner is not None or self._dsn is None:
            return owner
        for pause in _LOOKUP_RETRIES:
            if pause:
                await asyncio.sleep(pause)
            try:
                found = await self._read([object_id])
            except Exception as exc:  # the table is a help, not a dependency
                log.warning("object_owner_lookup_failed", error=type(exc).__name__)
                return None
            owner = found.get(object_id)
            if owner is not None:
                self._keep(object_id, owner)
                return owner
        return None

    async def owners(self, object_ids: Iterable[str]) -> dict[str, Owner]:
        """The owners of many ids (a list page): the map's, then one query for the rest (no
        waiting for writes on their way: a list shows what is known now)."""
        found: dict[str, Owner] = {}
        missing = []
        for object_id in object_ids:
            owner = self._local.get(object_id)
            if owner is not None:
                found[object_id] = owner
            else:
                missing.append(object_id)
        if missing and self._dsn is not None:
            try:
                found.update(await self._read(missing))
            except Exception as exc:
                log.warning("object_owner_lookup_failed", error=type(exc).__name__)
        return found

    async def charge_once(self, object_id: str, owner: Owner) -> bool:
        """True the first time it is asked about `object_id` (a batch of `owner` whose usage
        is to be charged), on any instance in database mode; False ever after."""
        if object_id in self._charged:
            return False
        self._charged[object_id] = None
        if len(self._charged) > _CHARGED_IDS:
            self._charged.popitem(last=False)
        if self._dsn is None:
            return True
        try:
            pool = await self._connection_pool()
            async with asyncio.timeout(_QUERY_TIMEOUT_SECS):
                done = await pool.execute(_CHARGE, object_id, owner.provider, owner.key)
        except Exception as exc:  # charged by this instance, which now knows it
            log.warning("object_charge_mark_failed", error=type(exc).__name__)
            return True
        return bool(done == "INSERT 0 1")

    async def _connection_pool(self) -> Any:
        from llm_proxy.config.database import create_pool

        assert self._dsn is not None  # (database mode: every caller checks)
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(
                    self._dsn,
                    connect_timeout=_QUERY_TIMEOUT_SECS,
                    command_timeout=_QUERY_TIMEOUT_SECS,
                    name="llm-proxy owners",
                )
        return self._pool

    async def _read(self, object_ids: list[str]) -> dict[str, Owner]:
        pool = await self._connection_pool()
        async with asyncio.timeout(_QUERY_TIMEOUT_SECS):
            rows = await pool.fetch(_SELECT, object_ids)
        return {
            str(row["id"]): Owner(
                str(row["provider"]),
                row["key_name"],
                frozenset(row["models"]) if row["models"] is not None else None,
            )
            for row in rows
        }

    async def _write(
        self,
        object_id: str,
        provider: str,
        kind: str,
        key: str | None,
        models: frozenset[str] | None,
    ) -> None:
        try:
            pool = await self._connection_pool()
            async with asyncio.timeout(_QUERY_TIMEOUT_SECS):
                await pool.execute(
                    _INSERT,
                    object_id,
                    provider,
                    kind,
                    key,
                    sorted(models) if models is not None else None,
                )
        except Exception as exc:  # known locally still; other instances fall back
            log.warning("object_owner_write_failed", error=type(exc).__name__, kind=kind)

    async def _delete(self, object_id: str) -> None:
        try:
            pool = await self._connection_pool()
            async with asyncio.timeout(_QUERY_TIMEOUT_SECS):
                await pool.execute("DELETE FROM object_owners WHERE id = $1", object_id)
        except Exception as exc:  # the row only names a deleted object
            log.warning("object_owner_delete_failed", error=type(exc).__name__)

    async def close(self) -> None:
        await stop_task(self._pruner)
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=2)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._pool.close()
