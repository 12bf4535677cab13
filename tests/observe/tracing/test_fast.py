"""`fast.encode_spans` (the exporter's path) writes exactly the bytes of the reference, the
span builder and the encoder (`protobuf_spans(build_spans(record))`): on every record the span
tests use, and on records Hypothesis generates (methods, routes, statuses, attempts and their
outcomes, streams, answers, a client's parent and tracestate, odd text)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.observe.records import AttemptRecord, RequestRecord
from llm_proxy.observe.tracing.fast import encode_spans
from llm_proxy.observe.tracing.otlp import protobuf_spans
from llm_proxy.observe.tracing.spans import build_spans
from tests.observe.tracing.records import (
    CHAT_TAIL,
    CLIENT_PARENT,
    STREAM_TAIL,
    attempt,
    traced,
)

ANTHROPIC_TAIL = (
    b'{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",'
    b'"content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":20,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,'
    b'"output_tokens":3}}'
)
RESPONSES_TAIL = (
    b'{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1",'
    b'"output":[],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},'
    b'"output_tokens":87,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":123}}'
)


def reference(record: RequestRecord) -> bytes:
    return protobuf_spans(build_spans(record, capture_content=False))


def test_the_span_tests_records() -> None:
    records = [
        traced(),
        traced(response_tail=STREAM_TAIL, streamed=True, ttft_ms=12.5),
        traced(parent_span_id=CLIENT_PARENT, trace_state="rojo=1,congo=2"),
        traced(
            attempt_spans=[
                attempt(1, outcome="http_5xx", upstream_status=503, retried=True, detail="503"),
                attempt(2, start=0.9, end=1.5),
            ],
            attempts=["alpha", "beta"],
        ),
        traced(status=499, attempt_spans=[attempt(outcome="client_closed", end=0.0)]),
        traced(status=502, error_code="upstream_unavailable", attempt_spans=[]),
        traced(status=404, error_code="model_not_found", attempt_spans=[], attempts=[]),
        traced(method="BREW", route=None, path="/v1/whatever"),
        traced(route="/v1/embeddings", path="/v1/embeddings", response_tail=None),
        traced(response_tail=ANTHROPIC_TAIL, route="/v1/messages", path="/v1/messages"),
        traced(response_tail=RESPONSES_TAIL, route="/v1/responses", path="/v1/responses"),
        traced(attempt_spans=[attempt(provider_type="anthropic", outcome="error", detail="X")]),
        traced(sampled=False),
    ]
    for record in records:
        assert encode_spans(record) == reference(record)


_TEXT = st.text(max_size=40)
_OUTCOMES = st.sampled_from(
    [
        "ok",
        "http_5xx",
        "http_429",
        "timeout",
        "connect_error",
        "incomplete",
        "client_closed",
        "error",
    ]
)


@st.composite
def records(draw: Any) -> RequestRecord:
    count = draw(st.integers(0, 3))
    attempts = []
    for number in range(1, count + 1):
        start = draw(st.floats(0, 5, allow_nan=False))
        attempts.append(
            AttemptRecord(
                span_id=draw(st.sampled_from(["b7ad6b7169203331", "c8be7c827a314442"])),
                number=number,
                provider=draw(st.sampled_from(["alpha", "beta", "ünï"])),
                provider_type=draw(st.sampled_from(["openai", "azure", "anthropic", "other"])),
                server_address=draw(st.sampled_from(["api.openai.com", "127.0.0.1"])),
                server_port=draw(st.sampled_from([443, 8080])),
                model_sent=draw(st.none() | st.sampled_from(["gpt-4o", "c4"])),
                start=start,
                end=draw(st.just(0.0) | st.floats(start, 10, allow_nan=False)),
                outcome=draw(_OUTCOMES),
                upstream_status=draw(st.none() | st.sampled_from([200, 400, 429, 500, 503])),
                retried=number < count and draw(st.booleans()),
                first_token=draw(st.none() | st.floats(start, 10, allow_nan=False)),
                detail=draw(st.none() | _TEXT),
            )
        )
    route = draw(
        st.sampled_from(
            [
                "/v1/chat/completions",
                "/chat/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/responses",
                "/v1/messages",
                "/openai/deployments/{deployment}/chat/completions",
                "/v1/models",
                None,
            ]
        )
    )
    return traced(
        request_id=draw(_TEXT),
        key_name=draw(st.sampled_from(["team-a", "anonymous", "ключ"])),
        method=draw(st.sampled_from(["POST", "GET", "DELETE", "BREW"])),
        path=draw(st.sampled_from(["/v1/chat/completions", "/v1/models", "/x"])),
        route=route,
        model=draw(st.none() | st.sampled_from(["gpt-4o", "claude-sonnet-4"])),
        provider=draw(st.sampled_from(["alpha", "none"])),
        status=draw(st.sampled_from([200, 400, 404, 429, 499, 500, 502, 504])),
        duration_ms=draw(st.floats(0, 20_000, allow_nan=False)),
        ttft_ms=draw(st.none() | st.floats(0, 20_000, allow_nan=False)),
        prompt_tokens=draw(st.none() | st.integers(0, 2**40)),
        completion_tokens=draw(st.none() | st.integers(0, 10**6)),
        cost_usd=draw(st.none() | st.floats(0, 100, allow_nan=False)),
        streamed=draw(st.booleans()),
        error_code=draw(st.none() | st.sampled_from(["model_not_found", "upstream_timeout"])),
        parent_span_id=draw(st.none() | st.just(CLIENT_PARENT)),
        trace_state=draw(st.none() | st.just("rojo=1")),
        attempt_spans=attempts,
        attempts=[a.provider for a in attempts],
        response_tail=draw(
            st.none()
            | st.sampled_from([CHAT_TAIL, STREAM_TAIL, ANTHROPIC_TAIL, RESPONSES_TAIL])
            | st.binary(max_size=200)
        ),
    )


@settings(max_examples=300, deadline=None)
@given(records())
def test_generated_records(record: RequestRecord) -> None:
    assert encode_spans(record) == reference(record)
