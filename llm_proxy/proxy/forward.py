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
import time
from collections.abc import Awaitable
from typing import Final

import structlog
from aiohttp import web

from llm_proxy import errors
from llm_proxy.keys import CAPTURE, CLIENT, HEALTH, METRICS, OWNERS, STATE
from llm_proxy.observe.metrics import Metrics
from llm_proxy.observe.records import AttemptRecord, ErrorRecord, error_summary
from llm_proxy.observe.tracing.context import new_span_id
from llm_proxy.protocols.converse import upstream_status
from llm_proxy.protocols.refusals import classify_error
from llm_proxy.proxy.accounting import move_reservation
from llm_proxy.proxy.breaker import HealthBoard
from llm_proxy.proxy.call import Call, Outgoing
from llm_proxy.proxy.client import (
    Response,
    StreamedBody,
    UpstreamError,
)
from llm_proxy.proxy.cloud import BEDROCK, CloudAuth, CloudTarget, CredentialsUnavailable
from llm_proxy.proxy.decoding import inflater_for
from llm_proxy.proxy.outcome import Failure, Outcome, no_answer, record
from llm_proxy.proxy.owners import created_id
from llm_proxy.proxy.relay import Leg, answers_whole, relay, relay_whole
from llm_proxy.proxy.retry_after import retry_after as read_retry_after
from llm_proxy.proxy.routing import (
    CLASSIFIED_STATUSES,
    NO_FALLBACKS,
    REFUSAL_STATUSES,
    Plan,
    Route,
    Target,
)
from llm_proxy.proxy.state import RequestState, stamp
from llm_proxy.proxy.translation import TranslatedStream
from llm_proxy.proxy.upstream import Upstream, request_headers, response_headers
from llm_proxy.proxy.usage import STREAM_KEEP_BYTES, Relayed, text_of_request

log = structlog.get_logger()

OVERHEAD_HEADER: Final = "x-llm-proxy-overhead-ms"
PROVIDER_HEADER: Final = "x-llm-proxy-provider"  # which provider answered (the config's name)
MODEL_HEADER: Final = "x-llm-proxy-model"  # which model answered (as requested, or a fallback)
_PEEK_LIMIT: Final = 65536  # bytes read from a failed answer, or while waiting for a first event
_RETRY_BACKOFF_SECS: Final = 0.05  # before retrying the only provider of a model
_SSE_BYTES_PER_TEXT_BYTE: Final = 8
_ERROR_BODY_BYTES: Final = 2048  # of a failed attempt's answer, in the error log
_FIRST_EVENT_BYTES: Final = 8192
EVENT_STREAM: Final = "application/vnd.amazon.eventstream"  # Bedrock's ConverseStream
_LENGTH_AND_TYPE: Final = ("content-type", "content-length")
_DEADLINE_SLACK: Final = 0.005  # a timeout this close to the deadline is the deadline's
_CHARS_PER_TOKEN: Final = 4  # the context-window estimate's
# A request naming its own chain: its failures of every kind are read before commit.
OWN_CHAIN_PEEK: Final = CLASSIFIED_STATUSES | REFUSAL_STATUSES
_OK: Final = Outcome.OK  # (a module global: an enum member's lookup costs ~0.4 µs on 3.11)


