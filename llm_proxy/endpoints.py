"""The proxy's own endpoints for operators and load balancers: `/health`, `/health/detailed`
and `/metrics`. They read every plane (the lifecycle, the breakers, the config listener, the
metrics), so they sit at the wiring level beside `app.py`, which routes them."""

from __future__ import annotations

import hmac
from typing import Final

import orjson
from aiohttp import web

from llm_proxy import errors
from llm_proxy.keys import HEALTH, LIFECYCLE, LISTENER, METRICS, SINKS, STATE, STORE
from llm_proxy.observe.records import Sink
from llm_proxy.proxy.handlers import JSON
from llm_proxy.proxy.keyring import presented_key
from llm_proxy.proxy.snapshot import Snapshot

_HEALTH_OK: Final = orjson.dumps({"status": "ok"})
_HEALTH_DRAINING: Final = orjson.dumps({"status": "draining"})


async def health(request: web.Request) -> web.Response:
    """Cheap, touches no upstream and no database; 503 while draining (after SIGTERM), so
    load balancers take this instance out of rotation."""
    if request.app[LIFECYCLE].draining:
        return web.Response(status=503, body=_HEALTH_DRAINING, content_type=JSON)
    return web.Response(body=_HEALTH_OK, content_type=JSON)


async def health_detailed(request: web.Request) -> web.Response:
    """Providers, breakers, keys, config source: for operators. Once an `admin_key` or a
    `metrics_token` is set it must be presented (it names keys, providers and patterns)."""
    snapshot: Snapshot = request[STATE].snapshot
    config = snapshot.config
    _require_operator(
        request,
        (*(key for _, key in config.admin_credentials), config.metrics_token),
        "/health/detailed requires `Authorization: Bearer <admin_key or metrics_token>`.",
    )
    board = request.app[HEALTH]
    now = board.clock()
    providers = []
    for p in config.providers:
        s = board.get(p.name)
        providers.append(
            {
                "name": p.name,
                "weight": p.weight,
                "models": [rule.key for rule in p.model_mapping],
                "healthy": s.healthy,
                "state": s.state(now),
                "ejected_for_secs": round(max(0.0, s.ejected_until - now), 3),
                "rate_limited_for_secs": round(max(0.0, s.rate_limited_until - now), 3),
                "consecutive_failures": s.consecutive_failures,
                "last_status": s.last_status,
                "last_error": s.last_error,
                "last_error_detail": s.last_error_detail,
                "last_seen": s.last_seen,
                "requests": s.requests,
                "failures": s.failures,
            }
        )
    healthy = all(item["healthy"] for item in providers)
    keys = snapshot.keys
    listener = request.app.get(LISTENER)
    credentials = request.app[STORE].credentials
    body = {
        "status": "ok" if healthy else "degraded",
        "config_version": snapshot.version,
        "config_loaded_at": snapshot.loaded_at,
        "config_source": "database" if listener is not None else "file",
        "database": listener.status() if listener is not None else None,
        "auth": {
            "required": keys.enabled,
            "locked": keys.locked,
            "keys": [k.name for k in keys],
        },
        "warnings": [keys.warning] if keys.warning else [],
        "providers": providers,
        "exports": [_export(sink) for sink in request.app[SINKS].sinks],
        # Vertex AI's tokens and Bedrock's signers: whose, valid until when, the last error.
        "credentials": credentials.status() if credentials is not None else [],
    }
    return web.Response(body=orjson.dumps(body), content_type=JSON)


def _export(sink: Sink) -> dict[str, object]:
    """Where request records go (the request log, spans, Langfuse), and how it goes."""
    out: dict[str, object] = {
        "sink": sink.name,
        "written": sink.written,
        "dropped": sink.dropped,
        "queued": sink.queued,
    }
    status = getattr(sink, "status", None)
    if callable(status):
        out.update(status())
    return out


async def metrics(request: web.Request) -> web.Response:
    _require_operator(
        request,
        (request[STATE].snapshot.config.metrics_token,),
        "/metrics requires `Authorization: Bearer <metrics_token>`.",
    )
    body, headers = request.app[METRICS].render()
    return web.Response(body=body, headers=headers)


def _require_operator(request: web.Request, secrets: tuple[str | None, ...], message: str) -> None:
    """401 unless one of the configured `secrets` is presented (none configured: open)."""
    configured = [s.encode() for s in secrets if s]
    if not configured:
        return
    presented = presented_key(request.headers.get("Authorization"), None) or ""
    given = presented.encode("utf-8", "surrogateescape")
    # Every secret is compared (no early exit), each in constant time.
    if not sum(hmac.compare_digest(given, secret) for secret in configured):
        raise errors.ProxyError(401, message, code="unauthorized")
