"""The response cache (`cache:`): exact-match answers for repeated calls, streamed or not.

Where it sits (`handlers.charged`): after authentication, the rate-limit middleware (a hit
counts as a request) and the routing rules (the key of an entry is the model that will be
asked), before the key's tokens-per-minute and budget reservation (a hit spends none of it,
unless `charge_hits`). `lookup` answers a hit itself, or says `miss` (the answer will be kept:
`RequestState.recording` gets the streamed bytes in `relay`, a whole answer is the handler's
`web.Response`) or `bypass`; `finished` keeps what completed cleanly.

The key (`Slot`, `_digest`): a BLAKE2b hash of the key's secret digest (with `namespace:
key`), the endpoint, the model that will be asked, the matching routing rule, the query string
and the body, canonical (`canonical`: keys sorted, integral numbers at the top level as
integers, without `stream`, `stream_options` and the proxy's own fields), in a namespace: the
key's name (`namespace: key`, the default), its team's (`namespace: team`: `team:<name>`,
for a key in a team; a key in none keeps its own) or `global`. Chat completions and
completions are one entry for a stream and a whole answer (`llm_proxy.protocols.replay`
converts); the other endpoints keep the two apart.

Never kept: answers other than a 200, a stream that did not end cleanly (no `[DONE]`, an error
event, a client that left), answers larger than `max_entry_bytes`, answers of a fallback model,
`n > 1` (unless `allow_n`), a temperature above `max_temperature` (a request that names none
is kept), Responses calls that store an object or continue one, and anything a
request says `Cache-Control: no-store` of. Unless forced (`x-llm-proxy-cache: force`).

Backends: `memory` (this process: an LRU bounded by bytes) or `redis` (shared by every
instance; zlib-compressed values with Redis's own expiry; any Redis error is a bypass for that
request, never an error to the client, and Redis is left alone for `_REDIS_RETRY_SECS`).
Identical misses are coalesced per instance: the first goes upstream, the others wait for its
entry up to `coalesce_wait_secs`, then go upstream themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import quote

import orjson
import structlog
from aiohttp import hdrs, web
from multidict import istr

from llm_proxy import errors
from llm_proxy.config.model import NO_CACHE, CacheSettings, price_for
from llm_proxy.config.patterns import NameMatcher
from llm_proxy.keys import BACKGROUND, CAPTURE, LIMITER, METRICS
from llm_proxy.observe.metrics import Metrics
from llm_proxy.protocols import replay
from llm_proxy.proxy.budgets import budget_exceeded
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.keyring import KeyEntry
from llm_proxy.proxy.state import ANONYMOUS, RequestState
from llm_proxy.proxy.usage import Relayed

log = structlog.get_logger()

CACHE_HEADER: Final = istr("x-llm-proxy-cache")  # request: force; answer: hit, miss, bypass
TTL_HEADER: Final = istr("x-llm-proxy-cache-ttl")
HIT: Final = "hit"
MISS: Final = "miss"
BYPASS: Final = "bypass"
PROVIDER: Final = "cache"  # the provider of a hit, in metrics and the request log
# Not part of the key: the form of the answer (one entry serves both, converted). (The proxy's
# own fields, `llm_proxy` and `metadata.tags`, were taken out of the body before.)
_UNKEYED: Final = frozenset({"stream", "stream_options"})
_REDIS_PREFIX: Final = "llm-proxy:cache:"
_REDIS_RETRY_SECS: Final = 5.0
_ENTRY_OVERHEAD: Final = 256  # bytes an entry costs beyond its body (memory accounting)
_SCAN_LIMIT: Final = 1_000_000  # keys an admin stats or purge call walks at most (redis)
_JSON: Final = "application/json"
_SSE: Final = "text/event-stream"
_GENERATING: Final = frozenset({"/chat/completions", "/completions", "/responses", "/messages"})
_NUMBERS: Final = (int, float)


class Entry(NamedTuple):
    """One kept answer, in the client's protocol (a chat stream: `replay.normalize_stream`'s
    form, its usage beside it). (A named tuple: the cheapest record Python makes, once per
    miss.)"""

    created: float  # when kept: the store's clock (`_clock`)
    expires: float
    body: bytes
    streamed: bool  # body is an SSE stream (else JSON)
    provider: str  # the provider that answered
    model: str  # the model that answered (x-llm-proxy-model)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_json: bytes | None = None  # an OpenAI stream's usage object

    def dump(self) -> bytes:
        head = orjson.dumps(
            [
                self.created,
                self.expires,
                self.streamed,
                self.provider,
                self.model,
                self.prompt_tokens,
                self.completion_tokens,
                self.usage_json.decode() if self.usage_json is not None else None,
            ]
        )
        return zlib.compress(head + b"\n" + self.body, 1)

    @classmethod
    def load(cls, blob: bytes) -> Entry:
        raw = zlib.decompress(blob)
        head, _, body = raw.partition(b"\n")
        c, e, s, p, m, pt, ct, u = orjson.loads(head)
        return cls(c, e, body, s, p, m, pt, ct, u.encode() if u is not None else None)


@dataclass(slots=True)
class Miss:
    """A request the cache will keep the answer of (`finished`)."""

    key: str | bytes
    slot: Slot  # its namespace, endpoint and model
    ttl: int
    leads: bool  # identical requests meanwhile wait for this one's answer (`waiters`)
    waiters: asyncio.Future[Entry | None] | None = None  # made by the first that waits


# What a hit's request says was relayed (without content capture, nothing writes to it).
_HIT: Final = Relayed(status=200, complete=True)


class MemoryStore:
    """Entries in this process: least recently used first out, bounded by bytes."""

    backend: Final = "memory"
    exact: Final = True  # entries named by their request's bytes (`_name`)
    # (Its entries' times are perf_counter()'s: a request's arrival, `RequestState.started`,
    # is one, so a request reads no clock for them.)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        # name -> (entry, its size, namespace, model)
        # (A dict keeps its insertion order: the first is the least recently used.) An entry is
        # kept as a plain tuple of plain values: the garbage collector stops tracking such a
        # tuple, so a cache of a million entries adds nothing to its full collections.
        self._entries: dict[str | bytes, tuple[tuple[Any, ...], int, str, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str | bytes, now: float) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        kept = found[0]
        if kept[1] <= now:  # (expires)
            self._drop(key)
            return None
        del self._entries[key]  # (to the end: the most recently used)
        self._entries[key] = found
        return Entry._make(kept)

    def put(self, key: str | bytes, entry: tuple[Any, ...], namespace: str, model: str) -> None:
        """Keep `entry` (an `Entry`, or its fields as a plain tuple; its name's bytes count
        too), making room for it."""
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        kept = entry if type(entry) is tuple else tuple(entry)
        size = len(kept[2]) + len(key) + _ENTRY_OVERHEAD  # (the body's)
        entries[key] = (kept, size, namespace, model)
        self.bytes += size
        if self.bytes > self.max_bytes:
            while self.bytes > self.max_bytes and entries:
                self._drop(next(iter(entries)))
                self.evictions += 1

    def _drop(self, key: str | bytes) -> None:
        self.bytes -= self._entries.pop(key)[1]

    def purge(self, namespace: str | None, model: str | None) -> int:
        doomed = [
            key
            for key, (_, _, ns, m) in self._entries.items()
            if (namespace is None or ns == namespace) and (model is None or m == model)
        ]
        for key in doomed:
            self._drop(key)
        return len(doomed)


class RedisStore:
    """Entries in Redis, shared by every instance: `llm-proxy:cache:{namespace}:{model}:{hash}`
    (namespace and model quoted), values compressed, expiring in Redis."""

    backend: Final = "redis"
    exact: Final = False  # entries named by a hash
    # (Its entries' times are the wall clock's: every instance reads them.)

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        # Short timeouts: a slow Redis must not slow requests (a lookup is then a bypass).
        self.redis = Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.url = url
        self._retry_at = 0.0
        self.up = True

    def available(self, now: float) -> bool:
        return now >= self._retry_at

    def failed(self, exc: Exception, now: float) -> None:
        self._retry_at = now + _REDIS_RETRY_SECS
        if self.up:
            self.up = False
            log.error(
                "cache_backend_down",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                retry_in_secs=_REDIS_RETRY_SECS,
            )

    def ok(self) -> None:
        if not self.up:
            self.up = True
            log.warning("cache_backend_recovered")

    @staticmethod
    def name(key: str) -> str:
        return _REDIS_PREFIX + key

    async def get(self, key: str | bytes) -> Entry | None:
        assert isinstance(key, str)  # (`exact` is False: hashed names)
        blob: Any = await self.redis.get(self.name(key))
        return None if blob is None else Entry.load(blob)

    async def put(self, key: str | bytes, entry: Entry, ttl: int) -> None:
        assert isinstance(key, str)
        await self.redis.set(self.name(key), entry.dump(), ex=max(1, ttl))

    async def scan(self, namespace: str | None, model: str | None) -> list[bytes]:
        pattern = _REDIS_PREFIX + (
            _glob(quote(namespace, safe="")) if namespace is not None else "*"
        )
        pattern += ":" + (_glob(quote(model, safe="")) if model is not None else "*") + ":*"
        found: list[bytes] = []
        async for name in self.redis.scan_iter(match=pattern, count=1000):
            found.append(name)
            if len(found) >= _SCAN_LIMIT:
                break
        return found

    async def close(self) -> None:
        await self.redis.aclose()


def _glob(text: str) -> str:
    """`text` matched literally by a Redis glob."""
    for char in "\\*?[]":
        text = text.replace(char, "\\" + char)
    return text


class Policy:
    """`cache:` compiled: which (endpoint, model) is kept, and for how long."""

    __slots__ = ("_slots", "_ttls", "endpoints", "models", "per_endpoint", "per_model", "settings")

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.endpoints = frozenset("/" + e for e in settings.endpoints)
        self.models = NameMatcher(settings.models)
        self.per_endpoint = {"/" + name: o for name, o in settings.per_endpoint}
        self.per_model = tuple((NameMatcher((p,)), o) for p, o in settings.per_model)
        self._ttls: dict[tuple[str, str], int | None] = {}
        self._slots: dict[tuple[str, str, str | None, str | None, bytes, str], Slot | None] = {}

    def slot(
        self, endpoint: str, model: str, rule: str | None, key: KeyEntry | None
    ) -> Slot | None:
        """What every entry of one endpoint, model, rule and namespace shares (worked out
        once: a request only hashes its body on top); None when they are not kept."""
        shared = self.settings.namespace
        if key is None or shared == "global":
            memo: tuple[str, str, str | None, str | None, bytes, str] = (
                endpoint,
                model,
                rule,
                None,
                b"",
                "",
            )
        else:  # (the key's team too: a key moved to another team reads that team's)
            memo = (endpoint, model, rule, key.name, key.digest, key.team_label)
        found = self._slots.get(memo, False)
        if found is not False:
            return found  # type: ignore[return-value]
        ttl = self.ttl_for(endpoint, model)
        slot = None
        if ttl is not None:
            if self.settings.namespace == "global":
                namespace, owner = "global", b""
            elif key is None:  # (authentication off: one namespace)
                namespace, owner = ANONYMOUS, b""
            elif shared == "team" and key.team is not None:
                # A team's keys share its entries (`team:<name>`, as its limits are kept);
                # a key in no team keeps its own.
                namespace, owner = key.team.name, key.team.name.encode()
            else:
                # A key's entries are its own: a key made later under the same name, or the
                # same name's rotated secret, starts with none (its digest is hashed in).
                namespace, owner = key.name, key.digest
            slot = Slot(endpoint, model, rule, namespace, owner, ttl, self.settings)
        if len(self._slots) >= 10_000:  # (keys times models: bounded by the config)
            self._slots.clear()
        self._slots[memo] = slot
        return slot

    def ttl_for(self, endpoint: str, model: str) -> int | None:
        """The seconds an answer of `model` at `endpoint` is kept; None: not kept."""
        found = self._ttls.get((endpoint, model), -1)
        if found != -1:
            return found
        ttl = self._decide(endpoint, model)
        if len(self._ttls) < 10_000:  # (model names are bounded by the routes, mostly)
            self._ttls[(endpoint, model)] = ttl
        return ttl

    def _decide(self, endpoint: str, model: str) -> int | None:
        settings = self.settings
        enabled = endpoint in self.endpoints and model in self.models
        ttl = settings.ttl_secs
        override = self.per_endpoint.get(endpoint)
        if override is not None:
            enabled = endpoint in self.endpoints if override.enabled is None else override.enabled
            ttl = override.ttl_secs or ttl
        for matcher, o in self.per_model:
            if model in matcher:
                if o.enabled is not None:
                    enabled = o.enabled and endpoint in self.endpoints
                ttl = o.ttl_secs or ttl
                break
        return ttl if enabled else None


@dataclass(slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    stored: int = 0
    errors: int = 0


class ResponseCache:
    """The app's cache (`keys.CACHE`): `on` while the config has an enabled `cache:`."""

    def __init__(self, metrics: Metrics | None = None, rate_limit_backend: str | None = None):
        self.on = False
        self.policy = Policy(NO_CACHE)
        self.store: MemoryStore | RedisStore | None = None
        self.counters = Counters()
        self._metrics = metrics
        self._redis_default = rate_limit_backend
        self._inflight: dict[str | bytes, Miss] = {}  # the misses upstream, by entry name
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired: list[RedisStore] = []
        self._evicted = 0  # by memory stores let go (the metric is a counter: it never drops)
        if metrics is not None:
            metrics.cache_sizes = self._sizes

    def _sizes(self) -> tuple[int, int, int, Counters]:
        """Entries, bytes and evictions of the memory backend, and the counters (/metrics
        reads them when scraped: nothing is counted twice on the request path)."""
        store = self.store
        if isinstance(store, MemoryStore):
            return len(store), store.bytes, self._evicted + store.evictions, self.counters
        return 0, 0, self._evicted, self.counters

    def configure(self, settings: CacheSettings, rate_limit_backend: str | None = None) -> None:
        """Serve `settings` from now on (at startup and on every reload): the backend is kept
        while its kind, URL and size stay the same."""
        if rate_limit_backend is not None:
            self._redis_default = rate_limit_backend
        if settings == self.policy.settings and self.on == settings.enabled:
            return
        self.policy = Policy(settings)
        self.on = settings.enabled
        if not settings.enabled:  # off: what it held is let go (a reload may turn it on anew)
            self._retire(self.store)
            self.store = None
            return
        store = self.store
        if settings.backend == "memory":
            if isinstance(store, MemoryStore) and store.max_bytes == settings.max_bytes:
                return
            if isinstance(store, MemoryStore):
                store.max_bytes = settings.max_bytes  # (shrinks at the next put)
                return
            self._retire(store)
            self.store = MemoryStore(settings.max_bytes)
            return
        url = settings.url or self._redis_default
        if url is None:  # (config/cache.py refuses this combination; a reload may race)
            log.error("cache_redis_without_url")
            self.on = False
            return
        if isinstance(store, RedisStore) and store.url == url:
            return
        self._retire(store)
        self.store = RedisStore(url)

    def _retire(self, store: MemoryStore | RedisStore | None) -> None:
        if isinstance(store, RedisStore):
            self._retired.append(store)
        elif isinstance(store, MemoryStore):
            self._evicted += store.evictions

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 1.0)
        stores = [*self._retired, self.store]
        for store in stores:
            if isinstance(store, RedisStore):
                with contextlib.suppress(Exception):
                    await store.close()

    # --- the request path ---

    def lookup(
        self, request: web.Request, state: RequestState, rule: str | None, call: Call
    ) -> web.Response | Miss | Coroutine[Any, Any, web.Response | Miss | None] | None:
        """A hit's answer, a `Miss` to keep the answer of, or None (`state.cache` says
        bypass, or stays None for what the cache never looks at); or, where the answer needs
        a wait (Redis, an identical request upstream, `charge_hits`' budget), the coroutine
        that has it. (Not a coroutine itself: a hit or miss in memory costs no frame.)"""
        policy = self.policy
        slot = policy.slot(call.endpoint, call.name, rule, state.api_key)
        if slot is None or call.gemini_action is not None:
            return None
        ttl = slot.ttl
        headers = request.headers
        read, write, max_age = True, True, None
        force = False
        if (control := headers.get(hdrs.CACHE_CONTROL)) is not None:
            read, write, max_age = _control(control)
        if (asked := headers.get(CACHE_HEADER)) is not None:
            force = _forced(asked)
        if (wanted_ttl := headers.get(TTL_HEADER)) is not None:
            ttl = _ttl(wanted_ttl, policy.settings.max_request_ttl_secs)
        if not write or not _cacheable(slot, call.data, force):
            self._bypass(state)
            return None
        store = self.store
        assert store is not None
        data = call.data
        try:
            if (
                "stream" in data
                or "stream_options" in data
                or type(data.get("temperature")) is float
                or type(data.get("top_p")) is float
            ):
                body = _canonical(data)
            else:  # (most bodies: their sorted dump is their canonical form)
                body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):  # (a number orjson cannot write)
            self._bypass(state)
            return None
        head = slot.streamed if call.stream else slot.whole
        if call.query:
            head += call.query.encode() + b"\0"
        name = _name(slot, head + body, store.exact)
        if type(store) is not MemoryStore:
            return self._remote(request, state, call, slot, name, ttl, read, max_age)
        if read:
            now = state.started
            entry = store.get(name, now)
            if entry is not None and _fresh(entry, now, max_age):
                answer = self._served(request, state, call, entry, now)
                if answer is not None:
                    return answer
            leader = self._inflight.get(name)
            if leader is not None:  # an identical request is upstream: its answer will do
                return self._follow(request, state, call, slot, name, ttl, leader)
            return self._lead(state, slot, name, ttl)
        return self._miss(state, name, slot, ttl)  # (no-cache: not read, so nobody waits)

    def _served(
        self, request: web.Request, state: RequestState, call: Call, entry: Entry, now: float
    ) -> web.Response | Coroutine[Any, Any, web.Response] | None:
        """A hit on `entry` (None: it cannot be put in the form `call` asks for)."""
        body = _served(entry, call)
        if body is None:
            return None
        if self.policy.settings.charge_hits:  # over its budget: the key's 429
            return self._charged_hit(request, state, call, entry, body, now)
        return self._hit(request, state, call, entry, body, now)

    async def _charged_hit(
        self,
        request: web.Request,
        state: RequestState,
        call: Call,
        entry: Entry,
        body: bytes,
        now: float,
    ) -> web.Response:
        await _charge(request, state, entry)
        return self._hit(request, state, call, entry, body, now)

    def _lead(self, state: RequestState, slot: Slot, name: str | bytes, ttl: int) -> Miss:
        """A miss: upstream it goes, and identical requests meanwhile wait for its answer."""
        state.cache = MISS
        self.counters.misses += 1
        state.record_limit = slot.max_entry_bytes  # (`relay` records)
        miss = self._inflight[name] = Miss(name, slot, ttl, True)
        return miss

    async def _follow(
        self,
        request: web.Request,
        state: RequestState,
        call: Call,
        slot: Slot,
        name: str | bytes,
        ttl: int,
        leader: Miss,
    ) -> web.Response | Miss | None:
        """Wait for the answer of the identical request upstream (within
        `coalesce_wait_secs`), else go upstream too."""
        waiting = leader.waiters
        if waiting is None:
            waiting = leader.waiters = asyncio.get_running_loop().create_future()
        entry = await _wait(waiting, self.policy.settings.coalesce_wait_secs)
        if entry is not None:
            answer = self._served(request, state, call, entry, _clock(self.store))
            if answer is not None:
                return answer if isinstance(answer, web.Response) else await answer
        return self._miss(state, name, slot, ttl)

    async def _remote(
        self,
        request: web.Request,
        state: RequestState,
        call: Call,
        slot: Slot,
        name: str | bytes,
        ttl: int,
        read: bool,
        max_age: float | None,
    ) -> web.Response | Miss | None:
        """`lookup` on Redis: any failure, or Redis inside its pause after one, is a bypass."""
        store = self.store
        assert isinstance(store, RedisStore)
        if read:
            now = time.time()
            if not store.available(now):
                self._bypass(state)
                return None
            try:
                entry = await store.get(name)
                store.ok()
            except Exception as exc:  # (any Redis failure: no cache)
                self._failed(state, store, exc)
                return None
            if entry is not None and _fresh(entry, now, max_age):
                answer = self._served(request, state, call, entry, now)
                if answer is not None:
                    return answer if isinstance(answer, web.Response) else await answer
            leader = self._inflight.get(name)
            if leader is not None:
                return await self._follow(request, state, call, slot, name, ttl, leader)
        if read and name not in self._inflight:
            return self._lead(state, slot, name, ttl)
        return self._miss(state, name, slot, ttl)

    def _miss(self, state: RequestState, name: str | bytes, slot: Slot, ttl: int) -> Miss:
        """A miss that goes upstream on its own (another is upstream already, or the request
        said `no-cache`)."""
        state.cache = MISS
        self.counters.misses += 1
        state.record_limit = slot.max_entry_bytes  # (`relay` records)
        return Miss(name, slot, ttl, False)

    def _bypass(self, state: RequestState) -> None:
        state.cache = BYPASS
        self.counters.bypasses += 1

    def _failed(self, state: RequestState, store: RedisStore, exc: Exception) -> None:
        store.failed(exc, time.time())
        self._error()
        self._bypass(state)

    def _error(self) -> None:
        self.counters.errors += 1

    def _hit(
        self,
        request: web.Request,
        state: RequestState,
        call: Call,
        entry: Entry,
        body: bytes,
        now: float,
    ) -> web.Response:
        """The answer of a hit: `body`, the entry in the form `call` asks for."""
        state.cache = HIT
        state.provider = PROVIDER
        self.counters.hits += 1
        stream = call.stream
        answer = web.Response(status=200, body=body, content_type=_SSE if stream else _JSON)
        headers = answer.headers
        headers["Age"] = str(max(0, int(now - entry.created)))
        headers["x-llm-proxy-provider"] = PROVIDER
        headers["x-llm-proxy-model"] = entry.model
        if stream:
            headers["Cache-Control"] = "no-cache"
            headers["X-Accel-Buffering"] = "no"
        state.final_status = 200
        _account(request, state, entry)
        if request.app[CAPTURE]:
            relayed = state.relayed = Relayed(status=200, complete=True)
            relayed.note(body)
        else:
            state.relayed = _HIT  # (read only: its status)
        return answer

    def finished(
        self, app: web.Application, state: RequestState, miss: Miss, answer: object
    ) -> None:
        """After the answer of a miss went out (or failed, or the client left): keep it when
        it is one to keep (`_entry`), and wake the identical requests waiting for it."""
        try:
            entry = self._entry(state, miss, answer)
        except Exception:  # never the request's problem
            log.exception("cache_entry_failed", request_id=state.request_id)
            entry = None
        if miss.leads:  # (only one leads at a time for a name)
            del self._inflight[miss.key]
        waiters = miss.waiters
        if waiters is not None and not waiters.done():
            waiters.set_result(Entry._make(entry) if entry is not None else None)
        if entry is None:
            return
        self.counters.stored += 1
        store = self.store
        if type(store) is MemoryStore:
            store.put(miss.key, entry, miss.slot.namespace, miss.slot.model)
        elif isinstance(store, RedisStore):
            task = asyncio.get_running_loop().create_task(
                self._put(store, miss, Entry._make(entry))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            background = app[BACKGROUND]
            background.add(task)
            task.add_done_callback(background.discard)

    async def _put(self, store: RedisStore, miss: Miss, entry: Entry) -> None:
        try:
            await store.put(miss.key, entry, miss.ttl)
            store.ok()
        except Exception as exc:  # (not kept: the next request goes upstream)
            store.failed(exc, time.time())
            self._error()

    def _entry(self, state: RequestState, miss: Miss, answer: object) -> tuple[Any, ...] | None:
        """What to keep of a miss's answer: a clean 200 of the model asked for, whole or
        streamed to its end, JSON or SSE, within `max_entry_bytes`; else None."""
        relayed = state.relayed
        if (
            relayed is None
            or relayed.status != 200
            or not relayed.complete
            or state.fallback_from is not None
            or not isinstance(answer, web.StreamResponse)
        ):
            return None
        usage_json = None
        streamed = False
        if type(answer) is web.Response:  # read whole (`relay_whole`): never an event stream
            body = answer.body  # (its status is the upstream's: `relayed.status`, 200)
            if type(body) is not bytes or not body.startswith(b"{"):
                return None  # (every answer the cache keeps whole is a JSON object)
        else:
            recorded = state.recording
            if recorded is None or state.final_status not in (None, 200):
                return None
            body = bytes(recorded)
            # (The header, not `content_type`: aiohttp parses that property on each read.)
            content_type = answer.headers.get(hdrs.CONTENT_TYPE, "")
            if content_type.startswith(_SSE):
                kept = _kept_stream(miss.slot.endpoint, body)
                if kept is None:
                    return None
                body, usage_json = kept
                streamed = True
            elif not content_type.startswith(_JSON) or body[:1] != b"{":
                return None
        if not body or len(body) > state.record_limit:
            return None
        now = state.started if type(self.store) is MemoryStore else time.time()
        return (  # (an `Entry`'s fields: a plain tuple is what the memory store keeps)
            now,
            now + miss.ttl,
            body,
            streamed,
            state.provider,
            state.model or miss.slot.model,
            state.prompt_tokens,
            state.completion_tokens,
            usage_json,
        )

    # --- the admin plane ---

    async def stats(self) -> dict[str, Any]:
        """Counters of this instance since it started, and the backend's size."""
        c = self.counters
        store = self.store
        entries = size = 0
        if isinstance(store, MemoryStore):
            entries, size = len(store), store.bytes
        elif isinstance(store, RedisStore) and self.on:
            try:
                names = await store.scan(None, None)
                entries = len(names)
                if names:
                    pipe = store.redis.pipeline(transaction=False)
                    for name in names:
                        pipe.strlen(name)
                    size = sum(await pipe.execute())
            except Exception as exc:  # (the admin hears of it as an error count)
                store.failed(exc, time.time())
                self._error()
        return {
            "enabled": self.on,
            "backend": self.policy.settings.backend if self.on else None,
            "entries": entries,
            "bytes": size,
            "max_bytes": store.max_bytes if isinstance(store, MemoryStore) else None,
            "hits": c.hits,
            "misses": c.misses,
            "bypasses": c.bypasses,
            "stored": c.stored,
            "evictions": store.evictions if isinstance(store, MemoryStore) else 0,
            "errors": c.errors,
        }

    async def purge(self, namespace: str | None = None, model: str | None = None) -> int:
        """Drop the entries of a namespace and/or a model (every entry: neither)."""
        store = self.store
        if isinstance(store, MemoryStore):
            return store.purge(namespace, model)
        if isinstance(store, RedisStore):
            names = await store.scan(namespace, model)
            for at in range(0, len(names), 1000):
                await store.redis.delete(*names[at : at + 1000])
            return len(names)
        return 0


class Slot:
    """What the entries of one (endpoint, model, rule, namespace) share: their TTL, their
    name's fixed part (namespace and model, quoted) and what their hash starts with (the key's
    secret digest with `namespace: key`, the endpoint, model and rule, and the form of the
    answer where it does not convert)."""

    __slots__ = (
        "completions",
        "endpoint",
        "generating",
        "max_entry_bytes",
        "max_temperature",
        "model",
        "name",
        "namespace",
        "one_choice",
        "responses",
        "streamed",
        "ttl",
        "whole",
    )

    def __init__(
        self,
        endpoint: str,
        model: str,
        rule: str | None,
        namespace: str,
        owner: bytes,
        ttl: int,
        settings: CacheSettings,
    ) -> None:
        self.endpoint, self.model, self.namespace, self.ttl = endpoint, model, namespace, ttl
        self.max_entry_bytes = settings.max_entry_bytes
        self.max_temperature = settings.max_temperature
        self.one_choice = not settings.allow_n
        self.responses = endpoint == "/responses"
        self.completions = endpoint == "/completions"
        self.generating = endpoint in _GENERATING
        self.name = f"{quote(namespace, safe='')}:{quote(model, safe='')}:"
        parts = (
            namespace.encode(),
            owner,
            endpoint.encode(),
            model.encode(),
            (rule or "").encode(),
        )
        base = b"\0".join(parts) + b"\0"
        if endpoint in replay.CONVERTIBLE:
            self.streamed = self.whole = base
        else:
            self.streamed, self.whole = base + b"stream\0", base + b"whole\0"


def _name(slot: Slot, raw: bytes, exact: bool) -> str | bytes:
    """An entry's name from what it is made of (`raw`: the slot's prefix, the query string
    and the canonical body). `exact` (the memory backend): those bytes themselves (a dict
    compares them byte for byte: no hash to compute, none to collide). Redis: the namespace
    and model, then a BLAKE2b hash (256 bits, in hex) of them."""
    if exact:
        return raw
    return slot.name + hashlib.blake2b(raw, digest_size=32).hexdigest()


def canonical(data: dict[str, Any]) -> bytes:
    """`data` as an entry's name has it: keys sorted, at any depth; without `stream` and
    `stream_options` (one entry for both forms of an answer); integral numbers at the top level
    written as integers (`"temperature": 0.0` and `0` are one request: they are looked for
    where clients write them, in `temperature` and `top_p`, and then everywhere at the top
    level). (`lookup` has this inline.)"""
    if (
        "stream" in data
        or "stream_options" in data
        or type(data.get("temperature")) is float
        or type(data.get("top_p")) is float
    ):
        return _canonical(data)
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def _canonical(data: dict[str, Any]) -> bytes:
    canon = {
        k: int(v) if type(v) is float and v.is_integer() else v
        for k, v in data.items()
        if k not in _UNKEYED
    }
    return orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)


