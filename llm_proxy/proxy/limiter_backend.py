"""The limiter's shared backend: the Redis in which several instances enforce one set of
limits, and this instance's presence there. The limiter (`proxy/limiter.py`: each limit, its
local state and its atomic step in Redis) and the cost budgets (`proxy/budgets.py`, for which
this is the `SharedBackend`) share one.

It holds the client (None: every limit is counted in this process), the pause after a failure
(`_BACKEND_RETRY_SECS`: meanwhile the limits are served from local state, fail open, and
Redis is tried again after it), the up/down reporting (a log line when it changes, the
`llm_proxy_rate_limit_backend_up` gauge), this instance's id, and its leases: the parallel
slots it holds in Redis, renewed every `_RENEW_SECS` by one task while it holds any (with the
cost budgets' reservations), so that the slots of an instance that crashed come back within
`LEASE_SECS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any, Final

import structlog

from llm_proxy.observe.metrics import Metrics
from llm_proxy.proxy.budgets import CostBudgets

log = structlog.get_logger()

_BACKEND_RETRY_SECS: Final = 5.0
# A lease outlives its renewal period threefold: an instance that stops renewing (crashed,
# partitioned) gives its slots back within this.
LEASE_SECS: Final = 30.0
_RENEW_SECS: Final = LEASE_SECS / 3


class RedisBackend:
    """Redis as every limit of this instance sees it (see the module docstring)."""

    # The cost budgets, whose reservations are renewed with the leases (set by the limiter
    # once both are made: the budgets are made with this backend).
    budgets: CostBudgets

    def __init__(self, clock: Callable[[], float], redis: Any, metrics: Metrics | None) -> None:
        self._clock = clock
        self.redis = redis
        self._retry_at = 0.0
        self.up = redis is not None
        self._metrics = metrics
        if metrics is not None and redis is not None:
            metrics.backend_up = True
        self.instance_id = uuid.uuid4().hex[:16]
        self._leases: dict[str, set[str]] = {}  # this instance's live leases per Redis key
        self._lease_ids = itertools.count()
        self._keeper: asyncio.Task[None] | None = None

    def redis_available(self, now: float) -> bool:
        """Redis is set and not inside the pause after a failure."""
        return self.redis is not None and now >= self._retry_at

    def backend_ok(self) -> None:
        if not self.up:
            self.up = True
            log.warning("rate_limit_backend_recovered")
            if self._metrics is not None:
                self._metrics.backend_up = True

    def backend_failed(self, exc: Exception) -> None:
        if self._metrics is not None:
            self._metrics.backend_error()
        self._retry_at = self._clock() + _BACKEND_RETRY_SECS
        if self.up:
            self.up = False
            log.error(
                "rate_limit_backend_down",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                fallback="per-instance limits",
                retry_in_secs=_BACKEND_RETRY_SECS,
            )
            if self._metrics is not None:
                self._metrics.backend_up = False

    def new_lease(self) -> str:
        """A member name for a lease this instance is about to take."""
        return f"{self.instance_id}:{next(self._lease_ids)}"

    def hold(self, redis_key: str, member: str) -> None:
        """A lease taken in Redis: renewed from now on, until `release`."""
        self._leases.setdefault(redis_key, set()).add(member)
        self.keep_leases()

    def release(self, redis_key: str, member: str) -> None:
        """Stop renewing a lease and remove it from Redis in the background (synchronous:
        it runs in `finally` blocks; without a loop, the lease expires)."""
        members = self._leases.get(redis_key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._leases[redis_key]
        with contextlib.suppress(RuntimeError):  # no loop: the lease expires
            task = asyncio.get_running_loop().create_task(self._drop(redis_key, member))
            self.budgets.track(task)

    async def _drop(self, redis_key: str, member: str) -> None:
        try:
            await self.redis.zrem(redis_key, member)
        except Exception as exc:  # the lease expires by itself
            self.backend_failed(exc)

    def keep_leases(self) -> None:
        """Make sure this instance's leases (parallel slots, budget reservations) are renewed
        while it holds any."""
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while self._leases or self.budgets.reserving():
            await asyncio.sleep(_RENEW_SECS)
            now = self._clock()
            self.budgets.renew(now)
            if not self._leases or not self.redis_available(now):
                continue
            expiry = int((now + LEASE_SECS) * 1000)
            try:
                pipe = self.redis.pipeline(transaction=False)
                for redis_key, members in self._leases.items():
                    # XX: a lease already released (or expired and taken) is not revived.
                    pipe.zadd(redis_key, dict.fromkeys(members, expiry), xx=True)
                    pipe.pexpire(redis_key, int(2 * LEASE_SECS * 1000))
                await pipe.execute()
            except Exception as exc:  # retried at the next renewal
                self.backend_failed(exc)

    async def stop(self) -> None:
        """Stop renewing (at shutdown: the leases expire)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
