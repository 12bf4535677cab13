"""Live stats for the admin UI, from the proxy's own state (no Prometheus needed):
`GET /admin/v1/stats`.

A background task samples the metrics' running totals (`Metrics.totals()`) every
`INTERVAL_SECS` and keeps the last hour. Each step between two samples gives requests per
second, 5xx rate, p50/p95/p99 latency and time to first token (from histogram buckets, as
Prometheus' `histogram_quantile` does), tokens per minute and cost, overall and per provider
and per key. Nothing is added to the request path: the counters exist for /metrics anyway.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from typing import Any, Final

from llm_proxy.observe.metrics import DURATION_BUCKETS, Group, Metrics, Totals
from llm_proxy.tasks import stop_task

INTERVAL_SECS: Final = 5.0
KEEP: Final = int(3600 / INTERVAL_SECS)  # an hour of samples


def quantile(q: float, buckets: list[int]) -> float | None:
    """The q-quantile of per-bucket counts (bounds DURATION_BUCKETS, then +Inf), linearly
    interpolated within its bucket; None without observations."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for bound, count in zip((*DURATION_BUCKETS, float("inf")), buckets, strict=True):
        if seen + count >= rank and count > 0:
            if bound == float("inf"):
                return lower  # above the last bound: its lower edge, as Prometheus does
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return lower


class Stats:
    def __init__(self, metrics: Metrics, interval_secs: float = INTERVAL_SECS) -> None:
        self._metrics = metrics
        self._interval = interval_secs
        self.samples: deque[tuple[float, Totals]] = deque(maxlen=KEEP + 1)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.samples.append((time.time(), self._metrics.totals()))

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.sample()

    async def close(self) -> None:
        await stop_task(self._task)

    def series(self, window_secs: float, group: str | None) -> dict[str, Any]:
        """Steps over the last `window_secs`: `all`, and per provider or key (`group`)."""
        now = time.time()
        points = [(t, s) for t, s in self.samples if t >= now - window_secs - self._interval]
        points.append((now, self._metrics.totals()))  # the latest step ends now (not kept)
        names: set[Group] = {("all", "all")}
        if group is not None and points:
            latest = points[-1][1]
            names |= {g for g in latest.requests if g[0] == group}
        out: dict[str, Any] = {}
        for name in sorted(names):
            steps = [
                _step(t0, a, t1, b, name)
                for (t0, a), (t1, b) in itertools.pairwise(points)
                if t1 > t0
            ]
            key = "all" if name[0] == "all" else name[1]
            out[key] = steps
        return out


def _step(t0: float, a: Totals, t1: float, b: Totals, name: Group) -> dict[str, Any]:
    secs = t1 - t0
    r0, r1 = a.requests.get(name, [0.0, 0.0]), b.requests.get(name, [0.0, 0.0])
    requests, failed = r1[0] - r0[0], r1[1] - r0[1]
    duration = _delta(a.duration.get(name), b.duration.get(name))
    ttft = _delta(a.ttft.get(name), b.ttft.get(name))
    tokens = b.tokens.get(name, 0.0) - a.tokens.get(name, 0.0)
    cost = b.cost.get(name, 0.0) - a.cost.get(name, 0.0)
    return {
        "t": round(t1, 3),
        "secs": secs,  # unrounded: the newest step may be microseconds long
        "requests": round(requests),
        "errors": round(failed),
        "requests_per_sec": round(requests / secs, 3),
        "error_rate": round(failed / requests, 4) if requests else 0.0,
        "p50_ms": _ms(quantile(0.5, duration)),
        "p95_ms": _ms(quantile(0.95, duration)),
        "p99_ms": _ms(quantile(0.99, duration)),
        "ttft_p50_ms": _ms(quantile(0.5, ttft)),
        "ttft_p95_ms": _ms(quantile(0.95, ttft)),
        "tokens_per_min": round(tokens * 60 / secs, 1),
        "cost_usd": round(cost, 8),
    }


def _delta(before: list[int] | None, after: list[int] | None) -> list[int]:
    if after is None:
        return []
    if before is None:
        return list(after)
    return [x - y for x, y in zip(after, before, strict=True)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