def _control(value: str) -> tuple[bool, bool, float | None]:
    """`Cache-Control`: (read the cache, write it, the oldest entry accepted)."""
    read = write = True
    max_age = None
    for part in value.lower().split(","):
        name, _, arg = part.strip().partition("=")
        if name == "no-store":
            read = write = False
        elif name == "no-cache":
            read = False
        elif name == "max-age":
            try:
                max_age = float(arg.strip().strip('"'))
            except ValueError:
                raise errors.ProxyError(
                    400,
                    f"`Cache-Control: max-age` must be a number of seconds, got {arg[:20]!r}.",
                    code="invalid_cache_control",
                ) from None
            if not math.isfinite(max_age) or max_age < 0:
                raise errors.ProxyError(
                    400,
                    "`Cache-Control: max-age` must be zero or more seconds.",
                    code="invalid_cache_control",
                )
    return read, write, max_age


def _forced(value: str) -> bool:
    """`x-llm-proxy-cache: force` (anything else there is a 400)."""
    if value.strip().lower() != "force":
        raise errors.ProxyError(
            400,
            f"`{CACHE_HEADER}` may only be `force` (cache this answer even though the request "
            f"is not deterministic), got {value[:40]!r}.",
            code="invalid_cache_control",
        )
    return True


def _ttl(value: str, most: int) -> int:
    text = value.strip()
    if not text.isdigit() or not 0 < int(text) <= most:
        raise errors.ProxyError(
            400,
            f"`{TTL_HEADER}` must be a whole number of seconds from 1 to {most}, "
            f"got {value[:20]!r}.",
            code="invalid_cache_control",
        )
    return int(text)


