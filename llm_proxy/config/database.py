"""Database mode: configuration rows -> the same validated Config as YAML mode.

Providers, credentials, teams (migration 017) and the routing tables (`model_fallbacks`,
`routing_rules`, `routing_settings`: migration 014) are read in one REPEATABLE READ transaction
together with the config version, turned into the plain data `parse_config` reads (the routing
rows into the YAML's `routing:` shape), and validated by the same rules. Errors name the table,
row and column. The request path never comes here.

The routing served in database mode is the tables' as soon as they hold any row (a disabled
rule counts); while they are empty, the settings file's `routing:` section (if any) serves,
and a file section beside rows is ignored with a warning (`routing_note`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import structlog

from llm_proxy.config.clouds import CLOUD_FIELDS
from llm_proxy.config.issues import ConfigError, Path
from llm_proxy.config.model import TIMEOUT_KEYS, Config
from llm_proxy.config.providers import redact_url
from llm_proxy.config.routing import CHAIN_KEYS, EVERY_MODEL, routing_issues
from llm_proxy.config.validate import auth_issues, parse_config

log = structlog.get_logger()

CHANNEL: Final = "llm_proxy_config"
# What a connection can fail with while the database is down or restarting: worth retrying.
# Anything else at startup (no such database or role, a bad password, a malformed DSN) will
# not get better by waiting and ends the start at once, in one line.
CONNECTION_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)
_SSLMODES: Final = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
DSN_FORM: Final = "postgresql://user:password@host:5432/dbname"

_PROVIDER_COLUMNS: Final = """
SELECT id, name, provider_type, api_base, api_key, model_mapping::text AS model_mapping,
       weight, params::text AS params
FROM providers"""
_PROVIDERS_SQL: Final = _PROVIDER_COLUMNS + " WHERE is_enabled ORDER BY id"
_ONE_PROVIDER_SQL: Final = _PROVIDER_COLUMNS + " WHERE id = $1"
_CREDENTIALS_SQL: Final = """
SELECT id, name, encode(key_hash, 'hex') AS key_sha256, allowed_models, rate_limit_rps,
       rate_limit_burst, tokens_per_minute, max_budget_usd, budget_period, is_enabled,
       shared_objects, max_parallel_requests, expires_at, metadata::text AS metadata,
       created_by, team
FROM credentials ORDER BY id
"""
_TEAMS_SQL: Final = """
SELECT id, name, allowed_models, rate_limit_rps, rate_limit_burst, tokens_per_minute,
       max_budget_usd, budget_period, max_parallel_requests, shared_objects,
       metadata::text AS metadata