def forward(request: web.Request, route: Route, call: Call) -> Awaitable[web.StreamResponse]:
    """Try the route's providers in turn (see the module docstring) until one answers; when
    they all fail, the models of its fallback chain, each the same way (`routing:`). (Not a
    coroutine of its own: the one it returns does the work, one frame less per request.)"""
    state = request[STATE]
    health = request.app[HEALTH]
    tried: list[str] = []
    state.attempts = tried  # (for the access line)
    plan = route.plan
    if plan.deadline is not None:  # (from the request's arrival: a perf_counter() instant)
        state.deadline = state.started + plan.deadline
    own = state.fallbacks
    if route.fallbacks is NO_FALLBACKS and own is None:  # one model
        # (With `more` False, the coroutine's result is always the answer.)
        return _try_model(  # type: ignore[return-value]
            request, state, health, route, call, tried, plan.peek, False
        )
    window = plan.context_window
    if window is not None and _estimate(call) > window:
        # Too long for this model by the proxy's estimate: not even sent.
        failure = _too_long(route, window)
        return _with_fallbacks(request, state, health, route, call, tried, failure)
    peek = plan.peek if not own else plan.peek | OWN_CHAIN_PEEK
    # A chain never names its own model, so a fallback may follow (`more`); after a failure
    # the same coroutine goes on down the chain (`chain`): one frame while all goes well.
    return _try_model(  # type: ignore[return-value]
        request, state, health, route, call, tried, peek, True, True
    )


async def _with_fallbacks(
    request: web.Request,
    state: RequestState,
    health: HealthBoard,
    route: Route,
    call: Call,
    tried: list[str],
    result: Failure | None,
) -> web.StreamResponse:
    """After the requested model failed (`result`; its own or the request's chain being
    there): the next model of the chain for why it failed, tried the same way, until one
    answers, the chain ends or the deadline passes."""
    first = route
    own = state.fallbacks
    visited = {route.name}
    while True:
        reason = _reason(result)
        if result is not None and result.outcome is Outcome.DEADLINE:
            break
        if _past_deadline(state):
            log.info("routing_deadline_passed", request_id=state.request_id, model=route.name)
            result = _deadline_failure(state, result)
            break
        found = _next_model(state, first, own, reason, visited)
        while found is not None and not await move_reservation(
            request.app, state, call.data, call.endpoint, found[0]
        ):
            # Over the key's budget at that model's prices: the next may be cheaper.
            log.info("model_fallback_over_budget", request_id=state.request_id, model=found[0])
            found = _next_model(state, first, own, reason, visited)
        if found is None:
            break
        name, next_route = found
        request.app[METRICS].fallback(route.label, next_route.label, reason)
        log.info(
            "model_fallback",
            request_id=state.request_id,
            model=route.name,
            fallback=name,
            reason=reason,
        )
        if state.fallback_from is None:
            state.fallback_from = state.model
        state.fallback_reason = reason
        state.model = name
        state.model_label = next_route.label
        call.name = next_route.name
        route = next_route
        peek = route.plan.peek | first.plan.peek | (OWN_CHAIN_PEEK if own else frozenset())
        more = _chain_left(first, own, visited)
        window = route.plan.context_window
        if window is not None and _estimate(call) > window:
            result = _too_long(route, window)
            continue
        answer = await _try_model(request, state, health, route, call, tried, peek, more)
        if isinstance(answer, web.StreamResponse):
            return answer
        result = answer
    return _no_answer(request, state, route, call, result, tried)


def _estimate(call: Call) -> int:
    """The prompt's tokens, estimated at 4 characters each (a little under what tiktoken
    finds in English: only a prompt clearly too long is kept from a model)."""
    return len(text_of_request(call.data)) // _CHARS_PER_TOKEN


def _too_long(route: Route, window: int) -> Failure:
    error = errors.ProxyError(
        400,
        f"The prompt is longer than the context window of `{route.name}` ({window} tokens, "
        "by the proxy's estimate).",
        code="context_length_exceeded",
        param="messages",
    )
    return Failure(Outcome.CONTEXT_WINDOW, error, detail="context window (estimated)")


def _reason(failure: Failure | None) -> str:
    if failure is not None:
        if failure.outcome is Outcome.CONTEXT_WINDOW:
            return "context_window"
        if failure.outcome is Outcome.CONTENT_POLICY:
            return "content_policy"
    return "any"


def _chain_left(first: Route, own: tuple[str, ...] | None, visited: set[str]) -> bool:
    """Is any model of the chains still untried?"""
    names = first.fallbacks.names if own is None else frozenset(own)
    return not names <= visited


