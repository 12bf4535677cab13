"""A request's spans as OTLP/protobuf, written straight from its record: the exporter's path
when tracing exports protobuf without content capture (the common case, and every request at
100 % sampling).

`encode_spans(record)` returns exactly the bytes of
`otlp.protobuf_spans(spans.build_spans(record, capture_content=False))` (the tests compare the
two on every kind of record, generated ones included): `spans.py` says what a span holds and
why, this module only writes it for less CPU. It skips the intermediate Span objects and
attribute dicts, and it encodes each part once:

* the attributes that repeat from request to request (method, route, key, client, provider,
  model: the static ones, first on every span) once per combination (`spans._static_block`);
* each attribute whose value repeats (a status, a token count, a model, an outcome) once per
  value (a bounded memo per attribute, emptied when full);
* the answer's facts and usage once per request, for both spans that carry them.
"""

from __future__ import annotations

import struct
from typing import Final

from llm_proxy.observe.records import AttemptRecord, RequestRecord
from llm_proxy.observe.tracing.answer import Answer, read_answer
from llm_proxy.observe.tracing.model import KIND_CLIENT, KIND_SERVER, STATUS_ERROR
from llm_proxy.observe.tracing.otlp import varint
from llm_proxy.observe.tracing.spans import (
    _CLIENT_CLOSED,
    _LOCAL_PARENT,
    _METHODS,
    _OPENAI_API,
    _OPERATIONS,
    _REMOTE_PARENT,
    FIRST_TOKEN_EVENT,
    STREAM_END_EVENT,
    _answering,
    _attempt_error,
    _endpoint,
    _static_block,
    client_key,
    server_key,
)

_MEMO_MAX: Final = 4096  # values remembered per attribute
_pack_times = struct.Struct("<BQBQ").pack  # start (field 7) and end (field 8), tags included
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack
_pack_flags = struct.Struct("<I").pack


class _Attr:
    """One attribute key: its KeyValue fields by value, remembered (bounded)."""

    __slots__ = ("head", "memo", "tag")

    def __init__(self, key: str, tag: bytes = b"\x4a") -> None:
        self.head = b"\x0a" + varint(len(key.encode())) + key.encode()
        self.tag = tag  # Span.attributes (9), or Span.Event.attributes (3)
        self.memo: dict[object, bytes] = {}

    def _field(self, any_value: bytes) -> bytes:
        body = self.head + b"\x12" + varint(len(any_value)) + any_value
        return self.tag + varint(len(body)) + body

    def boolean(self, value: bool) -> bytes:
        return self._field(b"\x10\x01" if value else b"\x10\x00")

    def text(self, value: str) -> bytes:
        found = self.memo.get(value)
        if found is None:
            raw = value.encode("utf-8", "replace")
            found = self._field(b"\x0a" + varint(len(raw)) + raw)
            self._keep(value, found)
        return found

    def once(self, value: str) -> bytes:
        """A value seen once (an id): encoded, not remembered."""
        raw = value.encode("utf-8", "replace")
        return self._field(b"\x0a" + varint(len(raw)) + raw)

    def integer(self, value: int) -> bytes:
        found = self.memo.get(value)
        if found is None:
            found = self._field(b"\x18" + varint(value))
            self._keep(value, found)
        return found

    def double(self, value: float) -> bytes:
        """A measurement: never the same twice (a time), not remembered."""
        return self._field(b"\x21" + _pack_double(value))

    def price(self, value: float) -> bytes:
        """A float that repeats (a cost: the same tokens of the same model), remembered."""
        found = self.memo.get(value)
        if found is None:
            found = self._field(b"\x21" + _pack_double(value))
            self._keep(value, found)
        return found

    def texts(self, values: tuple[str, ...]) -> bytes:
        found = self.memo.get(values)
        if found is None:
            items = b""
            for value in values:
                raw = value.encode("utf-8", "replace")
                item = b"\x0a" + varint(len(raw)) + raw
                items += b"\x0a" + varint(len(item)) + item  # ArrayValue.values (1)
            found = self._field(b"\x2a" + varint(len(items)) + items)  # AnyValue.array (5)
            self._keep(values, found)
        return found

    def _keep(self, value: object, encoded: bytes) -> None:
        if len(self.memo) >= _MEMO_MAX:
            self.memo.clear()
        self.memo[value] = encoded


