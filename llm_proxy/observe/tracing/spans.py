"""What a traced request becomes: one SERVER span for the request and one CLIENT span per
upstream attempt (its children), built from the finished `RequestRecord`, off the request
path, by pure functions. `build_spans` returns [] for a request that is not sampled.

Attribute names follow the OpenTelemetry semantic conventions, as read for this module:

* HTTP spans (stable): docs/http/http-spans.md of open-telemetry/semantic-conventions (main,
  2026-08): the server span's name `{method} {http.route}`, `http.request.method` (`_OTHER`
  and `http.request.method_original` for an unknown method), `http.route`, `url.path`,
  `url.scheme`, `http.response.status_code`, `error.type`; and its Status section: a server
  span is an error for 5xx only, a client span for 4xx and 5xx too, and a request cancelled
  by its caller is not an error (no `error.type`).
* GenAI spans and events (development): docs/gen-ai/gen-ai-spans.md, gen-ai-events.md and the
  input/output messages JSON schemas, at semantic-conventions 7b0c0fe (2026-04-27, the last
  version before they moved to open-telemetry/semantic-conventions-genai): the inference
  span's name `{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT; the operation and
  provider names' well-known values; `gen_ai.request.model`, `gen_ai.request.stream`,
  `gen_ai.response.model`, `gen_ai.response.id`, `gen_ai.response.finish_reasons`,
  `gen_ai.response.time_to_first_chunk` (seconds), `gen_ai.usage.input_tokens` (every input
  token, cached ones included), `gen_ai.usage.output_tokens`,
  `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`,
  `gen_ai.usage.reasoning.output_tokens`; content (opt-in) as `gen_ai.input.messages` and
  `gen_ai.output.messages` on the `gen_ai.client.inference.operation.details` event. Also
  docs/gen-ai/openai.md for `openai.api.type`.

What is an error here (span status ERROR, with `error.type`):

* the server span: a 5xx answer. `error.type` is the proxy's error code when it answered
  itself, else the status (`"502"`). A 4xx is the client's affair (status unset); a 499 (the
  client hung up) is a cancellation, not an error.
* an attempt's span: any failed attempt (connect_error, timeout, http_5xx, http_429,
  sse_error, incomplete, ...: `error.type` is that outcome; for `error`, an exception, its
  class name), and an answered 4xx (`error.type` is the status, `"400"`). A cancellation by
  the client is no error (status unset, no `error.type`): `client_closed` (it hung up while
  this attempt ran), or `incomplete` in a request that ended 499. The failure's cause (the
  proxy log's `detail`) is the status message.

The answering attempt (its span gets the answer's facts, usage, cost, the stream's end and the
content) is the last one, unless it was retried or the provider never answered: a client that
got part of an answer (cut mid-body, or it hung up) got it from that attempt.

The proxy's own attributes are under `llm_proxy.*`. The first token and the stream's end are
span events `llm_proxy.first_token` and `llm_proxy.stream_end` (the GenAI conventions define
no event for either; TTFT is also the attribute `gen_ai.response.time_to_first_chunk`). The
Langfuse flavour (`langfuse=True`) adds what Langfuse's OTLP endpoint maps: `langfuse_attrs.py`.
"""

from __future__ import annotations

import functools
from typing import Final

from llm_proxy.observe.records import AttemptRecord, RequestRecord
from llm_proxy.observe.tracing import langfuse_attrs
from llm_proxy.observe.tracing.answer import Answer, read_answer
from llm_proxy.observe.tracing.content import content_event
from llm_proxy.observe.tracing.model import (
    FLAG_HAS_IS_REMOTE,
    FLAG_IS_REMOTE,
    FLAG_SAMPLED,
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    Attributes,
    Span,
    SpanEvent,
)
from llm_proxy.observe.tracing.otlp import encode_attributes

FIRST_TOKEN_EVENT: Final = "llm_proxy.first_token"  # noqa: S105 (an event name)
STREAM_END_EVENT: Final = "llm_proxy.stream_end"

