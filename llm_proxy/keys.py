"""Every AppKey and RequestKey of the application, and nothing else."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

from aiohttp import web

from llm_proxy.admin.pool import AdminPool
from llm_proxy.lifecycle import Lifecycle
from llm_proxy.observe.metrics import Metrics
from llm_proxy.observe.records import Sinks
from llm_proxy.observe.stats import Stats
from llm_proxy.proxy.breaker import HealthBoard
from llm_proxy.proxy.limiter import Limiter
from llm_proxy.proxy.owners import Owners
from llm_proxy.proxy.snapshot import ConfigStore
from llm_proxy.proxy.state import RequestState
from llm_proxy.proxy.upstream_client import Client
from llm_proxy.systemd import Notifier

if TYPE_CHECKING:  # database mode only: asyncpg (3 MB) is imported when it is used
    from llm_proxy.config.listener import ConfigListener

STORE = web.AppKey("store", ConfigStore)
CLIENT = web.AppKey("client", Client)  # the one upstream client (pooled connections)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", HealthBoard)
LIMITER = web.AppKey("limiter", Limiter)
LISTENER: web.AppKey[ConfigListener] = web.AppKey("listener")  # database mode only
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
TLS_CONTEXT = web.AppKey("tls_context", ssl.SSLContext)  # with server.tls
NOTIFIER = web.AppKey("notifier", Notifier)  # systemd's notify socket (a no-op without one)
DSN = web.AppKey("database_dsn", str)  # database mode only
LOG_DSN = web.AppKey("request_log_dsn", str)  # when the request log is in a database
CONFIG_FILE = web.AppKey("config_file", FsPath)  # YAML mode, when serving from a file
OWNERS = web.AppKey("owners", Owners)  # which provider holds which file, batch, response
STATS = web.AppKey("stats", Stats)  # the last hour, sampled, for the admin UI
# Where request records go (the request log, Langfuse); empty: nowhere.
SINKS = web.AppKey("sinks", Sinks)
# With content capture on: the bytes of request and answer text a record keeps (0: off).
CAPTURE = web.AppKey("capture_bytes", int)
# Work that outlives its request (token counting after a client hang-up); awaited at shutdown.
BACKGROUND = web.AppKey("background", set[asyncio.Task[None]])

# Per request: created by the observe middleware, filled in along the way.
STATE = web.RequestKey("state", RequestState)

# The admin plane: its PostgreSQL pools (the config's database; the request log's, which may be
# another) and, per request, the name of the admin key it came with (set by the guard).
ADMIN_DB = web.AppKey("admin_db", AdminPool)
LOGS_DB = web.AppKey("logs_db", AdminPool)
ADMIN_NAME = web.RequestKey("admin_name", str)
