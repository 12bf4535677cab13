"""The configuration model and its validation: pure, no I/O.

`parse_config(data, locate)` turns plain data (from YAML or, later, database rows) into a frozen
:class:`Config` or raises :class:`ConfigError` listing *every* problem found, each naming the key
path and, through `locate`, where it came from (`providers[1].weight (line 14): must be a
positive integer`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from yarl import URL

from llm_proxy.config.patterns import compile_pattern

Path = tuple[str | int, ...]
Locate = Callable[[Path], str | None]

DEFAULT_PORT: Final = 18000
DEFAULT_HOST: Final = "0.0.0.0"
DEFAULT_TIMEOUT_SECS: Final = 600.0
DEFAULT_MAX_BODY_MB: Final = 32.0

# Provider and master-key names: metric labels and log fields. The SQL schema's rule
# (`^[^[:cntrl:]]{1,128}$`): no C0/C1 control characters, no DEL.
_NAME_RE: Final = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,128}$")
# Upper bounds that keep every number usable downstream (timers, byte counts, the SQL
# schema's `integer` columns): beyond them a value is a typo, not a setting.
MAX_INT: Final = 2**31 - 1
MAX_NUMBER: Final = 1e9


class Interpolated(str):
    """A string produced by `${VAR}` interpolation; numeric and boolean fields accept it when
    it spells a number or boolean (environment variables are always strings)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ModelRule:
    """One `model_mapping` entry: requested name or pattern -> upstream model name."""

    key: str
    target: str | None  # None: forward the requested name unchanged
    pattern: re.Pattern[str] | None  # None: an exact name


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds; in a provider's settings None means "the global value"."""

    connect_timeout_secs: float | None = None  # TCP/TLS connect
    ttft_timeout_secs: float | None = None  # to the first byte (streams: first event)
    stream_idle_timeout_secs: float | None = None  # between two stream chunks
    request_timeout_secs: float | None = None  # the whole call, streams included


DEFAULT_TIMEOUTS: Final = Timeouts(
    connect_timeout_secs=10.0,
    ttft_timeout_secs=None,  # None globally: bounded by request_timeout_secs only
    stream_idle_timeout_secs=120.0,
    request_timeout_secs=DEFAULT_TIMEOUT_SECS,
)
TIMEOUT_KEYS: Final = frozenset(f.name for f in dataclasses.fields(Timeouts))


@dataclass(frozen=True, slots=True)
class HealthCheck:
    interval_secs: float
    model: str | None = None  # None: GET /models; else a 1-token chat completion


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    failure_threshold: int = 3  # consecutive failures that eject a provider
    cooldown_secs: float = 5.0  # first ejection; doubles on each repeated ejection
    max_cooldown_secs: float = 300.0


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    api_base: str
    api_key: str = field(repr=False)
    weight: int = 1
    model_mapping: tuple[ModelRule, ...] = ()
    verify_ssl: bool | None = None  # None: use the global setting
    inject_stream_usage: bool | None = None  # None: use the global setting
    timeouts: Timeouts = Timeouts()  # overrides of the global timeouts
    health_check: HealthCheck | None = None  # None: the global setting (if any)
    # Sent as OpenAI-Organization / OpenAI-Project. Clients cannot set these (they would pick
    # the provider account's organization), and the upstream's are not shown to clients
    # unless set here.
    organization: str | None = None
    project: str | None = None
    # A forward proxy for this provider: an http:// URL, False for none (ignore the
    # environment), None for the environment's (when trust_env).
    proxy: str | Literal[False] | None = field(default=None, repr=False)

    @property
    def request_timeout_secs(self) -> float | None:
        return self.timeouts.request_timeout_secs


@dataclass(frozen=True, slots=True)
class RateLimit:
    requests_per_second: float
    burst_size: int


