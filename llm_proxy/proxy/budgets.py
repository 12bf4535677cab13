"""Per-key cost budgets (`max_budget_usd` per UTC day or calendar month), charged like tokens
per minute (`llm_proxy.proxy.limiter`): after the fact, with the cost of each priced call.

Each admitted request first *reserves* what it could cost (`reserve`: its estimated prompt and
its output cap, at the model's price), refused when that exceeds what is left beside the other
requests' reservations; when it ends, `settle` replaces the reservation by the actual cost. So
a key's overspend is bounded by the error of those estimates, never a multiple of the budget.

With Redis the spend is shared: each charge is added to `llm_proxy:budget:<key>:<period>`
(INCRBYFLOAT) by a background task, and the check stays in this process, against the total
Redis last returned plus what this instance charged since; a check that finds that total older
than a second refreshes it in the background. So an instance learns the others' spend with
each of its own charges and within about a second, and can admit a request or so per key
beyond the budget meanwhile. If Redis fails, spend is counted here (on top of the last shared
total) and sent when it is back.

Reservations are made in Redis, atomically, while the request waits (one Lua step, as the
request-rate check): each instance keeps its reservations for the key in the hash
`llm_proxy:reserved:<key>` (field: the instance, value: `<usd>:<expiry ms>`), and one is added
only if the shared spend, this instance's charges not yet sent, every instance's reservations
and the new one fit the budget. Settling takes it off again in the background exchange above,
in the same transaction as the actual cost is added. A field expires unless renewed (the
limiter renews it while the instance holds reservations), so a crashed instance's
reservations are forgotten within a lease, never kept against the budget. Redis down:
reservations are checked in this process (fail open).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from llm_proxy.errors import ProxyError
from llm_proxy.proxy.keyring import KeyEntry

_BUDGET_REFRESH_SECS: Final = 1.0  # a shared spend total older than this is read again
_BUDGET_KEY_GRACE_SECS: Final = 86_400  # Redis keeps a period's total this long past its end
_RESERVATION_LEASE_MS: Final = 30_000  # an instance's reservations, unless renewed

# This instance's reservations for a key. KEYS: the hash, the period's spend. ARGV: instance,
# the change (+ a reservation, - what was settled, 0: renew), now (ms), the lease's expiry
# (ms), the budget ("": no check), this instance's charges not yet in the spend. Expired fields
# are dropped; with a budget the change is made only if everything fits. Returns {made 1/0,
# the other instances' reservations}.
_RESERVATIONS: Final = """
local now = tonumber(ARGV[3])
local own, others = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local usd, expiry = string.match(all[i + 1], '^([^:]+):([^:]+)$')
  if usd == nil or tonumber(expiry) < now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] == ARGV[1] then
    own = tonumber(usd)
  else
    others = others + tonumber(usd)
  end
end
local change = tonumber(ARGV[2])
if ARGV[5] ~= '' then
  local spent = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(ARGV[6])
  if spent + others + own + change > tonumber(ARGV[5]) + 1e-9 then
    return {0, string.format('%.9f', others)}
  end