def _next_model(
    state: RequestState,
    first: Route,
    own: tuple[str, ...] | None,
    reason: str,
    visited: set[str],
) -> tuple[str, Route] | None:
    """The next model to try for `reason` (the requested model's chain for it, or the
    request's own chain for any reason), with its route: one the key may use, served by a
    provider (within the matching rule's providers). None: the chain is done."""
    chain = own if own is not None else first.fallbacks.chain(reason)
    key = state.api_key
    routes = state.snapshot.routes
    for name in chain:
        if name in visited:
            continue
        visited.add(name)
        if key is not None and not key.may_use(name):
            log.info("model_fallback_not_allowed", request_id=state.request_id, model=name)
            continue
        only = state.only
        route = routes.resolve(name) if only is None else routes.narrowed(name, only)
        if route is not None:
            return name, route
    return None


def _past_deadline(state: RequestState, slack: float = 0.0) -> bool:
    deadline = state.deadline
    return deadline is not None and time.perf_counter() >= deadline - slack


def _deadline_failure(state: RequestState, last: Failure | None) -> Failure:
    """The answer when the routing deadline stopped the request before any upstream
    answered: a 504 that says so (and what the last attempt got)."""
    assert state.deadline is not None
    secs = state.deadline - state.started
    said = ""
    if last is not None:
        status = last.response.status if last.response is not None else None
        said = f" The last attempt: {last.outcome}" + (f" ({status})." if status else ".")
    error = errors.ProxyError(
        504,
        f"No upstream answered within the routing deadline ({secs:g}s, deadline_secs).{said} "
        "The proxy's log has each attempt's cause.",
        type=errors.API_ERROR,
        code="deadline_exceeded",
    )
    return Failure(Outcome.DEADLINE, error, detail="routing deadline")


async def _try_model(
    request: web.Request,
    state: RequestState,
    health: HealthBoard,
    route: Route,
    call: Call,
    tried_all: list[str],
    peek: frozenset[int],
    more: bool,
    chain: bool = False,
) -> web.StreamResponse | Failure | None:
    """One model's providers, tried in turn by its retry policy: the answer; or, when a
    fallback model may follow (`more`: even the last attempt's failure is then read before
    commit), the last failure (None: every provider is inside a Retry-After window), or with
    `chain` (the requested model's), what its fallbacks answer."""
    snapshot = state.snapshot
    plan = route.plan
    attempts = plan.attempts
    tried: list[str] = []
    failure: Failure | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1 and state.deadline is not None and _past_deadline(state):
            log.info("routing_deadline_passed", request_id=state.request_id, attempt=attempt)
            failure = _deadline_failure(state, failure)
            break
        target = _choose(route, tried, health)
        if target is None:
            break
        upstream = snapshot.upstreams[target.provider.name]
        tried.append(upstream.name)
        tried_all.append(upstream.name)
        last = attempt == attempts or not _has_alternative(route, tried)
        final = last and not more
        out = call.body_for(target, upstream)
        state.provider = upstream.name
        state.model_sent = target.model or call.name or None
        state.relayed = Relayed(
            stripper=out.stripper,
            translation=out.translation,
            gemini=call.gemini_action is not None and out.translation is None,
        )
        health.begin(upstream.name, health.clock())
        trace = state.trace
        tracks = route.tracks
        if tracks:
            route.begin(target)
            state.upstream_secs = None
        try:
            if trace is None:
                result = await _attempt(request, state, upstream, call, out, final, plan, peek)
            else:
                result = await _traced_attempt(
                    request, state, upstream, call, out, final, attempt, plan, peek
                )
        finally:
            if tracks:
                route.end(target, state.upstream_secs)
        if not isinstance(result, Failure):
            return result
        failure = result
        _note_failure(state, upstream.name, result, bool(request.app[CAPTURE]))
        outcome = result.outcome
        retry = not last and plan.retries(outcome, _status_of(result))
        log.warning(
            "upstream_attempt_failed",
            request_id=state.request_id,
            provider=upstream.name,
            attempt=attempt,
            outcome=outcome,
            error=result.detail,
            retry=retry,
        )
        if not retry:
            break
        if len(route.targets) == 1 and outcome is not Outcome.HTTP_429:
            await _backoff(state, plan.backoff_for(attempt))
    if not more:
        return _no_answer(request, state, route, call, failure, tried_all)
    if chain:
        return await _with_fallbacks(request, state, health, route, call, tried_all, failure)
    return failure


