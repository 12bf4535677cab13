"""Prometheus metrics on an app-owned aioprometheus Registry.

aioprometheus serialises the label dict to JSON on every update, which is too slow for the
request path. So the hot path only bumps plain dict entries and observes into cached histogram
objects; counters and gauges are copied into the collectors when `/metrics` is scraped.
Label values are bounded: model labels are configured names (or `other`), never a raw path or key.
"""

from __future__ import annotations

from typing import Final

from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from aioprometheus.histogram import Histogram as HistogramValue
from aioprometheus.renderer import render

# LLM calls run from milliseconds (embeddings, cached) to minutes (long generations).
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

RequestKey = tuple[str, str, str, str, str]  # method, endpoint, model, provider, status_code


class Metrics:
    def __init__(self) -> None:
        self.registry = Registry()
        self._requests = Counter(
            "llm_proxy_requests_total",
            "Requests handled, by method, endpoint, model, provider and status code.",
            registry=self.registry,
        )
        self._duration = Histogram(
            "llm_proxy_request_duration_seconds",
            "Time from request received to response finished (whole stream included).",
            registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        self._active = Gauge(
            "llm_proxy_active_requests",
            "Requests being handled right now.",
            registry=self.registry,
        )
        self.active_requests = 0
        self._counts: dict[RequestKey, int] = {}
        self._histograms: dict[tuple[str, str, str], HistogramValue] = {}

    def request_done(
        self,
        method: str,
        endpoint: str,
        model: str,
        provider: str,
        status: int,
        seconds: float,
    ) -> None:
        key = (method, endpoint, model, provider, str(status))
        self._counts[key] = self._counts.get(key, 0) + 1
        hkey = (endpoint, model, provider)
        hist = self._histograms.get(hkey)
        if hist is None:
            labels = {"endpoint": endpoint, "model": model, "provider": provider}
            self._duration.add(labels, seconds)
            value = self._duration.get_value(labels)
            assert isinstance(value, HistogramValue)
            self._histograms[hkey] = value
        else:
            hist.observe(seconds)

    def render(self) -> tuple[bytes, dict[str, str]]:
        """Prometheus text format (never the protobuf format some scrapers also accept)."""
        for (method, endpoint, model, provider, status), n in self._counts.items():
            self._requests.set(
                {
                    "method": method,
                    "endpoint": endpoint,
                    "model": model,
                    "provider": provider,
                    "status_code": status,
                },
                n,
            )
        self._active.set({}, self.active_requests)
        body, headers = render(self.registry, [])
        return body, dict(headers)
