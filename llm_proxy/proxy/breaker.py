"""Provider health as seen by traffic (and optional active checks): a circuit breaker per
provider, kept across config reloads (by provider name).

* `failure_threshold` consecutive failures eject a provider for a cooldown; each repeated
  ejection doubles it (up to `max_cooldown_secs`); a success resets everything.
* When the cooldown is over the provider is half-open: exactly one trial request may use it;
  its outcome closes the breaker or ejects the provider again.
* A 429 with `Retry-After` makes a provider unavailable until then, without counting as a
  failure of its health.

Every instant the breaker compares comes from its `clock` (monotonic seconds; tests pass their
own). Methods that decide at an instant take `now`: a caller weighing several providers reads
`board.clock()` once and passes it to each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from llm_proxy.config.model import CircuitBreaker

MAX_RETRY_AFTER_SECS: Final = 300.0


@dataclass(slots=True)
class ProviderStatus:
    last_status: int | None = None  # HTTP status of the last upstream answer
    last_error: str | None = None  # kind of the last failure, if the last outcome was one
    last_error_detail: str | None = None  # ...and its cause, in words (never a secret)
    last_seen: float | None = None  # wall-clock time of the last outcome
    last_failure_at: float = 0.0  # HealthBoard.clock
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    ejections: int = 0  # ejections in a row (reset by a success)
    ejected_until: float = 0.0  # HealthBoard.clock; 0: not ejected
    trial_in_flight: bool = False
    rate_limited_until: float = 0.0  # HealthBoard.clock, from a 429's Retry-After

    @property
    def healthy(self) -> bool:
        return self.ejected_until == 0.0

    def state(self, now: float) -> str:
        if self.ejected_until == 0.0:
            return "healthy"
        return "ejected" if now < self.ejected_until else "half_open"


class HealthBoard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._status: dict[str, ProviderStatus] = {}
        self.breaker = CircuitBreaker()
        # Providers that are (or were, until their next success) ejected or rate limited;
        # while empty, routing skips all availability checks.
        self.impaired: set[str] = set()

    def get(self, provider: str) -> ProviderStatus:
        status = self._status.get(provider)
        if status is None:
            status = self._status[provider] = ProviderStatus()
        return status

    def usable(self, provider: str, now: float) -> bool:
        """May a new request go to `provider` now? (Half-open: only if no trial is running.)"""
        s = self._status.get(provider)
        if s is None:
            return True
        if now < s.rate_limited_until:
            return False
        if s.ejected_until == 0.0:
            return True
        return now >= s.ejected_until and not s.trial_in_flight

    def rate_limited_for(self, provider: str, now: float) -> float:
        """Seconds left of the Retry-After window `provider` asked for (0: none)."""
        s = self._status.get(provider)
        return max(0.0, s.rate_limited_until - now) if s is not None else 0.0

    def begin(self, provider: str, now: float) -> None:
        """A request is about to use `provider`: a half-open provider's trial starts."""
        s = self._status.get(provider)
        if s is not None and s.ejected_until and now >= s.ejected_until:
            s.trial_in_flight = True

    def success(self, provider: str, status: int) -> None:
        s = self.get(provider)
        s.last_status, s.last_error, s.last_seen = status, None, time.time()
        s.last_error_detail = None
        s.requests += 1
        s.consecutive_failures = 0
        s.ejections = 0
        s.ejected_until = 0.0
        s.rate_limited_until = 0.0
        s.trial_in_flight = False
        self.impaired.discard(provider)

    def failure(
        self,
        provider: str,
        kind: str,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        now = self.clock()
        s = self.get(provider)
        s.last_status, s.last_error, s.last_seen = status, kind, time.time()
        s.last_error_detail = detail
        s.requests += 1
        if retry_after is not None:
            # Rate limited: unavailable for a while, but not unhealthy.
            s.rate_limited_until = now + min(retry_after, MAX_RETRY_AFTER_SECS)
            s.trial_in_flight = False
            self.impaired.add(provider)
            return
        s.failures += 1
        s.last_failure_at = now
        s.consecutive_failures += 1
        breaker = self.breaker
        if s.trial_in_flight or s.consecutive_failures >= breaker.failure_threshold:
            cooldown = min(breaker.cooldown_secs * 2**s.ejections, breaker.max_cooldown_secs)
            s.ejections += 1
            s.ejected_until = now + cooldown
            s.trial_in_flight = False
            self.impaired.add(provider)

    def settle(self, provider: str) -> None:
        """A request that used `provider` ended without a verdict (say, the client left)."""
        s = self._status.get(provider)
        if s is not None:
            s.trial_in_flight = False

    def last_failure(self, provider: str) -> float:
        s = self._status.get(provider)
        return s.last_failure_at if s is not None else 0.0
