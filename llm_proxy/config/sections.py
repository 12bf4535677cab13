"""Sections shared by the top level and the providers: timeouts, health checks, circuit
breaker, rate limits and prices, and the key sets each section accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Path
from llm_proxy.config.model import (
    TIMEOUT_KEYS,
    HealthCheck,
    Price,
    Pricing,
    RateLimit,
    RequestLogSettings,
    Timeouts,
)
from llm_proxy.config.patterns import compile_pattern

PROVIDER_KEYS: Final = TIMEOUT_KEYS | frozenset(
    {
        "name",
        "api_base",
        "api_key",
        "weight",
        "model_mapping",
        "verify_ssl",
        "inject_stream_usage",
        "health_check",
        "organization",
        "project",
        "proxy",
        "pricing",
        "provider_type",
        "auth",
        "headers",
        "query_params",
    }
)


BREAKER_KEYS: Final = frozenset({"failure_threshold", "cooldown_secs", "max_cooldown_secs"})


HEALTH_CHECK_KEYS: Final = frozenset({"interval_secs", "model"})


KEY_KEYS: Final = frozenset(
    {
        "name",
        "key",
        "key_sha256",
        "rate_limit",
        "allowed_models",
        "enabled",
        "tokens_per_minute",
        "max_budget_usd",
        "budget_period",
        "shared_objects",
        "max_parallel_requests",
    }
)


RATE_KEYS: Final = frozenset({"requests_per_second", "burst_size"})


def parse_timeouts(check: Checker, data: Mapping[str, Any], path: Path, base: Timeouts) -> Timeouts:
    values = {}
    for key in sorted(TIMEOUT_KEYS):
        value = data.get(key)
        values[key] = (
            getattr(base, key) if value is None else check.positive_number(value, (*path, key))
        )
    return Timeouts(**values)


def parse_health_check(check: Checker, raw: Any, path: Path) -> HealthCheck | None:
    if raw is None:
        return None
    h = check.mapping(raw, path, HEALTH_CHECK_KEYS)
    if h is None:
        return None
    if h.get("interval_secs") is None:
        check.fail((*path, "interval_secs"), "is required")
        return None
    model = h.get("model")
    return HealthCheck(
        check.positive_number(h["interval_secs"], (*path, "interval_secs")),
        check.string(model, (*path, "model")) if model is not None else None,
    )


def parse_rate_limit(check: Checker, raw: Any, path: Path) -> RateLimit | None:
    r = check.mapping(raw, path, RATE_KEYS)
    if r is None:
        return None
    if r.get("requests_per_second") is None:
        check.fail((*path, "requests_per_second"), "is required")
        return None
    rps = check.positive_number(r["requests_per_second"], (*path, "requests_per_second"))
    default_burst = max(1, int(rps))
    burst = check.positive_int(
        check.optional(r, "burst_size", default_burst), (*path, "burst_size")
    )
    return RateLimit(rps, burst)


PRICE_KEYS: Final = frozenset({"input_per_mtok", "output_per_mtok"})


def parse_pricing(check: Checker, raw: Any, path: Path) -> Pricing:
    """`pricing: {model or pattern: {input_per_mtok, output_per_mtok}}` (US dollars per
    million tokens; a missing side costs nothing)."""
    if raw is None:
        return ()
    mapping = check.mapping(raw, path, None)
    if mapping is None:
        return ()
    out = []
    for name, entry in mapping.items():
        where = (*path, str(name))
        fields = check.mapping(entry, where, PRICE_KEYS)
        if fields is None:
            continue
        if not fields:
            check.fail(where, "must give input_per_mtok and/or output_per_mtok")
        try:
            pattern = compile_pattern(str(name))
        except re.error as exc:
            check.fail(where, f"invalid regular expression: {exc}")
            continue
        price = Price(
            *(
                check.non_negative_number(fields[k], (*where, k)) if k in fields else 0.0
                for k in ("input_per_mtok", "output_per_mtok")
            )
        )
        out.append((str(name), pattern, price))
    return tuple(out)


REQUEST_LOG_KEYS: Final = frozenset(
    {
        "enabled",
        "database_url",
        "jsonl_path",
        "capture_content",
        "max_content_bytes",
        "retention_days",
        "queue_size",
        "batch_size",
        "flush_interval_secs",
    }
)


def parse_request_log(check: Checker, raw: Any) -> RequestLogSettings:
    """The `request_log` section (see RequestLogSettings)."""
    defaults = RequestLogSettings()
    if raw is None:
        return defaults
    path: Path = ("request_log",)
    r = check.mapping(raw, path, REQUEST_LOG_KEYS)
    if r is None:
        return defaults
    enabled = None
    if r.get("enabled") is not None:
        enabled = check.boolean(r["enabled"], (*path, "enabled"))
    url = r.get("database_url")
    if url is not None:
        url = check.string(url, (*path, "database_url"), empty_ok=True).strip() or None
        if url and not url.startswith(("postgres://", "postgresql://")):
            # Never echo it: a DSN carries a password.
            check.fail((*path, "database_url"), "must be a postgresql:// URL")
    jsonl = r.get("jsonl_path")
    if jsonl is not None:
        jsonl = check.string(jsonl, (*path, "jsonl_path"), empty_ok=True).strip() or None
    retention = r.get("retention_days", defaults.retention_days)
    if retention not in (0, "0"):
        retention = check.positive_int(retention, (*path, "retention_days"))
    return RequestLogSettings(
        enabled=enabled,
        database_url=url,
        jsonl_path=jsonl,
        capture_content=check.boolean(
            check.optional(r, "capture_content", False), (*path, "capture_content")
        ),
        max_content_bytes=check.positive_int(
            check.optional(r, "max_content_bytes", defaults.max_content_bytes),
            (*path, "max_content_bytes"),
        ),
        retention_days=int(retention),
        queue_size=check.positive_int(
            check.optional(r, "queue_size", defaults.queue_size), (*path, "queue_size")
        ),
        batch_size=check.positive_int(
            check.optional(r, "batch_size", defaults.batch_size), (*path, "batch_size")
        ),
        flush_interval_secs=check.positive_number(
            check.optional(r, "flush_interval_secs", defaults.flush_interval_secs),
            (*path, "flush_interval_secs"),
        ),
    )
