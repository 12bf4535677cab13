"""The Langfuse flavour of the spans (`llm_proxy.observe.tracing.langfuse_attrs`): the
attributes Langfuse's OTLP endpoint maps, so that each request is a trace with one generation
carrying model, usage, cost, latency and TTFT; checked on the spans, and end to end through
a fake of the endpoint (`tests/helpers/langfuse_otlp.py`) over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from llm_proxy.observe.langfuse import LangfuseSettings
from llm_proxy.observe.records import ErrorRecord
from llm_proxy.observe.tracing.model import AttrValue, Span
from llm_proxy.observe.tracing.spans import build_spans
from tests.helpers.langfuse import PUBLIC, SECRET
from tests.helpers.langfuse_otlp import CONTENT_ATTRIBUTES, FakeLangfuseOtlp
from tests.observe.tracing.records import (
    COMPLETION,
    PROMPT,
    STREAM_TAIL,
    TRACE,
    TS,
    attempt,
    strings,
    traced,
)


def streamed(**over: Any) -> Any:
    values: dict[str, Any] = {
        "streamed": True,
        "ttft_ms": 120.0,
        "response_tail": STREAM_TAIL,
        "attempt_spans": [attempt(first_token=0.118)],
    }
    return traced(**(values | over))


def failed_over(**over: Any) -> Any:
    values: dict[str, Any] = {
        "provider": "beta",
        "attempts": ["alpha", "beta"],
        "errors": [ErrorRecord(TS + 0.3, "req-1", "alpha", "http_5xx", 503, None)],
        "attempt_spans": [
            attempt(1, end=0.3, outcome="http_5xx", upstream_status=503, retried=True),
            attempt(2, start=0.301, first_token=0.5),
        ],
    }
    return streamed(**(values | over))


def test_a_team_is_a_tag_and_trace_metadata() -> None:
    server, _ = build_spans(streamed(team="search"), capture_content=False, langfuse=True)
    a = server.attributes
    assert a["langfuse.trace.tags"] == [
        "llm-proxy",
        "provider:alpha",
        "client:openai-python",
        "team:search",
    ]
    assert a["langfuse.trace.metadata.team"] == "search"


def test_the_trace_and_its_generation() -> None:
    server, generation = build_spans(streamed(), capture_content=False, langfuse=True)
    a = server.attributes
    assert a["langfuse.trace.name"] == "llm-proxy /v1/chat/completions"
    assert a["user.id"] == "team-a"
    assert a["langfuse.trace.tags"] == ["llm-proxy", "provider:alpha", "client:openai-python"]
    assert a["langfuse.observation.type"] == "span"
    assert {k: v for k, v in a.items() if k.startswith("langfuse.trace.metadata.")} == {
        "langfuse.trace.metadata.request_id": "req-1",
        "langfuse.trace.metadata.method": "POST",
        "langfuse.trace.metadata.client": "openai-python",
        "langfuse.trace.metadata.provider": "alpha",
        "langfuse.trace.metadata.attempts": ["alpha"],
        "langfuse.trace.metadata.failed_attempts": "[]",
        "langfuse.trace.metadata.status": 200,
        "langfuse.trace.metadata.streamed": True,
    }
    # usage and cost only on the generation: Langfuse adds its observations' up
    assert not any(k.startswith(("gen_ai.usage.", "llm_proxy.cost.")) for k in a)

    g = generation.attributes
    assert g["langfuse.observation.type"] == "generation"
    assert g["langfuse.observation.model.name"] == "gpt-4o-2024-08-06"
    assert orjson.loads(str(g["langfuse.observation.usage_details"])) == {
        "input": 1200,  # the stream's usage says 0 cached
        "output": 8,
        "total": 1208,
        "input_cached_tokens": 0,
    }
    assert orjson.loads(str(g["langfuse.observation.cost_details"])) == {"total": 0.00042}
    first = datetime.fromisoformat(str(g["langfuse.observation.completion_start_time"]))
    assert first == datetime.fromtimestamp(TS + 0.118, UTC).replace(
        microsecond=round((TS + 0.118) % 1 * 1e6)
    )
    assert "langfuse.observation.level" not in g
    assert g["langfuse.observation.metadata.key_name"] == "team-a"
    assert g["langfuse.observation.metadata.model_requested"] == "gpt-4o"
    assert g["langfuse.observation.metadata.ttft_ms"] == 120.0
    assert not any(k.startswith("langfuse.trace.") for k in g)


def test_cached_tokens_are_not_input_twice() -> None:
    _, generation = build_spans(traced(), capture_content=False, langfuse=True)
    usage = orjson.loads(str(generation.attributes["langfuse.observation.usage_details"]))
    assert usage == {"input": 176, "output": 8, "total": 1208, "input_cached_tokens": 1024}


def test_answered_after_a_failed_attempt_is_a_warning() -> None:
    server, first, second = build_spans(failed_over(), capture_content=False, langfuse=True)
    assert first.attributes["langfuse.observation.type"] == "span"
    assert first.attributes["langfuse.observation.level"] == "WARNING"  # it was retried
    assert second.attributes["langfuse.observation.type"] == "generation"
    assert second.attributes["langfuse.observation.level"] == "WARNING"
    assert second.attributes["langfuse.observation.status_message"] == (
        "answered after 1 failed attempt(s)"
    )
    assert server.attributes["langfuse.trace.metadata.failed_attempts"] == (
        '[{"provider":"alpha","outcome":"http_5xx","upstream_status":503}]'
    )
    assert "error" not in server.attributes["langfuse.trace.tags"]  # type: ignore[operator]


def test_nothing_answered_the_server_span_is_the_generation() -> None:
    record = traced(
        status=502,
        error_code="upstream_unavailable",
        response_tail=None,
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
        model_sent=None,
        attempt_spans=[attempt(outcome="timeout", upstream_status=None)],
    )
    server, only = build_spans(record, capture_content=False, langfuse=True)
    s = server.attributes
    assert s["langfuse.observation.type"] == "generation"
    assert s["langfuse.observation.model.name"] == "gpt-4o"
    assert s["langfuse.observation.level"] == "ERROR"
    assert s["langfuse.observation.status_message"] == "502 upstream_unavailable"
    assert s["langfuse.trace.tags"] == [
        "llm-proxy",
        "provider:alpha",
        "client:openai-python",
        "error",
    ]
    assert "langfuse.observation.usage_details" not in s
    assert only.attributes["langfuse.observation.type"] == "span"
    assert "langfuse.observation.level" not in only.attributes  # ERROR from its status


def test_refused_by_the_proxy() -> None:
    record = traced(
        status=401,
        error_code="invalid_api_key",
        provider="none",
        attempts=[],
        attempt_spans=[],
        key_name="anonymous",
        response_tail=None,
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
    )
    (server,) = build_spans(record, capture_content=False, langfuse=True)
    assert server.attributes["langfuse.observation.type"] == "generation"
    assert server.attributes["langfuse.observation.level"] == "ERROR"
    assert server.attributes["langfuse.observation.status_message"] == "401 invalid_api_key"


def test_content_only_with_capture_on() -> None:
    off = build_spans(failed_over(), capture_content=False, langfuse=True)
    assert not any(PROMPT in s or COMPLETION in s for s in strings(off))
    server, first, second = build_spans(failed_over(), capture_content=True, langfuse=True)
    assert server.attributes["langfuse.trace.input"] == PROMPT
    assert server.attributes["langfuse.trace.output"] == COMPLETION
    assert second.attributes["langfuse.observation.input"] == PROMPT
    assert second.attributes["langfuse.observation.output"] == COMPLETION
    assert not CONTENT_ATTRIBUTES & set(first.attributes)
    # not twice: no GenAI content event in this flavour
    assert all(e.name != "gen_ai.client.inference.operation.details" for e in second.events)


# End to end, through a fake of Langfuse's OTLP endpoint.


@pytest.fixture
async def fake() -> AsyncIterator[FakeLangfuseOtlp]:
    server = FakeLangfuseOtlp()
    await server.start()
    yield server
    await server.stop()


def _any(value: AttrValue) -> AnyValue:
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(_any(v) for v in value)
        return out
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def _proto(spans: list[Span]) -> bytes:
    """A reference OTLP/protobuf encoding (the exporter's own encoder is tested apart)."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(KeyValue(key="service.name", value=_any("llm-proxy")))
    scope = resource.scope_spans.add()
    scope.scope.name = "llm-proxy"
    for span in spans:
        out = scope.spans.add(
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            trace_state=span.trace_state,
            name=span.name,
            kind=span.kind,
            start_time_unix_nano=span.start_ns,
            end_time_unix_nano=span.end_ns,
            flags=span.flags,
        )
        out.attributes.extend(KeyValue(key=k, value=_any(v)) for k, v in span.attributes.items())
        for event in span.events:
            out.events.append(
                ProtoSpan.Event(
                    time_unix_nano=event.time_ns,
                    name=event.name,
                    attributes=[
                        KeyValue(key=k, value=_any(v)) for k, v in event.attributes.items()
                    ],
                )
            )
        out.status.code = span.status_code
        out.status.message = span.status_message
    return request.SerializeToString()


async def _post(url: str, auth: str, body: bytes) -> int:
    headers = {"Authorization": auth, "Content-Type": "application/x-protobuf"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status


async def test_langfuse_sees_a_trace_with_one_generation(fake: FakeLangfuseOtlp) -> None:
    settings = LangfuseSettings(PUBLIC, SECRET, host=fake.url)
    assert settings.otlp_url == fake.url + "/api/public/otel/v1/traces"
    spans = build_spans(failed_over(), capture_content=False, langfuse=True)
    assert await _post(settings.otlp_url, settings.authorization(), _proto(spans)) == 200

    assert fake.problems == []
    trace = fake.traces[TRACE]
    assert trace.name == "llm-proxy /v1/chat/completions"
    assert trace.user_id == "team-a"
    assert trace.tags == ["llm-proxy", "provider:beta", "client:openai-python"]
    assert trace.metadata["request_id"] == "req-1"
    assert trace.input is None and trace.output is None
    assert len(trace.observations) == 3
    (generation,) = trace.generations
    assert generation.model == "gpt-4o-2024-08-06"
    assert generation.usage == {
        "input": 1200,
        "output": 8,
        "total": 1208,
        "input_cached_tokens": 0,
    }
    assert generation.cost == {"total": 0.00042}
    assert generation.level == "WARNING"
    assert generation.parent_id == spans[0].span_id.hex()
    latency = (generation.end - generation.start) / 1e9
    assert latency == pytest.approx(0.850 - 0.301)
    assert generation.completion_start is not None
    ttft = generation.completion_start.timestamp() - generation.start / 1e9
    assert ttft == pytest.approx(0.5 - 0.301, abs=1e-5)
    failed = trace.observations[spans[1].span_id.hex()]
    assert (failed.type, failed.level, failed.usage) == ("span", "WARNING", {})


async def test_content_reaches_langfuse_only_with_capture(fake: FakeLangfuseOtlp) -> None:
    fake.capture = True
    settings = LangfuseSettings(PUBLIC, SECRET, host=fake.url)
    spans = build_spans(streamed(), capture_content=True, langfuse=True)
    assert await _post(settings.otlp_url, settings.authorization(), _proto(spans)) == 200
    trace = fake.traces[TRACE]
    assert (trace.input, trace.output) == (PROMPT, COMPLETION)
    assert (trace.generations[0].input, trace.generations[0].output) == (PROMPT, COMPLETION)

    fake.capture = False  # the fake flags content sent with capture off: a failing check
    assert await _post(settings.otlp_url, settings.authorization(), _proto(spans)) == 200
    assert any("content with capture off" in p for p in fake.problems)


async def test_the_fake_checks_basic_auth(fake: FakeLangfuseOtlp) -> None:
    wrong = LangfuseSettings(PUBLIC, "sk-lf-wrong", host=fake.url)
    spans = build_spans(streamed(), capture_content=False, langfuse=True)
    assert await _post(wrong.otlp_url, wrong.authorization(), _proto(spans)) == 401
    assert fake.traces == {}
