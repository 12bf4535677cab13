"""What the proxy learns about one request as it goes, in one object (one request-key lookup
instead of many; middlewares and handlers fill it in, observe reads it at the end), and what
every layer says of a request the same way: the status of a client that went away, the key name
of a keyless request, the headers every response carries (`stamp`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from multidict import istr

from llm_proxy.observe.records import AttemptRecord, ErrorRecord
from llm_proxy.observe.tracing.context import Trace
from llm_proxy.proxy.keyring import KeyEntry
from llm_proxy.proxy.snapshot import Snapshot
from llm_proxy.proxy.usage import Relayed
from llm_proxy.proxy.verdicts import Reservation

_CACHE_HEADER: Final = istr("x-llm-proxy-cache")  # hit, miss or bypass (llm_proxy.proxy.cache)
CLIENT_CLOSED: Final = 499  # nginx's "client closed request"
ANONYMOUS: Final = "anonymous"  # the key name of requests made without one (auth off)


@dataclass(slots=True)
class RequestState:
    started: float  # perf_counter() when the request arrived
    request_id: str
    snapshot: Snapshot  # the config this request is served from, start to end
    api_key: KeyEntry | None = None  # set by auth when keys are configured
    rate_headers: list[tuple[str, str]] | None = (
        None  # x-ratelimit-* for every response of a limited key
    )
    model: str | None = None  # as requested, for the access log
    model_label: str = "other"  # bounded, for metrics
    provider: str = "none"
    streamed: bool = False
    final_status: int | None = None  # when it differs from the status sent (499, 502 mid-body)
    relayed: Relayed | None = None  # the current (finally: the answering) attempt's bytes
    body_bytes: int = 0  # counted against max_inflight_body_mb until the request ends
    # For the access line: the providers tried, in order; the time to the first streamed
    # byte; the tokens, when the upstream reported them (a count made later is not waited for).
    attempts: list[str] | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None  # with prices configured
    # For the request log (llm_proxy.observe.records):
    model_sent: str | None = None  # the model name sent to the answering provider
    # Routing (`routing:`): the model asked for when a fallback model answered, and why it
    # fell back (any, context_window, content_policy); the routing rule that matched.
    fallback_from: str | None = None
    fallback_reason: str | None = None
    rule: str | None = None
    only: frozenset[str] | None = None  # the matching rule's providers: no others, ever
    # The request's own fallback chain (`x-llm-proxy-fallbacks`, `llm_proxy.fallbacks`):
    # () to opt out, None to use the model's.
    fallbacks: tuple[str, ...] | None = None
    deadline: float | None = None  # perf_counter() after which no attempt starts (deadline_secs)
    upstream_secs: float | None = None  # the answering attempt's time to its head
    error_code: str | None = None  # when the proxy answered an error itself
    errors: list[ErrorRecord] | None = None  # failed upstream attempts
    counting: asyncio.Task[None] | None = None  # tokens still being counted (tiktoken)
    # What the request reserved at admission against its key's tokens per minute and budget,
    # until its usage is known (llm_proxy.proxy.accounting).
    reservation: Reservation | None = None
    team_reservation: Reservation | None = None  # what it reserved against its key's team's
    prompt_text: str | None = None  # with content capture on
    completion_text: str | None = None
    # Tracing: the request's trace id for the logs (with tracing off, the client's, if it
    # sent a valid traceparent); with tracing on, its trace, and each attempt's span's
    # `traceparent` line for the upstream; when sampled, the attempts' spans.
    trace_id: str | None = None
    trace: Trace | None = None
    trace_lines: bytes | None = None
    attempt_spans: list[AttemptRecord] | None = None
    # The response cache's word on this request: hit, miss or bypass (None: the cache is off,
    # or the endpoint is not one it keeps).
    cache: str | None = None
    # A miss the cache will keep: the bytes the client got (`relay`), up to `record_limit`
    # (None: more than that, or nothing to record).
    recording: bytearray | None = None
    record_limit: int = 0


# The Messages API's paths (with and without `/v1`): every answer on them, errors included, is
# in Anthropic's shape.
MESSAGES_PATHS: Final = ("/v1/messages", "/messages")


def speaks_anthropic(path: str) -> bool:
    """Is `path` one of the Anthropic Messages API's (`/v1/messages`, `.../count_tokens`,
    and anything under them)?"""
    return path.startswith(MESSAGES_PATHS) and (
        path in MESSAGES_PATHS or path.startswith(("/v1/messages/", "/messages/"))
    )


def speaks_gemini(path: str) -> bool:
    """Is `path` one of Gemini's API (`/v1beta/...`, or a `/v1/models/{model}:{method}`)?"""
    if path.startswith("/v1beta/"):
        return True
    return path.startswith("/v1/models/") and ":" in path


def stamp(response: web.StreamResponse, state: RequestState) -> None:
    """The headers every response carries, streamed or not, set before it is sent: the request
    id and, for a rate-limited key, OpenAI's x-ratelimit-* headers. (Called by observe for
    what a handler returns unsent, and by forward before it starts a streamed answer: cheaper
    than an on_response_prepare signal, which aiohttp dispatches per response.)"""
    headers = response.headers
    headers["x-request-id"] = state.request_id
    if state.rate_headers is not None:
        headers.extend(state.rate_headers)
    if state.cache is not None:  # (never an upstream's: `upstream.DROP_RESPONSE`)
        headers.add(_CACHE_HEADER, state.cache)
