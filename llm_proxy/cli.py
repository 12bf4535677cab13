"""Command line: `llm-proxy serve | check-config | mock-upstream`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from aiohttp import web

from llm_proxy import __version__
from llm_proxy.config import Config, ConfigError
from llm_proxy.config_file import load_config_file, resolve_config_path

# Seconds a SIGTERM waits for in-flight requests (streams included) before closing them.
SHUTDOWN_GRACE_SECS = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-proxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llm-proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (default: $CONFIG_PATH, config.yaml)")
    serve.add_argument("--host", help="listen address (overrides HOST and server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides PORT and server.port)")

    check = sub.add_parser("check-config", help="validate a config file and print a summary")
    check.add_argument("file", nargs="?", help="config file (default: $CONFIG_PATH)")

    mock = sub.add_parser("mock-upstream", help="serve a fake OpenAI API on loopback")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=18001)
    mock.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    mock.add_argument("--delay-ms", type=float, default=20.0, help="delay between chunks")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.config, args.host, args.port)
    if args.command == "check-config":
        return _check_config(args.file)
    from llm_proxy.mock_upstream import MockOptions, run_mock

    run_mock(args.host, args.port, MockOptions(chunks=args.chunks, delay_ms=args.delay_ms))
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


def _check_config(path_arg: str | None) -> int:
    loaded = _load(path_arg)
    if loaded is None:
        return 1
    path, config = loaded
    print(summarize(path, config))
    return 0


def summarize(path: Path, config: Config) -> str:
    """A human summary that never shows a secret: keys appear by name only."""
    lines = [f"{path}: OK", f"listen: {config.host}:{config.port}"]
    total = sum(p.weight for p in config.providers)
    lines.append(f"providers ({len(config.providers)}):")
    for p in config.providers:
        share = 100.0 * p.weight / total if total else 0.0
        lines.append(f"  {p.name}  weight {p.weight} ({share:.1f}%)  {p.api_base}")
        for rule in p.model_mapping:
            kind = "exact" if rule.pattern is None else "pattern"
            lines.append(f"    {rule.key} -> {rule.target or '(same name)'}  [{kind}]")
    from llm_proxy.routing import RouteTable

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
            names.append(k.name + (f" ({'; '.join(extra)})" if extra else ""))
        lines.append(f"master keys ({len(names)}): {', '.join(names)}")
    else:
        lines.append("master keys: none (authentication is OFF)")
    if config.provider_suffix:
        lines.append(f"provider suffix: {config.provider_suffix}/")
    return "\n".join(lines)


def _serve(path_arg: str | None, host: str | None, port: int | None) -> int:
    from llm_proxy import log
    from llm_proxy.app import create_app

    log.configure()
    loaded = _load(path_arg)
    if loaded is None:
        return 2
    path, config = loaded
    import structlog

    structlog.get_logger().info(
        "starting",
        version=__version__,
        config=str(path),
        listen=f"{host or config.host}:{port or config.port}",
        providers=[p.name for p in config.providers],
    )
    loop = _new_loop()
    app = create_app(config)
    app.on_startup.append(partial(_handle_sighup, path=path))
    web.run_app(
        app,
        host=host or config.host,
        port=port or config.port,
        access_log=None,  # one canonical line per request comes from the observe middleware
        handler_cancellation=True,  # a client hang-up cancels the handler, closing upstream
        shutdown_timeout=SHUTDOWN_GRACE_SECS,
        print=None,
        loop=loop,
    )
    return 0


async def _handle_sighup(app: web.Application, path: Path) -> None:
    """SIGHUP re-reads the YAML file: validate, then swap, or keep the old config."""
    from llm_proxy.config_file import reload_store
    from llm_proxy.keys import STORE

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_store, app[STORE], path)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
