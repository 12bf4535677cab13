"""OTLP encoding of spans, by hand: `encode_protobuf` writes an
`opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest` (OTLP/HTTP's
`application/x-protobuf`), `encode_json` the same request in OTLP/JSON (`application/json`).

No protobuf library at run time: the messages are few and fixed, and writing their bytes
directly costs a fraction of building generated messages (docs/decisions/0001). Both encoders
write one ResourceSpans holding one ScopeSpans with every span, fields in field-number order
and proto3 defaults (zero, empty) left out, so the protobuf bytes are the ones the official
serializer writes for the same message (the tests compare them).

Most attributes repeat from request to request (method, route, provider, model, key name):
their encoded KeyValue is kept in a bounded memo (`_PB_KV`, `_JSON_KV`), so a typical span
costs a few dict look-ups and one `b"".join`. The memo holds short values only and is
emptied when full: it stays small, and what repeats fills it again at once.

`PROTOBUF` and `JSON` (a `Codec` each) hand the exporter the same encodings in parts: the
spans of a slice of a batch (`protobuf_spans`, `json_spans`), then the request around the
parts (`protobuf_request`, `json_request`), so a big batch never holds the event loop long.

Values outside OTLP's types are mapped, never refused (one odd attribute must not lose a
batch): an int outside int64 becomes its decimal string, a float NaN or infinity is a double
(JSON: "NaN", "Infinity", "-Infinity", as the proto3 JSON mapping writes them), anything else
its `str()`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from llm_proxy.observe.tracing.model import Attributes, AttrValue, Resource, Span, SpanEvent

# Memo bounds: values longer than this are encoded each time (a prompt, an error's detail).
_MEMO_MAX_VALUE: Final = 128
_MEMO_MAX_ENTRIES: Final = 8192
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack
_times = struct.Struct("<BQBQ").pack  # a span's start and end, tags included
_SMALL: Final = tuple(bytes((i,)) for i in range(128))  # one-byte varints


def _varint(n: int) -> bytes:
    """A protobuf varint; a negative int64 as its two's complement (10 bytes)."""
    if 0 <= n < 128:
        return _SMALL[n]
    # Lengths and token counts: two or three bytes, without the loop.
    if 0 < n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if 0 < n < 0x20_0000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    n &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


varint: Final = _varint  # for the record's own writer (fast.py)


