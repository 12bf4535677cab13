"""Per-key limits: requests (token bucket), tokens per minute and cost budgets.

Requests use pyrate-limiter's `TokenBucket` (GCRA: one "theoretical arrival time" per key):
`requests_per_second: R, burst_size: B` admits a burst of B, then R per second. State lives in
this process, or in Redis (pyrate-limiter's `RedisStateStore`, one atomic Lua step per request)
when `rate_limit_backend` is set, so that several instances enforce one limit. If Redis fails,
the limiter serves from local state, logs it and shows it in metrics, and tries Redis again a
few seconds later (fail open, visibly).

Tokens per minute are a budget charged *after* a response with the tokens it used (a response's
size is not known in advance), rejecting new requests while the last minute's budget is spent.
With Redis it is shared: each charge moves one "theoretical arrival time" per key forward in
Redis (a Lua step), from a background task; checks stay local, against the last shared value
(refreshed at least every second) plus this instance's charges.

Parallel requests (`max_parallel_requests`) are slots taken when a request is admitted and
given back when it ends, whatever the way it ends. With Redis they are leases in one sorted set
per key (`llm_proxy:parallel:<key>`, score: the lease's expiry), taken by one atomic Lua step;
this instance renews its live leases every few seconds, so the slots of an instance that
crashed come back within `LEASE_SECS`. If Redis fails, slots are counted in this process
(fail open, as the other limits).

A request with a tokens-per-minute limit or a budget also *reserves*, when it is admitted,
what it could use (`reserve_tokens` here, `CostBudgets.reserve`): the reservation is charged
at once and replaced by the actual usage when the request ends, so parallel requests cannot
all pass a check made before any of them is charged.

Each limit's local state and its atomic step in Redis are here; the Redis they share (the
client, the pause after a failure, up/down reporting, this instance's leases and their
renewal) is `llm_proxy.proxy.limiter_backend`.

A key's team (`teams:`) keeps its state under its entry's name (`team:<name>`), as a key
does, and with Redis goes the same generic way. Without Redis its four limits are met in one
step each at admission, reservation and settlement (`team_admit`, `team_reserve`,
`team_settle`) on a `TeamState` that gathers the objects kept under its name: one lookup,
one clock reading and a verdict only on a refusal each, the request bucket's admitting half
inline (pyrate-limiter's own step makes its refusals), so that a team adds under 3 % to a
limited key's request (issue 32). Cost budgets (`max_budget_usd` per day or
month) live in `llm_proxy.proxy.budgets`; the verdicts, their headers and the 429s in
`llm_proxy.proxy.verdicts`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from pyrate_limiter import Decision, Rate, TokenBucket
from pyrate_limiter.abstracts.algorithm import State
from pyrate_limiter.buckets.redis_state import RedisStateStore

from llm_proxy.config.model import RateLimit
from llm_proxy.errors import ProxyError
from llm_proxy.observe.metrics import Metrics
from llm_proxy.proxy.budgets import (
    BudgetVerdict,
    CostBudgets,
    _Spend,
    budget_exceeded,
    reservation_refusal,
)
from llm_proxy.proxy.keyring import KeyEntry
from llm_proxy.proxy.limiter_backend import LEASE_SECS, RedisBackend
from llm_proxy.proxy.verdicts import (
    Reservation,
    Slot,
    Verdict,
    hold,
    parallel_limited,
    rate_limited,
)

log = structlog.get_logger()

Clock = Callable[[], float]  # seconds
_MINUTE_US: Final = 60_000_000


def _tokens_refusal(
    budget: _Budget, now_us: int, need_us: int, *, force: bool = False
) -> Verdict | None:
    """The refusal of a reservation taking `need_us` of the minute (None: it fits, as this
    process sees it). `force`: Redis refused it, whatever this process sees."""
    owed_us = max(0, budget.tat_us - now_us)
    over_us = owed_us + need_us - _MINUTE_US
    if over_us <= 0 and not force:
        return None
    tpm = budget.tokens_per_minute
    remaining = max(0, tpm - math.ceil(owed_us * tpm / _MINUTE_US))
    return Verdict(False, tpm, remaining, owed_us / 1e6, max(over_us, 1000) / 1e6)


def _rates(limit: RateLimit) -> list[Rate]:
    # Rate wants integers, and TokenBucket only ever uses interval/limit, the time between
    # two requests, in whole microseconds. So: 1000 requests per `period_us` milliseconds,
    # which is one per `period_us` microseconds, exact to the microsecond for any rate
    # (one per hour stays one per 3,600,000,000 us; R*1000 per 1000 s rounded R < 0.0005
    # up to one per 1000 s).
    period_us = max(1, round(1_000_000 / limit.requests_per_second))
    return [Rate(1000, period_us, limit.burst_size)]


# A limit's name in refusals -> in the metrics (`llm_proxy_rate_limited_total{limit}`).
LIMIT_LABELS: Final = {
    "requests per second": "requests",
    "tokens per minute": "tokens",
    "budget": "budget",
    "parallel requests": "parallel",
}


class TeamRefused(Exception):
    """A team refused a request (`Limiter.team_admit`, `team_reserve`): `what` is `budget`,
    `parallel requests`, `requests per second` or `tokens per minute`; `detail` its verdict
    (for parallel requests, the limit). Nothing of the team's is held then."""

    def __init__(self, what: str, detail: Any) -> None:
        super().__init__(what)
        self.what = what
        self.detail = detail

    @property
    def limit(self) -> str:
        """The metrics' name of the limit (`llm_proxy_rate_limited_total{limit}`)."""
        return LIMIT_LABELS[self.what]

    def answer(self, team: KeyEntry, headers: list[tuple[str, str]]) -> ProxyError:
        """The 429 that names the team (`headers`: the key's)."""
        if self.what == "budget":
            return budget_exceeded(team.who, self.detail, headers)
        if self.what == "parallel requests":
            return parallel_limited(team.who, self.detail, headers)
        return rate_limited(team.who, self.detail, self.what, headers)


