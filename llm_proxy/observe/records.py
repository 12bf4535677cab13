"""One record per finished request, and one per failed upstream attempt: what the request log
(PostgreSQL, JSON lines) and Langfuse receive.

A record is built once, after the response is sent, and handed to every configured sink with
`submit()`, which never blocks and never raises: each sink queues it (bounded, dropping and
counting when full) and writes in batches from its own background task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

# What the response cache says of a request it looked at (`RequestRecord.cache`).
CACHE_RESULTS: Final = ("hit", "miss", "bypass")


@dataclass(slots=True)
class ErrorRecord:
    """A failed upstream attempt (the request may still have succeeded on another provider)."""

    ts: float  # epoch seconds, when the attempt ended
    request_id: str
    provider: str
    outcome: str  # connect_error, timeout, http_5xx, http_429, sse_error, protocol_error, ...
    upstream_status: int | None  # None when the provider never answered
    # With content capture on, the first 2 KB of its answer (UTF-8, undecodable bytes
    # replaced); without, only its error's type and code (`error_summary`).
    body: str | None
    detail: str | None = None  # the cause, as the proxy's log has it


_SUMMARY_FIELD_CHARS: Final = 100


def error_summary(body: bytes) -> str | None:
    """An upstream error answer without its message (which may repeat the prompt, or the
    request URL): `{"type": ..., "code": ...}` of an OpenAI-shaped error (`{"error": {...}}`,
    also as the first `data:` event of a stream), None for anything else."""
    text = body.lstrip()
    if text.startswith((b"data:", b"event:")):
        text = next((line[5:] for line in text.splitlines() if line.startswith(b"data:")), b"")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    kept = {
        name: value[:_SUMMARY_FIELD_CHARS] if isinstance(value, str) else value
        for name in ("type", "code")
        if isinstance(value := error.get(name), str | int) and not isinstance(value, bool)
    }
    return orjson.dumps(kept).decode() if kept else None


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt of a traced (sampled) request: its client span. Times are seconds
    from the request's arrival (`RequestRecord.ts`)."""

    span_id: str  # 16 lower-case hex digits: the `traceparent` the upstream was sent
    number: int  # 1, 2, ...
    provider: str  # the config's name
    provider_type: str  # openai, azure, anthropic, ... (the config's provider_type)
    server_address: str  # the upstream's host
    server_port: int
    model_sent: str | None
    start: float
    end: float = 0.0
    # ok, or why it failed: connect_error, timeout, http_5xx, http_429, sse_error, ...
    outcome: str = "ok"
    upstream_status: int | None = None
    retried: bool = False  # another attempt followed (this outcome is the retry reason)
    first_token: float | None = None  # the first streamed byte relayed (answering attempt)
    detail: str | None = None  # the failure's cause, as the proxy's log has it


@dataclass(slots=True)
class RequestRecord:
    ts: float  # epoch seconds, when the request arrived
    request_id: str
    key_name: str  # "anonymous" when auth is off
    client: str  # the bounded label from the User-Agent (observe/clients.py)
    method: str
    path: str
    model: str | None  # as requested
    model_sent: str | None  # as sent to the provider that answered (after mapping)
    provider: str  # the provider that answered, "none" when none was tried
    attempts: list[str]  # providers tried, in order
    status: int
    duration_ms: float
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    streamed: bool
    error_code: str | None  # the proxy's error code when it answered an error itself
    # With content capture on (request_log.capture_content / LANGFUSE_CAPTURE_CONTENT):
    # the request's text and the answer's text, truncated to the configured size.
    prompt: str | None = None
    completion: str | None = None
    errors: list[ErrorRecord] = field(default_factory=list)
    # W3C trace context: the trace this request belongs to (the client's, else a new one),
    # whether or not it is sampled; in the request log and the access line.
    trace_id: str | None = None  # 32 lower-case hex digits
    # Routing (`routing:`): the model asked for when a fallback model answered (`model_sent`
    # is then the fallback's), why it fell back (any, context_window, content_policy), and the
    # routing rule that matched.
    fallback_from: str | None = None
    fallback_reason: str | None = None
    rule: str | None = None
    # The response cache's word on this request: hit, miss or bypass (None: the cache is off,
    # or the endpoint is not one it keeps). A hit's `provider` is `cache`.
    cache: str | None = None  # one of CACHE_RESULTS
    team: str | None = None  # the key's team (`teams:`), None for a key in none
    # Sampled requests only (what the spans are built from; not in `as_dict`):
    span_id: str | None = None  # the server span's (16 hex digits)
    parent_span_id: str | None = None  # the client's span, from its traceparent
    trace_state: str | None = None  # the client's tracestate, as received
    sampled: bool = False
    route: str | None = None  # the route's pattern (`/v1/chat/completions`)
    attempt_spans: list[AttemptRecord] = field(default_factory=list)
    # The answer's last bytes (bounded): finish reasons, the model that answered, cached tokens.
    response_tail: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the JSON-lines file, the admin API)."""
        out = {name: getattr(self, name) for name in _FIELDS}
        out["errors"] = [{name: getattr(e, name) for name in _ERROR_FIELDS} for e in self.errors]
        return out


# Span material stays out of the JSON: the request log keeps the trace id only.
_SPAN_ONLY: Final = frozenset(
    {
        "span_id",
        "parent_span_id",
        "trace_state",
        "sampled",
        "route",
        "attempt_spans",
        "response_tail",
    }
)
_FIELDS = tuple(f for f in RequestRecord.__slots__ if f != "errors" and f not in _SPAN_ONLY)
_ERROR_FIELDS = tuple(ErrorRecord.__slots__)


class Sink(Protocol):
    """A destination for records. `submit` is called on the request path: it must only queue.
    The counters are exported as metrics (llm_proxy_request_log_*{sink=name})."""

    name: str
    written: int  # records delivered
    dropped: int  # records lost: queue full, or refused by the destination

    @property
    def queued(self) -> int: ...

    def submit(self, record: RequestRecord) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush what is queued (bounded in time) and stop."""
        ...


class Sinks:
    """Every configured sink; `submit` hands a record to each."""

    __slots__ = ("sinks",)

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = sinks or []

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def submit(self, record: RequestRecord) -> None:
        for sink in self.sinks:
            sink.submit(record)

    def reopen(self) -> None:
        """SIGHUP: sinks writing files open them anew (logrotate moved them)."""
        for sink in self.sinks:
            reopen = getattr(sink, "reopen", None)
            if reopen is not None:
                reopen()

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close(self) -> None:
        """Every sink flushes at once (each bounded by its own close timeout): the shutdown
        waits for the slowest, not for their sum."""
        await asyncio.gather(*(sink.close() for sink in self.sinks))