def _status_of(failure: Failure) -> int | None:
    return failure.response.status if failure.response is not None else None


async def _backoff(state: RequestState, seconds: float) -> None:
    """Wait before retrying a provider already tried, never past the deadline."""
    if state.deadline is not None:
        seconds = min(seconds, max(0.0, state.deadline - time.perf_counter()))
    if seconds > 0:
        await asyncio.sleep(seconds)


def _no_answer(
    request: web.Request,
    state: RequestState,
    route: Route,
    call: Call,
    failure: Failure | None,
    tried: list[str],
) -> web.Response:
    """What the client hears when no attempt answered: the last failure."""
    if failure is None:
        # Every candidate is inside a Retry-After window the upstream asked for: calling it
        # again would only earn another 429, so the client hears it at once.
        state.error_code = "rate_limit_exceeded"
        return _rate_limited(route, request.app[HEALTH], call, state.request_id)
    if failure.error is not None and len(set(tried)) > 1 and failure.outcome in _UNREACHABLE:
        failure.error = _all_failed(tried, failure)
    if failure.error is not None:
        state.error_code = failure.error.code or failure.error.type
    answer = failure.answer(call.anthropic, state.request_id, call.gemini_action is not None)
    if state.fallback_from is not None:
        answer.headers[MODEL_HEADER] = state.model or route.name
    return answer


_UNREACHABLE: Final = frozenset(
    {
        Outcome.CONNECT_ERROR,
        Outcome.TIMEOUT,
        Outcome.PROTOCOL_ERROR,
        Outcome.DISCONNECTED,
        Outcome.POOL_FULL,
    }
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


def _rate_limited(route: Route, health: HealthBoard, call: Call, request_id: str) -> web.Response:
    now = health.clock()
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
        ),
        call.anthropic,
        request_id,
        gemini=call.gemini_action is not None,
    )


