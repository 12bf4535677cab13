"""Forwarding with failover: which provider answers a request.

Every request gets exactly one response. Until a byte has gone to the client, a failed attempt
(connect error, timeout before the first byte, 5xx, 429, or a stream whose first event is an
error) is retried on the next candidate provider, up to `max_attempts`, never the same provider
twice unless it is the only one, and never a provider inside the Retry-After window it asked
for. The attempt that commits hands its answer to `llm_proxy.proxy.relay`.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web

from llm_proxy import errors
from llm_proxy.keys import CAPTURE, CLIENT, HEALTH, METRICS, OWNERS, STATE
from llm_proxy.middlewares.observe import stamp
from llm_proxy.observe.metrics import Metrics
from llm_proxy.observe.records import ErrorRecord, error_summary
from llm_proxy.proxy.breaker import HealthBoard
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.client import (
    ConnectError,
    ConnectTimeout,
    Disconnected,
    PoolTimeout,
    ProtocolError,
    Response,
    StreamedBody,
    UpstreamError,
)
from llm_proxy.proxy.decoding import Inflater, inflater_for
from llm_proxy.proxy.owners import created_id
from llm_proxy.proxy.relay import Leg, answers_whole, relay, relay_whole
from llm_proxy.proxy.retry_after import retry_after as read_retry_after
from llm_proxy.proxy.routing import Route, Target
from llm_proxy.proxy.state import RequestState
from llm_proxy.proxy.upstream import Upstream, request_headers, response_headers
from llm_proxy.proxy.usage import STREAM_KEEP_BYTES, Relayed

log = structlog.get_logger()

OVERHEAD_HEADER: Final = "x-llm-proxy-overhead-ms"
PROVIDER_HEADER: Final = "x-llm-proxy-provider"  # which provider answered (the config's name)
_PEEK_LIMIT: Final = 65536  # bytes read from a failed answer, or while waiting for a first event
_RETRY_BACKOFF_SECS: Final = 0.05  # before retrying the only provider of a model
_SSE_BYTES_PER_TEXT_BYTE: Final = 8
_ERROR_BODY_BYTES: Final = 2048  # of a failed attempt's answer, in the error log
_FIRST_EVENT_BYTES: Final = 8192


@dataclass(slots=True)
class Failure:
    """A failed attempt, and what the client gets if no attempt succeeds."""

    outcome: str  # connect_error, timeout, http_5xx, http_429, sse_error
    error: errors.ProxyError | None = None  # a proxy-made error...
    response: web.Response | None = None  # ...or the upstream's own answer, passed through
    retry_after: float | None = None
    detail: str | None = None  # the cause, for the log (never sent to the client)

    def answer(self) -> web.Response:
        """What the client gets when no attempt succeeded."""
        if self.response is not None:
            return self.response
        assert self.error is not None
        return errors.error_response(self.error)


async def forward(request: web.Request, route: Route, call: Call) -> web.StreamResponse:
    """Try the route's providers in turn (see the module docstring) until one answers."""
    state = request[STATE]
    snapshot = state.snapshot
    health = request.app[HEALTH]
    max_attempts = snapshot.config.max_attempts
    tried: list[str] = []
    state.attempts = tried  # (for the access line)
    failure: Failure | None = None
    for attempt in range(1, max_attempts + 1):
        target = _choose(route, tried, health)
        if target is None:
            break
        upstream = snapshot.upstreams[target.provider.name]
        tried.append(upstream.name)
        final = attempt == max_attempts or not _has_alternative(route, tried)
        body, stripper = call.body_for(target, upstream)
        state.provider = upstream.name
        state.model_sent = target.model or call.name or None
        state.relayed = Relayed(stripper=stripper)
        health.begin(upstream.name, time.monotonic())
        result = await _attempt(request, state, upstream, call, body, final)
        if not isinstance(result, Failure):
            return result
        failure = result
        _note_failure(state, upstream.name, result, bool(request.app[CAPTURE]))
        log.warning(
            "upstream_attempt_failed",
            request_id=state.request_id,
            provider=upstream.name,
            attempt=attempt,
            outcome=result.outcome,
            error=result.detail,
            retry=not final,
        )
        if not final and len(route.targets) == 1 and result.outcome != "http_429":
            await asyncio.sleep(_RETRY_BACKOFF_SECS * attempt)
    if failure is None:
        # Every candidate is inside a Retry-After window the upstream asked for: calling it
        # again would only earn another 429, so the client hears it at once.
        state.error_code = "rate_limit_exceeded"
        return _rate_limited(route, health)
    if failure.error is not None and len(set(tried)) > 1 and failure.outcome in _UNREACHABLE:
        failure.error = _all_failed(tried, failure)
    if failure.error is not None:
        state.error_code = failure.error.code or failure.error.type
    return failure.answer()


