"""Last-known status of each provider, as seen by real traffic (no upstream calls here)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class ProviderStatus:
    last_status: int | None = None  # HTTP status of the last upstream answer
    last_error: str | None = None  # kind of the last transport failure, if it was one
    last_seen: float | None = None  # wall-clock time of the last outcome
    requests: int = 0
    failures: int = 0

    @property
    def healthy(self) -> bool:
        """Unknown counts as healthy; 5xx and transport errors do not."""
        if self.last_error is not None:
            return False
        return self.last_status is None or self.last_status < 500


class HealthBoard:
    def __init__(self) -> None:
        self._status: dict[str, ProviderStatus] = {}

    def get(self, provider: str) -> ProviderStatus:
        status = self._status.get(provider)
        if status is None:
            status = self._status[provider] = ProviderStatus()
        return status

    def record(self, provider: str, status: int | None, error: str | None = None) -> None:
        s = self.get(provider)
        s.last_status, s.last_error, s.last_seen = status, error, time.time()
        s.requests += 1
        if error is not None or (status is not None and status >= 500):
            s.failures += 1