FROM teams ORDER BY id
"""
_FALLBACKS_SQL: Final = "SELECT id, model, reason, chain FROM model_fallbacks ORDER BY id"
_RULES_SQL: Final = """
SELECT id, position, name, match::text AS match, providers, model, is_enabled
FROM routing_rules ORDER BY position"""
_SETTINGS_SQL: Final = """
SELECT id, model, strategy, retry::text AS retry, deadline_secs, context_window
FROM routing_settings ORDER BY id"""
_REASON_KEYS: Final = {reason: key for key, reason in CHAIN_KEYS.items()}
# The routing tables, and which of `DbConfig.rows`' sections hold their rows for errors.
ROUTING_TABLES: Final = ("model_fallbacks", "routing_rules", "routing_settings")
_ROUTING_ROWS: Final = {
    **dict.fromkeys(CHAIN_KEYS, "model_fallbacks"),
    "rules": "routing_rules",
    "models": "routing_settings",
    "defaults": "routing_settings",
}
# The provider settings kept in the `params` jsonb column (the rest have columns of their own).
PARAM_KEYS: Final = TIMEOUT_KEYS | {
    "verify_ssl",
    "inject_stream_usage",
    "health_check",
    "pricing",
    "organization",
    "project",
    "auth",
    "headers",
    "query_params",
    "proxy",
    "anthropic_version",
    "default_max_tokens",
    "max_output_tokens",
    *CLOUD_FIELDS,
}


@dataclass(frozen=True, slots=True)
class DbConfig:
    """One consistent read of the configuration tables."""

    version: str
    # providers, master_keys, teams and (when the routing tables hold any row) routing, in
    # parse_config's shape
    data: dict[str, Any]
    # table -> (id, name) per data entry, for errors; the routing's sections (fallbacks, ...,
    # models, defaults: (id, model); rules: (position, name)) too
    rows: dict[str, list[tuple[int, str]]]

    @property
    def has_routing(self) -> bool:
        """Do the routing tables hold any row (then they, not the settings file, route)?"""
        return "routing" in self.data


def describe_dsn(dsn: str) -> str:
    """host:port/dbname of a DSN, without user or password (safe to log, even malformed)."""
    try:
        parts = urlsplit(redact_url(dsn))
        port = parts.port
    except ValueError:
        return "(malformed DSN)"
    return f"{parts.hostname or 'localhost'}:{port or 5432}{parts.path or ''}"


def dsn_problem(dsn: str) -> str | None:
    """Why `dsn` is not a PostgreSQL DSN asyncpg accepts, or None. Checked before any
    connection (by `serve` and `check-config` alike); the message never quotes the DSN."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return f"invalid database DSN: it must start with postgresql:// ({DSN_FORM})"
    # Everything up to the last "@" is user:password, whatever characters it holds.
    authority = rest.rpartition("@")[2].partition("/")[0].partition("?")[0]
    for spec in filter(None, authority.split(",")):
        if spec.startswith("["):
            _, bracket, port = spec[1:].partition("]")
            if not bracket or (port and not port.startswith(":")):
                return f"invalid database DSN: a malformed [IPv6] host ({DSN_FORM})"
            port = port[1:]
        else:
            port = spec.rpartition(":")[2] if ":" in spec else ""
        if port and not (port.isdigit() and 0 < int(port) <= 65535):
            return f"invalid database DSN: the port is not a number 1-65535 ({DSN_FORM})"
    try:
        query = parse_qs(urlsplit(redact_url(dsn)).query)
    except ValueError:
        return f"invalid database DSN ({DSN_FORM})"
    for mode in query.get("sslmode", []):
        if mode not in _SSLMODES:
            return f"invalid database DSN: sslmode must be one of {', '.join(sorted(_SSLMODES))}"
    return None


# Every plane opens PostgreSQL through these two (the config listener too): each caller
# states its timeouts, and names its connections for pg_stat_activity where it always has.


async def connect(
    dsn: str,
    *,
    connect_timeout: float,
    name: str | None = None,
    settings: Mapping[str, str] | None = None,
) -> asyncpg.Connection:
    """One connection of the caller's own (not pooled: a LISTEN, a batch writer, a command).
    `name` is its `application_name`; `settings` are further server settings."""
    return await asyncpg.connect(
        dsn, timeout=connect_timeout, server_settings=_session(name, settings)
    )


async def create_pool(
    dsn: str,
    *,
    connect_timeout: float,
    command_timeout: float,
    name: str | None = None,
    settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """A small pool (at most 2 connections, opened on first use) for occasional queries off
    the request path. `connect_timeout` bounds a connect, `command_timeout` each query."""
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=2,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        server_settings=_session(name, settings),
    )


def _session(name: str | None, settings: Mapping[str, str] | None) -> dict[str, str] | None:
    session = dict(settings or {})
    if name is not None:
        session["application_name"] = name
    return session or None


