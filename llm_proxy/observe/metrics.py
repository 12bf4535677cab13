"""Prometheus metrics on an app-owned aioprometheus Registry.

aioprometheus serialises the label dict to JSON on every update, which is too slow for the
request path. So the hot path only bumps plain dict entries and observes into cached histogram
objects; counters and gauges are copied into the collectors when `/metrics` is scraped.
Label values are bounded: model labels are configured names (or `other`), key labels are key
names, team labels team names (`""` for a key in no team), never a raw path or a key.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

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
# The proxy's own time per request: tens of microseconds to a few milliseconds.
OVERHEAD_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    """A label value in Prometheus' text format (aioprometheus writes values as they are, so a
    `"` in a key name would break the whole page)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _label_dict(names: tuple[str, ...], values: Labels) -> dict[str, str]:
    return {name: _escape(value) for name, value in zip(names, values, strict=True)}


class _Counts:
    """One label set's histogram: per-bucket counts found by bisection (aioprometheus's own
    `observe` walks every bucket), copied into aioprometheus at scrape time."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.count = 0
        self.sum = 0.0


class _Histograms:
    def __init__(self, collector: Histogram, names: Sequence[str]) -> None:
        self._collector = collector
        self._names = tuple(names)
        self._bounds = [float(b) for b in collector.upper_bounds]
        self._values: dict[Labels, _Counts] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self._values.get(labels)
        if counts is None:
            counts = self._values[labels] = _Counts(len(self._bounds) + 1)
        counts.buckets[bisect_left(self._bounds, value)] += 1
        counts.count += 1
        counts.sum += value

    def flush(self) -> None:
        for labels, counts in self._values.items():
            label_dict = _label_dict(self._names, labels)
            try:
                target = self._collector.get_value(label_dict)
            except KeyError:
                target = HistogramValue(*self._bounds)
                self._collector.set_value(label_dict, target)
            assert isinstance(target, HistogramValue)
            running = 0
            for bound, n in zip(target.buckets, counts.buckets, strict=True):
                running += n
                target.buckets[bound] = running
            target.observations = counts.count
            target.sum = counts.sum


class _Counters:
    """Plain-dict counts, copied into the collector at scrape time."""

    def __init__(self, collector: Counter, names: Sequence[str]) -> None:
        self._collector = collector
        self._names = tuple(names)
        self.counts: dict[Labels, float] = {}

    def add(self, labels: Labels, value: float = 1) -> None:
        self.counts[labels] = self.counts.get(labels, 0) + value

    def flush(self) -> None:
        for labels, value in self.counts.items():
            self._collector.set(_label_dict(self._names, labels), value)


_NOT_API: Final = ("/admin", "/health", "/metrics", "/ui")
Group = tuple[str, str]  # ("provider", name), ("key", name), ("team", name) or ("all", "all")


@dataclass(slots=True)
class Totals:
    requests: dict[Group, list[float]] = field(default_factory=dict)  # [count, 5xx]
    duration: dict[Group, list[int]] = field(default_factory=dict)  # DURATION_BUCKETS + inf
    ttft: dict[Group, list[int]] = field(default_factory=dict)
    tokens: dict[Group, float] = field(default_factory=dict)
    cost: dict[Group, float] = field(default_factory=dict)


def _groups(provider: str, key: str, team: str) -> tuple[Group, ...]:
    """The live stats' groups a counter's labels count in (`Metrics.totals`)."""
    if team:
        return ("provider", provider), ("key", key), ("team", team), ("all", "all")
    return ("provider", provider), ("key", key), ("all", "all")


def _add(into: dict[Group, list[int]], group: Group, buckets: list[int]) -> None:
    found = into.get(group)
    if found is None:
        into[group] = list(buckets)
    else:
        for i, n in enumerate(buckets):
            found[i] += n


@dataclass(frozen=True, slots=True)
class Spec:
    """A metric as Prometheus shows it: name, help, label names (and a histogram's buckets)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Bumped on the request path, copied into their collectors at scrape time.
REQUESTS: Final = Spec(
    "llm_proxy_requests_total",
    "Requests handled, by method, endpoint, model, provider and status code.",
    ("method", "endpoint", "model", "provider", "status_code", "api_key_name", "client", "team"),
)
DURATION: Final = Spec(
    "llm_proxy_request_duration_seconds",
    "Time from request received to response finished (whole stream included).",
    ("endpoint", "model", "provider", "api_key_name", "team"),
    DURATION_BUCKETS,
)
TOKENS: Final = Spec(
    "llm_proxy_tokens_total",
    "Tokens used, by model, provider and token_type "
    "(prompt_tokens, completion_tokens, total_tokens).",
    ("model", "provider", "token_type", "api_key_name", "team"),
)
COST: Final = Spec(
    "llm_proxy_cost_usd_total",
    "US dollars spent, from the configured prices and the tokens used.",
    ("model", "provider", "api_key_name", "team"),
)
PROVIDER_LATENCY: Final = Spec(
    "llm_proxy_provider_latency_seconds",
    "Time from sending a request upstream to receiving its response headers.",
    ("provider",),
    DURATION_BUCKETS,
)
TTFT: Final = Spec(
    "llm_proxy_time_to_first_token_seconds",
    "Time from request received to the first stream chunk sent to the client.",
    ("model", "provider"),
    DURATION_BUCKETS,
)
RATE_LIMITED: Final = Spec(
    "llm_proxy_rate_limited_total",
    "Requests refused with 429 by a key's limits or its team's (by: key or team; limit: "
    "requests, tokens, budget or parallel).",
    ("key_name", "team", "by", "limit"),
)
UPSTREAM_ERRORS: Final = Spec(
    "llm_proxy_upstream_errors_total",
    "Upstream failures by provider and kind "
    "(connect, timeout, http_5xx, mid_body_disconnect, mid_body_timeout).",
    ("provider", "kind"),
)
OVERHEAD: Final = Spec(
    "llm_proxy_overhead_seconds",
    "Time spent in the proxy itself, excluding the wait on the upstream "
    "(for streams: up to the first byte).",
    (),
    OVERHEAD_BUCKETS,
)
BACKEND_ERRORS: Final = Spec(
    "llm_proxy_rate_limit_backend_errors_total", "Failed calls to the shared rate-limit backend."
)
ATTEMPTS: Final = Spec(
    "llm_proxy_upstream_attempts_total",
    "Attempts at upstream providers by outcome (ok, connect_error, timeout, "
    "http_5xx, http_429, sse_error); failed attempts before the first byte fail over.",
    ("provider", "outcome"),
)
FALLBACKS: Final = Spec(
    "llm_proxy_fallbacks_total",
    "Requests that fell back from a model to another (routing: fallbacks), by the model "
    "asked for, the model tried next and why (any, context_window, content_policy).",
    ("from", "to", "reason"),
)
ROUTING_RULES: Final = Spec(
    "llm_proxy_routing_rule_matches_total",
    "Requests a routing rule matched, by rule name.",
    ("rule",),
)
CACHE_REQUESTS: Final = Spec(
    "llm_proxy_cache_requests_total",
    "Requests the response cache looked at, by result: hit (answered from the cache), miss "
    "(sent upstream, its answer kept if it may be), bypass (not cacheable, no-store, or the "
    "cache's Redis down).",
    ("result",),
)
CACHE_ERRORS: Final = Spec(
    "llm_proxy_cache_errors_total",
    "Failed calls to the response cache's Redis (each request concerned went upstream).",
)
CONFIG_RELOADS: Final = Spec(
    "llm_proxy_config_reloads_total",
    "Configuration reloads by result (ok, error: rejected, old config kept).",
    ("result",),
)
# Read from their sources at scrape time.
CACHE_ENTRIES: Final = Spec(
    "llm_proxy_cache_entries", "Entries in the response cache (memory backend: this process)."
)
CACHE_BYTES: Final = Spec(
    "llm_proxy_cache_bytes", "Bytes the response cache's entries hold (memory backend)."
)
CACHE_EVICTIONS: Final = Spec(
    "llm_proxy_cache_evictions_total",
    "Entries the memory backend dropped to make room (least recently used first).",
)
ACTIVE: Final = Spec("llm_proxy_active_requests", "Requests being handled right now.")
PROVIDER_HEALTH: Final = Spec(
    "llm_proxy_provider_health", "Provider health as seen by traffic (1 healthy, 0 unhealthy)."
)
BACKEND_UP: Final = Spec(
    "llm_proxy_rate_limit_backend_up",
    "1 while the shared rate-limit backend (Redis) answers, 0 while limits are "
    "enforced per instance instead.",
)
LOG_DROPPED: Final = Spec(
    "llm_proxy_log_lines_dropped_total",
    "Log lines dropped because stderr's reader could not keep up.",
)
RECORDS_WRITTEN: Final = Spec(
    "llm_proxy_request_log_written_total",
    "Request records written, by sink (database, jsonl, langfuse).",
)
RECORDS_DROPPED: Final = Spec(
    "llm_proxy_request_log_dropped_total",
    "Request records dropped, by sink: its queue was full (the destination down or "
    "too slow), or the destination refused them.",
)
RECORDS_QUEUED: Final = Spec(
    "llm_proxy_request_log_queued", "Request records waiting to be written, by sink."
)
TRACE_SPANS: Final = Spec(
    "llm_proxy_trace_spans_total",
    "Spans of sampled requests, by exporter (otlp, langfuse) and result: sent (the collector "
    "took them) or dropped (queue full, refused, or left at shutdown).",
)
TRACE_EXPORT_FAILURES: Final = Spec(
    "llm_proxy_trace_export_failures_total",
    "Span exports that failed (retried or not), by exporter.",
)
CONFIG_VERSION: Final = Spec(
    "llm_proxy_config_version", "Version of the configuration being served."
)


class Metrics:
    def __init__(self) -> None:
        self.registry = Registry()
        self._flushed: list[_Counters | _Histograms] = []  # copied out by `render`
        self._requests = self._counter(REQUESTS)
        self._duration = self._histogram(DURATION)
        self._tokens = self._counter(TOKENS)
        self._cost = self._counter(COST)
        self._provider_latency = self._histogram(PROVIDER_LATENCY)
        self._ttft = self._histogram(TTFT)
        self._rate_limited = self._counter(RATE_LIMITED)
        self._upstream_errors = self._counter(UPSTREAM_ERRORS)
        self._overhead = self._histogram(OVERHEAD)
        self._backend_errors = self._counter(BACKEND_ERRORS)
        self._attempts = self._counter(ATTEMPTS)
        self._config_reloads = self._counter(CONFIG_RELOADS)
        self._fallbacks = self._counter(FALLBACKS)
        self._rule_matches = self._counter(ROUTING_RULES)
        self._cache_requests = Counter(
            CACHE_REQUESTS.name, CACHE_REQUESTS.help, registry=self.registry
        )
        self._cache_errors = Counter(CACHE_ERRORS.name, CACHE_ERRORS.help, registry=self.registry)
        self._cache_entries = Gauge(CACHE_ENTRIES.name, CACHE_ENTRIES.help, registry=self.registry)
        self._cache_bytes = Gauge(CACHE_BYTES.name, CACHE_BYTES.help, registry=self.registry)
        self._cache_evictions = Counter(
            CACHE_EVICTIONS.name, CACHE_EVICTIONS.help, registry=self.registry
        )
        # Both series exist from the start, at 0: an alert on increase() sees the first failure.
        for result in ("ok", "error"):
            self._config_reloads.add((result,), 0)
        r = self.registry
        self._active = Gauge(ACTIVE.name, ACTIVE.help, registry=r)
        self._provider_health = Gauge(PROVIDER_HEALTH.name, PROVIDER_HEALTH.help, registry=r)
        self._backend_up = Gauge(BACKEND_UP.name, BACKEND_UP.help, registry=r)
        self._log_dropped = Counter(LOG_DROPPED.name, LOG_DROPPED.help, registry=r)
        self._records_written = Counter(RECORDS_WRITTEN.name, RECORDS_WRITTEN.help, registry=r)
        self._records_dropped = Counter(RECORDS_DROPPED.name, RECORDS_DROPPED.help, registry=r)
        self._records_queued = Gauge(RECORDS_QUEUED.name, RECORDS_QUEUED.help, registry=r)
        self._trace_spans = Counter(TRACE_SPANS.name, TRACE_SPANS.help, registry=r)
        self._trace_failures = Counter(
            TRACE_EXPORT_FAILURES.name, TRACE_EXPORT_FAILURES.help, registry=r
        )
        self._config_version = Gauge(CONFIG_VERSION.name, CONFIG_VERSION.help, registry=r)
        # The sources read at scrape time (set by the app).
        self.log_dropped: Callable[[], int] = lambda: 0
        # (sink, written, dropped, queued) for each configured sink.
        self.record_sinks: Callable[[], list[tuple[str, int, int, int]]] = list
        # (exporter, spans sent, spans dropped, failed exports) for each span exporter.
        self.trace_exporters: Callable[[], list[tuple[str, int, int, int]]] = list
        self.config_version: Callable[[], str] = lambda: "0"
        self.active_requests: Callable[[], int] = lambda: 0
        self.backend_up: bool | None = None  # None: no shared backend configured
        self.provider_health: Callable[[], dict[str, bool]] = dict
        # The response cache: its memory backend's entries, bytes and evictions, and its
        # counters (hits, misses, bypasses, errors); None: no cache in this process.
        self.cache_sizes: Callable[[], tuple[int, int, int, Any]] | None = None

    def _counter(self, spec: Spec) -> _Counters:
        counters = _Counters(Counter(spec.name, spec.help, registry=self.registry), spec.labels)
        self._flushed.append(counters)
        return counters

    def _histogram(self, spec: Spec) -> _Histograms:
        collector = Histogram(spec.name, spec.help, registry=self.registry, buckets=spec.buckets)
        histograms = _Histograms(collector, spec.labels)
        self._flushed.append(histograms)
        return histograms

    def request_done(
        self,
        method: str,
        endpoint: str,
        model: str,
        provider: str,
        status: int,
        seconds: float,
        key_name: str = "anonymous",
        client: str = "other",
        team: str = "",
    ) -> None:
        self._requests.add((method, endpoint, model, provider, str(status), key_name, client, team))
        self._duration.observe((endpoint, model, provider, key_name, team), seconds)

    def tokens(
        self,
        model: str,
        provider: str,
        prompt: int,
        completion: int,
        key_name: str = "anonymous",
        team: str = "",
    ) -> None:
        add = self._tokens.add
        add((model, provider, "prompt_tokens", key_name, team), prompt)
        add((model, provider, "completion_tokens", key_name, team), completion)
        add((model, provider, "total_tokens", key_name, team), prompt + completion)

    def cost(self, model: str, provider: str, key_name: str, usd: float, team: str = "") -> None:
        self._cost.add((model, provider, key_name, team), usd)

    def provider_latency(self, provider: str, seconds: float) -> None:
        self._provider_latency.observe((provider,), seconds)

    def time_to_first_token(self, model: str, provider: str, seconds: float) -> None:
        self._ttft.observe((model, provider), seconds)

    def rate_limited(
        self, key_name: str, team: str = "", by: str = "key", limit: str = "requests"
    ) -> None:
        """A 429 for key `key_name` (of `team`, "" for none), refused by the key's own limit
        or its team's (`by`), which limit (`requests`, `tokens`, `budget`, `parallel`)."""
        self._rate_limited.add((key_name, team, by, limit))

    def attempt(self, provider: str, outcome: str) -> None:
        self._attempts.add((provider, outcome))

    def fallback(self, source: str, target: str, reason: str) -> None:
        self._fallbacks.add((source, target, reason))

    def rule_matched(self, rule: str) -> None:
        self._rule_matches.add((rule,))

    def upstream_error(self, provider: str, kind: str) -> None:
        self._upstream_errors.add((provider, kind))

    def overhead(self, seconds: float) -> None:
        self._overhead.observe((), seconds)

    def backend_error(self) -> None:
        self._backend_errors.add(())

    def config_reload(self, result: str) -> None:
        self._config_reloads.add((result,))

    def totals(self) -> Totals:
        """The running totals the admin API's live stats sample (`llm_proxy.observe.stats`):
        per provider, per key and per team (a key in no team counts in none), read from the
        counters' own dicts (no copy per request)."""
        out = Totals()
        for (_, endpoint, _, provider, status, key, _, team), n in self._requests.counts.items():
            if endpoint.startswith(_NOT_API) or endpoint == "other":
                continue
            failed = n if status[:1] == "5" else 0
            for group in _groups(provider, key, team):
                requests = out.requests.setdefault(group, [0.0, 0.0])
                requests[0] += n
                requests[1] += failed
        for (endpoint, _, provider, key, team), counts in self._duration._values.items():
            if endpoint.startswith(_NOT_API) or endpoint == "other":
                continue
            for group in _groups(provider, key, team):
                _add(out.duration, group, counts.buckets)
        for (_, provider), counts in self._ttft._values.items():
            for group in (("provider", provider), ("all", "all")):
                _add(out.ttft, group, counts.buckets)
        for (_, provider, kind, key, team), n in self._tokens.counts.items():
            if kind == "total_tokens":
                for group in _groups(provider, key, team):
                    out.tokens[group] = out.tokens.get(group, 0.0) + n
        for (_, provider, key, team), usd in self._cost.counts.items():
            for group in _groups(provider, key, team):
                out.cost[group] = out.cost.get(group, 0.0) + usd
        return out

    def render(self) -> tuple[bytes, dict[str, str]]:
        """Prometheus text format (never the protobuf format some scrapers also accept)."""
        for each in self._flushed:
            each.flush()
        with contextlib.suppress(ValueError):
            self._config_version.set({}, float(self.config_version()))
        self._log_dropped.set({}, self.log_dropped())
        for sink, written, dropped, queued in self.record_sinks():
            self._records_written.set({"sink": sink}, written)
            self._records_dropped.set({"sink": sink}, dropped)
            self._records_queued.set({"sink": sink}, queued)
        for exporter, sent, dropped, failures in self.trace_exporters():
            self._trace_spans.set({"exporter": exporter, "result": "sent"}, sent)
            self._trace_spans.set({"exporter": exporter, "result": "dropped"}, dropped)
            self._trace_failures.set({"exporter": exporter}, failures)
        self._active.set({}, self.active_requests())
        for provider, healthy in self.provider_health().items():
            self._provider_health.set({"provider": _escape(provider)}, 1 if healthy else 0)
        if self.backend_up is not None:
            self._backend_up.set({}, 1 if self.backend_up else 0)
        if self.cache_sizes is not None:
            entries, size, evictions, counts = self.cache_sizes()
            self._cache_entries.set({}, entries)
            self._cache_bytes.set({}, size)
            self._cache_evictions.set({}, evictions)
            for result, n in (("hit", counts.hits), ("miss", counts.misses)):
                self._cache_requests.set({"result": result}, n)
            self._cache_requests.set({"result": "bypass"}, counts.bypasses)
            self._cache_errors.set({}, counts.errors)
        body, headers = render(self.registry, [])
        return body, dict(headers)