@dataclass(slots=True)
class _Bucket:
    limit: RateLimit
    rates: list[Rate]
    emission_us: int
    state: State
    redis_key: str


@dataclass(slots=True)
class _Budget:
    tokens_per_minute: int
    tat_us: int = 0  # when the spent budget will have refilled
    redis_key: str = ""
    pending: int = 0  # tokens charged here, not yet added in Redis
    synced_at: float = -math.inf  # when tat_us was last read from Redis
    syncing: bool = False


@dataclass(slots=True)
class TeamState:
    """A team's state without Redis, for its one-step admission, reservation and
    settlement: the objects the generic path keeps under its name (request bucket, tokens
    per minute, budget count), gathered again at each reload (`Limiter.sync`, in place:
    the same object for as long as the team exists), its parallel limit and its requests
    in flight (`inflight`: `Limiter.team_admit` takes a slot, `leave` gives it back)."""

    bucket: _Bucket | None
    backlog_us: int  # the bucket's most backlog before a request that is still admitted
    minute: _Budget | None
    spend: _Spend | None
    parallel: int | None
    inflight: int = 0

    def leave(self) -> None:
        """The parallel slot `Limiter.team_admit` took, given back."""
        self.inflight -= 1


# Tokens per minute in Redis: the same "theoretical arrival time" as in this process, moved
# forward atomically by every instance's charges.
_CHARGE_TOKENS: Final = """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
if tat < now then tat = now end
tat = tat + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', ARGV[3])
return string.format('%d', tat)
"""
_TOKENS_REFRESH_SECS: Final = 1.0
# A reservation of tokens, made atomically in Redis (ARGV: now, the reservation, this
# instance's charges not yet sent, a minute, the TTL; all in microseconds but the TTL): added
# only if it fits in the minute beside every instance's charges. Returns {1/0, the new TAT}.
_RESERVE_TOKENS: Final = """
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat + tonumber(ARGV[3]) - now + tonumber(ARGV[2]) > tonumber(ARGV[4]) then
  return {0, string.format('%d', tat)}
end
tat = tat + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', ARGV[5])
return {1, string.format('%d', tat)}
"""

