"""Command line: `llm-proxy serve | check-config | migrate | import-config | mock-upstream`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from llm_proxy import __version__
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config
from llm_proxy.config.providers import redact_url
from llm_proxy.config.yaml_file import load_config_file, resolve_config_path

if TYPE_CHECKING:
    from llm_proxy.observe.langfuse import LangfuseSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-proxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llm-proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (default: $CONFIG_PATH, config.yaml)")
    serve.add_argument("--host", help="listen address (overrides HOST and server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides PORT and server.port)")
    serve.add_argument("--db-url", help="PostgreSQL DSN: database mode (default: $DB_URL)")

    mig = sub.add_parser("migrate", help="apply or inspect database schema migrations")
    mig.add_argument("action", choices=("up", "down", "status"))
    mig.add_argument("--steps", type=int, default=1, help="migrations to revert with `down`")
    mig.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")

    imp = sub.add_parser("import-config", help="load a YAML file's providers and keys into the DB")
    imp.add_argument("file")
    imp.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
    imp.add_argument(
        "--dry-run", action="store_true", help="print what would change; change nothing"
    )

    exp = sub.add_parser("export-config", help="write the DB's providers and keys as YAML")
    exp.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
    exp.add_argument("-o", "--output", help="file to write (default: standard output)")
    exp.add_argument(
        "--with-secrets",
        action="store_true",
        help="write provider keys themselves, not ${LLM_PROXY_KEY_<NAME>} references",
    )

    check = sub.add_parser(
        "check-config", help="check what `serve` would check, without serving; print a summary"
    )
    check.add_argument("file", nargs="?", help="config file (default: $CONFIG_PATH)")
    check.add_argument("--db-url", help="PostgreSQL DSN: database mode (default: $DB_URL)")
    check.add_argument(
        "--connect",
        action="store_true",
        help="database mode: also connect once and validate the providers and keys rows",
    )

    cfg = sub.add_parser("config", help="database mode: the config history, and rollback")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    hist = cfg_sub.add_parser(
        "history", help="recorded changes to providers and keys, newest first"
    )
    hist.add_argument("version", nargs="?", type=int, help="show this version's changes in full")
    hist.add_argument("--table", choices=("providers", "credentials"))
    hist.add_argument("--row", type=int, help="one row's changes (its id)")
    hist.add_argument("--limit", type=int, default=20, help="versions to show (default 20)")
    hist.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
    back = cfg_sub.add_parser(
        "rollback", help="restore providers and keys to their state at a version"
    )
    back.add_argument("version", type=int)
    back.add_argument(
        "--restore-revoked-keys",
        action="store_true",
        help="also revive master keys rotated or deleted since that version (default: kept "
        "revoked)",
    )
    back.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")

    mock = sub.add_parser("mock-upstream", help="serve a fake OpenAI API on loopback")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=18001)
    mock.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    mock.add_argument("--delay-ms", type=float, default=20.0, help="delay between chunks")
    mock.add_argument("--name", default="mock", help="instance name: in its ids, x-mock-instance")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.config, args.host, args.port, args.db_url)
    if args.command == "check-config":
        return _check_config(args.file, args.db_url, connect=args.connect)
    if args.command == "migrate":
        return _migrate(args.action, args.db_url, args.steps)
    if args.command == "import-config":
        return _import_config(args.file, args.db_url, dry_run=args.dry_run)
    if args.command == "export-config":
        return _export_config(args.db_url, args.output, with_secrets=args.with_secrets)
    if args.command == "config":
        return _config_history(args)
    from llm_proxy.testing.mock_upstream import MockOptions, run_mock

    options = MockOptions(chunks=args.chunks, delay_ms=args.delay_ms, name=args.name)
    run_mock(args.host, args.port, options)
    return 0


def _load(path_arg: str | None) -> tuple[Path, Config] | None:
    path = resolve_config_path(path_arg, os.environ)
    try:
        return path, load_config_file(path)
    except FileNotFoundError:
        print(f"error: config file not found: {path}", file=sys.stderr)
    except ConfigError as exc:
        print(f"error: invalid config {path}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read config {path}: {exc}", file=sys.stderr)
    return None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What `serve` would run, as far as it can be known without serving."""

    path: Path | None  # the config file read, if any
    config: Config  # YAML mode: everything; database mode: the settings (`base`)
    dsn: str | None  # database mode
    langfuse: LangfuseSettings | None = None  # LANGFUSE_ENABLED and its settings


