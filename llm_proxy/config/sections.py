"""Sections of the config: those shared by the top level and the providers (timeouts, health
checks, prices), `server`, `circuit_breaker`, rate limits and the request log, and the key
sets each section accepts."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final, TypedDict

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Path
from llm_proxy.config.model import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    TIMEOUT_KEYS,
    CircuitBreaker,
    HealthCheck,
    Price,
    Pricing,
    RateLimit,
    RequestLogSettings,
    Timeouts,
    TlsSettings,
    TracingSettings,
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
        "anthropic_version",
        "default_max_tokens",
        "max_output_tokens",
        # The clouds' own (config/clouds.py): vertex, then bedrock.
        "location",
        "credentials_file",
        "credentials_json",
        "region",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_profile",
    }
)


BREAKER_KEYS: Final = frozenset({"failure_threshold", "cooldown_secs", "max_cooldown_secs"})


SERVER_KEYS: Final = frozenset({"host", "port", "reuse_port", "tls", "http_port", "metrics_port"})
TLS_KEYS: Final = frozenset({"cert_file", "key_file", "client_ca_file"})


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
        "expires_at",
        "metadata",
        "created_by",
        "team",
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


class ServerFields(TypedDict):
    """The `server` section: Config's listener fields."""

    host: str
    port: int
    reuse_port: bool
    tls: TlsSettings | None
    http_port: int | None
    metrics_port: int | None


def parse_server(check: Checker, raw: Any) -> ServerFields:
    fields = ServerFields(
        host=DEFAULT_HOST,
        port=DEFAULT_PORT,
        reuse_port=False,
        tls=None,
        http_port=None,
        metrics_port=None,
    )
    srv = None if raw is None else check.mapping(raw, ("server",), SERVER_KEYS)
    if srv is None:
        return fields
    if srv.get("host") is not None:
        fields["host"] = check.string(srv["host"], ("server", "host"))
    if srv.get("port") is not None:
        fields["port"] = check.port(srv["port"], ("server", "port"))
    fields["reuse_port"] = check.boolean(
        check.optional(srv, "reuse_port", False), ("server", "reuse_port")
    )
    fields["tls"] = _parse_tls(check, srv.get("tls"))
    if srv.get("metrics_port") is not None:
        fields["metrics_port"] = check.port(srv["metrics_port"], ("server", "metrics_port"))
    if srv.get("http_port") is not None:
        fields["http_port"] = check.port(srv["http_port"], ("server", "http_port"))
        if fields["tls"] is None:
            check.fail(("server", "http_port"), "is only for a second listener beside tls")
    return fields


def _parse_tls(check: Checker, raw: Any) -> TlsSettings | None:
    if raw is None:
        return None
    path: Path = ("server", "tls")
    t = check.mapping(raw, path, TLS_KEYS)
    if t is None:
        return None
    files = {}
    for key in ("cert_file", "key_file", "client_ca_file"):
        value = t.get(key)
        if value is None:
            if key != "client_ca_file":
                check.fail((*path, key), "is required")
            continue
        name = check.string(value, (*path, key))
        if name and not os.access(name, os.R_OK):
            check.fail((*path, key), f"cannot read {name!r}")
        files[key] = name
    if check.issues:
        return None
    return TlsSettings(files["cert_file"], files["key_file"], files.get("client_ca_file"))


def parse_circuit_breaker(check: Checker, raw: Any) -> CircuitBreaker:
    default = CircuitBreaker()
    path: Path = ("circuit_breaker",)
    b = None if raw is None else check.mapping(raw, path, BREAKER_KEYS)
    if b is None:
        return default
    return CircuitBreaker(
        check.positive_int(
            check.optional(b, "failure_threshold", default.failure_threshold),
            (*path, "failure_threshold"),
        ),
        check.positive_number(
            check.optional(b, "cooldown_secs", default.cooldown_secs), (*path, "cooldown_secs")
        ),
        check.positive_number(
            check.optional(b, "max_cooldown_secs", default.max_cooldown_secs),
            (*path, "max_cooldown_secs"),
        ),
    )


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