def _choose(route: Route, tried: list[str], health: HealthBoard) -> Target | None:
    if not health.impaired:
        if len(route.targets) == 1:
            return route.targets[0]
        if not tried:
            return route.pick()  # the common case: everyone healthy, first attempt
    now = health.clock()
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
    outgoing: Outgoing,
    final: bool,
    plan: Plan,
    peek: frozenset[int],
) -> web.StreamResponse | Failure:
    """One attempt: sent, `_before_commit`, `_response_head`, relayed, `_settle`. (`plan`:
    the model's retry policy; `peek`: the 4xx statuses read before commit.)"""
    app = request.app
    health, metrics = app[HEALTH], app[METRICS]
    relayed = state.relayed
    assert relayed is not None
    sent_at = time.perf_counter()
    first = b""
    resp: Response | None = None
    try:
        credential = b""
        cloud = outgoing.target
        if cloud is not None and upstream.cloud is not None and upstream.cloud.auth is not None:
            credential = await _credential(upstream, upstream.cloud.auth, cloud, outgoing.body)
        resp = await _send(request, state, upstream, call, outgoing, credential)
        relayed.inflater = inflater_for(resp)
        if resp.status == 401 and credential and upstream.cloud is not None:
            upstream.cloud.refused(credential)  # Vertex: a revoked token is replaced at once
        if resp.status >= 400 and upstream.protocol == BEDROCK:
            # AWS names the error in a header: throttling is a 429, a model not ready a 503.
            resp.status = upstream_status(resp.status, resp.header(b"x-amzn-errortype"))
        content_type = resp.content_type
        is_sse = content_type == "text/event-stream" or (
            content_type == EVENT_STREAM and relayed.translation is not None
        )
        status = resp.status
        if not final and (
            status >= 500
            or status == 429
            or (is_sse and status < 300)
            or (status >= 400 and status in peek)
        ):
            checked = await _before_commit(resp, upstream, relayed, health, metrics, state, plan)
            if not isinstance(checked, bytes):
                return checked
            first = checked
    except BaseException as exc:
        if resp is not None:
            resp.close()
        if isinstance(exc, (TimeoutError, UpstreamError)):
            if isinstance(exc, TimeoutError) and _past_deadline(state, _DEADLINE_SLACK):
                # Cut by the routing deadline, not by the provider's timeouts: no verdict.
                record(health, metrics, upstream.name, None)
                return _deadline_failure(state, None)
            return no_answer(exc, upstream, health, metrics)
        if isinstance(exc, CredentialsUnavailable):
            return _no_credential(exc, upstream, health, metrics)
        record(health, metrics, upstream.name, None)  # (say, the client left): no verdict
        raise
    # Committed: from here on, this upstream's answer is the client's answer.
    out = _response_head(app, state, upstream, call, resp, is_sse, sent_at, health, metrics)
    handed_off = False
    try:
        if isinstance(out, web.Response):
            # With a content-policy chain still to take, a refusal in a whole answer fails
            # over (it is read before anything is sent; an answer relayed as it comes,
            # larger or streamed, is not looked at).
            refusal = None
            if not final and 200 in peek:
                refusal = upstream.protocol
                if upstream.cloud is not None:
                    refusal = upstream.speaks(state.model_sent or "")
            answer = await relay_whole(request, state, upstream, resp, relayed, out, first, refusal)
            if relayed.refused:
                return Failure(Outcome.CONTENT_POLICY, response=answer, detail="refusal (200)")
            return answer
        stamp(out, state)
        await out.prepare(request)
        handed_off = await relay(Leg(request, state, upstream, resp, out, relayed, is_sse), first)
    finally:
        _settle(app, state, upstream.name, call, resp, is_sse, handed_off)
    return out


async def _traced_attempt(
    request: web.Request,
    state: RequestState,
    upstream: Upstream,
    call: Call,
    out: Outgoing,
    final: bool,
    number: int,
    plan: Plan,
    peek: frozenset[int],
) -> web.StreamResponse | Failure:
    """`_attempt` with tracing on: its span's `traceparent` for the upstream and, when the
    trace is sampled, its span's record (when, how it ended, the first token)."""
    trace = state.trace
    assert trace is not None
    span_id = new_span_id()
    state.trace_lines = trace.traceparent(span_id)
    spans = state.attempt_spans
    if spans is None:  # not sampled: the upstream still joins the trace
        return await _attempt(request, state, upstream, call, out, final, plan, peek)
    if spans:
        spans[-1].retried = True  # this attempt is the previous one's retry
    host, port = upstream.server
    span = AttemptRecord(
        span_id,
        number,
        upstream.name,
        upstream.provider_type,
        host,
        port,
        state.model_sent,
        time.perf_counter() - state.started,
    )
    spans.append(span)
    try:
        result = await _attempt(request, state, upstream, call, out, final, plan, peek)
    except BaseException as exc:
        span.end = time.perf_counter() - state.started
        span.outcome = "client_closed" if isinstance(exc, asyncio.CancelledError) else "error"
        span.detail = type(exc).__name__
        relayed = state.relayed
        if relayed is not None and relayed.status:
            span.upstream_status = relayed.status
        raise
    span.end = time.perf_counter() - state.started
    if isinstance(result, Failure):
        span.outcome = str(result.outcome)
        span.detail = result.detail
        if result.response is not None:
            span.upstream_status = result.response.status
        return result
    relayed = state.relayed
    if relayed is not None:
        status = relayed.status
        span.upstream_status = status or None
        if status >= 500 or status == 429:
            span.outcome = "http_429" if status == 429 else "http_5xx"
        elif not relayed.complete:
            span.outcome = "incomplete"
    if state.ttft_ms is not None:
        span.first_token = state.ttft_ms / 1000
    return result