def _cacheable(slot: Slot, data: dict[str, Any], force: bool) -> bool:
    """May the request's answer be kept: (Responses) creating or continuing no stored object,
    and, unless `force`d, not more than one choice (unless `allow_n`) and not sampled above
    `max_temperature`? (A request that asks for no temperature is kept: the operator turned
    the cache on for its model, and Anthropic's newer models take none at all.)"""
    if slot.responses and (
        data.get("store") is not False
        or data.get("previous_response_id") is not None
        or data.get("background") is True
        or data.get("conversation") is not None
    ):
        return False  # (its id belongs to the key that created it: never served again)
    if force:
        return True
    if slot.one_choice:
        n = data.get("n")
        if type(n) is int and n > 1:
            return False
        if slot.completions:  # (legacy completions' other way to ask for several)
            n = data.get("best_of")
            if type(n) is int and n > 1:
                return False
    if slot.generating:
        temperature = data.get("temperature")
        if temperature is not None and (
            type(temperature) not in _NUMBERS or temperature > slot.max_temperature
        ):
            return False
    return True


def _fresh(entry: Entry, now: float, max_age: float | None) -> bool:
    return entry.expires > now and (max_age is None or now - entry.created <= max_age)


def _serves(entry: Entry, call: Call) -> bool:
    """Can `entry` answer `call` (a stream, or not)? Only chat completions and completions
    convert; a stream that asks for its usage needs the usage the entry knows."""
    if entry.streamed != call.stream and call.endpoint not in replay.CONVERTIBLE:
        return False
    return not (call.stream and _include_usage(call) and _usage_of(entry) is None)


