"""Every AppKey and RequestKey of the application, and nothing else."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from llm_proxy.config_store import ConfigStore, Snapshot
from llm_proxy.health import HealthBoard
from llm_proxy.metrics import Metrics

STORE = web.AppKey("store", ConfigStore)
SESSION = web.AppKey("session", aiohttp.ClientSession)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", HealthBoard)

# Per request: set by the observe middleware, read by handlers and other middlewares.
SNAPSHOT = web.RequestKey("snapshot", Snapshot)
REQUEST_ID = web.RequestKey("request_id", str)
# Filled in by the proxy handler for the access log and metrics.
MODEL_LABEL = web.RequestKey("model_label", str)
PROVIDER = web.RequestKey("provider", str)
STREAMED = web.RequestKey("streamed", bool)
# Set by the relay when the outcome differs from the status already sent (499, 502 mid-body).
FINAL_STATUS = web.RequestKey("final_status", int)
MODEL = web.RequestKey("model", str)  # the requested name, for the access log