def _send(
    request: web.Request,
    state: RequestState,
    upstream: Upstream,
    call: Call,
    out: Outgoing,
    credential: bytes,
) -> Awaitable[Response]:
    """The call to the upstream (awaited by `_attempt`: no coroutine of its own)."""
    if out.target is not None:
        target = out.target.target
    else:
        translation = out.translation
        endpoint = call.endpoint if translation is None else translation.endpoint
        target = upstream.target(call.method, endpoint, state.model_sent, call.query)
    headers = request_headers(request.raw_headers, upstream, state.trace_lines)
    first_byte = upstream.ttft_secs  # None: the total timeout is the only bound
    if state.deadline is not None:  # routing's deadline_secs: the answer must start by then
        left = state.deadline - time.perf_counter()
        left = left if left > 0.001 else 0.001
        first_byte = left if first_byte is None else min(first_byte, left)
    return request.app[CLIENT].request(
        target,
        headers + credential if credential else headers,
        out.body,
        total_secs=upstream.timeout_secs,
        connect_secs=upstream.connect_secs,
        first_byte_secs=first_byte,
        idle_secs=upstream.idle_secs if call.stream else None,
    )


async def _credential(
    upstream: Upstream, auth: CloudAuth, target: CloudTarget, body: bytes | StreamedBody
) -> bytes:
    """A cloud call's credential lines: a cached token's, or a signature. Only before the
    first token is had (or after failed refreshes) is there a wait, bounded by the connect
    timeout."""
    assert isinstance(body, bytes)  # (cloud calls are JSON, never uploads)
    lines = auth.lines(target, body)
    if lines is None:
        await auth.ready(upstream.connect_secs)
        lines = auth.lines(target, body)
        if lines is None:
            raise CredentialsUnavailable("no credential after the wait")
    return lines


def _no_credential(
    exc: CredentialsUnavailable, upstream: Upstream, health: HealthBoard, metrics: Metrics
) -> Failure:
    """An attempt that could not be made: its provider's credential is not to be had."""
    detail = str(exc)[:300]
    record(health, metrics, upstream.name, Outcome.CONNECT_ERROR, kind="credentials", detail=detail)
    error = errors.ProxyError(
        502,
        f"Upstream provider {upstream.name!r} could not be called: {detail}",
        type=errors.API_ERROR,
        code="upstream_credentials",
    )
    return Failure(Outcome.CONNECT_ERROR, error, detail=detail)