def _include_usage(call: Call) -> bool:
    if call.endpoint not in replay.CONVERTIBLE:
        return False
    options = call.data.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _usage_of(entry: Entry) -> bytes | None:
    """The usage object of an OpenAI answer kept as a stream (as reported, or as counted)."""
    if entry.usage_json is not None:
        return entry.usage_json
    prompt, completion = entry.prompt_tokens, entry.completion_tokens
    if prompt is None or completion is None:
        return None
    return orjson.dumps(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    )


def _served(entry: Entry, call: Call) -> bytes | None:
    """The entry's body in the form `call` asks for; None when it cannot be put so."""
    if entry.streamed == call.stream and not call.stream:
        return entry.body  # (the common case: a whole answer for a whole answer)
    if not _serves(entry, call):
        return None
    endpoint = call.endpoint
    if not call.stream:
        if not entry.streamed:
            return entry.body
        return replay.stream_to_whole(endpoint, entry.body, _usage_of(entry))
    body, usage = entry.body, None
    if not entry.streamed:
        converted = replay.whole_to_stream(endpoint, entry.body)
        if converted is None:
            return None
        body, usage = converted
    if _include_usage(call):
        usage = usage or _usage_of(entry)
        if usage is None:
            return None
        body = replay.with_usage_chunk(body, usage, replay.stream_object(endpoint))
    return body