_STATUS = _Attr("http.response.status_code")
_RESPONSE_MODEL = _Attr("gen_ai.response.model")
_RESPONSE_ID = _Attr("gen_ai.response.id")
_FINISH = _Attr("gen_ai.response.finish_reasons")
_INPUT = _Attr("gen_ai.usage.input_tokens")
_OUTPUT = _Attr("gen_ai.usage.output_tokens")
_CACHE_READ = _Attr("gen_ai.usage.cache_read.input_tokens")
_CACHE_WRITE = _Attr("gen_ai.usage.cache_creation.input_tokens")
_REASONING = _Attr("gen_ai.usage.reasoning.output_tokens")
_REQUEST_ID = _Attr("llm_proxy.request.id")
_COST = _Attr("llm_proxy.cost.usd")
_ERROR_CODE = _Attr("llm_proxy.error.code")
_ATTEMPTS = _Attr("llm_proxy.attempt.count")
_ERROR_TYPE = _Attr("error.type")
_TTFC = _Attr("gen_ai.response.time_to_first_chunk")
_NUMBER = _Attr("llm_proxy.attempt.number")
_OUTCOME = _Attr("llm_proxy.attempt.outcome")
_RETRY = _Attr("llm_proxy.attempt.retry_reason")
_COMPLETE = _Attr("llm_proxy.stream.complete", b"\x1a")
_FINISH_EVENT = _Attr("gen_ai.response.finish_reasons", b"\x1a")

_FIRST_TOKEN_NAME: Final = b"\x12" + varint(len(FIRST_TOKEN_EVENT)) + FIRST_TOKEN_EVENT.encode()
_STREAM_END_NAME: Final = b"\x12" + varint(len(STREAM_END_EVENT)) + STREAM_END_EVENT.encode()
_SERVER_KIND: Final = b"\x30" + varint(KIND_SERVER)
_CLIENT_KIND: Final = b"\x30" + varint(KIND_CLIENT)
_ERROR_CODE_FIELD: Final = b"\x18" + varint(STATUS_ERROR)  # Status.code (3)
_NAMES: dict[str, bytes] = {}


def encode_spans(record: RequestRecord) -> bytes:
    """The record's spans as ScopeSpans.spans fields (b"" when it is not sampled)."""
    if not (record.sampled and record.trace_id and record.span_id):
        return b""
    answer = read_answer(record.response_tail, record.streamed)
    endpoint = _endpoint(record)
    operation = _OPERATIONS.get(endpoint) if endpoint else None
    api = _OPENAI_API.get(endpoint) if endpoint else None
    answering = _answering(record)
    base = round(record.ts * 1e9)
    trace_id = bytes.fromhex(record.trace_id)
    server_id = bytes.fromhex(record.span_id)
    trace_state = record.trace_state or ""
    state_field = _text_field(b"\x1a", trace_state) if trace_state else b""
    response = _response(record, answer) if operation is not None else b""
    request_id = _REQUEST_ID.once(record.request_id)
    streamed = record.streamed

    # The server span (spans._server_span).
    method = record.method if record.method in _METHODS else "_OTHER"
    key = server_key(record, method, operation, answering, api)
    shown = "HTTP" if method == "_OTHER" else method
    end = base + round(record.duration_ms / 1000 * 1e9)
    parts = [b"\x0a\x10", trace_id, b"\x12\x08", server_id, state_field]
    if record.parent_span_id:
        parts += (b"\x22\x08", bytes.fromhex(record.parent_span_id))
    parts += (
        _name(f"{shown} {record.route}" if record.route else shown),
        _SERVER_KIND,
        _pack_times(0x39, base, 0x41, end),
        _static_block(key),
        _STATUS.integer(record.status),
        response,
        request_id,
    )
    if record.cost_usd is not None:
        parts.append(_COST.price(record.cost_usd))
    if record.error_code:
        parts.append(_ERROR_CODE.text(record.error_code))
    parts.append(_ATTEMPTS.integer(len(record.attempt_spans) or len(record.attempts)))
    error = record.status >= 500
    if error:
        parts.append(_ERROR_TYPE.text(record.error_code or str(record.status)))
    events = []
    if record.ttft_ms is not None:
        ttft = record.ttft_ms / 1000
        if streamed and operation is not None:
            parts.append(_TTFC.double(ttft))
        events.append(_event(base + round(ttft * 1e9), _FIRST_TOKEN_NAME, b""))
    if streamed:
        events.append(_stream_end(record, answer, end))
    parts += events
    if error:
        parts.append(b"\x7a" + varint(len(_ERROR_CODE_FIELD)) + _ERROR_CODE_FIELD)
    parts.append(
        b"\x85\x01" + _pack_flags(_REMOTE_PARENT if record.parent_span_id else _LOCAL_PARENT)
    )
    body = b"".join(parts)
    out = [b"\x12", varint(len(body)), body]

    # One client span per attempt (spans._client_span).
    for attempt in record.attempt_spans:
        answered = attempt is answering
        out.append(
            _client(
                record,
                attempt,
                base,
                trace_id,
                server_id,
                state_field,
                method,
                operation,
                api,
                response if answered else None,
                answer if answered else None,
                request_id,
            )
        )
    return b"".join(out)