# http.request.method's known values (RFC 9110 and PATCH); anything else is `_OTHER`.
_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# The proxy's generation endpoints (POST, under /v1, without it, or under an Azure
# deployment) and their gen_ai.operation.name; other routes have none.
_OPERATIONS: Final = {
    "/chat/completions": "chat",
    "/completions": "text_completion",
    "/embeddings": "embeddings",
    "/responses": "chat",
    "/messages": "chat",
}
_ROUTE_PREFIXES: Final = ("/v1", "/openai/deployments/{deployment}")
# openai.api.type (docs/gen-ai/openai.md), with gen_ai.provider.name `openai` only.
_OPENAI_API: Final = {"/chat/completions": "chat_completions", "/responses": "responses"}
# gen_ai.provider.name's well-known values, from the config's provider_type. An OpenAI-
# compatible server configured as `openai` is reported as OpenAI: the conventions ask for the
# instrumentation's best knowledge, and `server.address` tells the actual host.
PROVIDER_NAMES: Final = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
}
_CLIENT_CLOSED: Final = 499
_STATIC_CACHE: Final = 4096  # static attribute sets (and their encodings) kept
_REMOTE_PARENT: Final = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
_LOCAL_PARENT: Final = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE


def build_spans(
    record: RequestRecord, *, capture_content: bool, langfuse: bool = False
) -> list[Span]:
    """The server span first, then one client span per attempt, in order. Prompt and
    completion text go only with `capture_content` on; with it off, no span holds any."""
    built = _build(record)
    if built is None:
        return []
    spans, keys, answer, operation, generation = built
    for span, key in zip(spans, keys, strict=True):
        span.attributes = _static(key) | span.attributes
    server, clients = spans[0], spans[1:]
    if capture_content and not langfuse and operation is not None:
        target = generation or server
        target.events.append(content_event(record, answer, operation, target.end_ns))
    if langfuse:
        langfuse_attrs.annotate(
            record, server, clients, generation, capture_content=capture_content
        )
    return spans


# A static key: ("server" | "client", the values the static attributes are made of).
_Key = tuple[object, ...]
_Built = tuple[list[Span], list[_Key], Answer, str | None, Span | None]


def _build(record: RequestRecord) -> _Built | None:
    """The spans with only their per-request attributes (`attributes`), the key of each one's
    static attributes (`_static`), the answer's facts, the operation and the generation (the
    answering attempt's span); None for a request that is not sampled."""
    if not (record.sampled and record.trace_id and record.span_id):
        return None
    answer = read_answer(record.response_tail, record.streamed)
    endpoint = _endpoint(record)
    operation = _OPERATIONS.get(endpoint) if endpoint else None
    api = _OPENAI_API.get(endpoint) if endpoint else None
    answering = _answering(record)
    server, server_key = _server_span(record, answer, operation, answering, api)
    spans = [server]
    keys = [server_key]
    method = server_key[1]
    for attempt in record.attempt_spans:
        span, key = _client_span(
            record,
            server,
            attempt,
            answer if attempt is answering else None,
            operation,
            api,
            method,
        )
        spans.append(span)
        keys.append(key)
    generation = spans[-1] if answering is not None else None  # the answering one is last
    return spans, keys, answer, operation, generation


@functools.lru_cache(maxsize=_STATIC_CACHE)
def _static(key: _Key) -> Attributes:
    """A span's static attributes from their key (cached: never change the dict returned)."""
    if key[0] == "server":
        _, method, original, path, route, operation, provider, api, model, stream, *proxy = key
        attributes: Attributes = {"http.request.method": str(method)}
        if original is not None:
            attributes["http.request.method_original"] = str(original)
        attributes["url.path"] = str(path)
        # The proxy serves plain HTTP (TLS, when any, ends in front of it).
        attributes["url.scheme"] = "http"
        if route:
            attributes["http.route"] = str(route)
        _genai(attributes, operation, provider, api, model, stream)
        key_name, client, provider_name, team = proxy
        attributes["llm_proxy.key.name"] = str(key_name)
        if team is not None:
            attributes["llm_proxy.team.name"] = str(team)
        attributes["llm_proxy.client.name"] = str(client)
        attributes["llm_proxy.provider.name"] = str(provider_name)
        return attributes
    _, method, address, port, operation, provider, api, model, stream, provider_name = key
    attributes = {
        "http.request.method": str(method),
        "server.address": str(address),
        "server.port": int(port),  # type: ignore[call-overload]
    }
    _genai(attributes, operation, provider, api, model, stream)
    attributes["llm_proxy.provider.name"] = str(provider_name)
    return attributes


@functools.lru_cache(maxsize=_STATIC_CACHE)
def _static_block(key: _Key) -> bytes:
    """`_static(key)` encoded as a span's attribute fields (cached)."""
    return encode_attributes(_static(key))