def _kept_stream(endpoint: str, body: bytes) -> tuple[bytes, bytes | None] | None:
    """A recorded stream as it is kept, with its usage object (OpenAI's chat and
    completions); None when it did not end as its protocol ends."""
    if endpoint in replay.CONVERTIBLE:
        return replay.normalize_stream(body)
    tail = body[-4096:]
    if endpoint == "/messages":
        if b"event: message_stop" not in tail or b"event: error" in body:
            return None
        return body, None
    if endpoint == "/responses":
        if b'"response.completed"' not in tail or b'"type":"error"' in body:
            return None
        return body, None
    return None


def _account(request: web.Request, state: RequestState, entry: Entry) -> None:
    """A hit's tokens, recorded under the provider `cache` (spend dashboards tell them from
    the upstream's); its cost is 0 unless `_charge` set it."""
    prompt, completion = entry.prompt_tokens, entry.completion_tokens
    if state.cost_usd is None:
        state.cost_usd = 0.0
    if prompt is None or completion is None:
        return
    state.prompt_tokens, state.completion_tokens = prompt, completion
    key = state.api_key
    if key is not None:
        key_name, team = key.name, key.team_label
    else:
        key_name, team = ANONYMOUS, ""
    request.app[METRICS].tokens(state.model_label, PROVIDER, prompt, completion, key_name, team)