def _client(
    record: RequestRecord,
    attempt: AttemptRecord,
    base: int,
    trace_id: bytes,
    server_id: bytes,
    state_field: bytes,
    method: str,
    operation: str | None,
    api: str | None,
    response: bytes | None,
    answer: Answer | None,
    request_id: bytes,
) -> bytes:
    model = attempt.model_sent or record.model
    key = client_key(record, attempt, method, operation, api, model)
    start = base + round(attempt.start * 1e9)
    ended = attempt.end if attempt.end > attempt.start else record.duration_ms / 1000
    end = max(start, base + round(ended * 1e9))
    if operation is not None:
        name = f"{operation} {model}" if model else operation
    else:
        name = method.replace("_OTHER", "HTTP")
    parts = [
        b"\x0a\x10",
        trace_id,
        b"\x12\x08",
        bytes.fromhex(attempt.span_id),
        state_field,
        b"\x22\x08",
        server_id,
        _name(name),
        _CLIENT_KIND,
        _pack_times(0x39, start, 0x41, end),
        _static_block(key),
    ]
    if attempt.upstream_status is not None:
        parts.append(_STATUS.integer(attempt.upstream_status))
    parts += (request_id, _NUMBER.integer(attempt.number), _OUTCOME.text(attempt.outcome))
    if attempt.retried:
        parts.append(_RETRY.text(attempt.outcome))
    if response is not None and operation is not None:
        parts.append(response)
        if record.cost_usd is not None:
            parts.append(_COST.price(record.cost_usd))
    error = _attempt_error(attempt, record.status)
    if error is not None:
        parts.append(_ERROR_TYPE.text(error))
    events = []
    if attempt.first_token is not None:
        if record.streamed and operation is not None:
            parts.append(_TTFC.double(attempt.first_token - attempt.start))
        events.append(_event(base + round(attempt.first_token * 1e9), _FIRST_TOKEN_NAME, b""))
    if answer is not None and record.streamed:
        events.append(_stream_end(record, answer, end))
    parts += events
    if error is not None:
        status = b""
        if attempt.detail:
            status = _text_field(b"\x12", attempt.detail)  # Status.message (2)
        status += _ERROR_CODE_FIELD
        parts.append(b"\x7a" + varint(len(status)) + status)
    parts.append(b"\x85\x01" + _pack_flags(_LOCAL_PARENT))
    body = b"".join(parts)
    return b"\x12" + varint(len(body)) + body


def _response(record: RequestRecord, answer: Answer) -> bytes:
    """spans._response's attributes, encoded: the same for the server span and the
    answering attempt's."""
    parts = []
    if answer.response_model:
        parts.append(_RESPONSE_MODEL.text(answer.response_model))
    if answer.response_id:
        parts.append(_RESPONSE_ID.once(answer.response_id))
    if answer.finish_reasons:
        parts.append(_FINISH.texts(answer.finish_reasons))
    if record.prompt_tokens is not None:
        parts.append(_INPUT.integer(record.prompt_tokens))
    if record.completion_tokens is not None:
        parts.append(_OUTPUT.integer(record.completion_tokens))
    if answer.cache_read_tokens is not None:
        parts.append(_CACHE_READ.integer(answer.cache_read_tokens))
    if answer.cache_write_tokens is not None:
        parts.append(_CACHE_WRITE.integer(answer.cache_write_tokens))
    if answer.reasoning_tokens is not None:
        parts.append(_REASONING.integer(answer.reasoning_tokens))
    return b"".join(parts)


def _stream_end(record: RequestRecord, answer: Answer, end: int) -> bytes:
    complete = answer.stream_end and record.status != _CLIENT_CLOSED
    attributes = _COMPLETE.boolean(complete)
    if answer.finish_reasons:
        attributes += _FINISH_EVENT.texts(answer.finish_reasons)
    return _event(end, _STREAM_END_NAME, attributes)


def _event(time_ns: int, name: bytes, attributes: bytes) -> bytes:
    body = b"\x09" + _pack_fixed64(time_ns) + name + attributes
    return b"\x5a" + varint(len(body)) + body  # Span.events (11)


def _text_field(tag: bytes, value: str) -> bytes:
    raw = value.encode("utf-8", "replace")
    return tag + varint(len(raw)) + raw


def _name(name: str) -> bytes:
    found = _NAMES.get(name)
    if found is None:
        found = _text_field(b"\x2a", name)  # Span.name (5)
        if len(_NAMES) >= _MEMO_MAX:
            _NAMES.clear()
        _NAMES[name] = found
    return found
