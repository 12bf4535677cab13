"""`llm-proxy serve`: the checks of `check.plan_for`, the first configuration (the file's, or
the database's with retries), the app, and the server until it stops. Logging is set up here,
once, for the whole run (`observe.log`), and closed after the server stops.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llm_proxy import __version__
from llm_proxy.cli.check import Plan, plan_for
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config
from llm_proxy.config.original_env import ignored_variables

if TYPE_CHECKING:
    from llm_proxy.app import DatabaseMode


def serve(path_arg: str | None, host: str | None, port: int | None, db_url: str | None) -> int:
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

    from llm_proxy import server

    logger = structlog.get_logger()
    plan = plan_for(path_arg, db_url)
    if plan is None:
        return 2
    ignored = ignored_variables(os.environ)
    if ignored:  # names only: values may be secrets
        logger.warning("original_variables_ignored", variables=ignored)
    loop = _new_loop()
    first = _first_config(loop, plan, logger)
    if first is None:
        loop.close()
        return 2
    config, version, database = first
    host, port = host or config.host, port or config.port
    logger.info(
        "starting",
        version=__version__,
        config=str(plan.path) if plan.path else None,
        listen=f"{host}:{port}",
        providers=[p.name for p in config.providers],
    )
    if config.admin_credentials:  # the UI is on: say where, and which keys log in (names only)
        logger.info(
            "web_ui",
            url=_ui_url(host, port, tls=config.tls is not None),
            log_in_with=[name for name, _ in config.admin_credentials],
        )
    if plan.tracing is not None:
        logger.info("tracing", export=plan.tracing.describe())
    app = _app(plan, config, version, database)
    if app is None:
        loop.close()
        return 2
    try:
        loop.run_until_complete(server.serve(app, host, port))
    except OSError as exc:
        logger.error("cannot_listen", host=host, port=port, error=str(exc))
        return 2
    finally:
        loop.close()
    return 0


def _first_config(
    loop: asyncio.AbstractEventLoop, plan: Plan, logger: Any
) -> tuple[Config, str, DatabaseMode | None] | None:
    """The configuration to start with, its version, and database mode's settings (None in
    YAML mode); None after saying why there is none."""
    if plan.dsn is None:
        return plan.config, "1", None
    from llm_proxy.app import DatabaseMode
    from llm_proxy.config.database import StartupError, describe_dsn, initial_load

    try:
        config, version = loop.run_until_complete(initial_load(plan.dsn, plan.config))
    except (StartupError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    database = DatabaseMode(plan.dsn, plan.config)
    logger.info("database_mode", database=describe_dsn(plan.dsn), config_version=version)
    return config, version, database


def _app(
    plan: Plan, config: Config, version: str, database: DatabaseMode | None
) -> web.Application | None:
    """The app to serve, its TLS context loaded; None after saying why the certificate does
    not load."""
    from llm_proxy.app import create_app

    path = plan.path
    app = create_app(
        config,
        version=version,
        database=database,
        langfuse=plan.langfuse,
        tracing=plan.tracing,
        config_file=path if database is None else None,
        handle_sighup=True,
    )
    if config.tls is not None:
        import ssl

        from llm_proxy.keys import TLS_CONTEXT
        from llm_proxy.tls import server_context

        try:
            app[TLS_CONTEXT] = server_context(config.tls)
        except (OSError, ssl.SSLError) as exc:
            print(f"error: server.tls: the certificate does not load: {exc}", file=sys.stderr)
            return None
    return app


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