async def _before_commit(
    resp: Response,
    upstream: Upstream,
    relayed: Relayed,
    health: HealthBoard,
    metrics: Metrics,
    state: RequestState,
    plan: Plan,
) -> bytes | Failure | web.Response:
    """An answer that may still fail over (not the last attempt): a 5xx or 429 does, its body
    kept in case it is the last word (in the client's protocol); so does a stream whose first
    event is an error (held back until it is in, within the first-byte timeout too), and a
    4xx the policy retries or that says the context window or content policy (`peek`): a 4xx
    that does neither is the answer, read (a `web.Response`). Returns what was read."""
    status = resp.status
    inflater = relayed.inflater
    translation = relayed.translation
    if 400 <= status < 500 and status != 429:
        return await _read_4xx(resp, upstream, relayed, health, metrics, state, plan)
    if status >= 500 or status == 429:
        try:
            body = await resp.read(_PEEK_LIMIT)
        finally:
            resp.close()
        retry_after = read_retry_after(resp) if status == 429 else None
        outcome = Outcome.HTTP_429 if status == 429 else Outcome.HTTP_5XX
        record(health, metrics, upstream.name, outcome, status, retry_after=retry_after, body=body)
        headers = response_headers(resp.raw_headers, upstream)
        if translation is not None:
            body = translation.error(status, body)
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "application/json"))
        answer = web.Response(status=status, body=body, headers=headers)
        return Failure(outcome, response=answer, retry_after=retry_after)
    first = b""  # until the first complete SSE event (usually one read: it is one chunk)
    binary = resp.content_type == EVENT_STREAM  # AWS's frames: the first read is enough
    while not _has_event(first, binary) and len(first) < _PEEK_LIMIT:
        if inflater is None:
            chunk = await resp.read_chunk(resp.first_deadline)
        else:
            chunk = await inflater.read_chunk(resp, resp.first_deadline)
        if not chunk:
            break
        first += chunk
    if not _is_error_event(first):
        return first
    resp.close()
    record(health, metrics, upstream.name, Outcome.SSE_ERROR, status)
    if translation is not None:  # the error event in the client's protocol
        translator = translation.stream()
        first = translator.feed(first) + translator.flush()
    answer = web.Response(status=status, body=first, content_type="text/event-stream")
    return Failure(Outcome.SSE_ERROR, response=answer)


async def _read_4xx(
    resp: Response,
    upstream: Upstream,
    relayed: Relayed,
    health: HealthBoard,
    metrics: Metrics,
    state: RequestState,
    plan: Plan,
) -> Failure | web.Response:
    """A 4xx read before commit: a context-window or content-policy failure (for the
    model's chains), a status the retry policy names, or else the answer itself. None of
    them is the provider's failure."""
    status = resp.status
    try:
        body = await resp.read(_PEEK_LIMIT)
    finally:
        resp.close()
    record(health, metrics, upstream.name, _OK, status)
    reason = None
    if status in CLASSIFIED_STATUSES:
        reason = classify_error(upstream.speaks(state.model_sent or ""), status, body)
    headers = response_headers(resp.raw_headers, upstream)
    if relayed.translation is not None:
        body = relayed.translation.error(status, body)
        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        headers.append(("Content-Type", "application/json"))
    answer = web.Response(status=status, body=body, headers=headers)
    if reason == "context_window":
        return Failure(Outcome.CONTEXT_WINDOW, response=answer, detail="context window")
    if reason == "content_policy":
        return Failure(Outcome.CONTENT_POLICY, response=answer, detail="content policy")
    if str(status) in plan.on:
        return Failure(Outcome.HTTP_4XX, response=answer, detail=f"status {status}")
    relayed.status = status
    answer.headers[PROVIDER_HEADER] = upstream.name
    return answer


def _response_head(
    app: web.Application,
    state: RequestState,
    upstream: Upstream,
    call: Call,
    resp: Response,
    is_sse: bool,
    sent_at: float,
    health: HealthBoard,
    metrics: Metrics,
) -> web.StreamResponse:
    """The committed answer's head: a `web.Response` when the answer goes whole (see
    `relay_whole`), else a `web.StreamResponse`."""
    relayed = state.relayed
    assert relayed is not None
    name = upstream.name
    headers_at = time.perf_counter()
    state.upstream_secs = headers_at - sent_at
    metrics.provider_latency(name, headers_at - sent_at)
    whole = _commit(app, name, call, resp, relayed, is_sse, health, metrics)
    out = (web.Response if whole else web.StreamResponse)(
        status=resp.status, reason=resp.reason or None
    )
    headers = response_headers(resp.raw_headers, upstream)
    # The proxy's own time so far: everything but the wait for the upstream's answer. (The
    # proxy's headers join the upstream's in one extend: an upstream's own are dropped.)
    overhead = (time.perf_counter() - state.started) - (headers_at - sent_at)
    metrics.overhead(overhead)
    headers.append((OVERHEAD_HEADER, f"{overhead * 1000:.3f}"))
    headers.append((PROVIDER_HEADER, name))
    headers.append((MODEL_HEADER, call.name))
    out.headers.extend(headers)
    if relayed.inflater is not None:
        out.headers.popall("Content-Encoding", None)  # relayed inflated (llm_proxy.proxy.decoding)
    if is_sse:
        out.headers["Cache-Control"] = "no-cache"
        out.headers["X-Accel-Buffering"] = "no"
    elif resp.content_length is not None and relayed.inflater is None and not whole:
        out.content_length = resp.content_length
    return out