TRACING_KEYS: Final = frozenset(
    {
        "enabled",
        "endpoint",
        "traces_endpoint",
        "protocol",
        "headers",
        "compression",
        "timeout_secs",
        "service_name",
        "resource_attributes",
        "sampler",
        "sampler_arg",
        "capture_content",
        "max_content_bytes",
        "queue_size",
        "batch_size",
        "flush_interval_secs",
    }
)
DEFAULT_CONTENT_BYTES: Final = 4096
TRACING_PROTOCOLS: Final = ("http/protobuf", "http/json")
TRACING_COMPRESSIONS: Final = ("gzip", "none")
TRACING_SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def parse_tracing(check: Checker, raw: Any) -> TracingSettings:
    """The `tracing` section (see TracingSettings)."""
    if raw is None:
        return TracingSettings()
    path: Path = ("tracing",)
    r = check.mapping(raw, path, TRACING_KEYS)
    if r is None:
        return TracingSettings()

    def text(key: str) -> str | None:
        value = r.get(key)
        if value is None:
            return None
        return check.string(value, (*path, key), empty_ok=True).strip() or None

    def choice(key: str, allowed: tuple[str, ...]) -> str | None:
        value = text(key)
        if value is not None and value not in allowed:
            check.fail((*path, key), f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def url(key: str) -> str | None:
        value = text(key)
        if value is not None and not value.startswith(("http://", "https://")):
            check.fail((*path, key), f"must be an http:// or https:// URL, got {value!r}")
        return value

    def number(key: str, *, integer: bool = False) -> Any:
        value = r.get(key)
        if value is None:
            return None
        if integer:
            return check.positive_int(value, (*path, key))
        return check.positive_number(value, (*path, key))

    enabled = None
    if r.get("enabled") is not None:
        enabled = check.boolean(r["enabled"], (*path, "enabled"))
    headers: list[tuple[str, str]] = []
    raw_headers = r.get("headers")
    if raw_headers is not None:
        h = check.mapping(raw_headers, (*path, "headers"), None) or {}
        for name, value in h.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                check.fail((*path, "headers"), f"{name!r} is not a header name")
                continue
            secret = check.header_secret(value, (*path, "headers", name))
            if secret is not None:
                headers.append((name, secret))
    attributes: list[tuple[str, str]] = []
    raw_attributes = r.get("resource_attributes")
    if raw_attributes is not None:
        a = check.mapping(raw_attributes, (*path, "resource_attributes"), None) or {}
        for name, value in a.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                check.fail((*path, "resource_attributes", str(name)), "must be a string")
                continue
            attributes.append((str(name), str(value)))
    sampler_arg = r.get("sampler_arg")
    if sampler_arg is not None:
        sampler_arg = check.non_negative_number(sampler_arg, (*path, "sampler_arg"))
        if sampler_arg > 1:
            check.fail((*path, "sampler_arg"), f"must be from 0 to 1, got {sampler_arg!r}")
    return TracingSettings(
        enabled=enabled,
        endpoint=url("endpoint"),
        traces_endpoint=url("traces_endpoint"),
        protocol=choice("protocol", TRACING_PROTOCOLS),
        headers=tuple(headers),
        compression=choice("compression", TRACING_COMPRESSIONS),
        timeout_secs=number("timeout_secs"),
        service_name=text("service_name"),
        resource_attributes=tuple(attributes),
        sampler=choice("sampler", TRACING_SAMPLERS),
        sampler_arg=sampler_arg,
        capture_content=check.boolean(
            check.optional(r, "capture_content", False), (*path, "capture_content")
        ),
        max_content_bytes=check.positive_int(
            check.optional(r, "max_content_bytes", DEFAULT_CONTENT_BYTES),
            (*path, "max_content_bytes"),
        ),
        queue_size=number("queue_size", integer=True),
        batch_size=number("batch_size", integer=True),
        flush_interval_secs=number("flush_interval_secs"),
    )


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
