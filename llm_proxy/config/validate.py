"""`parse_config(data, locate)`: plain data (from YAML or database rows) into a frozen
:class:`Config`, or :class:`ConfigError` listing *every* problem found."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Final

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import ConfigError, Issue, Locate, Path
from llm_proxy.config.master_keys import parse_master_keys, short_key_problem
from llm_proxy.config.model import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_PORT,
    DEFAULT_TIMEOUTS,
    TIMEOUT_KEYS,
    CircuitBreaker,
    Config,
    TlsSettings,
)
from llm_proxy.config.providers import parse_providers
from llm_proxy.config.sections import (
    BREAKER_KEYS,
    parse_health_check,
    parse_pricing,
    parse_request_log,
    parse_timeouts,
)

TOP_KEYS: Final = TIMEOUT_KEYS | frozenset(
    {
        "providers",
        "master_keys",
        "request_log",
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
    }
)


SERVER_KEYS: Final = frozenset({"host", "port", "reuse_port", "tls", "http_port", "metrics_port"})
TLS_KEYS: Final = frozenset({"cert_file", "key_file", "client_ca_file"})


def parse_config(data: Any, locate: Locate | None = None) -> Config:
    """Validate plain data and build a :class:`Config`; raise :class:`ConfigError` otherwise."""
    check = Checker(locate)
    if data is None:
        data = {}
    top = check.mapping(data, (), TOP_KEYS)
    if top is None:
        raise ConfigError(check.issues)

    providers = parse_providers(check, top.get("providers"))
    keys = parse_master_keys(check, top.get("master_keys"))

    host, port = DEFAULT_HOST, DEFAULT_PORT
    reuse_port = False
    tls: TlsSettings | None = None
    http_port: int | None = None
    metrics_port: int | None = None
    server = top.get("server")
    if server is not None:
        srv = check.mapping(server, ("server",), SERVER_KEYS)
        if srv is not None:
            if srv.get("host") is not None:
                host = check.string(srv["host"], ("server", "host"))
            if srv.get("port") is not None:
                port = check.port(srv["port"], ("server", "port"))
            reuse_port = check.boolean(
                check.optional(srv, "reuse_port", False), ("server", "reuse_port")
            )
            tls = _parse_tls(check, srv.get("tls"))
            if srv.get("metrics_port") is not None:
                metrics_port = check.port(srv["metrics_port"], ("server", "metrics_port"))
            if srv.get("http_port") is not None:
                http_port = check.port(srv["http_port"], ("server", "http_port"))
                if tls is None:
                    check.fail(("server", "http_port"), "is only for a second listener beside tls")

    verify_ssl = check.boolean(check.optional(top, "verify_ssl", True), ("verify_ssl",))
    timeouts = parse_timeouts(check, top, (), DEFAULT_TIMEOUTS)
    breaker = CircuitBreaker()
    if top.get("circuit_breaker") is not None:
        b = check.mapping(top["circuit_breaker"], ("circuit_breaker",), BREAKER_KEYS)
        if b is not None:
            path = ("circuit_breaker",)
            breaker = CircuitBreaker(
                check.positive_int(
                    check.optional(b, "failure_threshold", breaker.failure_threshold),
                    (*path, "failure_threshold"),
                ),
                check.positive_number(
                    check.optional(b, "cooldown_secs", breaker.cooldown_secs),
                    (*path, "cooldown_secs"),
                ),
                check.positive_number(
                    check.optional(b, "max_cooldown_secs", breaker.max_cooldown_secs),
                    (*path, "max_cooldown_secs"),
                ),
            )
    defaults = Config()
    numbers = {
        key: check.positive_number(check.optional(top, key, getattr(defaults, key)), (key,))
        for key in (
            "shutdown_grace_secs",
            "keepalive_timeout_secs",
            "header_timeout_secs",
            "body_timeout_secs",
            "write_timeout_secs",
            "max_inflight_body_mb",
            "max_spool_mb",
            "pool_timeout_secs",
            "dns_ttl_secs",
        )
    }
    integers = {
        key: check.positive_int(check.optional(top, key, getattr(defaults, key)), (key,))
        for key in (
            "max_attempts",
            "max_connections",
            "max_connections_per_provider",
            "reserve_output_tokens",
        )
    }
    trust_env = check.boolean(check.optional(top, "trust_env", True), ("trust_env",))
    per_client = check.optional(
        top, "max_connections_per_client", defaults.max_connections_per_client
    )
    if per_client not in (0, "0"):  # 0 turns the per-client limit off
        per_client = check.positive_int(per_client, ("max_connections_per_client",))
    per_client = int(per_client)
    max_body = check.positive_number(
        check.optional(top, "max_request_body_mb", DEFAULT_MAX_BODY_MB), ("max_request_body_mb",)
    )
    suffix = top.get("provider_suffix")
    if suffix is not None:
        suffix = check.string(suffix, ("provider_suffix",), empty_ok=True).strip() or None
    metrics_token = top.get("metrics_token")
    if metrics_token is not None:
        metrics_token = check.string(metrics_token, ("metrics_token",), empty_ok=True) or None
    backend = top.get("rate_limit_backend")
    if backend is not None:
        backend = check.string(backend, ("rate_limit_backend",), empty_ok=True).strip() or None
        if backend and not backend.startswith(("redis://", "rediss://", "unix://")):
            check.fail(("rate_limit_backend",), "must be a redis://, rediss:// or unix:// URL")
    inject = check.boolean(
        check.optional(top, "inject_stream_usage", True), ("inject_stream_usage",)
    )
    cache_path = top.get("config_cache_path")
    if cache_path is not None:
        cache_path = check.string(cache_path, ("config_cache_path",))
    require_auth = check.boolean(check.optional(top, "require_auth", True), ("require_auth",))
    admin_key = top.get("admin_key")
    if admin_key is not None:
        admin_key = check.header_secret(admin_key, ("admin_key",))
        if admin_key is not None and (problem := short_key_problem(admin_key)) is not None:
            check.fail(("admin_key",), problem)
    admin_keys = parse_admin_keys(check, top.get("admin_keys"), admin_key)
    pricing = parse_pricing(check, top.get("pricing"), ("pricing",))
    request_log = parse_request_log(check, top.get("request_log"))
    default_provider = top.get("default_provider")
    if default_provider is not None:
        default_provider = check.name(default_provider, ("default_provider",))
        names = [p.name for p in providers]
        # (In database mode the providers are rows, checked when a call needs the default.)
        if providers and default_provider not in names:
            check.fail(
                ("default_provider",),
                f"names no provider: {default_provider!r} (providers: {', '.join(names)})",
            )

    if check.issues:
        raise ConfigError(check.issues)
    return Config(
        providers=providers,
        master_keys=keys,
        host=host,
        port=port,
        reuse_port=reuse_port,
        tls=tls,
        http_port=http_port,
        metrics_port=metrics_port,
        verify_ssl=verify_ssl,
        timeouts=timeouts,
        max_request_body_mb=max_body,
        provider_suffix=suffix,
        metrics_token=metrics_token,
        rate_limit_backend=backend,
        inject_stream_usage=inject,
        config_cache_path=cache_path,
        circuit_breaker=breaker,
        health_check=parse_health_check(check, top.get("health_check"), ("health_check",)),
        shutdown_grace_secs=numbers["shutdown_grace_secs"],
        keepalive_timeout_secs=numbers["keepalive_timeout_secs"],
        max_attempts=integers["max_attempts"],
        max_connections=integers["max_connections"],
        max_connections_per_client=per_client,
        header_timeout_secs=numbers["header_timeout_secs"],
        body_timeout_secs=numbers["body_timeout_secs"],
        write_timeout_secs=numbers["write_timeout_secs"],
        max_inflight_body_mb=numbers["max_inflight_body_mb"],
        max_spool_mb=numbers["max_spool_mb"],
        trust_env=trust_env,
        max_connections_per_provider=integers["max_connections_per_provider"],
        reserve_output_tokens=integers["reserve_output_tokens"],
        pool_timeout_secs=numbers["pool_timeout_secs"],
        dns_ttl_secs=numbers["dns_ttl_secs"],
        require_auth=require_auth,
        admin_key=admin_key,
        admin_keys=admin_keys,
        pricing=pricing,
        request_log=request_log,
        default_provider=default_provider,
    )


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