def _plan(path_arg: str | None, db_url: str | None) -> _Plan | None:
    """`_settings_plan` and the Langfuse settings from the environment."""
    from llm_proxy.observe.langfuse import LangfuseSettings

    plan = _settings_plan(path_arg, db_url)
    try:
        langfuse = LangfuseSettings.from_env(os.environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if plan is None:
        return None
    return _Plan(plan.path, plan.config, plan.dsn, langfuse)


def _settings_plan(path_arg: str | None, db_url: str | None) -> _Plan | None:
    """The checks `serve` makes before it listens (or touches the database), shared with
    `check-config` so that both accept exactly the same arguments and environment.
    Prints every problem found and returns None when there is one."""
    dsn = db_url or os.environ.get("DB_URL") or None
    if dsn is None:
        loaded = _load(path_arg)
        return None if loaded is None else _Plan(*loaded, None)
    from llm_proxy.config.database import dsn_problem

    problem = dsn_problem(dsn)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
    settings = _database_settings(path_arg)
    if problem is not None or settings is None:
        return None
    return _Plan(*settings, dsn)


def _check_config(path_arg: str | None, db_url: str | None, *, connect: bool) -> int:
    plan = _plan(path_arg, db_url)
    if plan is None:
        return 1
    if plan.dsn is None:
        assert plan.path is not None
        print(summarize(str(plan.path), plan.config))
        if plan.langfuse is not None:
            print(f"langfuse: on, {plan.langfuse.host}")
        return 0
    from llm_proxy.config.database import StartupError, describe_dsn, load_once

    where = describe_dsn(plan.dsn)
    name = plan.path or "(no config file: defaults and environment)"
    if not connect:
        print(f"{name}: OK (database mode: settings only)")
        if plan.langfuse is not None:
            print(f"langfuse: on, {plan.langfuse.host}")
        print(
            f"providers and master keys: read from the database {where} at start "
            "(not checked; add --connect to check them)"
        )
        print(summarize_settings(plan.config))
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
    print(summarize(f"{name} + database {where} (config version {fetched.version})", config))
    return 0


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
    return "\n".join(lines)


def summarize(source: str, config: Config) -> str:
    """A human summary that never shows a secret: keys appear by name only, URLs without
    their `user:password@`."""
    from llm_proxy.admin.views import shown_query

    lines = [f"{source}: OK", summarize_settings(config)]
    total = sum(p.weight for p in config.providers)
    lines.append(f"providers ({len(config.providers)}):")
    for p in config.providers:
        share = 100.0 * p.weight / total if total else 0.0
        lines.append(f"  {p.name}  weight {p.weight} ({share:.1f}%)  {redact_url(p.api_base)}")
        extra: list[str] = [] if p.provider_type == "openai" else [p.provider_type]
        if p.auth != "bearer":
            extra.append(f"auth {p.auth}")
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
            names.append(k.name + (f" ({'; '.join(extra)})" if extra else ""))
        lines.append(f"master keys ({len(names)}): {', '.join(names)}")
    if config.require_auth and not any(k.enabled for k in config.master_keys):
        lines.append(
            "master keys: none enabled: every /v1 request will be refused (401) until a key is "
            "added (set require_auth: false to serve without authentication)"
        )
    if config.provider_suffix:
        lines.append(f"provider suffix: {config.provider_suffix}/")
    return "\n".join(lines)


def _serve(path_arg: str | None, host: str | None, port: int | None, db_url: str | None) -> int:
    from llm_proxy.observe import log

    log.configure()
    try:
        return _serve_logged(path_arg, host, port, db_url)
    finally:
        log.close()  # the log lines still buffered


def _ui_url(host: str, port: int, *, tls: bool) -> str:
    """The address to open the UI at: a wildcard listen address is reached on loopback."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}/ui/"


def _serve_logged(
    path_arg: str | None, host: str | None, port: int | None, db_url: str | None
) -> int:
    import structlog

    from llm_proxy.app import DatabaseMode, create_app

    logger = structlog.get_logger()
    plan = _plan(path_arg, db_url)
    if plan is None:
        return 2
    path, dsn = plan.path, plan.dsn
    loop = _new_loop()
    database = None
    if dsn is None:
        config, version = plan.config, "1"
    else:
        from llm_proxy.config.database import StartupError, describe_dsn, initial_load

        base = plan.config
        try:
            config, version = loop.run_until_complete(initial_load(dsn, base))
        except (StartupError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            loop.close()
            return 2
        database = DatabaseMode(dsn, base)
        logger.info("database_mode", database=describe_dsn(dsn), config_version=version)

    logger.info(
        "starting",
        version=__version__,
        config=str(path) if path else None,
        listen=f"{host or config.host}:{port or config.port}",
        providers=[p.name for p in config.providers],
    )
    if config.admin_credentials:  # the UI is on: say where, and which keys log in (names only)
        logger.info(
            "web_ui",
            url=_ui_url(host or config.host, port or config.port, tls=config.tls is not None),
            log_in_with=[name for name, _ in config.admin_credentials],
        )
    app = create_app(config, version=version, database=database, langfuse=plan.langfuse)
    if config.tls is not None:
        import ssl

        from llm_proxy.keys import TLS_CONTEXT
        from llm_proxy.tls import server_context

        try:
            app[TLS_CONTEXT] = server_context(config.tls)
        except (OSError, ssl.SSLError) as exc:
            print(f"error: server.tls: the certificate does not load: {exc}", file=sys.stderr)
            loop.close()
            return 2
    from llm_proxy.keys import CONFIG_FILE

    if database is None and path is not None:
        app[CONFIG_FILE] = path  # POST /admin/v1/config/reload re-reads it
    app.on_startup.append(partial(_handle_sighup, path=path))
    from llm_proxy.server import serve

    try:
        loop.run_until_complete(serve(app, host or config.host, port or config.port))
    except OSError as exc:
        logger.error(
            "cannot_listen", host=host or config.host, port=port or config.port, error=str(exc)
        )
        return 2
    finally:
        loop.close()
    return 0


def _database_settings(path_arg: str | None) -> tuple[Path | None, Config] | None:
    """In database mode the file (optional) holds settings only; rows hold providers/keys."""
    from llm_proxy.config.yaml_file import apply_env_overrides, read_dotenv

    explicit = path_arg or os.environ.get("CONFIG_PATH")
    path = resolve_config_path(path_arg, os.environ)
    if not explicit and not path.exists():
        env = {**read_dotenv(Path.cwd()), **os.environ}
        try:
            return None, apply_env_overrides(Config(), env)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    loaded = _load(path_arg)
    if loaded is None:
        return None
    path, config = loaded
    if config.providers or config.master_keys:
        print(
            f"error: {path}: in database mode (DB_URL set) providers and master_keys live in "
            "the database; remove them from the file (or load them once with "
            "`llm-proxy import-config`)",
            file=sys.stderr,
        )
        return None
    return path, config


async def _handle_sighup(app: web.Application, path: Path | None) -> None:
    """SIGHUP: in YAML mode re-read the file (validate, then swap, or keep the old config);
    in database mode reload from the database now. Either way, the request log's JSON-lines
    file is reopened (after logrotate moved it)."""
    from llm_proxy.config.yaml_file import reload_store
    from llm_proxy.keys import LISTENER, METRICS, NOTIFIER, SINKS, STORE, TLS_CONTEXT
    from llm_proxy.tls import reload_certificate

    listener = app.get(LISTENER)
    notifier = app[NOTIFIER]

    def on_sighup() -> None:
        notifier.reloading()
        app[SINKS].reopen()
        context, tls = app.get(TLS_CONTEXT), app[STORE].current.config.tls
        if context is not None and tls is not None:
            reload_certificate(context, tls)  # renewed files, for new connections
        if listener is not None:
            listener.request_reload()  # (the listener reloads in its own task)
        elif path is not None:
            reload_store(app[STORE], path, app[METRICS])
        notifier.reloaded(f"config version {app[STORE].current.version}")

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)


def _dsn_arg(db_url: str | None) -> str | None:
    """The DSN of `migrate` and `import-config`; None (after saying why) when unusable."""
    from llm_proxy.config.database import dsn_problem

    dsn = db_url or os.environ.get("DB_URL")
    if not dsn:
        print("error: set DB_URL (or pass --db-url)", file=sys.stderr)
        return None
    problem = dsn_problem(dsn)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return dsn


def _migrate(action: str, db_url: str | None, steps: int) -> int:
    import asyncpg

    from llm_proxy.config import migrate
    from llm_proxy.config.database import connect, describe_dsn

    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2

    async def run() -> int:
        conn = await connect(dsn, connect_timeout=10)
        try:
            if action == "up":
                ran = await migrate.migrate_up(conn)
                for m in ran:
                    print(f"applied {m.version:03d} {m.name}")
                if not ran:
                    print("up to date")
            elif action == "down":
                for m in await migrate.migrate_down(conn, steps):
                    print(f"reverted {m.version:03d} {m.name}")
            else:
                print(f"database {describe_dsn(dsn)}")
                print("\n".join(await migrate.status_lines(conn)))
        finally:
            await conn.close()
        return 0

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError, ValueError) as exc:
        print(f"error: migrate {action}: {exc}", file=sys.stderr)
        return 1


def _config_history(args: argparse.Namespace) -> int:
    """`config history [VERSION]` and `config rollback VERSION`."""
    import getpass

    import asyncpg
    import orjson

    from llm_proxy.config import history
    from llm_proxy.config.database import connect

    dsn = _dsn_arg(args.db_url)
    if dsn is None:
        return 2

    async def run() -> int:
        conn = await connect(dsn, connect_timeout=10)
        try:
            if args.config_command == "rollback":
                before = (await history.bounds(conn))[1]
                done = await history.rollback(
                    conn,
                    args.version,
                    f"cli:{getpass.getuser()}",
                    restore_revoked_keys=args.restore_revoked_keys,
                )
                if done.version == before:
                    print(f"config is already as it was at version {args.version}")
                else:
                    print(f"rolled back to version {args.version}: now version {done.version}")
                if done.keys_left_out:
                    kept = ", ".join(f"{name} ({why})" for name, why in done.keys_left_out)
                    print(f"master keys kept revoked: {kept} (--restore-revoked-keys revives them)")
                return 0
            if args.version is not None:
                changes = await history.change(conn, args.version)
                if not changes:
                    print(f"error: no version {args.version} in the history", file=sys.stderr)
                    return 1
                for c in changes:
                    print(orjson.dumps(c.as_dict(), option=orjson.OPT_INDENT_2).decode())
                return 0
            changes = await history.history(
                conn, table=args.table, row_id=args.row, limit=args.limit
            )
            first, current = await history.bounds(conn)
            print(f"config version {current}; history from version {first}")
            for c in changes:
                what = ", ".join(c.fields_changed()) if c.operation == "UPDATE" else ""
                print(
                    f"{c.version:>6}  {c.changed_at:%Y-%m-%d %H:%M:%S}  {c.changed_by:<20} "
                    f"{c.operation:<6} {c.table}/{c.row_id} {c.name or ''}"
                    + (f"  ({what})" if what else "")
                )
            return 0
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except history.HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: config {args.config_command}: {exc}", file=sys.stderr)
        return 1


def _export_config(db_url: str | None, output: str | None, *, with_secrets: bool) -> int:
    """The database's providers and master keys as YAML (see `llm_proxy.config.export`)."""
    from llm_proxy.config.database import StartupError, load_once
    from llm_proxy.config.export import export_yaml

    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2
    try:
        config, fetched = asyncio.run(load_once(dsn, Config()))
    except (StartupError, ConfigError) as exc:
        print(f"error: export-config: {exc}", file=sys.stderr)
        return 1
    text = export_yaml(config, version=fetched.version, with_secrets=with_secrets)
    if output is None:
        sys.stdout.write(text)
        return 0
    path = Path(output)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold keys
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {path} (config version {fetched.version})", file=sys.stderr)
    return 0


class _DryRun(Exception):
    """Raised to roll the import's transaction back after reading what it would change."""


def _import_config(path_arg: str, db_url: str | None, *, dry_run: bool = False) -> int:
    """Load providers and master keys from a YAML file into the database (upsert by name), in
    one transaction (one config version). With `dry_run`, print the changes it would make
    (read back from the config history the transaction records) and roll it back."""
    import asyncpg

    from llm_proxy.config import history
    from llm_proxy.config.database import connect
    from llm_proxy.config.db_write import upsert

    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2
    loaded = _load(path_arg)
    if loaded is None:
        return 1
    _, config = loaded

    async def run() -> None:
        conn = await connect(dsn, connect_timeout=10)
        try:
            async with conn.transaction():
                await upsert(conn, config)
                if dry_run:
                    changes = await history.pending(conn)
                    for c in changes:
                        what = (
                            f" ({', '.join(c.fields_changed())})" if c.operation == "UPDATE" else ""
                        )
                        print(f"{c.operation:<6} {c.table}/{c.name}{what}")
                    if not changes:
                        print("no changes")
                    raise _DryRun
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except _DryRun:
        return 0
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: import-config: {exc}", file=sys.stderr)
        return 1
    print(f"imported {len(config.providers)} providers and {len(config.master_keys)} master keys")
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