async def fetch(conn: asyncpg.Connection) -> DbConfig:
    """One consistent read, in its own REPEATABLE READ transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await read_rows(conn)


async def read_rows(conn: asyncpg.Connection) -> DbConfig:
    """The configuration as the caller's transaction sees it (the admin API validates its
    writes with this before it commits them)."""
    version = await conn.fetchval("SELECT version FROM config_version")
    providers = await conn.fetch(_PROVIDERS_SQL)
    credentials = await conn.fetch(_CREDENTIALS_SQL)
    teams = await conn.fetch(_TEAMS_SQL)
    data: dict[str, Any] = {"providers": [], "master_keys": [], "teams": []}
    rows: dict[str, list[tuple[int, str]]] = {"providers": [], "master_keys": [], "teams": []}
    for r in providers:
        data["providers"].append(_provider_entry(r))
        rows["providers"].append((r["id"], r["name"]))
    for r in credentials:
        key: dict[str, Any] = {
            "name": r["name"],
            "key_sha256": r["key_sha256"],
            "enabled": r["is_enabled"],
            **_limits(r),
        }
        for column in ("expires_at", "created_by", "team"):
            if r[column] is not None:
                key[column] = r[column]
        data["master_keys"].append(key)
        rows["master_keys"].append((r["id"], r["name"]))
    for r in teams:
        data["teams"].append(_team_entry(r))
        rows["teams"].append((r["id"], r["name"]))
    await _read_routing(conn, data, rows)
    return DbConfig(str(version), data, rows)


async def _read_routing(
    conn: asyncpg.Connection, data: dict[str, Any], rows: dict[str, list[tuple[int, str]]]
) -> None:
    """The routing tables as the YAML's `routing:` section (enabled rules only, by position)
    into `data`, and where each entry came from into `rows`; nothing when they are empty."""
    fallbacks = await conn.fetch(_FALLBACKS_SQL)
    rules = await conn.fetch(_RULES_SQL)
    settings = await conn.fetch(_SETTINGS_SQL)
    if not (fallbacks or rules or settings):
        return
    routing: dict[str, Any] = {}
    for r in fallbacks:
        key = _REASON_KEYS[r["reason"]]
        routing.setdefault(key, {})[r["model"]] = list(r["chain"])
        rows.setdefault(key, []).append((r["id"], r["model"]))
    for r in settings:
        entry = {
            name: json.loads(r[name]) if name == "retry" else r[name]
            for name in ("strategy", "retry", "deadline_secs", "context_window")
            if r[name] is not None
        }
        if r["model"] == EVERY_MODEL:
            routing.update(entry)  # the defaults: routing.strategy, retry, deadline_secs
            rows["defaults"] = [(r["id"], r["model"])]
        else:
            routing.setdefault("models", {})[r["model"]] = entry
            rows.setdefault("models", []).append((r["id"], r["model"]))
    for r in rules:
        if not r["is_enabled"]:
            continue
        rule: dict[str, Any] = {"match": json.loads(r["match"])}
        if r["name"] is not None:
            rule["name"] = r["name"]
        if r["providers"] is not None:
            rule["providers"] = list(r["providers"])
        if r["model"] is not None:
            rule["model"] = r["model"]
        routing.setdefault("rules", []).append(rule)
        rows.setdefault("rules", []).append((r["position"], r["name"] or ""))
    data["routing"] = routing


def _limits(r: asyncpg.Record) -> dict[str, Any]:
    """The limit columns a key and a team share, as the YAML spells them (unset ones left
    out)."""
    entry: dict[str, Any] = {}
    if r["allowed_models"] is not None:
        entry["allowed_models"] = list(r["allowed_models"])
    if r["rate_limit_rps"] is not None:
        entry["rate_limit"] = {"requests_per_second": r["rate_limit_rps"]}
        if r["rate_limit_burst"] is not None:
            entry["rate_limit"]["burst_size"] = r["rate_limit_burst"]
    for column in ("tokens_per_minute", "max_budget_usd", "budget_period", "max_parallel_requests"):
        if r[column] is not None:
            entry[column] = r[column]
    if r["shared_objects"]:
        entry["shared_objects"] = True
    if r["metadata"] != "{}":
        entry["metadata"] = json.loads(r["metadata"])
    return entry


def _team_entry(r: asyncpg.Record) -> dict[str, Any]:
    return {"name": r["name"], **_limits(r)}


def _provider_entry(r: asyncpg.Record) -> dict[str, Any]:
    params = json.loads(r["params"])
    entry: dict[str, Any] = {
        "name": r["name"],
        "provider_type": r["provider_type"],
        "api_base": r["api_base"],
        "api_key": r["api_key"],
        "weight": r["weight"],
        "model_mapping": json.loads(r["model_mapping"]),
    }
    # Unknown params keys fail validation like unknown YAML keys, naming the column; a key
    # that names a column (api_base, weight, ...) must not override it: it fails as
    # `params.<key>`.
    if isinstance(params, dict):
        for name, value in params.items():
            entry[name if name in PARAM_KEYS else f"params.{name}"] = value
    else:
        entry["params"] = params
    return entry


async def check_provider_row(conn: asyncpg.Connection, row_id: int) -> None:
    """Validate one provider row alone, enabled or not (ConfigError if it is bad). The
    configuration read skips disabled rows, so the admin API checks each provider it writes
    with this: a disabled provider must not keep a bad value until someone enables it."""
    r = await conn.fetchrow(_ONE_PROVIDER_SQL, row_id)
    if r is not None:
        rows = {"providers": [(r["id"], r["name"])], "master_keys": []}
        parse_config({"providers": [_provider_entry(r)], "master_keys": []}, _locator(rows))


def build_config(base: Config, fetched: DbConfig) -> Config:
    """Validate the rows and combine them with the file/env settings (`base`), which alone
    decide everything but providers, keys, teams and routing (`require_auth` included). The routing
    is the tables' when they hold any row, else `base`'s (the settings file's section)."""
    locate = _locator(fetched.rows)
    parsed = parse_config(fetched.data, locate)
    config = dataclasses.replace(
        base,
        providers=parsed.providers,
        master_keys=parsed.master_keys,
        teams=parsed.teams,
        routing=parsed.routing if fetched.has_routing else base.routing,
        routing_from_rows=fetched.has_routing,
    )
    problems = auth_issues(config, "settings file or environment; keys in table credentials")
    if fetched.has_routing:
        problems += routing_issues(config, locate)
    else:
        problems += routing_issues(
            config, where="routing (settings file); providers and keys in tables"
        )
    if problems:
        raise ConfigError(problems)
    return config


def routing_note(base: Config, fetched: DbConfig) -> str | None:
    """A warning when the settings file has a `routing:` section the routing tables'
    rows override (None otherwise): `serve` logs it at startup."""
    if not (fetched.has_routing and base.routing.configured):
        return None
    return (
        "the settings file's routing section is ignored: the routing tables "
        f"({', '.join(ROUTING_TABLES)}) hold rows, and they route in database mode; remove the "
        "section from the file (or empty the tables to route by it)"
    )


def _locator(rows: Mapping[str, list[tuple[int, str]]]) -> Any:
    tables = {"providers": "providers", "master_keys": "credentials", "teams": "teams"}
    columns = {
        "master_keys": {
            "key_sha256": "key_hash",
            "enabled": "is_enabled",
            "rate_limit": "rate_limit_rps/rate_limit_burst",
        },
        "teams": {"rate_limit": "rate_limit_rps/rate_limit_burst"},
        "providers": dict.fromkeys(PARAM_KEYS, "params"),
    }

    def locate(path: Path) -> str | None:
        if path and path[0] == "routing":
            return _routing_place(rows, path)
        if len(path) < 2 or path[0] not in tables or not isinstance(path[1], int):
            return None
        section = str(path[0])
        row_id, name = rows[section][path[1]]
        where = f"table {tables[section]}, row id={row_id} ({name!r})"
        if len(path) > 2:
            field = str(path[2])
            where += f", column {columns[section].get(field, field)}"
        return where

    return locate


def _routing_place(rows: Mapping[str, list[tuple[int, str]]], path: Path) -> str | None:
    """Where in the routing tables a `routing.*` path came from: table, row and column."""
    section = str(path[1]) if len(path) > 1 else ""
    if section in ("retry", "deadline_secs", "strategy"):
        path, section = ("routing", "defaults", EVERY_MODEL, section, *path[2:]), "defaults"
    table = _ROUTING_ROWS.get(section)
    if table is None or len(path) < 3:
        return None
    entries = rows.get(section, [])
    if section == "rules":
        if not isinstance(path[2], int) or not 0 <= path[2] < len(entries):
            return None
        position, name = entries[path[2]]
        where = f"table {table}, row position={position}" + (f" ({name!r})" if name else "")
        column = str(path[3]) if len(path) > 3 else None
    else:
        found = [row_id for row_id, model in entries if model == path[2]]
        if not found:
            return None
        key = f"{path[2]}, {CHAIN_KEYS[section]}" if section in CHAIN_KEYS else f"{path[2]}"
        where = f"table {table}, row id={found[0]} ({key})"
        column = "chain" if section in CHAIN_KEYS else str(path[3]) if len(path) > 3 else None
    return where + (f", column {column}" if column else "")


async def load(conn: asyncpg.Connection, base: Config) -> tuple[Config, DbConfig]:
    fetched = await fetch(conn)
    return build_config(base, fetched), fetched


# The last good configuration on disk, so a proxy can start while the database is down.


def write_cache(path: str, fetched: DbConfig) -> None:
    """Atomically replace the cache file; mode 0600 (it holds provider keys)."""
    target = FsPath(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(
        {
            "version": fetched.version,
            "saved_at": time.time(),
            "data": fetched.data,
            "rows": fetched.rows,
        }
    ).encode()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".config-cache-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_cache(path: str) -> DbConfig | None:
    try:
        raw = json.loads(FsPath(path).read_bytes())
        rows = {k: [(int(i), str(n)) for i, n in v] for k, v in raw["rows"].items()}
        return DbConfig(str(raw["version"]), raw["data"], rows)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("config_cache_unreadable", path=path, error=str(exc))
        return None


class StartupError(Exception):
    """The database could not provide a configuration and no usable cache exists."""


async def load_once(dsn: str, base: Config) -> tuple[Config, DbConfig]:
    """Connect, read and validate once. A malformed DSN and errors that waiting cannot fix
    raise StartupError (one line, no secret); connection errors and ConfigError propagate."""
    problem = dsn_problem(dsn)
    if problem is not None:
        raise StartupError(problem)
    try:
        conn = await connect(dsn, connect_timeout=5)
    except (ValueError, OverflowError) as exc:
        # asyncpg's own DSN parser (its ClientConfigurationError is a ValueError).
        raise StartupError(
            f"invalid database DSN: {_redacted(str(exc), dsn)} ({DSN_FORM})"
        ) from None
    except CONNECTION_ERRORS:
        raise
    except asyncpg.PostgresError as exc:
        raise _fatal(exc, dsn) from None
    try:
        return await load(conn, base)
    except CONNECTION_ERRORS:
        raise
    except asyncpg.PostgresError as exc:
        raise _fatal(exc, dsn) from None
    finally:
        await conn.close()


def _fatal(exc: asyncpg.PostgresError, dsn: str) -> StartupError:
    where = describe_dsn(dsn)
    detail = _redacted(str(exc), dsn)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StartupError(
            f"database {where} does not exist: create it (`createdb`, then "
            "`llm-proxy migrate up`) or fix DB_URL"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # also bad passwords
        return StartupError(
            f"database {where} refused the login ({detail}): check the user and password in DB_URL"
        )
    if isinstance(exc, asyncpg.UndefinedTableError):
        return StartupError(
            f"database {where} has no llm-proxy tables: run `llm-proxy migrate up` first"
        )
    return StartupError(f"database {where}: {type(exc).__name__}: {detail}")


def _redacted(text: str, dsn: str) -> str:
    """`text` without the DSN's password, should a driver message ever quote it."""
    password = dsn.partition("://")[2].rpartition("@")[0].partition(":")[2]
    for form in {password, unquote(password)} - {""}:
        text = text.replace(form, "***")
    return text


async def initial_load(
    dsn: str, base: Config, *, timeout_secs: float = 30.0, cache_grace_secs: float = 3.0
) -> tuple[Config, str]:
    """Load the configuration at startup, retrying with backoff for `timeout_secs`.

    With `base.config_cache_path` set and a cache present, stop retrying after
    `cache_grace_secs` and start from the cache (the listener keeps trying the database).
    """
    cache_path = base.config_cache_path
    cached = read_cache(cache_path) if cache_path else None
    deadline = time.monotonic() + (cache_grace_secs if cached else timeout_secs)
    delay = 0.1
    while True:
        try:
            config, fetched = await load_once(dsn, base)
        except ConfigError as exc:
            if cached is None:
                raise
            log.error(
                "database_config_invalid_using_cache",
                errors=[str(i) for i in exc.issues],
                cache=cache_path,
            )
            break
        except CONNECTION_ERRORS as exc:
            if time.monotonic() >= deadline:
                if cached is not None:
                    log.warning(
                        "database_unreachable_using_cache",
                        database=describe_dsn(dsn),
                        error=type(exc).__name__,
                        cache=cache_path,
                        cached_version=cached.version,
                    )
                    break
                raise StartupError(
                    f"cannot reach the database at {describe_dsn(dsn)} after "
                    f"{timeout_secs:g}s ({type(exc).__name__}: {exc}); set config_cache_path "
                    "to start from the last good configuration when the database is down"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        note = routing_note(base, fetched)
        if note is not None:
            log.warning("routing_section_ignored", detail=note)
        if cache_path:
            write_cache(cache_path, fetched)
        return config, fetched.version
    assert cached is not None
    return build_config(base, cached), cached.version
