"""Outermost middleware: request id, the snapshot a request is served from, the in-flight
count (`Lifecycle.in_flight`: the drain waits on it, /metrics shows it), one canonical
access-log line and the request metrics."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Final

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy.keys import ADMIN_NAME, LIFECYCLE, METRICS, SINKS, STATE, STORE, TRACING
from llm_proxy.observe import log as access_log
from llm_proxy.observe.clients import client_label
from llm_proxy.observe.records import RequestRecord, Sinks
from llm_proxy.observe.tracing import context as trace_context
from llm_proxy.proxy.state import ANONYMOUS, CLIENT_CLOSED, RequestState, stamp

log = structlog.get_logger()

_QUIET_PATHS: Final = frozenset({"/health", "/metrics"})
# Requests the request log leaves out: the proxy's own endpoints (and unmatched paths).
_UNLOGGED: Final = ("/admin", "/health", "/metrics", "/ui", "other")
# Requests refused for want of a valid key, admin key or metrics token (401) are counted in
# the metrics only: a keyless client sends thousands a second, and each would otherwise be a
# request-log row, a Langfuse trace and an access line. They are logged as one
# `unauthenticated_requests` line at most this often, with the count since the last one.
LOG_REFUSED_EVERY_SECS: Final = 10.0


# Generated ids: a random per-process prefix and a counter (unique, and no syscall per request).
_ID_PREFIX: Final = os.urandom(6).hex()
_id_counter = itertools.count(1)


def _request_id(incoming: str | None) -> str:
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    app = request.app
    state = request[STATE] = RequestState(
        start, _request_id(request.headers.get("x-request-id")), app[STORE].current
    )
    traceparent = request.headers.get("traceparent")
    sampler = app[TRACING]
    if sampler is not None:
        trace = state.trace = trace_context.start(
            sampler,
            traceparent,
            request.headers.getall("tracestate", None) if traceparent is not None else None,
        )
        state.trace_id = trace.trace_id
        if trace.sampled:
            state.attempt_spans = []
    elif traceparent is not None:  # tracing off: the client's trace, for the logs
        parent = trace_context.parse_traceparent(traceparent)
        state.trace_id = parent.trace_id if parent is not None else None
    lifecycle = app[LIFECYCLE]
    lifecycle.in_flight += 1
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            stamp(response, state)
        return response
    except (asyncio.CancelledError, web.HTTPException) as exc:
        status = exc.status if isinstance(exc, web.HTTPException) else CLIENT_CLOSED
        raise
    finally:
        lifecycle.in_flight -= 1
        if state.final_status is not None:
            status = state.final_status
        elapsed = time.perf_counter() - start
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "other"
        api_key = state.api_key
        if api_key is not None:
            key, team = api_key.name, api_key.team_label
        else:
            key, team = _keyless_name(request), ""
        client = client_label(request.headers.get("User-Agent"))
        method = request.method
        app[METRICS].request_done(
            method, endpoint, state.model_label, state.provider, status, elapsed, key, client, team
        )
        path = request.path
        if status == 401 and state.attempts is None:  # refused by the proxy, not an upstream
            _refused(request, state, client, start + elapsed)
        else:
            access_log.request(
                {
                    "request_id": state.request_id,
                    "method": method,
                    "path": path if len(path) <= 200 else path[:200] + "...",
                    "model": state.model,
                    "provider": state.provider,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "streamed": state.streamed,
                    "key": key,
                    "client": client,
                    "attempts": state.attempts,
                    "ttft_ms": state.ttft_ms,
                    "prompt_tokens": state.prompt_tokens,
                    "completion_tokens": state.completion_tokens,
                    "cost_usd": state.cost_usd,
                    "trace_id": state.trace_id,
                    "cache": state.cache,
                },
                path in _QUIET_PATHS,
            )
            sinks = app[SINKS]
            if sinks and not endpoint.startswith(_UNLOGGED):
                _submit(sinks, state, request, key, client, status, elapsed, endpoint)


def _keyless_name(request: web.Request) -> str:
    """Who made a request without a master key, by name (never a secret): the admin key the
    admin guard matched (`admin:<name>`, as the config history names its changes), else
    `anonymous`."""
    admin = request.get(ADMIN_NAME)
    return f"admin:{admin}" if admin is not None else ANONYMOUS


def _refused(request: web.Request, state: RequestState, client: str, now: float) -> None:
    refusals = request.app[LIFECYCLE].refusals
    refusals.unlogged += 1
    if now < refusals.next_line_at:
        return
    refusals.next_line_at = now + LOG_REFUSED_EVERY_SECS
    count, refusals.unlogged = refusals.unlogged, 0
    path = request.path
    log.info(
        "unauthenticated_requests",
        count=count,  # refused since the last such line, this one included
        every_secs=LOG_REFUSED_EVERY_SECS,
        status=401,
        method=request.method,
        path=path if len(path) <= 200 else path[:200] + "...",
        client=client,
        remote=request.remote,
        request_id=state.request_id,
    )


def _submit(
    sinks: Sinks,
    state: RequestState,
    request: web.Request,
    key: str,
    client: str,
    status: int,
    elapsed: float,
    route: str,
) -> None:
    api_key = state.api_key
    record = RequestRecord(
        time.time() - elapsed,
        state.request_id,
        key,
        client,
        request.method,
        request.path[:1000],
        state.model,
        state.model_sent,
        state.provider,
        state.attempts or [],
        status,
        round(elapsed * 1000, 2),
        state.ttft_ms,
        state.prompt_tokens,
        state.completion_tokens,
        state.cost_usd,
        state.streamed,
        state.error_code,
        state.prompt_text,
        state.completion_text,
        state.errors or [],
        state.trace_id,
        state.fallback_from,
        state.fallback_reason,
        state.rule,
        state.cache,
        api_key.team_name if api_key is not None else None,
    )
    trace = state.trace
    if trace is not None and trace.sampled:
        record.span_id = trace.span_id
        record.parent_span_id = trace.parent_span_id
        record.trace_state = trace.trace_state
        record.sampled = True
        record.route = route
        record.attempt_spans = state.attempt_spans or []
        relayed = state.relayed
        if relayed is not None:
            record.response_tail = relayed.facts
    counting = state.counting
    if counting is None or counting.done():
        sinks.submit(record)
        return

    def counted(_: object) -> None:
        # The tokens a background count found (none if it failed), then the record goes.
        record.prompt_tokens = state.prompt_tokens
        record.completion_tokens = state.completion_tokens
        record.cost_usd = state.cost_usd
        sinks.submit(record)

    counting.add_done_callback(counted)
