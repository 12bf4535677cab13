"""The hand-written OTLP encoder (`llm_proxy.observe.tracing.otlp`) against the official
generated messages (opentelemetry-proto): what it writes parses, means what the spans say, and
in protobuf is byte for byte what the official serializer writes for the same message; OTLP/JSON
parses through the proto3 JSON mapping (hex ids aside) to the same message. Every value type,
unicode, a root and a child span, events, status, flags, large and negative ints; then the
same properties on generated spans (hypothesis)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llm_proxy.observe.tracing import otlp
from llm_proxy.observe.tracing.model import (
    FLAG_HAS_IS_REMOTE,
    FLAG_IS_REMOTE,
    FLAG_SAMPLED,
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_OK,
    Resource,
    Span,
    SpanEvent,
)
from tests.helpers.otlp_collector import flatten, parse_json

RESOURCE = Resource(
    {
        "service.name": "llm-proxy",
        "service.instance.id": "pod-7",
        "telemetry.sdk.name": "llm-proxy",
    },
    scope_name="llm-proxy",
    scope_version="0.1.0",
)
T0 = 1_765_000_000_123_456_789  # ns


def server_span(**over: Any) -> Span:
    values: dict[str, Any] = {
        "trace_id": bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
        "span_id": bytes.fromhex("00f067aa0ba902b7"),
        "parent_span_id": bytes.fromhex("b7ad6b7169203331"),
        "name": "POST /v1/chat/completions",
        "kind": KIND_SERVER,
        "start_ns": T0,
        "end_ns": T0 + 850_000_000,
        "attributes": {
            "http.request.method": "POST",
            "http.route": "/v1/chat/completions",
            "http.response.status_code": 200,
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 12,
            "llm_proxy.cost_usd": 0.00042,
            "llm_proxy.streamed": True,
            "llm_proxy.cached": False,
            "gen_ai.response.finish_reasons": ["stop", "length"],
            "llm_proxy.attempts": ["alpha", "béta ✓"],
            "int.list": [1, -2, 2**63 - 1],
            "float.list": [0.5, -1e300],
            "bool.list": [True, False],
            "unicode": "grüße, 世界, 🚀",
            "int.min": -(2**63),
            "int.max": 2**63 - 1,
            "empty": "",
        },
        "status_code": STATUS_OK,
        "trace_state": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "flags": FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE,
    }
    return Span(**(values | over))


def client_span(**over: Any) -> Span:
    values: dict[str, Any] = {
        "trace_id": bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
        "span_id": bytes.fromhex("1111111111111111"),
        "parent_span_id": bytes.fromhex("00f067aa0ba902b7"),
        "name": "chat gpt-4o",
        "kind": KIND_CLIENT,
        "start_ns": T0 + 1_000_000,
        "end_ns": T0 + 840_000_000,
        "attributes": {"server.address": "api.openai.com", "server.port": 443},
        "events": [
            SpanEvent("gen_ai.first_token", T0 + 120_000_000),
            SpanEvent("exception", T0 + 2, {"exception.type": "TimeoutError", "n": 3}),
        ],
        "status_code": STATUS_ERROR,
        "status_message": "upstream timeout — après 30 s",
    }
    return Span(**(values | over))


def official(resource: Resource, spans: list[Span]) -> ExportTraceServiceRequest:
    """The same request built with the generated messages, field by field."""

    def put(target: Any, value: Any) -> None:
        if isinstance(value, bool):
            target.bool_value = value
        elif isinstance(value, int):
            if -(2**63) <= value < 2**63:
                target.int_value = value
            else:
                target.string_value = str(value)
        elif isinstance(value, float):
            target.double_value = value
        elif isinstance(value, str):
            target.string_value = value
        else:
            array = target.array_value
            array.SetInParent()  # an empty array is still an array
            for item in value:
                put(array.values.add(), item)

    def attrs(field: Any, attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            kv = field.add()
            kv.key = key
            put(kv.value, value)

    message = ExportTraceServiceRequest()
    rs = message.resource_spans.add()
    rs.resource.SetInParent()  # always written, if only with no attributes
    attrs(rs.resource.attributes, resource.attributes)
    ss = rs.scope_spans.add()
    ss.scope.SetInParent()
    ss.scope.name = resource.scope_name
    ss.scope.version = resource.scope_version
    for span in spans:
        s = ss.spans.add()
        s.trace_id, s.span_id, s.parent_span_id = span.trace_id, span.span_id, span.parent_span_id
        s.trace_state, s.flags, s.name, s.kind = span.trace_state, span.flags, span.name, span.kind
        s.start_time_unix_nano, s.end_time_unix_nano = span.start_ns, span.end_ns
        attrs(s.attributes, span.attributes)
        for event in span.events:
            e = s.events.add()
            e.time_unix_nano, e.name = event.time_ns, event.name
            attrs(e.attributes, event.attributes)
        if span.status_code or span.status_message:
            s.status.code, s.status.message = span.status_code, span.status_message
    return message


def both(spans: list[Span], resource: Resource = RESOURCE) -> list[ExportTraceServiceRequest]:
    """The request decoded from each encoding; both must equal the official one."""
    expected = official(resource, spans)
    pb = otlp.encode_protobuf(resource, spans)
    decoded = ExportTraceServiceRequest.FromString(pb)
    assert decoded == expected
    assert pb == expected.SerializeToString()  # field order and defaults as the official ones
    from_json = parse_json(otlp.encode_json(resource, spans))
    assert from_json == expected
    return [decoded, from_json]


def test_server_and_client_span_round_trip() -> None:
    for message in both([server_span(), client_span()]):
        server, client = flatten(message)
        assert server["resource"] == RESOURCE.attributes
        assert server["scope"] == ("llm-proxy", "0.1.0")
        assert server["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert server["span_id"] == "00f067aa0ba902b7"
        assert server["parent_span_id"] == "b7ad6b7169203331"
        assert server["trace_state"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        assert server["flags"] == 0x301
        assert (server["name"], server["kind"]) == ("POST /v1/chat/completions", KIND_SERVER)
        assert (server["start"], server["end"]) == (T0, T0 + 850_000_000)
        assert server["attributes"] == server_span().attributes
        assert server["status"] == (STATUS_OK, "")
        assert client["parent_span_id"] == "00f067aa0ba902b7"
        assert client["events"] == [
            {"name": "gen_ai.first_token", "time": T0 + 120_000_000, "attributes": {}},
            {
                "name": "exception",
                "time": T0 + 2,
                "attributes": {"exception.type": "TimeoutError", "n": 3},
            },
        ]
        assert client["status"] == (STATUS_ERROR, "upstream timeout — après 30 s")


def test_root_span_without_parent_state_status_or_attributes() -> None:
    root = server_span(
        parent_span_id=b"", trace_state="", attributes={}, status_code=0, flags=FLAG_SAMPLED
    )
    for message in both([root], Resource({})):
        (span,) = flatten(message)
        assert span["parent_span_id"] == ""
        assert span["trace_state"] == ""
        assert not message.resource_spans[0].scope_spans[0].spans[0].HasField("status")
        assert span["flags"] == 1


def test_json_follows_the_otlp_mapping() -> None:
    """Hex ids, enums as integers, 64-bit integers as decimal strings, lowerCamelCase."""
    data = orjson.loads(otlp.encode_json(RESOURCE, [server_span(), client_span()]))
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span["parentSpanId"] == "b7ad6b7169203331"
    assert span["kind"] == 2 and span["status"] == {"code": 1}
    assert span["startTimeUnixNano"] == str(T0)
    assert span["flags"] == 0x301
    values = {kv["key"]: kv["value"] for kv in span["attributes"]}
    assert values["int.min"] == {"intValue": str(-(2**63))}
    assert values["http.response.status_code"] == {"intValue": "200"}
    assert values["llm_proxy.cost_usd"] == {"doubleValue": 0.00042}
    event = data["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["events"][0]
    assert event == {"timeUnixNano": str(T0 + 120_000_000), "name": "gen_ai.first_token"}


def test_values_outside_otlp_are_mapped_not_refused() -> None:
    span = server_span(
        attributes={"huge": 2**64, "tiny": -(2**70), "nan": math.nan, "inf": -math.inf}
    )
    for encoded in (
        ExportTraceServiceRequest.FromString(otlp.encode_protobuf(RESOURCE, [span])),
        parse_json(otlp.encode_json(RESOURCE, [span])),
    ):
        attrs = flatten(encoded)[0]["attributes"]
        assert attrs["huge"] == str(2**64) and attrs["tiny"] == str(-(2**70))
        assert math.isnan(attrs["nan"]) and attrs["inf"] == -math.inf


def test_memo_tells_types_apart_and_stays_bounded() -> None:
    """True == 1 == 1.0 in a dict: the memo must not hand one's encoding to another."""
    spans = [server_span(attributes={"v": value}) for value in (1, True, 1.0, "1", [1])]
    for message in both(spans) + both(spans):  # the second time from the memo
        assert [s["attributes"]["v"] for s in flatten(message)] == [1, True, 1.0, "1", [1]]
        assert [type(s["attributes"]["v"]) for s in flatten(message)] == [
            int,
            bool,
            float,
            str,
            list,
        ]
    many = [server_span(attributes={"request.id": f"req-{i}"}) for i in range(10_000)]
    otlp.encode_protobuf(RESOURCE, many)
    assert otlp._pb_kv_size <= otlp._MEMO_MAX_ENTRIES
    assert sum(len(values) for _, values in otlp._PB_KV.values()) == otlp._pb_kv_size
    assert flatten(ExportTraceServiceRequest.FromString(otlp.encode_protobuf(RESOURCE, many)))[
        9_999
    ]["attributes"] == {"request.id": "req-9999"}


