"""Byte-transparent relay of an upstream response to the client.

Chunks are written as they arrive (`readany`), never re-encoded or buffered whole. The two
failure sides are told apart: the client hanging up (a write fails, or aiohttp cancels the
handler) closes the upstream connection at once; the upstream failing mid-body ends an SSE
stream with an OpenAI-style error event, or aborts a plain body so the client sees truncation.

While relaying, the relay keeps what token accounting needs (the tail, and a bounded copy of
the body for counting when the upstream reports no usage) in a :class:`Relayed` record that
outlives a cancelled handler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from aiohttp.payload import BytesPayload

from llm_proxy import errors
from llm_proxy.keys import HEALTH, METRICS, SESSION, STATE
from llm_proxy.middlewares.observe import CLIENT_CLOSED
from llm_proxy.upstream import Upstream, request_headers, response_headers
from llm_proxy.usage import Usage, UsageStripper

log = structlog.get_logger()

TAIL_BYTES: Final = 8192  # enough for a final usage chunk or a JSON body's trailing usage
KEEP_BYTES: Final = 256 * 1024  # bounded copy for counting tokens ourselves
OVERHEAD_HEADER: Final = "x-llm-proxy-overhead-ms"


@dataclass(slots=True)
class Relayed:
    """What crossed the proxy, for token accounting after (or despite) the relay."""

    status: int = 0  # the upstream's HTTP status; 0 when it never answered
    tail: bytes = b""
    kept: list[bytes] = field(default_factory=list)
    kept_bytes: int = 0
    total_bytes: int = 0
    complete: bool = False  # the upstream body was relayed to its end
    stripper: UsageStripper | None = None

    @property
    def stripped_usage(self) -> Usage | None:
        return self.stripper.usage if self.stripper is not None else None

    def note(self, chunk: bytes) -> None:
        size = len(chunk)
        self.total_bytes += size
        if self.kept_bytes < KEEP_BYTES:
            self.kept.append(chunk)
            self.kept_bytes += size
        if size >= TAIL_BYTES:
            self.tail = chunk[-TAIL_BYTES:]
        else:
            self.tail = self.tail[size - TAIL_BYTES :] + chunk if self.tail else chunk


async def forward(
    request: web.Request,
    upstream: Upstream,
    endpoint: str,
    body: bytes,
    stream: bool,
    relayed: Relayed,
    model_label: str,
) -> web.StreamResponse:
    """Send `body` to `upstream` and relay its answer. Raises ProxyError (502/504) only
    before anything was sent to the client."""
    app = request.app
    health, metrics = app[HEALTH], app[METRICS]
    sent_at = time.perf_counter()
    try:
        resp = await app[SESSION].post(
            upstream.urls[endpoint],
            data=BytesPayload(body),
            headers=request_headers(request.headers, upstream, stream),
            ssl=upstream.ssl,
            timeout=upstream.stream_timeout if stream else upstream.timeout,
        )
    except TimeoutError:
        health.record(upstream.name, None, "timeout")
        metrics.upstream_error(upstream.name, "timeout")
        raise errors.upstream_timeout(upstream.name, upstream.timeout_secs) from None
    except aiohttp.ClientError as exc:
        health.record(upstream.name, None, "unreachable")
        metrics.upstream_error(upstream.name, "connect")
        log.warning(
            "upstream_unreachable",
            request_id=request[STATE].request_id,
            provider=upstream.name,
            error=type(exc).__name__,
        )
        raise errors.upstream_unreachable(upstream.name) from None

    headers_at = time.perf_counter()
    metrics.provider_latency(upstream.name, headers_at - sent_at)
    health.record(upstream.name, resp.status)
    if resp.status >= 500:
        metrics.upstream_error(upstream.name, "http_5xx")
    relayed.status = resp.status

    out = web.StreamResponse(status=resp.status, reason=resp.reason)
    out.headers.extend(response_headers(resp.headers))
    try:
        is_sse = resp.content_type == "text/event-stream"
        if is_sse:
            out.headers["Cache-Control"] = "no-cache"
            out.headers["X-Accel-Buffering"] = "no"
        elif resp.content_length is not None and "Content-Encoding" not in resp.headers:
            out.content_length = resp.content_length
        if not is_sse or resp.status >= 300:
            relayed.stripper = None  # only successful streams carry the injected usage
        # The proxy's own time so far: everything but the wait for the upstream's headers.
        overhead = (time.perf_counter() - request[STATE].started) - (headers_at - sent_at)
        metrics.overhead(overhead)
        out.headers[OVERHEAD_HEADER] = f"{overhead * 1000:.3f}"
        await out.prepare(request)
        await _relay(request, resp, out, upstream, relayed, is_sse, model_label)
    finally:
        if relayed.complete:
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
    relayed: Relayed,
    is_sse: bool,
    model_label: str,
) -> None:
    reader = resp.content
    stripper = relayed.stripper
    first = is_sse
    while True:
        try:
            chunk = await reader.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            await _upstream_failed(request, out, upstream, relayed, is_sse, exc)
            return
        if not chunk:
            break
        relayed.note(chunk)
        if stripper is not None:
            chunk = stripper.feed(chunk)
            if not chunk:
                continue
        try:
            await out.write(chunk)
        except ConnectionResetError:
            request[STATE].final_status = CLIENT_CLOSED
            return
        if first:
            first = False
            request.app[METRICS].time_to_first_token(
                model_label, upstream.name, time.perf_counter() - request[STATE].started
            )
    relayed.complete = True
    try:
        if stripper is not None and (rest := stripper.flush()):
            await out.write(rest)
        await out.write_eof()
    except ConnectionResetError:
        request[STATE].final_status = CLIENT_CLOSED


async def _upstream_failed(
    request: web.Request,
    out: web.StreamResponse,
    upstream: Upstream,
    relayed: Relayed,
    is_sse: bool,
    exc: Exception,
) -> None:
    kind = "timeout" if isinstance(exc, TimeoutError) else "disconnect"
    request.app[HEALTH].record(upstream.name, None, kind)
    request.app[METRICS].upstream_error(upstream.name, f"mid_body_{kind}")
    log.warning(
        "upstream_failed_mid_body",
        request_id=request[STATE].request_id,
        provider=upstream.name,
        error=type(exc).__name__,
        streamed=is_sse,
    )
    request[STATE].final_status = 504 if kind == "timeout" else 502
    if not is_sse:
        # Headers are gone; the only honest signal left is a truncated body.
        if request.transport is not None:
            request.transport.abort()
        return
    # Close any half-written event first so the error event parses on its own.
    # (With a usage stripper in between, the client only ever received whole events.)
    tail = relayed.tail
    whole = relayed.stripper is not None or not tail or tail.endswith(b"\n\n")
    prefix = b"" if whole else b"\n\n"
    event = errors.sse_error_event(
        f"Upstream provider {upstream.name!r} failed mid-stream.", code="upstream_error"
    )
    try:
        await out.write(prefix + event)
        await out.write_eof()
    except ConnectionResetError:
        request[STATE].final_status = CLIENT_CLOSED
