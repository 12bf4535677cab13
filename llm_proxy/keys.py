"""Every AppKey and RequestKey of the application, and nothing else."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from llm_proxy.auth import KeyEntry
from llm_proxy.config_store import ConfigStore, Snapshot
from llm_proxy.health import HealthBoard
from llm_proxy.listener import ConfigListener
from llm_proxy.metrics import Metrics
from llm_proxy.ratelimit import Limiter

STORE = web.AppKey("store", ConfigStore)
SESSION = web.AppKey("session", aiohttp.ClientSession)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", HealthBoard)
LIMITER = web.AppKey("limiter", Limiter)
LISTENER = web.AppKey("listener", ConfigListener)  # database mode only
# Work that outlives its request (token counting after a client hang-up); awaited at shutdown.
BACKGROUND = web.AppKey("background", set[asyncio.Task[None]])

# Per request: set by the observe middleware, read by handlers and other middlewares.
SNAPSHOT = web.RequestKey("snapshot", Snapshot)
REQUEST_ID = web.RequestKey("request_id", str)
STARTED = web.RequestKey("started", float)  # perf_counter() when the request arrived
# Set by the auth middleware when keys are configured.
API_KEY = web.RequestKey("api_key", KeyEntry)
# Set by the rate-limit middleware: x-ratelimit-* headers for every response of a limited key.
RATE_HEADERS = web.RequestKey("rate_headers", dict[str, str])
# Filled in by the proxy handler for the access log and metrics.
MODEL = web.RequestKey("model", str)  # the requested name, for the access log
MODEL_LABEL = web.RequestKey("model_label", str)
PROVIDER = web.RequestKey("provider", str)
STREAMED = web.RequestKey("streamed", bool)
# Set by the relay when the outcome differs from the status already sent (499, 502 mid-body).
FINAL_STATUS = web.RequestKey("final_status", int)
