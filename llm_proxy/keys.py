"""Every AppKey and RequestKey of the application, and nothing else."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

from aiohttp import web

# The planes' types are for mypy only: a key declared `K: web.AppKey[T] = web.AppKey("k")` is
# checked like `web.AppKey("k", T)`, and the annotation is never evaluated (aiohttp uses the type
# only in the key's repr). So this hub imports no plane at run time, and every plane may import
# it without an upward import (the contracts in tests/test_architecture.py).
if TYPE_CHECKING:
    from llm_proxy.admin.pool import AdminPool
    from llm_proxy.config.listener import ConfigListener
    from llm_proxy.lifecycle import Lifecycle
    from llm_proxy.observe.metrics import Metrics
    from llm_proxy.observe.records import Sinks
    from llm_proxy.observe.stats import Stats
    from llm_proxy.observe.tracing.context import Sampler
    from llm_proxy.proxy.breaker import HealthBoard
    from llm_proxy.proxy.cache import ResponseCache
    from llm_proxy.proxy.client import Client
    from llm_proxy.proxy.limiter import Limiter
    from llm_proxy.proxy.owners import Owners
    from llm_proxy.proxy.snapshot import ConfigStore
    from llm_proxy.proxy.state import RequestState
    from llm_proxy.systemd import Notifier

STORE: web.AppKey[ConfigStore] = web.AppKey("store")
CLIENT: web.AppKey[Client] = web.AppKey("client")  # the one upstream client (pooled connections)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
HEALTH: web.AppKey[HealthBoard] = web.AppKey("health")
LIMITER: web.AppKey[Limiter] = web.AppKey("limiter")
LISTENER: web.AppKey[ConfigListener] = web.AppKey("listener")  # database mode only
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle")
TLS_CONTEXT = web.AppKey("tls_context", ssl.SSLContext)  # with server.tls
# systemd's notify socket (a no-op without one)
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")
DSN = web.AppKey("database_dsn", str)  # database mode only
LOG_DSN = web.AppKey("request_log_dsn", str)  # when the request log is in a database
CONFIG_FILE = web.AppKey("config_file", FsPath)  # YAML mode, when serving from a file
# Which provider holds which file, batch, response.
OWNERS: web.AppKey[Owners] = web.AppKey("owners")
STATS: web.AppKey[Stats] = web.AppKey("stats")  # the last hour, sampled, for the admin UI
# Where request records go (the request log, Langfuse); empty: nowhere.
SINKS: web.AppKey[Sinks] = web.AppKey("sinks")
# Tracing on (an exporter is configured): the sampler every request's trace is decided by;
# None: tracing off (always set: a missing key would cost a KeyError per request).
TRACING: web.AppKey[Sampler | None] = web.AppKey("tracing")
# With content capture on: the bytes of request and answer text a record keeps (0: off).
CAPTURE = web.AppKey("capture_bytes", int)
# Work that outlives its request (token counting after a client hang-up); awaited at shutdown.
BACKGROUND = web.AppKey("background", set[asyncio.Task[None]])

# The response cache (`cache:`): always set, off while the config has no `cache:` section.
CACHE: web.AppKey[ResponseCache] = web.AppKey("cache")

# Per request: created by the observe middleware, filled in along the way.
STATE: web.RequestKey[RequestState] = web.RequestKey("state")

# The admin plane: its PostgreSQL pools (the config's database; the request log's, which may be
# another) and, per request, the name of the admin key it came with (set by the guard).
ADMIN_DB: web.AppKey[AdminPool] = web.AppKey("admin_db")
LOGS_DB: web.AppKey[AdminPool] = web.AppKey("logs_db")
ADMIN_NAME = web.RequestKey("admin_name", str)