async def _charge(request: web.Request, state: RequestState, entry: Entry) -> None:
    """`charge_hits`: the hit's cost (at the price of the provider that answered it) against
    the key's budget, or the key's 429 `budget_exceeded` when it does not fit."""
    prompt, completion = entry.prompt_tokens, entry.completion_tokens
    config = state.snapshot.config
    model = state.model or ""
    price = None
    for p in config.providers:
        if p.name == entry.provider and p.pricing:
            price = price_for(p.pricing, model)
            break
    if price is None and config.pricing:
        price = price_for(config.pricing, model)
    if price is None or prompt is None or completion is None:
        return
    usd = state.cost_usd = price.cost(prompt, completion)
    app = request.app
    key = state.api_key
    key_name = key.name if key is not None else ANONYMOUS
    budgets = app[LIMITER].budgets
    held: list[tuple[str, float]] = []
    subjects = (key, key.team) if key is not None else ()
    for subject in subjects:  # the key's budget and its team's
        if subject is None or subject.max_budget_usd is None:
            continue
        reserved, over = await budgets.reserve(subject.name, usd)
        if over is not None:
            for name, amount in held:
                budgets.settle(name, amount, 0.0)
            state.cost_usd = None
            team = key.team_label if key is not None else ""
            app[METRICS].rate_limited(key_name, team, subject.kind, "budget")
            raise budget_exceeded(subject.who, over, list(state.rate_headers or ()))
        held.append((subject.name, reserved))
    for name, amount in held:
        budgets.settle(name, amount, usd)
    app[METRICS].cost(
        state.model_label, PROVIDER, key_name, usd, key.team_label if key is not None else ""
    )


def _clock(store: MemoryStore | RedisStore | None) -> float:
    return time.time() if isinstance(store, RedisStore) else time.perf_counter()


async def _wait(leader: asyncio.Future[Entry | None], secs: float) -> Entry | None:
    """The entry an identical request in flight keeps, within `secs` (None: it kept none,
    or took longer)."""
    if secs <= 0:
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(leader), secs)
    except TimeoutError:
        return None
