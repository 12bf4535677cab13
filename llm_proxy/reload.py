"""Reloading the configuration while serving, at the wiring level: it reads the file (`config/`),
compiles and swaps the snapshot (`proxy/`) and counts the result (`observe/`), so none of those
planes has to know the others.

`reload_store` re-reads a YAML file (SIGHUP and `POST /admin/v1/config/reload`);
`install_sighup` is the serving process's SIGHUP handler, registered by `create_app`.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path as FsPath

import structlog
from aiohttp import web

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.yaml_file import load_config_file
from llm_proxy.keys import CONFIG_FILE, LISTENER, METRICS, NOTIFIER, SINKS, STORE, TLS_CONTEXT
from llm_proxy.observe.metrics import Metrics
from llm_proxy.proxy.snapshot import ConfigStore, compile_snapshot
from llm_proxy.tls import reload_certificate


def reload_store(store: ConfigStore, path: FsPath, metrics: Metrics | None = None) -> bool:
    """Re-read `path` and swap it in; on any error keep serving the old snapshot.
    Requests in flight finish on the snapshot they started with."""
    log = structlog.get_logger()
    try:
        config = load_config_file(path)
    except (ConfigError, OSError) as exc:
        detail = [str(i) for i in exc.issues] if isinstance(exc, ConfigError) else [str(exc)]
        log.error("config_reload_rejected", path=str(path), errors=detail)
        if metrics is not None:
            metrics.config_reload("error")
        return False
    old = store.current
    version = str(int(old.version) + 1) if old.version.isdigit() else "1"
    store.swap(compile_snapshot(config, version, store.credentials))
    if metrics is not None:
        metrics.config_reload("ok")
    log.info("config_reloaded", path=str(path), version=version)
    return True


async def install_sighup(app: web.Application) -> None:
    """SIGHUP: in YAML mode re-read the file (validate, then swap, or keep the old config);
    in database mode reload from the database now. Either way, the request log's JSON-lines
    file is reopened (after logrotate moved it)."""
    listener = app.get(LISTENER)
    path = app.get(CONFIG_FILE)
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