end
own = own + change
if own < 1e-9 then own = 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.9f', own) .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], 2 * (tonumber(ARGV[4]) - now))
return {1, string.format('%.9f', others)}
"""


Period = Literal["daily", "monthly"]


@dataclass(slots=True)
class BudgetVerdict:
    allowed: bool
    limit_usd: float
    remaining_usd: float
    period: str  # "day" or "month", for messages
    resets_at: str  # the period's end, ISO 8601 UTC
    retry_after_secs: float  # until the period ends (0 when allowed)
    reserving_usd: float = 0.0  # refused at admission: what the request could have cost

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("x-llm-proxy-budget-limit-usd", usd(self.limit_usd)),
            ("x-llm-proxy-budget-remaining-usd", usd(self.remaining_usd)),
            ("x-llm-proxy-budget-reset", self.resets_at),
        ]


def reservation_refusal(
    spend: _Spend, cost_usd: float, now: float, *, force: bool = False
) -> BudgetVerdict | None:
    """The refusal of a reservation of `cost_usd` (None: it fits, as this process sees the
    spend). `force`: Redis refused it, whatever this process sees."""
    left = spend.max_usd - spend.spent_usd
    held = spend.reserved_usd + spend.others_reserved_usd
    free = left - held
    if cost_usd <= free and not force:
        return None
    what = "day" if spend.period == "daily" else "month"
    # Reservations come back as requests end: worth a retry soon. Otherwise the request
    # cannot fit before the period ends.
    retry = 1.0 if held > 0 and cost_usd <= left else spend.ends_at - now
    return BudgetVerdict(
        False, spend.max_usd, max(0.0, free), what, spend.resets_at, retry, cost_usd
    )


def budget_exceeded(who: str, budget: BudgetVerdict, headers: list[tuple[str, str]]) -> ProxyError:
    """The 429 of a spent budget, or of a request that could cost more than is left."""
    # `insufficient_quota` is the type OpenAI gives a spent quota: clients that tell it from
    # a transient 429 stop retrying. Retry-After is the time to the period's end (or 1 s when
    # requests in flight hold reservations that may come back).
    headers.append(("Retry-After", str(max(1, math.ceil(budget.retry_after_secs)))))
    if budget.reserving_usd:
        message = (
            f"This request could cost up to ${usd(budget.reserving_usd)} (its prompt and its "
            f"output cap, max_tokens), more than the ${usd(budget.remaining_usd)} left of the "
            f"budget of ${usd(budget.limit_usd)} for this {budget.period} of "
            f"{who} beside the requests in flight; lower max_tokens or retry when "
            f"they end. The budget resets at {budget.resets_at}."
        )
    else:
        message = (
            f"The budget of ${usd(budget.limit_usd)} for this {budget.period} of "
            f"{who} is spent; it resets at {budget.resets_at}."
        )
    return ProxyError(
        429, message, type="insufficient_quota", code="budget_exceeded", headers=headers
    )


def usd(amount: float) -> str:
    """Dollars to the micro-dollar, without trailing zeros: `50`, `0.0125`."""
    return f"{amount:.6f}".rstrip("0").rstrip(".")


def budget_period(period: Period, now: float) -> tuple[float, float, str]:
    """The UTC day or calendar month holding `now`: its start, its end (epoch seconds) and
    its label (`2025-06-14`, `2025-06`), which names its total in Redis."""
    t = datetime.fromtimestamp(now, UTC)
    if period == "daily":
        start = datetime(t.year, t.month, t.day, tzinfo=UTC)
        return start.timestamp(), start.timestamp() + 86_400, f"{start:%Y-%m-%d}"
    start = datetime(t.year, t.month, 1, tzinfo=UTC)
    end = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp(), f"{start:%Y-%m}"


@dataclass(slots=True)
class _Spend:
    """A key's spend in its current budget period. `shared_usd` is the total Redis last
    returned (every instance's charges), `sending_usd` what this instance is adding to it now,
    `pending_usd` what it charged since (or could not send). Without Redis only
    `pending_usd` grows."""

    key_name: str
    max_usd: float
    period: Period
    ends_at: float = -math.inf  # set by `roll`
    redis_key: str = ""
    resets_at: str = ""
    shared_usd: float = 0.0
    sending_usd: float = 0.0
    pending_usd: float = 0.0
    synced_at: float = -math.inf  # when shared_usd was read
    syncing: bool = False  # a background exchange with Redis is under way
    # What the requests in flight could still cost: this instance's (kept across a period's
    # end: they are charged to the period they end in), the other instances' as Redis last
    # said, and what this instance settled and has still to take off in Redis.
    reserved_usd: float = 0.0
    others_reserved_usd: float = 0.0
    releasing_usd: float = 0.0

    def roll(self, now: float) -> None:
        """Start the period holding `now`, with nothing spent."""
        _, self.ends_at, label = budget_period(self.period, now)
        self.redis_key = f"llm_proxy:budget:{self.key_name}:{label}"
        self.resets_at = datetime.fromtimestamp(self.ends_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.shared_usd = self.sending_usd = self.pending_usd = 0.0
        self.synced_at = -math.inf

    @property
    def spent_usd(self) -> float:
        return self.shared_usd + self.sending_usd + self.pending_usd

    @property
    def reserved_key(self) -> str:
        return f"llm_proxy:reserved:{self.key_name}"


class SharedBackend(Protocol):
    """The Redis the limiter holds, its pause after a failure, and its up/down reporting."""

    @property
    def redis(self) -> Any: ...

    def redis_available(self, now: float) -> bool: ...

    def backend_ok(self) -> None: ...

    def backend_failed(self, exc: Exception) -> None: ...

    @property
    def instance_id(self) -> str: ...

    def keep_leases(self) -> None: ...


class CostBudgets:
    """Every budgeted key's spend in its current period."""

    def __init__(self, clock: Callable[[], float], backend: SharedBackend) -> None:
        self._clock = clock
        self._backend = backend
        self._spends: dict[str, _Spend] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # exchanges with Redis

    def sync(self, keys: Iterable[KeyEntry]) -> None:
        """Adopt a new key set. A budget keeps its period's spend when only its amount
        changed (the new amount applies to what was spent); a new period kind starts a new
        count."""
        spends: dict[str, _Spend] = {}
        for key in keys:
            if key.max_budget_usd is None:
                continue
            spend = self._spends.get(key.name)
            if spend is not None and spend.period == key.budget_period:
                spend.max_usd = key.max_budget_usd
            else:
                old = spend
                spend = _Spend(key.name, key.max_budget_usd, key.budget_period)
                if old is not None:  # requests in flight still settle their reservations
                    spend.reserved_usd = old.reserved_usd
                now = self._clock()
                spend.roll(now)
                self._start_sync(spend, now)  # with Redis: learn the shared total now
            spends[key.name] = spend
        self._spends = spends

    def verdict(self, key_name: str) -> BudgetVerdict | None:
        """Whether the key may spend more this period (None: the key has no budget). Never
        waits on Redis: a stale shared total is refreshed in the background."""
        spend = self._spends.get(key_name)
        if spend is None:
            return None
        now = self._clock()
        if now >= spend.ends_at:
            spend.roll(now)
        if self._backend.redis is not None and now - spend.synced_at >= _BUDGET_REFRESH_SECS:
            self._start_sync(spend, now)
        spent = spend.spent_usd
        what = "day" if spend.period == "daily" else "month"
        if spent >= spend.max_usd:
            return BudgetVerdict(
                False, spend.max_usd, 0.0, what, spend.resets_at, spend.ends_at - now
            )
        return BudgetVerdict(True, spend.max_usd, spend.max_usd - spent, what, spend.resets_at, 0.0)

    def spend_of(self, key_name: str) -> _Spend | None:
        """The count of a key's (or team's) budget, for the limiter's one-step team path
        (without Redis; None: no budget)."""
        return self._spends.get(key_name)

    def refusal(self, key_name: str) -> BudgetVerdict | None:
        """`verdict`, made only when it refuses (the check for whom no header is sent: a
        key's team)."""
        spend = self._spends.get(key_name)
        if spend is None:
            return None
        now = self._clock()
        if now >= spend.ends_at or self._backend.redis is not None:
            return self._refused(self.verdict(key_name))
        if spend.shared_usd + spend.sending_usd + spend.pending_usd < spend.max_usd:
            return None
        return self.verdict(key_name)

    @staticmethod
    def _refused(verdict: BudgetVerdict | None) -> BudgetVerdict | None:
        return verdict if verdict is not None and not verdict.allowed else None

    def reserve_local(self, key_name: str, cost_usd: float) -> tuple[float, BudgetVerdict | None]:
        """`reserve` as this process sees the spend (no wait): without Redis, its answer;
        with Redis, its first step (the amount is then held here while Redis is asked)."""
        spend = self._spends.get(key_name)
        if spend is None or not cost_usd > 0:
            return 0.0, None
        now = self._clock()
        if now >= spend.ends_at:
            spend.roll(now)
        refused = reservation_refusal(spend, cost_usd, now)
        if refused is not None:
            return 0.0, refused
        spend.reserved_usd += cost_usd
        return cost_usd, None

    async def reserve(self, key_name: str, cost_usd: float) -> tuple[float, BudgetVerdict | None]:
        """Reserve what an admitted request could cost: (the amount reserved, None), or
        (0, a refusing verdict) when it exceeds what is left of the budget beside the
        reservations of the requests in flight (with Redis: on every instance, checked
        atomically there). `settle` must follow."""
        # Held here first: a check made while this one waits on Redis counts it.
        reserved, refused = self.reserve_local(key_name, cost_usd)
        if not reserved:
            return reserved, refused
        spend = self._spends[key_name]
        now = self._clock()
        if not self._backend.redis_available(now):
            return cost_usd, None
        now_ms = int(now * 1000)
        try:
            made, others = await self._backend.redis.eval(
                _RESERVATIONS,
                2,
                spend.reserved_key,
                spend.redis_key,
                self._backend.instance_id,
                f"{cost_usd:.9f}",
                now_ms,
                now_ms + _RESERVATION_LEASE_MS,
                f"{spend.max_usd:.9f}",
                f"{spend.pending_usd + spend.sending_usd:.9f}",
            )
        except Exception as exc:  # any backend failure: the check made here stands
            self._backend.backend_failed(exc)
            return cost_usd, None
        except BaseException:  # cancelled: Redis may have it; taken off at the next sync
            self._unreserve(spend, cost_usd)
            raise
        self._backend.backend_ok()
        spend.others_reserved_usd = float(others)
        if not int(made):
            spend.reserved_usd = max(0.0, spend.reserved_usd - cost_usd)
            self._start_sync(spend, self._clock())  # learn the shared spend
            return 0.0, reservation_refusal(spend, cost_usd, now, force=True)
        self._backend.keep_leases()
        return cost_usd, None

    @staticmethod
    def _unreserve(spend: _Spend, reserved_usd: float) -> None:
        # max: a reload may have replaced the count the reservation was made in.
        spend.reserved_usd = max(0.0, spend.reserved_usd - reserved_usd)
        if spend.reserved_usd < 1e-12:
            spend.reserved_usd = 0.0
        spend.releasing_usd += reserved_usd

    def settle(self, key_name: str, reserved_usd: float, cost_usd: float) -> None:
        """A request ended: its reservation is replaced by what it cost (0: nothing). In
        Redis both happen in one transaction, in the background."""
        spend = self._spends.get(key_name)
        if spend is None:
            return
        if self._backend.redis is None:  # (this process's count only: nothing to send)
            if reserved_usd > 0:
                spend.reserved_usd = max(0.0, spend.reserved_usd - reserved_usd)
                if spend.reserved_usd < 1e-12:
                    spend.reserved_usd = 0.0
            if cost_usd > 0:
                now = self._clock()
                if now >= spend.ends_at:
                    spend.roll(now)
                spend.pending_usd += cost_usd
            return
        if reserved_usd > 0:
            self._unreserve(spend, reserved_usd)
        if cost_usd > 0:
            self.charge(key_name, cost_usd)
        elif reserved_usd > 0:
            self._start_sync(spend, self._clock())

    def reserving(self) -> bool:
        """Some key holds reservations in Redis (to renew, or to take off)."""
        return any(s.reserved_usd > 0 or s.releasing_usd > 0 for s in self._spends.values())

    def renew(self, now: float) -> None:
        """Renew this instance's reservations in Redis before their lease ends."""
        for spend in self._spends.values():
            if spend.reserved_usd > 0 or spend.releasing_usd > 0:
                self._start_sync(spend, now)

    def charge(self, key_name: str, cost_usd: float) -> None:
        """Charge a finished call's cost to the key's budget (no-op for a key without one)."""
        spend = self._spends.get(key_name)
        if spend is None or not cost_usd > 0:
            return
        now = self._clock()
        if now >= spend.ends_at:
            spend.roll(now)
        spend.pending_usd += cost_usd
        self._start_sync(spend, now)

    def periods(self) -> list[tuple[str, float, str]]:
        """Each budgeted key's current period: (key name, start in epoch seconds, label)."""
        now = self._clock()
        out = []
        for spend in self._spends.values():
            start, _, label = budget_period(spend.period, now)
            out.append((spend.key_name, start, label))
        return out

    def restore(self, key_name: str, label: str, spent_usd: float) -> None:
        """Spend recorded before this process started (see `restore_from_log`), added to the
        key's count if period `label` is still the current one. Only without Redis: there
        the shared total is the count."""
        spend = self._spends.get(key_name)
        if spend is None or not spent_usd > 0 or self._backend.redis is not None:
            return
        now = self._clock()
        if now >= spend.ends_at:
            spend.roll(now)
        if spend.redis_key.endswith(f":{label}"):
            spend.shared_usd += spent_usd

    def track(self, task: asyncio.Task[None]) -> None:
        """A background exchange with Redis (the limiter's too), awaited by `flush`."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for the budget charges on their way to Redis (at shutdown, before the
        connection closes; tests). Each gives up within the client's socket timeouts."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _start_sync(self, spend: _Spend, now: float) -> None:
        if spend.syncing or not self._backend.redis_available(now):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the next charge or check sends
            return
        spend.syncing = True
        task = loop.create_task(self._sync_spend(spend))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_spend(self, spend: _Spend) -> None:
        """Send what the key charged here (or, with nothing to send, read the total), until
        nothing is pending; one exchange per key at a time, so charges made meanwhile go in
        one INCRBYFLOAT."""
        try:
            while True:
                redis_key, amount = spend.redis_key, spend.pending_usd
                spend.pending_usd, spend.sending_usd = 0.0, amount
                release, spend.releasing_usd = spend.releasing_usd, 0.0
                now = self._clock()
                now_ms = int(now * 1000)
                try:
                    # One transaction: the others never see a settled cost both reserved
                    # and charged, or neither.
                    pipe = self._backend.redis.pipeline(transaction=True)
                    if amount > 0:
                        ttl = max(1, math.ceil(spend.ends_at - now)) + _BUDGET_KEY_GRACE_SECS
                        pipe.incrbyfloat(redis_key, amount)
                        pipe.expire(redis_key, ttl)
                    else:
                        pipe.get(redis_key)
                    pipe.eval(
                        _RESERVATIONS,
                        2,
                        spend.reserved_key,
                        redis_key,
                        self._backend.instance_id,
                        f"{-release:.9f}",
                        now_ms,
                        now_ms + _RESERVATION_LEASE_MS,
                        "",
                        "0",
                    )
                    results = await pipe.execute()
                    total = float(results[0] or 0)
                    spend.others_reserved_usd = float(results[-1][1])
                except Exception as exc:  # any backend failure: keep counting here
                    spend.releasing_usd += release
                    if spend.redis_key == redis_key:
                        spend.pending_usd += spend.sending_usd
                        spend.sending_usd = 0.0
                    self._backend.backend_failed(exc)
                    return
                if spend.redis_key == redis_key:  # else the period ended meanwhile
                    spend.shared_usd, spend.sending_usd = total, 0.0
                    spend.synced_at = now
                self._backend.backend_ok()
                if spend.pending_usd <= 0 and spend.releasing_usd <= 0:
                    return
        finally:
            spend.syncing = False


# What each budgeted key (or team: every request whose key was in it then, by the log's
# `team` column) spent this period before the process started, from the request log: whole
# days from the daily rollup (kept past the rows' retention), today from the rows written
# before `started` (this process's own requests are counted as they happen).
_SPENT_BEFORE: Final = """
SELECT coalesce((SELECT sum(cost_usd) FROM usage_daily
                 WHERE {column} = $1 AND day >= $2::date AND day < $3::date), 0)
     + coalesce((SELECT sum(cost_usd) FROM request_logs
                 WHERE {column} = $1 AND ts >= $4::timestamptz AND ts < $5::timestamptz), 0)
"""
_KEY_SPENT_BEFORE: Final = _SPENT_BEFORE.format(column="key_name")
_TEAM_SPENT_BEFORE: Final = _SPENT_BEFORE.format(column="team")


async def restore_from_log(
    budgets: CostBudgets, dsn: str, started: float, teams: Mapping[str, str] | None = None
) -> int:
    """Seed the budgets of a proxy without Redis with what the request log (in PostgreSQL)
    says each key and each team spent this period, so that a restart does not hand any a
    fresh budget. `teams` maps the limiter's name of each team (`team:<name>`) to its name
    (a key may be called `team:x` when no team is `x`). Returns how many keys and teams had
    spent something."""
    from llm_proxy.config.database import connect

    periods = budgets.periods()
    if not periods:
        return 0
    today = datetime.fromtimestamp(started, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    conn = await connect(dsn, connect_timeout=5)
    try:
        restored = 0
        for key_name, start, label in periods:
            team = teams.get(key_name) if teams else None
            # Days are UTC days (as the rollup's), whatever the session's time zone.
            first = datetime.fromtimestamp(start, UTC).date()
            spent = await conn.fetchval(
                _TEAM_SPENT_BEFORE if team is not None else _KEY_SPENT_BEFORE,
                team if team is not None else key_name,
                first,
                today.date(),
                today,
                datetime.fromtimestamp(started, UTC),
            )
            if spent and spent > 0:
                budgets.restore(key_name, label, float(spent))
                restored += 1
        return restored
    finally:
        await conn.close()