# Parallel slots in Redis: drop the expired leases, then take one if fewer than the limit are
# held. Returns the number held, negated when full.
_ACQUIRE_SLOT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return -held end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return held + 1
"""


class Limiter:
    """Owns limiter state for every key; survives config reloads for unchanged limits."""

    def __init__(
        self, clock: Clock = time.time, redis: Any = None, metrics: Metrics | None = None
    ) -> None:
        self._clock = clock
        self._algorithm = TokenBucket()
        self._buckets: dict[str, _Bucket] = {}
        self._budgets: dict[str, _Budget] = {}
        self._redis = redis
        # True when state is in this process only (`check_local` then needs no await).
        self.local = redis is None
        self._stores: dict[str, RedisStateStore] = {}
        self._shared = RedisBackend(clock, redis, metrics)
        self.budgets = self._shared.budgets = CostBudgets(clock, self._shared)
        # Parallel slots: this instance's requests in flight per key (with Redis too, for
        # when it fails).
        self._inflight: dict[str, int] = {}
        self._teams: dict[str, TeamState] = {}  # by a team's name (`team:<name>`)

    def sync(self, keys: Iterable[KeyEntry]) -> None:
        """Adopt a new key set: state is kept for keys whose limits did not change (cost
        budgets: see `CostBudgets.sync`)."""
        keys = list(keys)
        self.budgets.sync(keys)
        buckets: dict[str, _Bucket] = {}
        budgets: dict[str, _Budget] = {}
        for key in keys:
            if key.rate_limit is not None:
                old = self._buckets.get(key.name)
                if old is not None and old.limit == key.rate_limit:
                    buckets[key.name] = old
                else:
                    rates = _rates(key.rate_limit)
                    fingerprint = hashlib.sha256(repr(key.rate_limit).encode()).hexdigest()[:12]
                    buckets[key.name] = _Bucket(
                        key.rate_limit,
                        rates,
                        TokenBucket._emission_us(rates[0]),
                        self._algorithm.initial(rates),
                        f"llm_proxy:ratelimit:{key.name}:{fingerprint}",
                    )
            if key.tokens_per_minute is not None:
                old_budget = self._budgets.get(key.name)
                if old_budget is not None and old_budget.tokens_per_minute == key.tokens_per_minute:
                    budgets[key.name] = old_budget
                else:
                    budgets[key.name] = _Budget(
                        key.tokens_per_minute,
                        redis_key=f"llm_proxy:tpm:{key.name}:{key.tokens_per_minute}",
                    )
        self._buckets, self._budgets = buckets, budgets
        teams: dict[str, TeamState] = {}
        for key in keys:
            if key.kind != "team":
                continue
            bucket = buckets.get(key.name)
            backlog_us = (bucket.rates[0].burst - 1) * bucket.emission_us if bucket else 0
            minute, spend = budgets.get(key.name), self.budgets.spend_of(key.name)
            team = self._teams.get(key.name)
            if team is None:
                team = TeamState(bucket, backlog_us, minute, spend, key.max_parallel_requests)
            else:  # (its requests in flight hold this object: their slots stay counted)
                team.bucket, team.backlog_us, team.minute = bucket, backlog_us, minute
                team.spend, team.parallel = spend, key.max_parallel_requests
            teams[key.name] = team
        self._teams = teams
        self._stores = {k: s for k, s in self._stores.items() if k in buckets}

    async def check(self, key_name: str) -> Verdict | None:
        """Spend one request from the key's bucket; None when the key has no request limit."""
        if self._shared.redis_available(self._clock()):
            bucket = self._buckets.get(key_name)
            if bucket is None:
                return None
            try:
                return await self._check_redis(key_name, bucket, int(self._clock() * 1000))
            except Exception as exc:  # any backend failure: fail open to local state
                self._shared.backend_failed(exc)
        return self.check_local(key_name)

    def check_local(self, key_name: str) -> Verdict | None:
        bucket = self._buckets.get(key_name)
        if bucket is None:
            return None
        now_ms = int(self._clock() * 1000)
        state, decision = self._algorithm.step(bucket.rates, bucket.state, now_ms, 1)
        bucket.state = state
        return self._verdict(bucket, state, now_ms, decision)

    def reserve_tokens_local(self, key_name: str, tokens: int) -> tuple[int, Verdict | None]:
        """`reserve_tokens` without Redis (no wait): what it would answer."""
        budget = self._budgets.get(key_name)
        if budget is None or tokens <= 0:
            return 0, None
        tpm = budget.tokens_per_minute
        tokens = min(tokens, tpm)
        now_us = int(self._clock() * 1_000_000)
        need_us = int(tokens * _MINUTE_US / tpm)
        refused = _tokens_refusal(budget, now_us, need_us)
        if refused is not None:
            return 0, refused
        budget.tat_us = max(budget.tat_us, now_us) + need_us
        return tokens, None

    # A key's team without Redis (issue 32): its four limits in one step each at admission,
    # reservation and settlement, with one clock reading each, on its state gathered in one
    # `_Team` at each reload (what a team adds to a request is those steps).

    def team_admit(self, team: KeyEntry) -> TeamState | None:
        """One request of a key of `team` (no Redis) against the team's spent budget, a
        parallel slot, its request rate (one spent) and its tokens per minute, in that
        order; `TeamRefused` when one refuses (nothing is held then). Returns the team's
        state when it took a parallel slot (its `leave` gives it back when the request
        ends)."""
        try:
            t = self._teams[team.name]
        except KeyError:  # (a reload removed the team while this request was authenticated)
            return None
        now = self._clock()
        spend = t.spend
        if spend is not None and (
            now >= spend.ends_at
            or spend.shared_usd + spend.sending_usd + spend.pending_usd >= spend.max_usd
        ):
            budget = self.budgets.verdict(team.name)
            if budget is not None and not budget.allowed:
                raise TeamRefused("budget", budget)
        limit = t.parallel
        if limit is not None:
            if t.inflight >= limit:
                raise TeamRefused("parallel requests", limit)
            t.inflight += 1
        # pyrate-limiter's clock: whole milliseconds (here in microseconds); the tokens
        # per minute's check below is then early by less than a millisecond, which only
        # means a verdict is made, by the exact clock.
        now_us = int(now * 1000) * 1000
        bucket = t.bucket
        if bucket is not None:
            # pyrate-limiter's TokenBucket step, its admitting half inline (a request is
            # admitted while the backlog stays within the burst); a refusal is its own
            # step's (`_team_rate_refused`).
            tat = bucket.state[0]
            if tat < now_us:
                tat = now_us
            if tat - now_us > t.backlog_us:
                self._team_rate_refused(t, bucket, now)
            else:
                bucket.state = (tat + bucket.emission_us,)
        minute = t.minute
        if minute is not None and minute.tat_us - now_us >= _MINUTE_US:
            spent = self.tokens_verdict(team.name)
            if spent is not None and not spent.allowed:
                if limit is not None:
                    t.leave()
                raise TeamRefused("tokens per minute", spent)
        return t if limit is not None else None

    def _team_rate_refused(self, team: TeamState, bucket: _Bucket, now: float) -> None:
        """A team's request over its request rate: pyrate-limiter's step says so (and how
        long to wait: `TeamRefused`); the parallel slot taken goes back."""
        now_ms = int(now * 1000)
        state, decision = self._algorithm.step(bucket.rates, bucket.state, now_ms, 1)
        bucket.state = state
        if decision.allowed:  # (never: the inline half admits exactly what the step does)
            return
        if team.parallel is not None:
            team.leave()
        raise TeamRefused("requests per second", self._verdict(bucket, state, now_ms, decision))

    def team_reserve(
        self, team: KeyEntry, tokens: int, cost_usd: float | None
    ) -> Reservation | None:
        """What a request of a key of `team` could use, held against the team's tokens per
        minute and budget (no Redis): `reserve_tokens_local` and `CostBudgets.reserve_local`
        in one step (None: nothing held); nothing is held when either refuses (`TeamRefused`
        is raised)."""
        try:
            t = self._teams[team.name]
        except KeyError:
            return None
        now = self._clock()
        minute = t.minute
        held_tokens = need_us = 0
        if minute is not None and tokens > 0:
            tpm = minute.tokens_per_minute
            held_tokens = tokens if tokens < tpm else tpm
            need_us = int(held_tokens * _MINUTE_US / tpm)
            now_us = int(now * 1_000_000)
            tat = minute.tat_us
            if tat < now_us:
                tat = now_us
            if tat - now_us + need_us > _MINUTE_US:
                refused = _tokens_refusal(minute, now_us, need_us)
                if refused is not None:
                    raise TeamRefused("tokens per minute", refused)
        spend = t.spend
        if spend is not None and cost_usd:  # (a cost is never negative)
            if now >= spend.ends_at:
                spend.roll(now)
            if cost_usd > spend.max_usd - (
                spend.shared_usd
                + spend.sending_usd
                + spend.pending_usd
                + spend.reserved_usd
                + spend.others_reserved_usd
            ):
                over = reservation_refusal(spend, cost_usd, now)
                if over is not None:
                    raise TeamRefused("budget", over)
            spend.reserved_usd += cost_usd
            if need_us:
                minute.tat_us = tat + need_us  # type: ignore[union-attr]
            return hold((held_tokens, cost_usd))
        if need_us:
            minute.tat_us = tat + need_us  # type: ignore[union-attr]
            return hold((held_tokens, 0.0))
        return None

    def team_settle(
        self, team: KeyEntry, tokens: int, cost_usd: float | None, held: Reservation | None
    ) -> None:
        """A finished request of a key of `team` charged to the team (no Redis), its
        reservation (`held`) replaced: `charge_tokens` and `CostBudgets.settle` in one step."""
        try:
            t = self._teams[team.name]
        except KeyError:
            return
        now = self._clock()
        minute = t.minute
        if minute is not None:
            charged = tokens - held.tokens if held is not None else tokens
            if charged:
                now_us = int(now * 1_000_000)
                tat = minute.tat_us
                minute.tat_us = (tat if tat > now_us else now_us) + int(
                    charged * (_MINUTE_US / minute.tokens_per_minute)
                )
        spend = t.spend
        if spend is None:
            return
        if held is not None and held.usd:
            reserved = spend.reserved_usd - held.usd
            spend.reserved_usd = reserved if reserved >= 1e-12 else 0.0
        if cost_usd:
            if now >= spend.ends_at:
                spend.roll(now)
            spend.pending_usd += cost_usd

    async def _check_redis(self, key_name: str, bucket: _Bucket, now_ms: int) -> Verdict:
        # pyrate-limiter's stores are untyped (sync-or-async returns); treat as Any.
        store: Any = self._stores.get(key_name)
        if store is None:
            store = self._stores[key_name] = RedisStateStore(self._redis, bucket.redis_key)
        decision = await store.check(self._algorithm, bucket.rates, now_ms, 1)
        state = await store.read(self._algorithm, bucket.rates)
        self._shared.backend_ok()
        return self._verdict(bucket, state, now_ms, decision)

    @staticmethod
    def _verdict(bucket: _Bucket, state: State, now_ms: int, decision: Decision) -> Verdict:
        owed_us = max(0, int(state[0]) - now_ms * 1000)
        burst = bucket.limit.burst_size
        remaining = max(0, burst - math.ceil(owed_us / bucket.emission_us))
        if decision.allowed:
            return Verdict(True, burst, remaining, owed_us / 1e6, 0.0)
        retry_ms = decision.retry_after_ms or 0
        return Verdict(False, burst, remaining, owed_us / 1e6, retry_ms / 1000)

    # Tokens per minute.

    def tokens_verdict(self, key_name: str) -> Verdict | None:
        budget = self._budgets.get(key_name)
        if budget is None:
            return None
        now = self._clock()
        if self._redis is not None and now - budget.synced_at >= _TOKENS_REFRESH_SECS:
            self._sync_tokens(budget, now)  # other instances' charges, in the background
        now_us = int(now * 1_000_000)
        owed_us = max(0, budget.tat_us - now_us)
        tpm = budget.tokens_per_minute
        remaining = max(0, tpm - math.ceil(owed_us * tpm / _MINUTE_US))
        if owed_us >= _MINUTE_US:
            retry = (owed_us - _MINUTE_US) / 1e6 + 60 / tpm
            return Verdict(False, tpm, 0, owed_us / 1e6, retry)
        return Verdict(True, tpm, remaining, owed_us / 1e6, 0.0)

    async def reserve_tokens(self, key_name: str, tokens: int) -> tuple[int, Verdict | None]:
        """Reserve what an admitted request could use (charged now, settled with
        `charge_tokens(actual - reserved)` when it ends): (tokens reserved, None), or
        (0, a refusing verdict) when they do not fit in what is left of the minute (with
        Redis: beside every instance's charges, checked atomically there). A request that
        could use more than a whole minute's allowance reserves that allowance (it waits for
        a full minute, and is never refused for ever)."""
        budget = self._budgets.get(key_name)
        if budget is None or tokens <= 0:
            return 0, None
        tpm = budget.tokens_per_minute
        tokens = min(tokens, tpm)
        now = self._clock()
        now_us = int(now * 1_000_000)
        need_us = int(tokens * _MINUTE_US / tpm)
        refused = _tokens_refusal(budget, now_us, need_us)
        if refused is not None:
            return 0, refused
        if not self._shared.redis_available(now):
            self.charge_tokens(key_name, tokens)
            return tokens, None
        pending_us = int(budget.pending * _MINUTE_US / tpm)
        try:
            fits, tat = await self._redis.eval(
                _RESERVE_TOKENS, 1, budget.redis_key, now_us, need_us, pending_us,
                _MINUTE_US, 2 * 60_000 + 60_000,
            )  # fmt: skip
        except Exception as exc:  # any backend failure: the check made here stands
            self._shared.backend_failed(exc)
            self.charge_tokens(key_name, tokens)
            return tokens, None
        self._shared.backend_ok()
        # This instance's view: what Redis holds (this reservation included, if made), plus
        # its charges on their way there.
        shared_us = int(tat) + pending_us
        if not int(fits):
            budget.tat_us = max(budget.tat_us, shared_us)
            return 0, _tokens_refusal(budget, now_us, need_us, force=True)
        budget.tat_us = max(max(budget.tat_us, now_us) + need_us, shared_us)
        return tokens, None

    def charge_tokens(self, key_name: str, tokens: int) -> None:
        """Charge tokens used; negative: give back what a reservation held beyond the
        usage (never below an empty minute: the bucket cannot hold more than it holds)."""
        budget = self._budgets.get(key_name)
        if budget is None or tokens == 0:
            return
        now = self._clock()
        now_us = int(now * 1_000_000)
        per_token_us = _MINUTE_US / budget.tokens_per_minute
        budget.tat_us = max(budget.tat_us, now_us) + int(tokens * per_token_us)
        if self._redis is not None:
            budget.pending += tokens
            self._sync_tokens(budget, now)

    def _sync_tokens(self, budget: _Budget, now: float) -> None:
        """With Redis: add this instance's charges to the shared budget and learn the total
        (one exchange per key at a time, never awaited by a request)."""
        if budget.syncing or not self._shared.redis_available(now):
            return
        budget.syncing = True
        task = asyncio.get_running_loop().create_task(self._exchange_tokens(budget))
        self.budgets.track(task)

    async def _exchange_tokens(self, budget: _Budget) -> None:
        try:
            while True:
                tokens, budget.pending = budget.pending, 0
                now = self._clock()
                per_token_us = _MINUTE_US / budget.tokens_per_minute
                try:
                    tat = int(
                        await self._redis.eval(
                            _CHARGE_TOKENS,
                            1,
                            budget.redis_key,
                            int(now * 1_000_000),
                            int(tokens * per_token_us),
                            2 * 60_000 + 60_000,
                        )
                    )
                except Exception as exc:  # any backend failure: count here, send later
                    budget.pending += tokens
                    self._shared.backend_failed(exc)
                    return
                budget.tat_us = max(budget.tat_us, tat)
                budget.synced_at = now
                self._shared.backend_ok()
                if budget.pending == 0:
                    return
        finally:
            budget.syncing = False

    # Cost budgets (llm_proxy.proxy.budgets).

    def budget_verdict(self, key_name: str) -> BudgetVerdict | None:
        return self.budgets.verdict(key_name)

    def charge_cost(self, key_name: str, cost_usd: float) -> None:
        self.budgets.charge(key_name, cost_usd)

    # Parallel requests.

    def acquire_local(self, key: KeyEntry) -> Slot | None:
        """A slot counted in this process, or None when the key's are all taken."""
        limit = key.max_parallel_requests
        held = self._inflight.get(key.name, 0)
        if limit is not None and held >= limit:
            return None
        self._inflight[key.name] = held + 1
        return Slot(key.name, "", None, held + 1)

    async def acquire(self, key: KeyEntry) -> Slot | None:
        """A slot for one request of `key` (which has `max_parallel_requests`), or None when
        they are all taken. The caller must `release` it however the request ends."""
        now = self._clock()
        limit = key.max_parallel_requests
        if limit is None or not self._shared.redis_available(now):
            return self.acquire_local(key)
        redis_key = f"llm_proxy:parallel:{key.name}"
        member = self._shared.new_lease()
        now_ms = int(now * 1000)
        lease_ms = int(LEASE_SECS * 1000)
        try:
            held = int(
                await self._redis.eval(
                    _ACQUIRE_SLOT,
                    1,
                    redis_key,
                    now_ms,
                    limit,
                    now_ms + lease_ms,
                    member,
                    2 * lease_ms,
                )
            )
        except Exception as exc:  # any backend failure: count in this process
            self._shared.backend_failed(exc)
            return self.acquire_local(key)
        self._shared.backend_ok()
        if held <= 0:
            return None
        self._inflight[key.name] = self._inflight.get(key.name, 0) + 1
        self._shared.hold(redis_key, member)
        return Slot(key.name, redis_key, member, held)

    def release(self, slot: Slot) -> None:
        """Give a slot back (synchronous: it runs in `finally` blocks, cancelled ones too;
        the lease is removed from Redis in the background, or expires)."""
        held = self._inflight.get(slot.key_name, 0) - 1
        if held > 0:
            self._inflight[slot.key_name] = held
        else:
            self._inflight.pop(slot.key_name, None)
        if slot.member is not None:
            self._shared.release(slot.redis_key, slot.member)

    async def flush(self) -> None:
        await self._shared.stop()
        await self.budgets.flush()