@dataclass(frozen=True, slots=True)
class MasterKey:
    name: str
    key: str = field(repr=False)  # plaintext; "" when only the hash is known
    rate_limit: RateLimit | None = None
    allowed_models: tuple[str, ...] | None = None  # None: every model
    enabled: bool = True
    tokens_per_minute: int | None = None
    key_sha256: bytes | None = field(default=None, repr=False)  # the hash, when given instead

    @property
    def digest(self) -> bytes:
        return self.key_sha256 or hashlib.sha256(self.key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Config:
    providers: tuple[Provider, ...] = ()
    master_keys: tuple[MasterKey, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    verify_ssl: bool = True
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    max_request_body_mb: float = DEFAULT_MAX_BODY_MB
    provider_suffix: str | None = None
    metrics_token: str | None = field(default=None, repr=False)
    rate_limit_backend: str | None = field(default=None, repr=False)  # redis://...
    inject_stream_usage: bool = True
    config_cache_path: str | None = None  # database mode: last good config, for cold starts
    max_attempts: int = 3  # providers tried per request before giving up (failover)
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    health_check: HealthCheck | None = None  # active checks for every provider
    shutdown_grace_secs: float = 30.0
    max_connections: int = 10000  # beyond: 503 at once
    keepalive_timeout_secs: float = 75.0  # idle client connections (and slow request heads)
    # One client address may hold this many connections (0: no per-client limit, e.g. behind
    # a load balancer whose address every connection shares).
    max_connections_per_client: int = 1000
    # A new connection must send its first request head within this; an idle connection that
    # never authenticated gets no more (authenticated keep-alive: keepalive_timeout_secs).
    header_timeout_secs: float = 10.0
    body_timeout_secs: float = 60.0  # the whole request body must arrive within this (408)
    # A client that takes none of the response for this long is cut off (a write-idle bound).
    write_timeout_secs: float = 60.0
    # Request bodies held in memory by all requests at once; beyond, 503 with Retry-After.
    max_inflight_body_mb: float = 1024.0
    # Upstream connections (read once, at startup):
    trust_env: bool = True  # HTTPS_PROXY / HTTP_PROXY / NO_PROXY pick a forward proxy
    max_connections_per_provider: int = 1000  # per upstream origin; beyond, requests queue...
    pool_timeout_secs: float = 10.0  # ...this long for a free connection (then 503/504-ish)
    dns_ttl_secs: float = 300.0  # how long a host name's addresses are reused
    # False only when the operator says so: no key is asked for or checked. True with no
    # enabled key refuses every /v1 request (revoking the last key locks, never opens).
    require_auth: bool = True
    # Guards the admin API and /health/detailed. Never logged or shown. `admin_key` is the
    # key named "admin"; `admin_keys` adds named ones (the name is recorded with each change).
    admin_key: str | None = field(default=None, repr=False)
    admin_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def admin_credentials(self) -> tuple[tuple[str, str], ...]:
        """Every admin key, as (name, key)."""
        single = (("admin", self.admin_key),) if self.admin_key else ()
        return single + self.admin_keys

    @property
    def request_timeout_secs(self) -> float:
        return self.timeouts.request_timeout_secs or DEFAULT_TIMEOUT_SECS


@dataclass(frozen=True, slots=True)
class Issue:
    path: Path
    message: str
    where: str | None = None

    def __str__(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return f"{format_path(self.path)}{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


T = TypeVar("T")


class _Checker:
    """Collects issues while reading values; every getter returns a usable default on error so
    that one pass reports all problems."""

    def __init__(self, locate: Locate | None) -> None:
        self.issues: list[Issue] = []
        self._locate = locate

    def fail(self, path: Path, message: str) -> None:
        self.issues.append(Issue(path, message, self._locate(path) if self._locate else None))

    def mapping(
        self, value: Any, path: Path, allowed: frozenset[str] | None
    ) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {_kind(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {_kind(key)} {key!r}")
            elif allowed is not None and key not in allowed:
                self.fail((*path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, path: Path, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_kind(value)}")
            return ""
        if not empty_ok and not value.strip():
            self.fail(path, "must not be empty")
        return str(value)

    def boolean(self, value: Any, path: Path) -> bool:
        if isinstance(value, Interpolated):
            parsed = parse_bool(value)
            if parsed is not None:
                return parsed
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_kind(value)}")
            return False
        return value

    def positive_int(self, value: Any, path: Path) -> int:
        if isinstance(value, Interpolated) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(path, f"must be a positive integer, got {value!r}")
            return 1
        if value > MAX_INT:
            self.fail(path, f"must be at most {MAX_INT}, got {value}")
            return 1
        return value

    def positive_number(self, value: Any, path: Path) -> float:
        if isinstance(value, Interpolated):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a positive number, got {value!r}")
            return 1.0
        # YAML `.inf`/`.nan`, JSON's 1e999, `${VAR}` = "Infinity": refused here, once, so
        # that nothing downstream (timers, rate conversions) ever sees them.
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"must be a finite positive number, got {value!r}")
            return 1.0
        if not value > 0:
            self.fail(path, f"must be a positive number, got {value!r}")
            return 1.0
        if value > MAX_NUMBER:
            self.fail(path, f"must be at most {MAX_NUMBER:g}, got {value:g}")
            return 1.0
        return float(value)

    def header_secret(self, value: Any, path: Path) -> str | None:
        """A secret sent or compared as a header value; empty means unset. Never echoed."""
        text = self.string(value, path, empty_ok=True)
        if text and not header_safe(text):
            self.fail(path, "must be printable ASCII without spaces")
        return text or None

    def name(self, value: Any, path: Path) -> str:
        text = self.string(value, path)
        if text.strip() and not _NAME_RE.match(text):
            self.fail(path, "must be 1-128 printable characters")
        return text

    def port(self, value: Any, path: Path) -> int:
        port = self.positive_int(value, path)
        if port > 65535:
            self.fail(path, f"must be a port number 1-65535, got {port}")
        return port

    def sequence(self, value: Any, path: Path) -> list[Any]:
        if not isinstance(value, list | tuple):
            self.fail(path, f"must be a list, got {_kind(value)}")
            return []
        return list(value)

    def optional(self, data: Mapping[str, Any], key: str, default: T) -> Any:
        value = data.get(key)
        return default if value is None else value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        Interpolated: "a string",
    }.get(
        type(value),
        "a mapping"
        if isinstance(value, Mapping)
        else "a list"
        if isinstance(value, list | tuple)
        else type(value).__name__,
    )


def header_safe(text: str) -> bool:
    """Sendable as a header value as is: printable ASCII, no spaces, no CR/LF."""
    return text.isascii() and text.isprintable() and " " not in text


def parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return None


TOP_KEYS: Final = TIMEOUT_KEYS | frozenset(
    {
        "providers",
        "master_keys",
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
    }
)
SERVER_KEYS: Final = frozenset({"host", "port"})
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
    }
)
BREAKER_KEYS: Final = frozenset({"failure_threshold", "cooldown_secs", "max_cooldown_secs"})
HEALTH_CHECK_KEYS: Final = frozenset({"interval_secs", "model"})
KEY_KEYS: Final = frozenset(
    {"name", "key", "key_sha256", "rate_limit", "allowed_models", "enabled", "tokens_per_minute"}
)
RATE_KEYS: Final = frozenset({"requests_per_second", "burst_size"})


def parse_config(data: Any, locate: Locate | None = None) -> Config:
    """Validate plain data and build a :class:`Config`; raise :class:`ConfigError` otherwise."""
    check = _Checker(locate)
    if data is None:
        data = {}
    top = check.mapping(data, (), TOP_KEYS)
    if top is None:
        raise ConfigError(check.issues)

    providers = _providers(check, top.get("providers"))
    keys = _master_keys(check, top.get("master_keys"))

    host, port = DEFAULT_HOST, DEFAULT_PORT
    server = top.get("server")
    if server is not None:
        srv = check.mapping(server, ("server",), SERVER_KEYS)
        if srv is not None:
            if srv.get("host") is not None:
                host = check.string(srv["host"], ("server", "host"))
            if srv.get("port") is not None:
                port = check.port(srv["port"], ("server", "port"))

    verify_ssl = check.boolean(check.optional(top, "verify_ssl", True), ("verify_ssl",))
    timeouts = _timeouts(check, top, (), DEFAULT_TIMEOUTS)
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
            "pool_timeout_secs",
            "dns_ttl_secs",
        )
    }
    integers = {
        key: check.positive_int(check.optional(top, key, getattr(defaults, key)), (key,))
        for key in ("max_attempts", "max_connections", "max_connections_per_provider")
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
    admin_keys = _admin_keys(check, top.get("admin_keys"), admin_key)

    if check.issues:
        raise ConfigError(check.issues)
    return Config(
        providers=providers,
        master_keys=keys,
        host=host,
        port=port,
        verify_ssl=verify_ssl,
        timeouts=timeouts,
        max_request_body_mb=max_body,
        provider_suffix=suffix,
        metrics_token=metrics_token,
        rate_limit_backend=backend,
        inject_stream_usage=inject,
        config_cache_path=cache_path,
        circuit_breaker=breaker,
        health_check=_health_check(check, top.get("health_check"), ("health_check",)),
        shutdown_grace_secs=numbers["shutdown_grace_secs"],
        keepalive_timeout_secs=numbers["keepalive_timeout_secs"],
        max_attempts=integers["max_attempts"],
        max_connections=integers["max_connections"],
        max_connections_per_client=per_client,
        header_timeout_secs=numbers["header_timeout_secs"],
        body_timeout_secs=numbers["body_timeout_secs"],
        write_timeout_secs=numbers["write_timeout_secs"],
        max_inflight_body_mb=numbers["max_inflight_body_mb"],
        trust_env=trust_env,
        max_connections_per_provider=integers["max_connections_per_provider"],
        pool_timeout_secs=numbers["pool_timeout_secs"],
        dns_ttl_secs=numbers["dns_ttl_secs"],
        require_auth=require_auth,
        admin_key=admin_key,
        admin_keys=admin_keys,
    )


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


def _admin_keys(check: _Checker, raw: Any, single: str | None) -> tuple[tuple[str, str], ...]:
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
        elif key in seen:
            check.fail(path, "is the same key as another admin key")
        else:
            seen.add(key)
            out.append((str(name), key))
    return tuple(out)


def _timeouts(check: _Checker, data: Mapping[str, Any], path: Path, base: Timeouts) -> Timeouts:
    values = {}
    for key in sorted(TIMEOUT_KEYS):
        value = data.get(key)
        values[key] = (
            getattr(base, key) if value is None else check.positive_number(value, (*path, key))
        )
    return Timeouts(**values)


def _health_check(check: _Checker, raw: Any, path: Path) -> HealthCheck | None:
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


def _providers(check: _Checker, raw: Any) -> tuple[Provider, ...]:
    if raw is None:
        return ()
    out: list[Provider] = []
    seen: set[str] = set()
    for i, item in enumerate(check.sequence(raw, ("providers",))):
        path: Path = ("providers", i)
        p = check.mapping(item, path, PROVIDER_KEYS)
        if p is None:
            continue
        for required in ("name", "api_base"):
            if p.get(required) is None:
                check.fail((*path, required), "is required")
        name = check.name(p["name"], (*path, "name")) if p.get("name") is not None else ""
        if name in seen:
            check.fail((*path, "name"), f"duplicate provider name {name!r}")
        seen.add(name)
        api_base = ""
        if p.get("api_base") is not None:
            api_base = check.string(p["api_base"], (*path, "api_base")).rstrip("/")
            shown = redact_url(api_base)
            if api_base and not api_base.startswith(("http://", "https://")):
                check.fail((*path, "api_base"), f"must start with http:// or https://: {shown}")
            elif api_base and not _has_host(api_base):
                check.fail((*path, "api_base"), f"has no host: {shown}")
            elif api_base and _has_userinfo(api_base):
                check.fail(
                    (*path, "api_base"),
                    f"must not carry user:password@ ({shown}): put the provider's key in "
                    "api_key (sent as Authorization: Bearer)",
                )
            elif "#" in api_base:
                check.fail((*path, "api_base"), f"must not have a #fragment: {shown}")
        # It becomes a header line as is: no spaces, control characters or non-ASCII.
        api_key = check.header_secret(check.optional(p, "api_key", ""), (*path, "api_key")) or ""
        proxy = _provider_proxy(check, p.get("proxy"), (*path, "proxy"))
        ids = {}
        for key in ("organization", "project"):
            value = p.get(key)
            if value is not None:
                value = check.string(value, (*path, key))
                if not _HEADER_SAFE.fullmatch(value):
                    check.fail((*path, key), "must be printable ASCII without spaces")
            ids[key] = value
        weight = check.positive_int(check.optional(p, "weight", 1), (*path, "weight"))
        mapping = _model_mapping(check, p.get("model_mapping"), (*path, "model_mapping"))
        verify = p.get("verify_ssl")
        inject = p.get("inject_stream_usage")
        out.append(
            Provider(
                name=name,
                api_base=api_base,
                api_key=api_key,
                weight=weight,
                model_mapping=mapping,
                verify_ssl=None if verify is None else check.boolean(verify, (*path, "verify_ssl")),
                timeouts=_timeouts(check, p, path, Timeouts()),
                health_check=_health_check(check, p.get("health_check"), (*path, "health_check")),
                inject_stream_usage=None
                if inject is None
                else check.boolean(inject, (*path, "inject_stream_usage")),
                organization=ids["organization"],
                project=ids["project"],
                proxy=proxy,
            )
        )
    return tuple(out)


_HEADER_SAFE: Final = re.compile(r"[!-~]+")  # printable ASCII, no spaces: a header value


def _model_mapping(check: _Checker, raw: Any, path: Path) -> tuple[ModelRule, ...]:
    if raw is None:
        return ()
    mapping = check.mapping(raw, path, None)
    if mapping is None:
        return ()
    rules: list[ModelRule] = []
    for key, target in mapping.items():
        if not isinstance(key, str) or not key:
            check.fail(path, f"model names must be non-empty strings, got {key!r}")
            continue
        if target is not None and (not isinstance(target, str) or not target.strip()):
            check.fail((*path, key), f"must be an upstream model name (a string), got {target!r}")
            continue
        pattern = _pattern(check, key, (*path, key))
        rules.append(ModelRule(key=key, target=target or None, pattern=pattern))
    return tuple(rules)


def _pattern(check: _Checker, text: str, path: Path) -> re.Pattern[str] | None:
    try:
        return compile_pattern(text)
    except re.error as exc:
        check.fail(path, f"invalid regular expression {text!r}: {exc}")
        return None


def _master_keys(check: _Checker, raw: Any) -> tuple[MasterKey, ...]:
    if raw is None:
        return ()
    out: list[MasterKey] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, item in enumerate(check.sequence(raw, ("master_keys",))):
        path: Path = ("master_keys", i)
        k = check.mapping(item, path, KEY_KEYS)
        if k is None:
            continue
        if k.get("name") is None:
            check.fail((*path, "name"), "is required")
        name = check.name(k["name"], (*path, "name")) if k.get("name") is not None else ""
        if name in names:
            check.fail((*path, "name"), f"duplicate key name {name!r}")
        names.add(name)
        secret, key_sha256 = "", None
        if (k.get("key") is None) == (k.get("key_sha256") is None):
            check.fail((*path, "key"), "exactly one of key and key_sha256 is required")
        elif k.get("key") is not None:
            secret = check.string(k["key"], (*path, "key"))
        else:
            hex_digest = check.string(k["key_sha256"], (*path, "key_sha256"))
            if re.fullmatch(r"[0-9a-fA-F]{64}", hex_digest):
                key_sha256 = bytes.fromhex(hex_digest)
            else:
                check.fail((*path, "key_sha256"), "must be 64 hex characters (a SHA-256)")
        digest = key_sha256 or hashlib.sha256(secret.encode()).digest()
        if (secret or key_sha256) and digest in digests:
            # Never echo the secret itself.
            check.fail((*path, "key"), "duplicate key value (two entries share one key)")
        digests.add(digest)
        limit = None
        if k.get("rate_limit") is not None:
            limit = _rate_limit(check, k["rate_limit"], (*path, "rate_limit"))
        allowed = None
        if k.get("allowed_models") is not None:
            entries = []
            for j, entry in enumerate(
                check.sequence(k["allowed_models"], (*path, "allowed_models"))
            ):
                text = check.string(entry, (*path, "allowed_models", j))
                if text:
                    _pattern(check, text, (*path, "allowed_models", j))
                    entries.append(text)
            allowed = tuple(entries)
        enabled = check.boolean(check.optional(k, "enabled", True), (*path, "enabled"))
        tpm = k.get("tokens_per_minute")
        if tpm is not None:
            tpm = check.positive_int(tpm, (*path, "tokens_per_minute"))
        out.append(MasterKey(name, secret, limit, allowed, enabled, tpm, key_sha256))
    return tuple(out)


def _rate_limit(check: _Checker, raw: Any, path: Path) -> RateLimit | None:
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


def redact_url(url: str) -> str:
    """`url` with any `user:password@` replaced by `***@`: safe to print and log.

    Conservative on purpose: everything up to the last `@` after the scheme goes, so a
    malformed URL (an unencoded `/` or `@` in the password) never leaks part of it either.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _has_userinfo(url: str) -> bool:
    try:
        parsed = URL(url)
    except ValueError:
        return False
    return parsed.user is not None or parsed.password is not None


def _provider_proxy(check: _Checker, raw: Any, path: Path) -> str | Literal[False] | None:
    """`proxy:` of a provider: an http:// URL (user:password@ allowed, for the proxy), or
    false/"direct" for none at all."""
    if raw is None:
        return None
    if raw is False or raw == "direct":
        return False
    value = check.string(raw, path)
    try:
        parsed = URL(value)
    except ValueError:
        parsed = URL()
    if parsed.scheme != "http" or not parsed.host:
        check.fail(path, f"must be an http:// proxy URL or false, got {redact_url(value)!r}")
        return None
    return value


def _has_host(url: str) -> bool:
    try:
        return bool(URL(url).host)
    except ValueError:
        return False