def _genai(
    attributes: Attributes,
    operation: object,
    provider: object,
    api: object,
    model: object,
    stream: object,
) -> None:
    if operation is None:
        return
    attributes["gen_ai.operation.name"] = str(operation)
    if provider is not None:
        attributes["gen_ai.provider.name"] = str(provider)
        if provider == "openai" and api is not None:
            attributes["openai.api.type"] = str(api)
    if model:
        attributes["gen_ai.request.model"] = str(model)
    if stream:
        attributes["gen_ai.request.stream"] = True


def _answering(record: RequestRecord) -> AttemptRecord | None:
    """The attempt whose answer the client got, whole or in part: the last, unless it was
    retried or the provider never answered (no status)."""
    if not record.attempt_spans:
        return None
    last = record.attempt_spans[-1]
    return last if last.upstream_status is not None and not last.retried else None


def _endpoint(record: RequestRecord) -> str | None:
    """The generation endpoint the request went to (`/chat/completions`), or None."""
    if record.method != "POST":
        return None
    route = record.route or record.path
    for prefix in _ROUTE_PREFIXES:
        if route.startswith(prefix + "/"):
            route = route[len(prefix) :]
            break
    return route if route in _OPERATIONS else None


def _at(record: RequestRecord, offset: float) -> int:
    """The time `offset` seconds after the request's arrival, in ns since the epoch. Offsets
    are added in ns (not to the epoch float, which has ~0.2 µs steps): equal offsets give
    equal times."""
    return round(record.ts * 1e9) + round(offset * 1e9)


def server_key(
    record: RequestRecord,
    method: str,
    operation: str | None,
    answering: AttemptRecord | None,
    api: str | None,
) -> _Key:
    """What the server span's static attributes are made of (`_static`'s key)."""
    provider = None
    if answering is not None and operation is not None:
        provider = PROVIDER_NAMES.get(answering.provider_type, answering.provider_type)
    return (
        "server",
        method,
        record.method if method == "_OTHER" else None,
        record.path,
        record.route,
        operation,
        provider,
        api,
        record.model if operation is not None else None,
        record.streamed and operation is not None,
        record.key_name,
        record.client,
        record.provider,
        record.team,
    )


def client_key(
    record: RequestRecord,
    attempt: AttemptRecord,
    method: object,
    operation: str | None,
    api: str | None,
    model: str | None,
) -> _Key:
    """What an attempt span's static attributes are made of (`_static`'s key)."""
    kind = attempt.provider_type
    return (
        "client",
        method,
        attempt.server_address,
        attempt.server_port,
        operation,
        PROVIDER_NAMES.get(kind, kind) if operation is not None else None,
        api,
        model if operation is not None else None,
        record.streamed and operation is not None,
        attempt.provider,
    )


def _server_span(
    record: RequestRecord,
    answer: Answer,
    operation: str | None,
    answering: AttemptRecord | None,
    api: str | None,
) -> tuple[Span, _Key]:
    """The request's span, with its per-request attributes, and its static key."""
    assert record.trace_id is not None
    assert record.span_id is not None
    method = record.method if record.method in _METHODS else "_OTHER"
    shown = "HTTP" if method == "_OTHER" else method
    key = server_key(record, method, operation, answering, api)
    attributes: Attributes = {"http.response.status_code": record.status}
    if operation is not None:
        _response(attributes, record, answer)
    attributes["llm_proxy.request.id"] = record.request_id
    if record.cost_usd is not None:
        attributes["llm_proxy.cost.usd"] = record.cost_usd
    if record.error_code:
        attributes["llm_proxy.error.code"] = record.error_code
    attributes["llm_proxy.attempt.count"] = len(record.attempt_spans) or len(record.attempts)
    start = _at(record, 0.0)
    end = _at(record, record.duration_ms / 1000)
    span = Span(
        trace_id=bytes.fromhex(record.trace_id),
        span_id=bytes.fromhex(record.span_id),
        parent_span_id=bytes.fromhex(record.parent_span_id) if record.parent_span_id else b"",
        name=f"{shown} {record.route}" if record.route else shown,
        kind=KIND_SERVER,
        start_ns=start,
        end_ns=end,
        attributes=attributes,
        trace_state=record.trace_state or "",
        flags=_REMOTE_PARENT if record.parent_span_id else _LOCAL_PARENT,
    )
    if record.status >= 500:
        span.status_code = STATUS_ERROR
        attributes["error.type"] = record.error_code or str(record.status)
    if record.ttft_ms is not None:
        ttft = record.ttft_ms / 1000
        if record.streamed and operation is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = ttft
        span.events.append(SpanEvent(FIRST_TOKEN_EVENT, _at(record, ttft)))
    if record.streamed:
        span.events.append(_stream_end(record, answer, end))
    return span, key


