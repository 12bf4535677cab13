"""What `serve` checks before it listens (or touches the database), and `check-config`, which
makes the same checks without serving and prints a summary that never shows a secret.

`load_startup_env()` runs before every command (the working directory's `.env`).
`plan_for()` is shared by both, so that they accept exactly the same arguments and environment;
`load_file()` reads a YAML config file for `serve`, `check-config` and `import-config` alike,
saying on standard error why it cannot.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llm_proxy.config.clouds import CredentialsError, provider_google_credentials
from llm_proxy.config.dotenv import DotenvError, load_into_environment
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.lockout import locked_warning
from llm_proxy.config.master_keys import expiry_text
from llm_proxy.config.model import SIGNED_TYPES, Config, Provider
from llm_proxy.config.original_env import ignored_variables_line
from llm_proxy.config.providers import redact_url
from llm_proxy.config.yaml_file import load_config_file, resolve_config_path

if TYPE_CHECKING:
    from llm_proxy.observe.langfuse import LangfuseSettings
    from llm_proxy.observe.tracing.settings import TracingPlan


def load_startup_env() -> bool:
    """Load the working directory's `.env` into the process environment, below the variables
    already set (`config/dotenv.py`); every command does this first, as the original did for
    every variable. Prints why not (file and line, never a value) and returns False when the
    file cannot be read."""
    try:
        load_into_environment()
    except DotenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    except OSError as exc:
        print(f"error: cannot read .env: {exc}", file=sys.stderr)
        return False
    return True


def load_file(path_arg: str | None) -> tuple[Path, Config] | None:
    path = resolve_config_path(path_arg, os.environ)
    try:
        return path, load_config_file(path)
    except FileNotFoundError:
        print(f"error: config file not found: {path}", file=sys.stderr)
    except DotenvError as exc:  # the .env beside the file
        print(f"error: {exc}", file=sys.stderr)
    except ConfigError as exc:
        print(f"error: invalid config {path}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read config {path}: {exc}", file=sys.stderr)
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What `serve` would run, as far as it can be known without serving."""

    path: Path | None  # the config file read, if any
    config: Config  # YAML mode: everything; database mode: the settings (`base`)
    dsn: str | None  # database mode
    langfuse: LangfuseSettings | None = None  # LANGFUSE_ENABLED and its settings
    tracing: TracingPlan | None = None  # the tracing section and OTEL_*: where spans go