_UNREACHABLE: Final = frozenset(
    {"connect_error", "timeout", "protocol_error", "disconnected", "pool_full"}
)


def _all_failed(tried: list[str], last: Failure) -> errors.ProxyError:
    names = ", ".join(repr(name) for name in dict.fromkeys(tried))
    assert last.error is not None
    return errors.ProxyError(
        last.error.status,
        f"No upstream provider answered (tried {names}); the proxy's log has each cause.",
        type=errors.API_ERROR,
        code=last.error.code,
    )


def _rate_limited(route: Route, health: HealthBoard) -> web.Response:
    now = time.monotonic()
    wait = min(health.rate_limited_for(t.provider.name, now) for t in route.targets)
    seconds = max(1, math.ceil(wait))
    names = ", ".join(repr(t.provider.name) for t in route.targets)
    return errors.error_response(
        errors.ProxyError(
            429,
            f"The upstream provider ({names}) asked the proxy to wait: retry in {seconds}s.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )
    )


def _choose(route: Route, tried: list[str], health: HealthBoard) -> Target | None:
    if not health.impaired:
        if len(route.targets) == 1:
            return route.targets[0]
        if not tried:
            return route.pick()  # the common case: everyone healthy, first attempt
    now = time.monotonic()
    target = route.pick(
        lambda t: t.provider.name not in tried and health.usable(t.provider.name, now)
    )
    if target is not None:
        return target
    # Every untried candidate is ejected or rate limited. One inside a Retry-After window is
    # never called; of the ejected ones, still try the least recently failed one rather than
    # failing the request outright. (The only provider of a route may be retried.)
    remaining = [
        t
        for t in route.targets
        if (len(route.targets) == 1 or t.provider.name not in tried)
        and not health.rate_limited_for(t.provider.name, now)
    ]
    if not remaining:
        return None
    return min(remaining, key=lambda t: health.last_failure(t.provider.name))


def _has_alternative(route: Route, tried: list[str]) -> bool:
    if len(route.targets) == 1:
        return True  # the only provider may be retried
    return any(t.provider.name not in tried for t in route.targets)


async def _attempt(
    request: web.Request,
    state: RequestState,
    upstream: Upstream,
    call: Call,
    body: bytes | StreamedBody,
    final: bool,
) -> web.StreamResponse | Failure:
    app = request.app
    health, metrics = app[HEALTH], app[METRICS]
    relayed = state.relayed
    assert relayed is not None
    name = upstream.name
    sent_at = time.perf_counter()
    first = b""
    resp: Response | None = None
    ttft = upstream.ttft_secs  # None: the total timeout is the only bound
    try:
        resp = await app[CLIENT].request(
            upstream.target(call.method, call.endpoint, state.model_sent, call.query),
            request_headers(request.raw_headers, upstream),
            body,
            total_secs=upstream.timeout_secs,
            connect_secs=upstream.connect_secs,
            first_byte_secs=ttft,
            idle_secs=upstream.idle_secs if call.stream else None,
        )
        relayed.inflater = inflater_for(resp)
        is_sse = resp.content_type == "text/event-stream"
        if not final and (resp.status >= 500 or resp.status == 429):
            return await _failed_answer(resp, upstream, health, metrics)
        if not final and is_sse and resp.status < 300:
            # The first event is held back (to fail over on an error event) within the
            # first-byte timeout too.
            first = await _first_event(resp, relayed.inflater)
            if _is_error_event(first):
                resp.close()
                health.failure(name, "sse_error", resp.status)
                metrics.attempt(name, "sse_error")
                return Failure(
                    "sse_error",
                    response=web.Response(
                        status=resp.status, body=first, content_type="text/event-stream"
                    ),
                )
    except (TimeoutError, UpstreamError) as exc:
        if resp is not None:
            resp.close()
        return _failed_call(exc, upstream, health, metrics)
    except BaseException:
        if resp is not None:
            resp.close()
        health.settle(name)
        raise

    # Committed: from here on, this upstream's answer is the client's answer.
    headers_at = time.perf_counter()
    metrics.provider_latency(name, headers_at - sent_at)
    status = resp.status
    relayed.status = status
    if status >= 500:
        # Health is decided once the body is in: it may blame the request (see below).
        metrics.attempt(name, "http_5xx")
        metrics.upstream_error(name, "http_5xx")
    elif status == 429:
        health.failure(name, "http_429", status, read_retry_after(resp) or 1.0)
        metrics.attempt(name, "http_429")
    else:
        # 2xx, and 4xx: the provider answered; a 4xx is the request's fault, never its health.
        health.success(name, status)
        metrics.attempt(name, "ok")
    is_sse = resp.content_type == "text/event-stream"
    if is_sse:
        # With content capture, the stream's first events (SSE framing is most of the bytes);
        # a stream that creates an object, its first event (which names it).
        relayed.keep = app[CAPTURE] * _SSE_BYTES_PER_TEXT_BYTE or STREAM_KEEP_BYTES
        if call.creates is not None:
            relayed.keep = max(relayed.keep, _FIRST_EVENT_BYTES)
    if not is_sse or status >= 300:
        relayed.stripper = None  # only successful streams carry the injected usage
    whole = answers_whole(resp, relayed, is_sse) or (
        call.inspect and not is_sse and relayed.inflater is None
    )
    if call.inspect and not whole and 200 <= status < 300:
        # Fail closed: an answer the handler must see first (a list filtered per key) is
        # never relayed unread (compressed despite `Accept-Encoding: identity`, or a stream).
        resp.close()
        raise errors.upstream_bad_answer(name, disconnected=False)
    out = (web.Response if whole else web.StreamResponse)(status=status, reason=resp.reason or None)
    out.headers.extend(response_headers(resp.raw_headers, upstream))
    if relayed.inflater is not None:
        out.headers.popall("Content-Encoding", None)  # relayed inflated (llm_proxy.proxy.decoding)
    if is_sse:
        out.headers["Cache-Control"] = "no-cache"
        out.headers["X-Accel-Buffering"] = "no"
    elif resp.content_length is not None and relayed.inflater is None and not whole:
        out.content_length = resp.content_length
    # The proxy's own time so far: everything but the wait for the upstream's answer.
    overhead = (time.perf_counter() - state.started) - (headers_at - sent_at)
    metrics.overhead(overhead)
    out.headers[OVERHEAD_HEADER] = f"{overhead * 1000:.3f}"
    out.headers[PROVIDER_HEADER] = name
    handed_off = False
    try:
        if isinstance(out, web.Response):
            return await relay_whole(request, state, upstream, resp, relayed, out)
        stamp(out, state)
        await out.prepare(request)
        handed_off = await relay(Leg(request, state, upstream, resp, out, relayed, is_sse), first)
    finally:
        # Read to the end, the connection is back in the pool already; otherwise it is
        # dropped now, so the upstream stops generating.
        if not handed_off:
            resp.close()
        if call.creates is not None and 200 <= status < 300:
            object_id = created_id(bytes(relayed.kept), stream=is_sse)
            if object_id is not None:
                key = state.api_key.name if state.api_key is not None else None
                app[OWNERS].remember(object_id, name, call.creates, key, call.models)
        if status >= 500 or status == 429:
            _note_answer(state, name, status, relayed, bool(app[CAPTURE]))
        if status >= 500 and relayed.complete:
            _record_5xx(health, name, status, bytes(relayed.kept[:_BLAME_WINDOW]))
        elif not relayed.complete:
            health.settle(name)
    return out


def _note_failure(state: RequestState, provider: str, failure: Failure, capture: bool) -> None:
    """A failed attempt, for the error log."""
    body = failure.response.body if failure.response is not None else None
    status = failure.response.status if failure.response is not None else None
    _note(
        state,
        ErrorRecord(
            time.time(),
            state.request_id,
            provider,
            failure.outcome,
            status,
            _text(body, capture) if isinstance(body, bytes) else None,
            failure.detail,
        ),
    )


def _note_answer(
    state: RequestState, provider: str, status: int, relayed: Relayed, capture: bool
) -> None:
    """The answering attempt's 5xx or 429, passed to the client, for the error log."""
    outcome = "http_429" if status == 429 else "http_5xx"
    body = _text(bytes(relayed.kept[:_ERROR_BODY_BYTES]) or relayed.tail, capture)
    _note(state, ErrorRecord(time.time(), state.request_id, provider, outcome, status, body))


def _note(state: RequestState, record: ErrorRecord) -> None:
    if state.errors is None:
        state.errors = [record]
    else:
        state.errors.append(record)


def _text(body: bytes, capture: bool) -> str | None:
    """What the error log keeps of an upstream's error answer: with content capture on, its
    beginning; off, its error's type and code only (the message may repeat the prompt)."""
    if not capture:
        return error_summary(body)
    return body[:_ERROR_BODY_BYTES].decode("utf-8", "replace")


# Failures that are the proxy's own condition, not the provider's: never held against it.
_LOCAL_KINDS: Final = frozenset({"pool_full", "fd_exhausted", "client_closed"})


def _failed_call(
    exc: BaseException, upstream: Upstream, health: HealthBoard, metrics: Metrics
) -> Failure:
    """An attempt that got no answer: its outcome, what the client would be told, and the
    cause (a fixed `kind` for metrics, the detail for the log and /health/detailed)."""
    name = upstream.name
    kind = exc.kind if isinstance(exc, UpstreamError) else "timeout"
    error: errors.ProxyError
    if isinstance(exc, ConnectTimeout):
        outcome = "timeout"
        error = errors.upstream_timeout(name, upstream.connect_secs, "could not be connected to")
    elif isinstance(exc, TimeoutError):
        outcome = "timeout"
        error = errors.upstream_timeout(name, upstream.ttft_secs or upstream.timeout_secs)
    elif isinstance(exc, PoolTimeout):
        outcome = "pool_full"
        error = errors.upstream_busy(name, "max_connections_per_provider reached")
    elif isinstance(exc, ConnectError) and kind == "fd_exhausted":
        outcome = "connect_error"
        error = errors.upstream_busy(name, "the proxy is out of file descriptors")
    elif isinstance(exc, ConnectError):
        outcome = "connect_error"
        error = errors.upstream_unreachable(name, kind)
    elif isinstance(exc, ProtocolError):
        outcome = "protocol_error"
        error = errors.upstream_bad_answer(name, disconnected=False)
    elif isinstance(exc, Disconnected):
        outcome = "disconnected"
        error = errors.upstream_bad_answer(name, disconnected=True)
    else:
        outcome = "connect_error"
        error = errors.upstream_unreachable(name)
    detail = str(exc)[:300] or type(exc).__name__
    if kind in _LOCAL_KINDS:
        health.settle(name)
    else:
        health.failure(name, outcome, detail=detail)
    metrics.attempt(name, outcome)
    metrics.upstream_error(name, kind)
    return Failure(outcome, error, detail=detail)


async def _failed_answer(
    resp: Response, upstream: Upstream, health: HealthBoard, metrics: Metrics
) -> Failure:
    """A 5xx or 429 we will retry elsewhere: keep its body in case it is the last word."""
    try:
        body = await resp.read(_PEEK_LIMIT)
    finally:
        resp.close()
    status = resp.status
    retry_after = read_retry_after(resp) if status == 429 else None
    outcome = "http_429" if status == 429 else "http_5xx"
    if status == 429:
        health.failure(upstream.name, outcome, status, retry_after or 1.0)
    else:
        _record_5xx(health, upstream.name, status, body[:_BLAME_WINDOW])
    metrics.attempt(upstream.name, outcome)
    if status >= 500:
        metrics.upstream_error(upstream.name, "http_5xx")
    answer = web.Response(
        status=status, body=body, headers=response_headers(resp.raw_headers, upstream)
    )
    return Failure(outcome, response=answer, retry_after=retry_after)


# A 5xx whose OpenAI-style error says the request was at fault (some servers answer an
# oversized or malformed request with 500 `invalid_request_error`) is not held against the
# provider: otherwise any client could eject a provider by sending such requests.
_BLAME_WINDOW: Final = 4096
_REQUEST_BLAMED: Final = re.compile(rb'"type"\s*:\s*"invalid_request_error"')


def _record_5xx(health: HealthBoard, provider: str, status: int, head: bytes) -> None:
    if _REQUEST_BLAMED.search(head):
        health.success(provider, status)
    else:
        health.failure(provider, "http_5xx", status)


async def _first_event(resp: Response, inflater: Inflater | None) -> bytes:
    """Read until the first complete SSE event (usually one read: it is one chunk)."""
    data = b""
    while b"\n\n" not in data and len(data) < _PEEK_LIMIT:
        deadline = resp.first_deadline
        if inflater is None:
            chunk = await resp.read_chunk(deadline)
        else:
            chunk = await inflater.read_chunk(resp, deadline)
        if not chunk:
            break
        data += chunk
    return data


def _is_error_event(first: bytes) -> bool:
    head = first.lstrip()[:64]
    if head.startswith((b"event: error", b"event:error")):
        return True
    if head.startswith(b"data:"):
        return head[5:].lstrip().startswith(b'{"error"')
    return False
