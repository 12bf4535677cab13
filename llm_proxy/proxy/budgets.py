"""Per-key cost budgets (`max_budget_usd` per UTC day or calendar month), charged like tokens
per minute (`llm_proxy.proxy.limiter`): after the fact, with the cost of each priced call.
Requests in flight when the budget runs out complete, so a key can overspend by what those
cost.

With Redis the spend is shared: each charge is added to `llm_proxy:budget:<key>:<period>`
(INCRBYFLOAT) by a background task, and the check stays in this process, against the total
Redis last returned plus what this instance charged since; a check that finds that total older
than a second refreshes it in the background. So an instance learns the others' spend with
each of its own charges and within about a second, and can admit a request or so per key
beyond the budget meanwhile. If Redis fails, spend is counted here (on top of the last shared
total) and sent when it is back.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from llm_proxy.proxy.keyring import KeyEntry

_BUDGET_REFRESH_SECS: Final = 1.0  # a shared spend total older than this is read again
_BUDGET_KEY_GRACE_SECS: Final = 86_400  # Redis keeps a period's total this long past its end


Period = Literal["daily", "monthly"]


@dataclass(slots=True)
class BudgetVerdict:
    allowed: bool
    limit_usd: float
    remaining_usd: float
    period: str  # "day" or "month", for messages
    resets_at: str  # the period's end, ISO 8601 UTC
    retry_after_secs: float  # until the period ends (0 when allowed)

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("x-llm-proxy-budget-limit-usd", usd(self.limit_usd)),
            ("x-llm-proxy-budget-remaining-usd", usd(self.remaining_usd)),
            ("x-llm-proxy-budget-reset", self.resets_at),
        ]


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


class SharedBackend(Protocol):
    """The Redis the limiter holds, its pause after a failure, and its up/down reporting."""

    @property
    def redis(self) -> Any: ...

    def redis_available(self, now: float) -> bool: ...

    def backend_ok(self) -> None: ...

    def backend_failed(self, exc: Exception) -> None: ...


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
                spend = _Spend(key.name, key.max_budget_usd, key.budget_period)
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
                now = self._clock()
                try:
                    if amount > 0:
                        ttl = max(1, math.ceil(spend.ends_at - now)) + _BUDGET_KEY_GRACE_SECS
                        pipe = self._backend.redis.pipeline(transaction=False)
                        pipe.incrbyfloat(redis_key, amount)
                        pipe.expire(redis_key, ttl)
                        total = float((await pipe.execute())[0])
                    else:
                        total = float(await self._backend.redis.get(redis_key) or 0)
                except Exception as exc:  # any backend failure: keep counting here
                    if spend.redis_key == redis_key:
                        spend.pending_usd += spend.sending_usd
                        spend.sending_usd = 0.0
                    self._backend.backend_failed(exc)
                    return
                if spend.redis_key == redis_key:  # else the period ended meanwhile
                    spend.shared_usd, spend.sending_usd = total, 0.0
                    spend.synced_at = now
                self._backend.backend_ok()
                if spend.pending_usd <= 0:
                    return
        finally:
            spend.syncing = False


# What each budgeted key spent this period before the process started, from the request log:
# whole days from the daily rollup (kept past the rows' retention), today from the rows written
# before `started` (this process's own requests are counted as they happen).
_SPENT_BEFORE: Final = """
SELECT coalesce((SELECT sum(cost_usd) FROM usage_daily
                 WHERE key_name = $1 AND day >= $2::date AND day < $3::date), 0)
     + coalesce((SELECT sum(cost_usd) FROM request_logs
                 WHERE key_name = $1 AND ts >= $4::timestamptz AND ts < $5::timestamptz), 0)
"""


async def restore_from_log(budgets: CostBudgets, dsn: str, started: float) -> int:
    """Seed the budgets of a proxy without Redis with what the request log (in PostgreSQL)
    says each key spent this period, so that a restart does not hand every key a fresh
    budget. Returns how many keys had spent something."""
    import asyncpg

    periods = budgets.periods()
    if not periods:
        return 0
    today = datetime.fromtimestamp(started, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        restored = 0
        for key_name, start, label in periods:
            # Days are UTC days (as the rollup's), whatever the session's time zone.
            first = datetime.fromtimestamp(start, UTC).date()
            spent = await conn.fetchval(
                _SPENT_BEFORE,
                key_name,
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