def _commit(
    app: web.Application,
    name: str,
    call: Call,
    resp: Response,
    relayed: Relayed,
    is_sse: bool,
    health: HealthBoard,
    metrics: Metrics,
) -> bool:
    """The attempt that commits: recorded (a 5xx's verdict waits for its body: `_settle`),
    and what the relay keeps and strips of it; returns whether the answer goes whole."""
    status = relayed.status = resp.status
    if status == 429:
        retry_after = read_retry_after(resp)
        record(health, metrics, name, Outcome.HTTP_429, status, retry_after=retry_after)
    elif status < 500:
        # 2xx, and 4xx: the provider answered; a 4xx is the request's fault, never its health.
        record(health, metrics, name, _OK, status)
    if is_sse:
        # With content capture, the stream's first events (SSE framing is most of the bytes);
        # a stream that creates an object, its first event (which names it); an Anthropic
        # stream, its first event (`message_start` has the input's usage).
        relayed.keep = app[CAPTURE] * _SSE_BYTES_PER_TEXT_BYTE or STREAM_KEEP_BYTES
        if call.creates is not None or call.anthropic:
            relayed.keep = max(relayed.keep, _FIRST_EVENT_BYTES)
    if not is_sse or status >= 300:
        relayed.stripper = None  # only successful streams carry the injected usage
    translation = relayed.translation
    relayed.anthropic = call.anthropic and translation is None
    if translation is not None:
        if is_sse and status < 300:
            relayed.stripper = TranslatedStream(translation.stream())
        else:
            return True  # translated whole: an answer, or an error in the client's shape
    whole = answers_whole(resp, relayed, is_sse) or (
        call.inspect and not is_sse and relayed.inflater is None
    )
    if call.inspect and not whole and 200 <= status < 300:
        # Fail closed: an answer the handler must see first (a list filtered per key) is
        # never relayed unread (compressed despite `Accept-Encoding: identity`, or a stream).
        resp.close()
        raise errors.upstream_bad_answer(name, disconnected=False)
    return whole


def _settle(
    app: web.Application,
    state: RequestState,
    name: str,
    call: Call,
    resp: Response,
    is_sse: bool,
    handed_off: bool,
) -> None:
    """After the relay, whatever happened to it: the connection, the created object's owner,
    the error log and a 5xx's verdict (the body may blame the request)."""
    relayed = state.relayed
    assert relayed is not None
    status = relayed.status
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
    if status >= 500:
        kept = relayed.kept if relayed.complete else None
        record(app[HEALTH], app[METRICS], name, Outcome.HTTP_5XX, status, body=kept)
    elif not relayed.complete:
        record(app[HEALTH], app[METRICS], name, None)


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
    outcome = Outcome.HTTP_429 if status == 429 else Outcome.HTTP_5XX
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


def _has_event(first: bytes, binary: bool) -> bool:
    if binary:
        return bool(first)
    return b"\n\n" in first or b"\r\n\r\n" in first


def _is_error_event(first: bytes) -> bool:
    head = first.lstrip()[:64]
    if head.startswith((b"event: error", b"event:error")):
        return True
    if head.startswith(b"data:"):
        return head[5:].lstrip().startswith(b'{"error"')
    return False
