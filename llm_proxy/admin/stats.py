"""`GET /stats`: the last hour of the proxy's own counters, sampled (observe.stats), with the
providers' health and the config version: what the admin UI's dashboard draws."""

from __future__ import annotations

from aiohttp import web

from llm_proxy.admin.http import int_param, json_response, version_number
from llm_proxy.errors import bad_param
from llm_proxy.keys import HEALTH, STATE
from llm_proxy.keys import STATS as STATS_KEY
from llm_proxy.observe.stats import INTERVAL_SECS as STATS_INTERVAL


async def stats(request: web.Request) -> web.Response:
    """`GET /stats?window=3600&by=provider|key|team`: the last `window` seconds (at most an
    hour) in steps of a few seconds, from the proxy's own counters: requests/s, 5xx rate,
    p50/p95/p99 latency, time to first token, tokens/min and cost, overall (`all`) and per
    provider, key or team (time to first token: overall and per provider only); with the
    providers' health and the config version."""
    query = request.query
    window = int_param(query.get("window"), "window", 10, 3600) or 900
    group = query.get("by") or None
    if group not in (None, "provider", "key", "team"):
        raise bad_param("by", "`by` is `provider`, `key` or `team`.")
    config_dict = request.config_dict
    snapshot = request[STATE].snapshot
    health = config_dict[HEALTH]
    now = health.clock()
    return json_response(
        {
            "interval_secs": STATS_INTERVAL,
            "window_secs": window,
            "config_version": version_number(snapshot.version),
            "providers": [
                {
                    "name": p.name,
                    "healthy": (status := health.get(p.name)).healthy,
                    "state": status.state(now),
                    "rate_limited_for_secs": round(max(0.0, status.rate_limited_until - now), 3),
                }
                for p in snapshot.config.providers
            ],
            "series": config_dict[STATS_KEY].series(window, group),
        }
    )