def test_long_values_and_many_spans() -> None:
    """Lengths past one varint byte, a 10,000-character value (not memoised)."""
    long = "x" * 10_000 + "é"
    both([server_span(name="n" * 300, attributes={"prompt": long})] * 50)


def test_partial_success_decoders() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse()
    assert otlp.rejected_spans_protobuf(answer.SerializeToString()) == (0, "")
    answer.partial_success.rejected_spans = 300
    answer.partial_success.error_message = "too old ✗"
    assert otlp.rejected_spans_protobuf(answer.SerializeToString()) == (300, "too old ✗")
    as_json = json_format.MessageToJson(answer).encode()
    assert otlp.rejected_spans_json(as_json) == (300, "too old ✗")
    assert otlp.rejected_spans_json(b"{}") == (0, "")
    with pytest.raises(ValueError, match="truncated"):
        otlp.rejected_spans_protobuf(b"\x0a\x05\x08")


# Properties on generated spans.

_text = st.text(max_size=40)
_int64 = st.integers(-(2**63), 2**63 - 1)
_double = st.floats(allow_nan=False)
_scalar = st.one_of(_text, st.booleans(), _int64, _double)
_value = st.one_of(
    _scalar,
    st.lists(_text, max_size=4),
    st.lists(_int64, max_size=4),
    st.lists(_double, max_size=4),
    st.lists(st.booleans(), max_size=4),
)
_attributes = st.dictionaries(_text, _value, max_size=8)
_u64 = st.integers(0, 2**64 - 1)
_event = st.builds(SpanEvent, name=_text, time_ns=_u64, attributes=_attributes)
_span = st.builds(
    Span,
    trace_id=st.binary(min_size=16, max_size=16),
    span_id=st.binary(min_size=8, max_size=8),
    parent_span_id=st.one_of(st.just(b""), st.binary(min_size=8, max_size=8)),
    name=_text,
    kind=st.integers(0, 5),
    start_ns=_u64,
    end_ns=_u64,
    attributes=_attributes,
    events=st.lists(_event, max_size=3),
    status_code=st.integers(0, 2),
    status_message=_text,
    trace_state=_text,
    flags=st.integers(0, 2**32 - 1),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(_span, max_size=4),
    resource=st.builds(Resource, attributes=_attributes, scope_name=_text, scope_version=_text),
)
def test_any_spans_encode_as_the_official_messages(spans: list[Span], resource: Resource) -> None:
    both(spans, resource)


def test_odd_values_are_encoded_not_refused() -> None:
    """Outside the model's types (a bug in a builder): nested lists stay arrays, the rest is
    its text; the memo does not choke on what it cannot hash."""
    odd: dict[str, Any] = {"nested": [[1, "a"], [True]], "mapping": {"a": 1}, "none": None}
    span = server_span(attributes=odd)
    for _ in range(2):
        for encoded in (
            ExportTraceServiceRequest.FromString(otlp.encode_protobuf(RESOURCE, [span])),
            parse_json(otlp.encode_json(RESOURCE, [span])),
        ):
            attrs = flatten(encoded)[0]["attributes"]
            assert attrs == {"nested": [[1, "a"], [True]], "mapping": "{'a': 1}", "none": "None"}