def plan_for(path_arg: str | None, db_url: str | None) -> Plan | None:
    """`_settings_plan`, the Langfuse settings from the environment and the tracing plan
    (the config's `tracing` section and the OTEL_* variables)."""
    from llm_proxy.observe.langfuse import LangfuseSettings
    from llm_proxy.observe.tracing.settings import resolve

    plan = _settings_plan(path_arg, db_url)
    try:
        langfuse = LangfuseSettings.from_env(os.environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if plan is None:
        return None
    try:
        tracing = resolve(plan.config.tracing, os.environ)
    except ValueError as exc:
        print(f"error: tracing: {exc}", file=sys.stderr)
        return None
    return Plan(plan.path, plan.config, plan.dsn, langfuse, tracing)


def _exports(plan: Plan) -> None:
    """check-config's lines for Langfuse and tracing (never a key or header value)."""
    if plan.langfuse is not None:
        how = "ingestion API (legacy)" if plan.langfuse.export == "ingestion" else "OTLP"
        print(f"langfuse: on, {plan.langfuse.host} ({how})")
        if plan.langfuse.export == "ingestion":
            from llm_proxy.observe.langfuse import INGESTION_WARNING

            print(f"warning: {INGESTION_WARNING}", file=sys.stderr)
    if plan.tracing is not None:
        print(f"tracing: on, {plan.tracing.describe()}")


def _settings_plan(path_arg: str | None, db_url: str | None) -> Plan | None:
    """The checks `serve` makes before it listens (or touches the database), shared with
    `check-config` so that both accept exactly the same arguments and environment.
    Prints every problem found and returns None when there is one."""
    dsn = db_url or os.environ.get("DB_URL") or None
    if dsn is None:
        loaded = load_file(path_arg)
        return None if loaded is None else Plan(*loaded, None)
    from llm_proxy.config.database import dsn_problem

    problem = dsn_problem(dsn)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
    settings = _database_settings(path_arg)
    if problem is not None or settings is None:
        return None
    return Plan(*settings, dsn)


def _database_settings(path_arg: str | None) -> tuple[Path | None, Config] | None:
    """In database mode the file (optional) holds settings only; rows hold providers/keys."""
    from llm_proxy.config.yaml_file import apply_env_overrides

    explicit = path_arg or os.environ.get("CONFIG_PATH")
    path = resolve_config_path(path_arg, os.environ)
    if not explicit and not path.exists():
        # The working directory's .env is in os.environ already (`load_startup_env`).
        try:
            return None, apply_env_overrides(Config(), os.environ)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    loaded = load_file(path_arg)
    if loaded is None:
        return None
    path, config = loaded
    if config.providers or config.master_keys or config.teams:
        print(
            f"error: {path}: in database mode (DB_URL set) providers and master_keys live in "
            "the database (teams too); remove them from the file (or load them once with "
            "`llm-proxy import-config`)",
            file=sys.stderr,
        )
        return None
    return path, config


def check_config(path_arg: str | None, db_url: str | None, *, connect: bool) -> int:
    plan = plan_for(path_arg, db_url)
    if plan is None:
        return 1
    ignored = ignored_variables_line(os.environ)
    if ignored is not None:
        print(f"warning: {ignored}", file=sys.stderr)
    if plan.dsn is None:
        assert plan.path is not None
        print(summarize(str(plan.path), plan.config))
        _routing(plan.config)
        _exports(plan)
        return 0
    from llm_proxy.config.database import StartupError, describe_dsn, load_once, routing_note

    where = describe_dsn(plan.dsn)
    name = plan.path or "(no config file: defaults and environment)"
    if not connect:
        print(f"{name}: OK (database mode: settings only)")
        _exports(plan)
        print(
            f"providers and master keys: read from the database {where} at start "
            "(not checked; add --connect to check them)"
        )
        print(summarize_settings(plan.config))
        _routing(plan.config)  # (its warnings need the providers: none here)
        return 0
    from llm_proxy.config.database import CONNECTION_ERRORS

    try:
        config, fetched = asyncio.run(load_once(plan.dsn, plan.config))
    except ConfigError as exc:
        print(f"error: invalid configuration in the database {where}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CONNECTION_ERRORS as exc:
        # `serve` would retry this for 30 s (or start from config_cache_path).
        print(
            f"error: cannot reach the database {where} ({type(exc).__name__}); `serve` would "
            "retry for 30 s, or start from config_cache_path if one is set",
            file=sys.stderr,
        )
        return 1
    source = f"{name} + database {where} (config version {fetched.version})"
    print(summarize(source, config, database=True))
    _routing(config)
    note = routing_note(plan.config, fetched)
    if note is not None:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def _routing(config: Config) -> None:
    """The routing section's summary, and its warnings (on standard error: not errors)."""
    from llm_proxy.cli.check_routing import routing_summary, routing_warnings

    for line in routing_summary(config):
        print(line)
    for warning in routing_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)


def summarize_settings(config: Config) -> str:
    """The settings part of a summary: listen address and authentication."""
    lines = [f"listen: {config.host}:{config.port}" + (" (https)" if config.tls else "")]
    if config.http_port is not None:
        lines.append(f"plain http also on: {config.host}:{config.http_port}")
    if not config.require_auth:
        lines.append("authentication: OFF (require_auth: false)")
    if config.admin_key:
        lines.append("admin key: set")
    if config.metrics_token:
        lines.append("metrics token: set")
    if config.rate_limit_backend:
        lines.append(f"rate limit backend: {redact_url(config.rate_limit_backend)}")
    cache = config.cache
    if cache.enabled:
        where = f"memory, at most {cache.max_bytes >> 20} MiB"
        if cache.backend == "redis":
            url = cache.url or config.rate_limit_backend or ""
            where = f"redis {redact_url(url)}"
        lines.append(
            f"response cache: {where}, ttl {cache.ttl_secs}s, per {cache.namespace}"
            f", entries up to {cache.max_entry_bytes >> 10} KiB"
            f", max_temperature {cache.max_temperature:g}"
        )
    return "\n".join(lines)


def cloud_summary(p: Provider) -> list[str]:
    """What a cloud provider signs its calls with: the kind of credentials found (the
    service account's email at most, never a key), its project, location or region."""
    if p.provider_type == "vertex":
        found = None
        try:
            found = provider_google_credentials(p)
        except CredentialsError as exc:  # (the file changed since the check)
            credentials = f"credentials_file {exc}"
        else:
            if found is None:
                credentials = "application default credentials"
            else:
                origin = "file" if p.credentials_file is not None else "credentials_json"
                who = found.client_email or found.client_id
                credentials = f"{found.kind} {who} ({origin})"
        project = p.project or (found.project_id if found else None)
        return [f"project {project}", f"location {p.location}", f"credentials: {credentials}"]
    if p.provider_type == "bedrock":
        if p.aws_access_key_id is not None:
            credentials = "static keys" + (" + session token" if p.aws_session_token else "")
        elif p.aws_profile is not None:
            credentials = f"profile {p.aws_profile}"
        else:
            credentials = "the environment's (or the default profile)"
        return [f"region {p.region}", f"credentials: {credentials}"]
    return []


def _teams_line(config: Config) -> str:
    """`teams (N): name (limits...; K keys), ...`"""
    names = []
    for t in config.teams:
        extra = []
        if t.allowed_models is not None:
            extra.append("models " + ", ".join(t.allowed_models))
        if t.rate_limit:
            extra.append(
                f"{t.rate_limit.requests_per_second:g} rps, burst {t.rate_limit.burst_size}"
            )
        if t.tokens_per_minute is not None:
            extra.append(f"{t.tokens_per_minute} tokens/min")
        if t.max_budget_usd is not None:
            extra.append(f"${t.max_budget_usd:g} {t.budget_period}")
        if t.max_parallel_requests is not None:
            extra.append(f"{t.max_parallel_requests} parallel")
        if t.shared_objects:
            extra.append("shared objects")
        members = sum(1 for k in config.master_keys if k.team == t.name)
        extra.append(f"{members} key{'' if members == 1 else 's'}")
        names.append(f"{t.name} ({'; '.join(extra)})")
    return f"teams ({len(names)}): {', '.join(names)}"


def summarize(source: str, config: Config, *, database: bool = False) -> str:
    """A human summary that never shows a secret: keys appear by name only, URLs without
    their `user:password@`. `database`: the keys came from a database (the fix a locked proxy
    is told)."""
    from llm_proxy.admin.views import shown_query

    lines = [f"{source}: OK", summarize_settings(config)]
    total = sum(p.weight for p in config.providers)
    lines.append(f"providers ({len(config.providers)}):")
    for p in config.providers:
        share = 100.0 * p.weight / total if total else 0.0
        lines.append(f"  {p.name}  weight {p.weight} ({share:.1f}%)  {redact_url(p.api_base)}")
        extra: list[str] = [] if p.provider_type == "openai" else [p.provider_type]
        if p.auth != "bearer" and p.provider_type not in SIGNED_TYPES:
            extra.append(f"auth {p.auth}")
        extra += cloud_summary(p)
        if p.headers:  # names only: values may be secrets
            extra.append("headers " + ", ".join(name for name, _ in p.headers))
        if p.query_params:  # values masked: some providers take their key as ?key=
            shown = shown_query(dict(p.query_params))
            extra.append("query " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if extra:
            lines.append(f"    {'; '.join(extra)}")
        for rule in p.model_mapping:
            kind = "exact" if rule.pattern is None else "pattern"
            lines.append(f"    {rule.key} -> {rule.target or '(same name)'}  [{kind}]")
    from llm_proxy.proxy.routing import RouteTable

    models = RouteTable(config.providers).model_names
    lines.append(f"models served ({len(models)}): {', '.join(models) or '(none)'}")
    if config.master_keys:
        names = []
        for k in config.master_keys:
            extra = [] if k.enabled else ["disabled"]
            if k.rate_limit:
                extra.append(
                    f"{k.rate_limit.requests_per_second:g} rps, burst {k.rate_limit.burst_size}"
                )
            if k.max_parallel_requests is not None:
                extra.append(f"{k.max_parallel_requests} parallel")
            if k.shared_objects:
                extra.append("shared objects")
            if k.expires_at is not None:
                word = "EXPIRED" if k.expires_at <= time.time() else "expires"
                extra.append(f"{word} {expiry_text(k.expires_at)}")
            names.append(k.name + (f" ({'; '.join(extra)})" if extra else ""))
        lines.append(f"master keys ({len(names)}): {', '.join(names)}")
    if config.teams:
        lines.append(_teams_line(config))
    locked = locked_warning(config, database=database)
    if locked is not None:
        lines.append(locked)
    if config.provider_suffix:
        lines.append(f"provider suffix: {config.provider_suffix}/")
    return "\n".join(lines)