def _ld(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: its tag, the body's length, the body."""
    return tag + _varint(len(body)) + body


# --- protobuf -------------------------------------------------------------------------------

# Tags (field number << 3 | wire type) of the fields written.
_T_RESOURCE_SPANS: Final = b"\x0a"  # ExportTraceServiceRequest.resource_spans = 1
_T_RS_RESOURCE: Final = b"\x0a"  # ResourceSpans.resource = 1
_T_RS_SCOPE_SPANS: Final = b"\x12"  # ResourceSpans.scope_spans = 2
_T_RESOURCE_ATTR: Final = b"\x0a"  # Resource.attributes = 1
_T_SS_SCOPE: Final = b"\x0a"  # ScopeSpans.scope = 1
_T_SS_SPANS: Final = b"\x12"  # ScopeSpans.spans = 2
_T_SCOPE_NAME: Final = b"\x0a"  # InstrumentationScope.name = 1
_T_SCOPE_VERSION: Final = b"\x12"  # InstrumentationScope.version = 2
_T_TRACE_ID: Final = b"\x0a"  # Span.trace_id = 1 (bytes)
_T_SPAN_ID: Final = b"\x12"  # 2 (bytes)
_T_TRACE_STATE: Final = b"\x1a"  # 3 (string)
_T_PARENT: Final = b"\x22"  # 4 (bytes)
_T_NAME: Final = b"\x2a"  # 5 (string)
_T_KIND: Final = b"\x30"  # 6 (enum)
_T_START: Final = b"\x39"  # 7 (fixed64)
_T_END: Final = b"\x41"  # 8 (fixed64)
_T_ATTR: Final = b"\x4a"  # 9 (KeyValue)
_T_EVENT: Final = b"\x5a"  # 11 (Event)
_T_STATUS: Final = b"\x7a"  # 15 (Status)
_T_FLAGS: Final = b"\x85\x01"  # 16 (fixed32)
_T_EV_TIME: Final = b"\x09"  # Span.Event.time_unix_nano = 1 (fixed64)
_T_EV_NAME: Final = b"\x12"  # 2
_T_EV_ATTR: Final = b"\x1a"  # 3
_T_ST_MESSAGE: Final = b"\x12"  # Status.message = 2
_T_ST_CODE: Final = b"\x18"  # Status.code = 3
_T_KV_KEY: Final = b"\x0a"  # KeyValue.key = 1
_T_KV_VALUE: Final = b"\x12"  # KeyValue.value = 2 (AnyValue)
_T_ARRAY_VALUES: Final = b"\x0a"  # ArrayValue.values = 1

# AnyValue's oneof: string 1, bool 2, int 3 (int64), double 4, array 5 (ArrayValue).
_AV_TRUE: Final = b"\x10\x01"
_AV_FALSE: Final = b"\x10\x00"

# The memo: per attribute key, the class its values have and their encoded KeyValue fields by
# value. One class per key (a key whose values change class starts over): True == 1 == 1.0
# must not share an entry. Emptied when it holds _MEMO_MAX_ENTRIES values: what repeats fills
# it again at once, values seen once (a request id) go.
_PB_KV: dict[str, tuple[type, dict[object, bytes]]] = {}
_pb_kv_size = 0
_PB_KEYS: dict[str, bytes] = {}
# Attributes whose values are new with every request (ids): the memo would only churn.
UNIQUE_KEYS: Final = frozenset({"llm_proxy.request.id", "gen_ai.response.id"})
# Span and event names, as their encoded fields (emptied when full: few names repeat a lot).
_PB_SPAN_NAMES: dict[str, bytes] = {}
_PB_NAMES: dict[str, bytes] = {}


def _pb_any(value: object) -> bytes:
    """An AnyValue's body."""
    cls = value.__class__
    if cls is str:
        return _ld(b"\x0a", value.encode())  # type: ignore[attr-defined]
    if cls is bool:
        return _AV_TRUE if value else _AV_FALSE
    if cls is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            return b"\x18" + _varint(value)  # type: ignore[arg-type]
        return _ld(b"\x0a", str(value).encode())
    if cls is float:
        return b"\x21" + _double(value)
    if cls is list or cls is tuple:
        body = b"".join([_ld(_T_ARRAY_VALUES, _pb_any(v)) for v in value])  # type: ignore[attr-defined]
        return _ld(b"\x2a", body)
    # Subclasses (an enum.StrEnum, an IntEnum) as their base type; the rest as text.
    for base in (bool, str, int, float):
        if isinstance(value, base):
            return _pb_any(base(value))
    return _ld(b"\x0a", str(value).encode())


def _pb_kv(key: str, value: AttrValue) -> bytes:
    """A KeyValue, length prefix included (the caller writes the tag)."""
    head = _PB_KEYS.get(key)
    if head is None:
        head = _ld(_T_KV_KEY, key.encode()) if key else b""
        if len(_PB_KEYS) < _MEMO_MAX_ENTRIES:
            _PB_KEYS[key] = head
    if value.__class__ is int and 0 <= value <= _INT64_MAX:
        any_value = b"\x18" + _varint(value)
    else:
        any_value = _pb_any(value)
    body = head + _T_KV_VALUE + _varint(len(any_value)) + any_value
    return _varint(len(body)) + body


def _pb_attrs(tag: bytes, attributes: Attributes) -> bytes:
    """The attributes as repeated KeyValue fields under `tag`: the encoder's hot loop, two
    dict look-ups per attribute when the memo has it (most do)."""
    if not attributes:
        return b""
    get = _PB_KV.get
    kvs: list[bytes] = []
    append = kvs.append
    for key, value in attributes.items():
        if key in UNIQUE_KEYS:  # never repeats: not looked up, not remembered
            append(_pb_kv(key, value))
            continue
        cls = value.__class__
        entry = get(key)
        if entry is not None and entry[0] is cls:
            try:
                hit = entry[1].get(value if cls is not list else tuple(value))  # type: ignore[arg-type]
            except TypeError:  # not hashable (a list of lists): not memoised
                hit = None
            if hit is not None:
                append(hit)
                continue
        append(_pb_learn(key, cls, value))
    return tag + tag.join(kvs)


def _pb_learn(key: str, cls: type, value: AttrValue) -> bytes:
    """A memo miss: encode, and remember unless the value is long (seldom repeats)."""
    global _pb_kv_size  # the memo's size, counted here
    out = _pb_kv(key, value)
    if cls is str and len(value) > _MEMO_MAX_VALUE:  # type: ignore[arg-type]
        return out
    if _pb_kv_size >= _MEMO_MAX_ENTRIES:
        _PB_KV.clear()
        _pb_kv_size = 0
    entry = _PB_KV.get(key)
    if entry is None or entry[0] is not cls:
        entry = _PB_KV[key] = (cls, {})
    try:
        entry[1][value if cls is not list else tuple(value)] = out  # type: ignore[arg-type]
    except TypeError:  # not hashable (a list of lists): not memoised
        return out
    _pb_kv_size += 1
    return out


def _pb_event(event: SpanEvent) -> bytes:
    parts = [_T_EV_TIME, _fixed64(event.time_ns)] if event.time_ns else []
    if event.name:
        parts.append(_PB_NAMES.get(event.name) or _pb_name(_T_EV_NAME, event.name))
    parts.append(_pb_attrs(_T_EV_ATTR, event.attributes))
    return _ld(_T_EVENT, b"".join(parts))


def _pb_name(tag: bytes, name: str) -> bytes:
    """An event's name field, memoised: names repeat."""
    out = _ld(tag, name.encode())
    if len(_PB_NAMES) >= _MEMO_MAX_ENTRIES:
        _PB_NAMES.clear()
    _PB_NAMES[name] = out
    return out


def _pb_span(span: Span, prefix: bytes = b"") -> bytes:
    trace_id, span_id = span.trace_id, span.span_id
    if len(trace_id) == 16 and len(span_id) == 8:
        parts = [b"\x0a\x10", trace_id, b"\x12\x08", span_id]
    else:
        parts = [_ld(_T_TRACE_ID, trace_id), _ld(_T_SPAN_ID, span_id)]
    if span.trace_state:
        parts.append(_ld(_T_TRACE_STATE, span.trace_state.encode()))
    if span.parent_span_id:
        parts.append(_ld(_T_PARENT, span.parent_span_id))
    if span.name:
        parts.append(_PB_SPAN_NAMES.get(span.name) or _pb_span_name(span.name))
    if span.kind:
        parts += (_T_KIND, _varint(span.kind))
    if span.start_ns and span.end_ns:
        parts.append(_times(0x39, span.start_ns, 0x41, span.end_ns))
    else:
        if span.start_ns:
            parts += (_T_START, _fixed64(span.start_ns))
        if span.end_ns:
            parts += (_T_END, _fixed64(span.end_ns))
    if prefix:
        parts.append(prefix)
    parts.append(_pb_attrs(_T_ATTR, span.attributes))
    for event in span.events:
        parts.append(_pb_event(event))
    if span.status_code or span.status_message:
        status = _ld(_T_ST_MESSAGE, span.status_message.encode()) if span.status_message else b""
        if span.status_code:
            status += _T_ST_CODE + _varint(span.status_code)
        parts.append(_ld(_T_STATUS, status))
    if span.flags:
        parts += (_T_FLAGS, _fixed32(span.flags & 0xFFFF_FFFF))
    return _ld(_T_SS_SPANS, b"".join(parts))


def encode_attributes(attributes: Attributes) -> bytes:
    """`attributes` as a Span's attribute fields (tags included): a block `encode_span` can
    put before a span's own attributes."""
    return _pb_attrs(_T_ATTR, attributes)


def encode_span(span: Span, prefix: bytes = b"") -> bytes:
    """One span as a ScopeSpans.spans field; `prefix` (from `encode_attributes`) is written
    before its attributes, as if they came first in `span.attributes`."""
    return _pb_span(span, prefix)


def _pb_span_name(name: str) -> bytes:
    out = _ld(_T_NAME, name.encode())
    if len(_PB_SPAN_NAMES) >= _MEMO_MAX_ENTRIES:
        _PB_SPAN_NAMES.clear()
    _PB_SPAN_NAMES[name] = out
    return out


def _pb_scope(resource: Resource) -> bytes:
    scope = b""
    if resource.scope_name:
        scope += _ld(_T_SCOPE_NAME, resource.scope_name.encode())
    if resource.scope_version:
        scope += _ld(_T_SCOPE_VERSION, resource.scope_version.encode())
    return _ld(_T_SS_SCOPE, scope)


def encode_protobuf(resource: Resource, spans: Sequence[Span]) -> bytes:
    """An ExportTraceServiceRequest: `spans` in one ResourceSpans / ScopeSpans."""
    return protobuf_request(resource, [protobuf_spans(spans)])


def protobuf_spans(spans: Sequence[Span]) -> bytes:
    """The spans' part of a request (`protobuf_request` puts parts together): a batch can be
    encoded a slice at a time, the event loop free in between."""
    return b"".join([_pb_span(span) for span in spans])


def protobuf_request(resource: Resource, parts: Sequence[bytes]) -> bytes:
    """The request around the spans' parts, copied once (a batch is ~1 MB: each nesting
    level written by concatenation would copy it again)."""
    scope = _pb_scope(resource)
    scope_len = len(scope) + sum(len(part) for part in parts)
    resource_field = _ld(_T_RS_RESOURCE, _pb_attrs(_T_RESOURCE_ATTR, resource.attributes))
    scope_head = _T_RS_SCOPE_SPANS + _varint(scope_len)
    inner_len = len(resource_field) + len(scope_head) + scope_len
    head = _T_RESOURCE_SPANS + _varint(inner_len) + resource_field + scope_head + scope
    return b"".join([head, *parts])


def rejected_spans_protobuf(answer: bytes) -> tuple[int, str]:
    """`partial_success` of an ExportTraceServiceResponse: (rejected_spans, error_message);
    (0, "") when it has none. Raises ValueError on bytes that are not such a message."""
    rejected, message = 0, ""
    for number, value in _fields(answer):
        if number == 1 and isinstance(value, bytes):  # partial_success
            for inner, item in _fields(value):
                if inner == 1 and isinstance(item, int):
                    rejected = item - 2**64 if item >= 2**63 else item
                elif inner == 2 and isinstance(item, bytes):
                    message = item.decode(errors="replace")
    return rejected, message


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The fields of a protobuf message: (number, varint or length-delimited bytes); fixed
    fields are skipped."""
    out: list[tuple[int, int | bytes]] = []
    i, end = 0, len(data)
    while i < end:
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            out.append((number, value))
        elif wire == 2:
            size, i = _read_varint(data, i)
            if i + size > end:
                raise ValueError("truncated field")
            out.append((number, data[i : i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if i != end:
        raise ValueError("truncated message")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


# --- JSON -----------------------------------------------------------------------------------

# OTLP/JSON is the proto3 JSON mapping with two exceptions: trace and span ids in hex (not
# base64) and enums as integers only. 64-bit integers are decimal strings.

_JSON_KV: dict[tuple[str, type, AttrValue], bytes] = {}
_NON_FINITE: Final = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _json_any(value: object) -> object:
    """An AnyValue, as a JSON-ready dict."""
    cls = value.__class__
    if cls is str:
        return {"stringValue": value}
    if cls is bool:
        return {"boolValue": value}
    if cls is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if cls is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return {"doubleValue": value}
        return {"doubleValue": _NON_FINITE.get(value, "NaN")}  # type: ignore[call-overload]
    if cls is list or cls is tuple:
        return {"arrayValue": {"values": [_json_any(v) for v in value]}}  # type: ignore[attr-defined]
    for base in (bool, str, int, float):
        if isinstance(value, base):
            return _json_any(base(value))
    return {"stringValue": str(value)}


def _json_kv(key: str, value: AttrValue) -> bytes:
    cls = value.__class__
    memo = cls is bool or cls is int or (cls is str and len(value) <= _MEMO_MAX_VALUE)  # type: ignore[arg-type]
    if memo:
        mkey = (key, cls, value)
        hit = _JSON_KV.get(mkey)
        if hit is not None:
            return hit
    out = orjson.dumps({"key": key, "value": _json_any(value)})
    if memo:
        if len(_JSON_KV) >= _MEMO_MAX_ENTRIES:
            _JSON_KV.clear()
        _JSON_KV[mkey] = out
    return out


def _json_attrs(attributes: Attributes) -> bytes:
    return b"[" + b",".join([_json_kv(k, v) for k, v in attributes.items()]) + b"]"


def _json_event(event: SpanEvent) -> bytes:
    parts = [b'{"timeUnixNano":"%d"' % event.time_ns]
    if event.name:
        parts.append(b',"name":' + orjson.dumps(event.name))
    if event.attributes:
        parts.append(b',"attributes":' + _json_attrs(event.attributes))
    parts.append(b"}")
    return b"".join(parts)


def _json_span(span: Span) -> bytes:
    parts = [
        b'{"traceId":"',
        span.trace_id.hex().encode(),
        b'","spanId":"',
        span.span_id.hex().encode(),
        b'"',
    ]
    if span.trace_state:
        parts.append(b',"traceState":' + orjson.dumps(span.trace_state))
    if span.parent_span_id:
        parts.append(b',"parentSpanId":"%s"' % span.parent_span_id.hex().encode())
    if span.flags:
        parts.append(b',"flags":%d' % (span.flags & 0xFFFF_FFFF))
    parts.append(b',"name":' + orjson.dumps(span.name))
    parts.append(
        b',"kind":%d,"startTimeUnixNano":"%d","endTimeUnixNano":"%d"'
        % (span.kind, span.start_ns, span.end_ns)
    )
    if span.attributes:
        parts.append(b',"attributes":' + _json_attrs(span.attributes))
    if span.events:
        parts.append(b',"events":[' + b",".join([_json_event(e) for e in span.events]) + b"]")
    if span.status_code or span.status_message:
        status: dict[str, object] = {"code": span.status_code}
        if span.status_message:
            status["message"] = span.status_message
        parts.append(b',"status":' + orjson.dumps(status))
    parts.append(b"}")
    return b"".join(parts)


def encode_json(resource: Resource, spans: Sequence[Span]) -> bytes:
    """The ExportTraceServiceRequest of `encode_protobuf`, in OTLP/JSON."""
    return json_request(resource, [json_spans(spans)])


def json_spans(spans: Sequence[Span]) -> bytes:
    """The spans' part of a request, as `protobuf_spans`."""
    return b",".join([_json_span(span) for span in spans])


def json_request(resource: Resource, parts: Sequence[bytes]) -> bytes:
    scope: dict[str, str] = {}
    if resource.scope_name:
        scope["name"] = resource.scope_name
    if resource.scope_version:
        scope["version"] = resource.scope_version
    return b"".join(
        [
            b'{"resourceSpans":[{"resource":{"attributes":',
            _json_attrs(resource.attributes),
            b'},"scopeSpans":[{"scope":',
            orjson.dumps(scope),
            b',"spans":[',
            b",".join([part for part in parts if part]),
            b"]}]}]}",
        ]
    )


def rejected_spans_json(answer: bytes) -> tuple[int, str]:
    """`partialSuccess` of an ExportTraceServiceResponse in JSON: (rejectedSpans,
    errorMessage); (0, "") when it has none. Raises ValueError when it is not JSON."""
    parsed = orjson.loads(answer) if answer.strip() else {}
    partial = parsed.get("partialSuccess") if isinstance(parsed, dict) else None
    if not isinstance(partial, dict):
        return 0, ""
    rejected = partial.get("rejectedSpans", 0)
    message = partial.get("errorMessage", "")
    return int(rejected or 0), message if isinstance(message, str) else ""


@dataclass(frozen=True, slots=True)
class Codec:
    """One OTLP/HTTP encoding: its content type, the spans' part of a request, the request
    from its parts, and the partial success of an answer."""

    content_type: str
    spans: Callable[[Sequence[Span]], bytes]
    request: Callable[[Resource, Sequence[bytes]], bytes]
    rejected: Callable[[bytes], tuple[int, str]]


PROTOBUF: Final = Codec(
    "application/x-protobuf", protobuf_spans, protobuf_request, rejected_spans_protobuf
)
JSON: Final = Codec("application/json", json_spans, json_request, rejected_spans_json)