def _client_span(
    record: RequestRecord,
    server: Span,
    attempt: AttemptRecord,
    answer: Answer | None,
    operation: str | None,
    api: str | None,
    method: object,
) -> tuple[Span, _Key]:
    """An attempt's span (`answer` is given for the attempt that answered), with its
    per-request attributes, and its static key."""
    model = attempt.model_sent or record.model
    key = client_key(record, attempt, method, operation, api, model)
    attributes: Attributes = {}
    if attempt.upstream_status is not None:
        attributes["http.response.status_code"] = attempt.upstream_status
    attributes["llm_proxy.request.id"] = record.request_id
    attributes["llm_proxy.attempt.number"] = attempt.number
    attributes["llm_proxy.attempt.outcome"] = attempt.outcome
    if attempt.retried:
        attributes["llm_proxy.attempt.retry_reason"] = attempt.outcome
    if answer is not None and operation is not None:
        _response(attributes, record, answer)
        if record.cost_usd is not None:
            attributes["llm_proxy.cost.usd"] = record.cost_usd
    start = _at(record, attempt.start)
    # Not ended (0.0): it lasted as long as the request.
    ended = attempt.end if attempt.end > attempt.start else record.duration_ms / 1000
    end = max(start, _at(record, ended))
    if operation is not None:
        name = f"{operation} {model}" if model else operation
    else:
        name = str(method).replace("_OTHER", "HTTP")
    span = Span(
        trace_id=server.trace_id,
        span_id=bytes.fromhex(attempt.span_id),
        parent_span_id=server.span_id,
        name=name,
        kind=KIND_CLIENT,
        start_ns=start,
        end_ns=end,
        attributes=attributes,
        trace_state=server.trace_state,
        flags=_LOCAL_PARENT,  # its parent is ours: not remote
    )
    error = _attempt_error(attempt, record.status)
    if error is not None:
        span.status_code = STATUS_ERROR
        span.status_message = attempt.detail or ""
        attributes["error.type"] = error
    if attempt.first_token is not None:
        ttft = attempt.first_token - attempt.start
        if record.streamed and operation is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = ttft
        span.events.append(SpanEvent(FIRST_TOKEN_EVENT, _at(record, attempt.first_token)))
    if answer is not None and record.streamed:
        span.events.append(_stream_end(record, answer, end))
    return span, key


def _attempt_error(attempt: AttemptRecord, status: int) -> str | None:
    """The attempt's `error.type`, None when it is no error (see the module docstring)."""
    outcome = attempt.outcome
    if outcome == "client_closed" or (outcome == "incomplete" and status == _CLIENT_CLOSED):
        return None  # the client cancelled
    if outcome == "error":
        return attempt.detail or "_OTHER"
    if outcome != "ok":
        return outcome
    upstream = attempt.upstream_status
    return str(upstream) if upstream is not None and upstream >= 400 else None


def _response(attributes: Attributes, record: RequestRecord, answer: Answer) -> None:
    """What the answer said: model, id, finish reasons, usage."""
    if answer.response_model:
        attributes["gen_ai.response.model"] = answer.response_model
    if answer.response_id:
        attributes["gen_ai.response.id"] = answer.response_id
    if answer.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(answer.finish_reasons)
    if record.prompt_tokens is not None:  # cached ones included, as the conventions count
        attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
    if record.completion_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
    if answer.cache_read_tokens is not None:
        attributes["gen_ai.usage.cache_read.input_tokens"] = answer.cache_read_tokens
    if answer.cache_write_tokens is not None:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = answer.cache_write_tokens
    if answer.reasoning_tokens is not None:
        attributes["gen_ai.usage.reasoning.output_tokens"] = answer.reasoning_tokens


def _stream_end(record: RequestRecord, answer: Answer, end_ns: int) -> SpanEvent:
    """The stream's end; `llm_proxy.stream.complete`: its closing event was relayed (false:
    it was cut, by the upstream, the client (499) or the proxy)."""
    complete = answer.stream_end and record.status != _CLIENT_CLOSED
    attributes: Attributes = {"llm_proxy.stream.complete": complete}
    if answer.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(answer.finish_reasons)
    return SpanEvent(STREAM_END_EVENT, end_ns, attributes)
