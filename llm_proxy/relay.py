"""Byte-transparent relay of an upstream response to the client.

Chunks are written as they arrive (`readany`), never re-encoded or buffered whole. The two
failure sides are told apart: the client hanging up (a write fails, or aiohttp cancels the
handler) closes the upstream connection at once; the upstream failing mid-body ends an SSE
stream with an OpenAI-style error event, or aborts a plain body so the client sees truncation.
"""

from __future__ import annotations

import aiohttp
import structlog
from aiohttp import web

from llm_proxy import errors
from llm_proxy.health import HealthBoard
from llm_proxy.keys import FINAL_STATUS, HEALTH, REQUEST_ID, SESSION
from llm_proxy.middlewares.observe import CLIENT_CLOSED
from llm_proxy.upstream import Upstream, request_headers, response_headers

log = structlog.get_logger()


async def forward(
    request: web.Request, upstream: Upstream, endpoint: str, body: bytes, stream: bool
) -> web.StreamResponse:
    """Send `body` to `upstream` and relay its answer. Raises ProxyError (502/504) only
    before anything was sent to the client."""
    health = request.app[HEALTH]
    try:
        resp = await request.app[SESSION].post(
            upstream.urls[endpoint],
            data=body,
            headers=request_headers(request.headers, upstream, stream),
            ssl=upstream.ssl,
            timeout=upstream.stream_timeout if stream else upstream.timeout,
        )
    except TimeoutError:
        health.record(upstream.name, None, "timeout")
        raise errors.upstream_timeout(upstream.name, upstream.timeout_secs) from None
    except aiohttp.ClientError as exc:
        health.record(upstream.name, None, "unreachable")
        log.warning(
            "upstream_unreachable",
            request_id=request.get(REQUEST_ID),
            provider=upstream.name,
            error=type(exc).__name__,
        )
        raise errors.upstream_unreachable(upstream.name) from None

    health.record(upstream.name, resp.status)
    out = web.StreamResponse(status=resp.status, reason=resp.reason)
    out.headers.extend(response_headers(resp.headers))
    finished = False
    try:
        finished = await _relay(request, resp, out, upstream, health)
    finally:
        if finished:
            resp.release()
        else:
            # Not read to the end: the connection cannot be reused; drop it now so the
            # upstream stops generating.
            resp.close()
    return out


async def _relay(
    request: web.Request,
    resp: aiohttp.ClientResponse,
    out: web.StreamResponse,
    upstream: Upstream,
    health: HealthBoard,
) -> bool:
    """Relay `resp` into `out`; return True when the upstream body was read to the end."""
    is_sse = resp.content_type == "text/event-stream"
    if is_sse:
        out.headers["Cache-Control"] = "no-cache"
        out.headers["X-Accel-Buffering"] = "no"
    elif resp.content_length is not None and "Content-Encoding" not in resp.headers:
        out.content_length = resp.content_length
    await out.prepare(request)

    reader = resp.content
    tail = b""
    while True:
        try:
            chunk = await reader.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "disconnect"
            health.record(upstream.name, None, kind)
            log.warning(
                "upstream_failed_mid_body",
                request_id=request.get(REQUEST_ID),
                provider=upstream.name,
                error=type(exc).__name__,
                streamed=is_sse,
            )
            request[FINAL_STATUS] = 504 if kind == "timeout" else 502
            await _end_after_upstream_failure(request, out, is_sse, tail, upstream.name)
            return False
        if not chunk:
            break
        try:
            await out.write(chunk)
        except ConnectionResetError:
            request[FINAL_STATUS] = CLIENT_CLOSED
            return False
        tail = chunk
    try:
        await out.write_eof()
    except ConnectionResetError:
        request[FINAL_STATUS] = CLIENT_CLOSED
    return True


async def _end_after_upstream_failure(
    request: web.Request, out: web.StreamResponse, is_sse: bool, tail: bytes, provider: str
) -> None:
    if not is_sse:
        # Headers are gone; the only honest signal left is a truncated body.
        if request.transport is not None:
            request.transport.abort()
        return
    # Close any half-written event first so the error event parses on its own.
    prefix = b"" if not tail or tail.endswith(b"\n\n") else b"\n\n"
    event = errors.sse_error_event(
        f"Upstream provider {provider!r} failed mid-stream.", code="upstream_error"
    )
    try:
        await out.write(prefix + event)
        await out.write_eof()
    except ConnectionResetError:
        request[FINAL_STATUS] = CLIENT_CLOSED
