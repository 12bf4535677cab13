"""`parse_config(data, locate)`: plain data (from YAML or database rows) into a frozen
:class:`Config`, or :class:`ConfigError` listing *every* problem found."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from llm_proxy.config.cache import parse_cache
from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import ConfigError, Issue, Locate, Path
from llm_proxy.config.master_keys import parse_master_keys, short_key_problem
from llm_proxy.config.model import DEFAULT_TIMEOUTS, TIMEOUT_KEYS, Config, Provider
from llm_proxy.config.providers import parse_providers
from llm_proxy.config.routing import parse_routing
from llm_proxy.config.sections import (
    parse_circuit_breaker,
    parse_health_check,
    parse_pricing,
    parse_request_log,
    parse_server,
    parse_timeouts,
    parse_tracing,
)
from llm_proxy.config.teams import fit_keys_in_teams, parse_teams

TOP_KEYS: Final = TIMEOUT_KEYS | frozenset(
    {
        "providers",
        "master_keys",
        "teams",
        "request_log",
        "tracing",
        "default_provider",
        "server",
        "verify_ssl",
        "max_attempts",
        "circuit_breaker",
        "health_check",
        "shutdown_grace_secs",
        "max_connections",
        "keepalive_timeout_secs",
        "max_connections_per_client",
        "header_timeout_secs",
        "body_timeout_secs",
        "write_timeout_secs",
        "max_inflight_body_mb",
        "max_spool_mb",
        "trust_env",
        "max_connections_per_provider",
        "pool_timeout_secs",
        "dns_ttl_secs",
        "max_request_body_mb",
        "provider_suffix",
        "metrics_token",
        "rate_limit_backend",
        "inject_stream_usage",
        "config_cache_path",
        "require_auth",
        "admin_key",
        "admin_keys",
        "pricing",
        "reserve_output_tokens",
        "routing",
        "cache",
    }
)


# Config's own defaults: a top-level setting left out keeps the model's value.
_DEFAULTS: Final = Config()


def parse_config(data: Any, locate: Locate | None = None) -> Config:
    """Validate plain data and build a :class:`Config`; raise :class:`ConfigError` otherwise.
    Each field is read once, in the order the issues are reported."""
    check = Checker(locate)
    if data is None:
        data = {}
    top = check.mapping(data, (), TOP_KEYS)
    if top is None:
        raise ConfigError(check.issues)
    providers = parse_providers(check, top.get("providers"))
    config = Config(
        providers=providers,
        master_keys=fit_keys_in_teams(
            check,
            parse_master_keys(check, top.get("master_keys")),
            teams := parse_teams(check, top.get("teams")),
        ),
        teams=teams,
        **parse_server(check, top.get("server")),
        verify_ssl=_flag(check, top, "verify_ssl"),
        timeouts=parse_timeouts(check, top, (), DEFAULT_TIMEOUTS),
        circuit_breaker=parse_circuit_breaker(check, top.get("circuit_breaker")),
        health_check=parse_health_check(check, top.get("health_check"), ("health_check",)),
        shutdown_grace_secs=_number(check, top, "shutdown_grace_secs"),
        keepalive_timeout_secs=_number(check, top, "keepalive_timeout_secs"),
        header_timeout_secs=_number(check, top, "header_timeout_secs"),
        body_timeout_secs=_number(check, top, "body_timeout_secs"),
        write_timeout_secs=_number(check, top, "write_timeout_secs"),
        max_inflight_body_mb=_number(check, top, "max_inflight_body_mb"),
        max_spool_mb=_number(check, top, "max_spool_mb"),
        pool_timeout_secs=_number(check, top, "pool_timeout_secs"),
        dns_ttl_secs=_number(check, top, "dns_ttl_secs"),
        max_attempts=_integer(check, top, "max_attempts"),
        max_connections=_integer(check, top, "max_connections"),
        max_connections_per_provider=_integer(check, top, "max_connections_per_provider"),
        reserve_output_tokens=_integer(check, top, "reserve_output_tokens"),
        trust_env=_flag(check, top, "trust_env"),
        max_connections_per_client=_per_client(check, top),
        max_request_body_mb=_number(check, top, "max_request_body_mb"),
        provider_suffix=_text(check, top, "provider_suffix"),
        metrics_token=_text(check, top, "metrics_token", strip=False),
        rate_limit_backend=(redis := _rate_limit_backend(check, top)),
        inject_stream_usage=_flag(check, top, "inject_stream_usage"),
        config_cache_path=_cache_path(check, top),
        require_auth=_flag(check, top, "require_auth"),
        admin_key=(admin_key := _admin_key(check, top)),  # admin_keys must not repeat it
        admin_keys=parse_admin_keys(check, top.get("admin_keys"), admin_key),
        pricing=parse_pricing(check, top.get("pricing"), ("pricing",)),
        request_log=parse_request_log(check, top.get("request_log")),
        tracing=parse_tracing(check, top.get("tracing")),
        default_provider=_default_provider(check, top.get("default_provider"), providers),
        routing=parse_routing(check, top.get("routing")),
        cache=parse_cache(check, top.get("cache"), redis),
    )
    if check.issues:
        raise ConfigError(check.issues)
    return config


def _number(check: Checker, top: Mapping[str, Any], key: str) -> float:
    return check.positive_number(check.optional(top, key, getattr(_DEFAULTS, key)), (key,))


def _integer(check: Checker, top: Mapping[str, Any], key: str) -> int:
    return check.positive_int(check.optional(top, key, getattr(_DEFAULTS, key)), (key,))


def _flag(check: Checker, top: Mapping[str, Any], key: str) -> bool:
    return check.boolean(check.optional(top, key, getattr(_DEFAULTS, key)), (key,))


def _text(check: Checker, top: Mapping[str, Any], key: str, *, strip: bool = True) -> str | None:
    """An optional string setting; blank is the same as unset."""
    value = top.get(key)
    if value is None:
        return None
    text = check.string(value, (key,), empty_ok=True)
    return (text.strip() if strip else text) or None


def _per_client(check: Checker, top: Mapping[str, Any]) -> int:
    key = "max_connections_per_client"
    value = check.optional(top, key, _DEFAULTS.max_connections_per_client)
    if value not in (0, "0"):  # 0 turns the per-client limit off
        value = check.positive_int(value, (key,))
    return int(value)


def _rate_limit_backend(check: Checker, top: Mapping[str, Any]) -> str | None:
    backend = _text(check, top, "rate_limit_backend")
    if backend and not backend.startswith(("redis://", "rediss://", "unix://")):
        check.fail(("rate_limit_backend",), "must be a redis://, rediss:// or unix:// URL")
    return backend


def _cache_path(check: Checker, top: Mapping[str, Any]) -> str | None:
    path = top.get("config_cache_path")
    return None if path is None else check.string(path, ("config_cache_path",))


def _admin_key(check: Checker, top: Mapping[str, Any]) -> str | None:
    admin_key = top.get("admin_key")
    if admin_key is None:
        return None
    admin_key = check.header_secret(admin_key, ("admin_key",))
    if admin_key is not None and (problem := short_key_problem(admin_key)) is not None:
        check.fail(("admin_key",), problem)
    return admin_key


def _default_provider(check: Checker, raw: Any, providers: tuple[Provider, ...]) -> str | None:
    if raw is None:
        return None
    default_provider = check.name(raw, ("default_provider",))
    names = [p.name for p in providers]
    # (In database mode the providers are rows, checked when a call needs the default.)
    if providers and default_provider not in names:
        check.fail(
            ("default_provider",),
            f"names no provider: {default_provider!r} (providers: {', '.join(names)})",
        )
    return default_provider


def auth_issues(config: Config, where: str | None = None) -> list[Issue]:
    """The rules spanning settings and keys (in database mode they come from different
    places, so they are checked on the final Config): `require_auth: false` turns
    authentication off, so keys configured beside it would silently never be checked; and an
    admin key is never also a master key (nor the other way round)."""
    issues = []
    if not config.require_auth and config.master_keys:
        issues.append(
            Issue(
                ("require_auth",),
                f"is false (authentication off), but {len(config.master_keys)} master key(s) "
                "are configured and would never be checked: remove `require_auth: false` to "
                "enforce them, or remove the keys",
                where,
            )
        )
    digests = {k.digest for k in config.master_keys}
    for name, key in config.admin_credentials:
        if hashlib.sha256(key.encode()).digest() in digests:
            path: Path = ("admin_key",) if name == "admin" else ("admin_keys", name)
            issues.append(
                Issue(path, "is also a master key: admin keys and master keys must differ", where)
            )
    return issues


def parse_admin_keys(check: Checker, raw: Any, single: str | None) -> tuple[tuple[str, str], ...]:
    """`admin_keys: {name: key}`: named admin keys (the name is who made a change)."""
    if raw is None:
        return ()
    mapping = check.mapping(raw, ("admin_keys",), None)
    if mapping is None:
        return ()
    out = []
    seen = {single} if single else set()
    for name, value in mapping.items():
        path: Path = ("admin_keys", str(name))
        check.name(name, path)
        if name == "admin" and single:
            check.fail(path, "the name `admin` is taken by admin_key")
        key = check.header_secret(value, path)
        if key is None:
            check.fail(path, "must be a non-empty key")
        elif (problem := short_key_problem(key)) is not None:
            check.fail(path, problem)
        elif key in seen:
            check.fail(path, "is the same key as another admin key")
        else:
            seen.add(key)
            out.append((str(name), key))
    return tuple(out)
