"""Outermost middleware: request id, the snapshot a request is served from, active-request
gauge, one canonical access-log line and the request metrics."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from aiohttp import web

from llm_proxy.keys import (
    FINAL_STATUS,
    METRICS,
    MODEL,
    MODEL_LABEL,
    PROVIDER,
    REQUEST_ID,
    SNAPSHOT,
    STARTED,
    STORE,
    STREAMED,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger()

CLIENT_CLOSED: Final = 499  # nginx's "client closed request"
_QUIET_PATHS: Final = frozenset({"/health", "/metrics"})


def _request_id(incoming: str | None) -> str:
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    return os.urandom(12).hex()


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    request[STARTED] = start
    request_id = request[REQUEST_ID] = _request_id(request.headers.get("x-request-id"))
    request[SNAPSHOT] = request.app[STORE].current
    metrics = request.app[METRICS]
    metrics.active_requests += 1
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.active_requests -= 1
        status = request.get(FINAL_STATUS, status)
        elapsed = time.perf_counter() - start
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "other"
        provider = request.get(PROVIDER, "none")
        metrics.request_done(
            request.method, endpoint, request.get(MODEL_LABEL, "other"), provider, status, elapsed
        )
        (log.debug if request.path in _QUIET_PATHS else log.info)(
            "request",
            request_id=request_id,
            method=request.method,
            path=request.path,
            model=request.get(MODEL),
            provider=provider,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            streamed=request.get(STREAMED, False),
        )


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: every response, streamed or not, carries the request id."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers["x-request-id"] = request_id
