"""The spans of a traced request (`llm_proxy.observe.tracing.spans`): a server span and one
client span per attempt, their ids, times, status and attributes per the HTTP and GenAI
semantic conventions, the first-token and stream-end events, and content only with capture."""

from __future__ import annotations

import orjson
import pytest

from llm_proxy.observe.records import ErrorRecord
from llm_proxy.observe.tracing.model import (
    FLAG_HAS_IS_REMOTE,
    FLAG_IS_REMOTE,
    FLAG_SAMPLED,
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
)
from llm_proxy.observe.tracing.spans import build_spans
from tests.observe.tracing.records import (
    ATTEMPT_1,
    ATTEMPT_2,
    CLIENT_PARENT,
    COMPLETION,
    PROMPT,
    SERVER,
    STREAM_TAIL,
    TRACE,
    TS,
    attempt,
    strings,
    traced,
)

NS = 1_000_000_000


def at(offset: float) -> int:
    return round(TS * NS) + round(offset * NS)


def test_a_plain_request() -> None:
    server, client = build_spans(traced(), capture_content=False)

    assert server.trace_id == client.trace_id == bytes.fromhex(TRACE)
    assert server.span_id == bytes.fromhex(SERVER)
    assert server.parent_span_id == b""
    assert (server.kind, server.name) == (KIND_SERVER, "POST /v1/chat/completions")
    assert server.flags == FLAG_SAMPLED | FLAG_HAS_IS_REMOTE  # a root: no remote parent
    assert server.start_ns == round(TS * NS)
    assert server.end_ns - server.start_ns == 851_000_000
    assert server.status_code == STATUS_UNSET
    assert server.events == []
    assert server.attributes == {
        "http.request.method": "POST",
        "http.route": "/v1/chat/completions",
        "url.path": "/v1/chat/completions",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "openai.api.type": "chat_completions",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 8,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "llm_proxy.request.id": "req-1",
        "llm_proxy.key.name": "team-a",
        "llm_proxy.client.name": "openai-python",
        "llm_proxy.provider.name": "alpha",
        "llm_proxy.cost.usd": 0.00042,
        "llm_proxy.attempt.count": 1,
    }

    assert client.span_id == bytes.fromhex(ATTEMPT_1)
    assert client.parent_span_id == server.span_id
    assert (client.kind, client.name) == (KIND_CLIENT, "chat gpt-4o-2024-08-06")
    assert client.flags == FLAG_SAMPLED | FLAG_HAS_IS_REMOTE  # its parent is local
    assert client.start_ns == at(0.002)
    assert client.end_ns == at(0.850)
    assert server.start_ns < client.start_ns < client.end_ns <= server.end_ns
    assert client.status_code == STATUS_UNSET
    assert client.attributes == {
        "http.request.method": "POST",
        "server.address": "api.openai.com",
        "server.port": 443,
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "openai.api.type": "chat_completions",
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 8,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "llm_proxy.request.id": "req-1",
        "llm_proxy.provider.name": "alpha",
        "llm_proxy.attempt.number": 1,
        "llm_proxy.attempt.outcome": "ok",
        "llm_proxy.cost.usd": 0.00042,
    }


def test_a_streamed_request_has_its_first_token_and_its_end() -> None:
    record = traced(
        streamed=True,
        ttft_ms=120.0,
        response_tail=STREAM_TAIL,
        attempt_spans=[attempt(upstream_status=200, first_token=0.118)],
    )
    server, client = build_spans(record, capture_content=False)

    assert server.attributes["gen_ai.request.stream"] is True
    assert server.attributes["gen_ai.response.time_to_first_chunk"] == 0.12
    assert [e.name for e in server.events] == ["llm_proxy.first_token", "llm_proxy.stream_end"]
    first, end = server.events
    assert first.time_ns == at(0.120)
    assert end.time_ns == server.end_ns
    assert end.attributes == {
        "llm_proxy.stream.complete": True,
        "gen_ai.response.finish_reasons": ["stop"],
    }

    assert client.attributes["gen_ai.request.stream"] is True
    assert client.attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.116)
    assert [e.name for e in client.events] == ["llm_proxy.first_token", "llm_proxy.stream_end"]
    assert client.events[0].time_ns == at(0.118)
    assert client.events[1].time_ns == client.end_ns
    assert client.attributes["gen_ai.usage.cache_read.input_tokens"] == 0


def test_failed_over() -> None:
    record = traced(
        provider="beta",
        attempts=["alpha", "beta"],
        errors=[ErrorRecord(TS + 0.3, "req-1", "alpha", "timeout", None, None, "read timeout")],
        attempt_spans=[
            attempt(
                1,
                end=0.300,
                outcome="timeout",
                upstream_status=None,
                retried=True,
                detail="read timeout",
            ),
            attempt(
                2,
                provider_type="azure",
                server_address="beta.openai.azure.com",
                start=0.301,
                upstream_status=200,
            ),
        ],
    )
    server, first, second = build_spans(record, capture_content=False)

    assert server.status_code == STATUS_UNSET  # the request was answered
    assert server.attributes["llm_proxy.attempt.count"] == 2
    assert server.attributes["gen_ai.provider.name"] == "azure.ai.openai"  # who answered
    assert "openai.api.type" not in server.attributes  # not the openai flavour
    assert first.parent_span_id == second.parent_span_id == server.span_id
    assert (first.span_id, second.span_id) == (bytes.fromhex(ATTEMPT_1), bytes.fromhex(ATTEMPT_2))

    assert first.status_code == STATUS_ERROR
    assert first.status_message == "read timeout"
    assert first.attributes["error.type"] == "timeout"
    assert first.attributes["llm_proxy.attempt.retry_reason"] == "timeout"
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert "http.response.status_code" not in first.attributes  # never answered
    assert not any(k.startswith("gen_ai.usage.") for k in first.attributes)
    assert "gen_ai.response.model" not in first.attributes
    assert first.end_ns == at(0.300)

    assert second.status_code == STATUS_UNSET
    assert "error.type" not in second.attributes
    assert "llm_proxy.attempt.retry_reason" not in second.attributes
    assert second.attributes["server.address"] == "beta.openai.azure.com"
    assert second.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert second.attributes["gen_ai.usage.input_tokens"] == 1200
    assert second.start_ns > first.end_ns


def test_a_failed_request_every_attempt_failed() -> None:
    record = traced(
        status=502,
        error_code="upstream_unavailable",
        attempt_spans=[
            attempt(1, outcome="http_5xx", upstream_status=503, retried=True),
            attempt(2, outcome="connect_error", upstream_status=None, detail="refused"),
        ],
        response_tail=None,
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
    )
    server, first, second = build_spans(record, capture_content=False)
    assert server.status_code == STATUS_ERROR
    assert server.attributes["error.type"] == "upstream_unavailable"
    assert server.attributes["llm_proxy.error.code"] == "upstream_unavailable"
    assert "gen_ai.provider.name" not in server.attributes  # none answered
    assert (first.attributes["error.type"], first.attributes["http.response.status_code"]) == (
        "http_5xx",
        503,
    )
    assert first.attributes["llm_proxy.attempt.retry_reason"] == "http_5xx"
    assert second.attributes["error.type"] == "connect_error"
    assert "llm_proxy.attempt.retry_reason" not in second.attributes


def test_an_answered_4xx_is_an_error_of_the_attempt_only() -> None:
    record = traced(status=400, attempt_spans=[attempt(upstream_status=400)], response_tail=None)
    server, client = build_spans(record, capture_content=False)
    assert server.status_code == STATUS_UNSET and "error.type" not in server.attributes
    assert client.status_code == STATUS_ERROR
    assert client.attributes["error.type"] == "400"


def test_a_5xx_passed_through_has_its_status_as_error_type() -> None:
    record = traced(status=503, attempt_spans=[attempt(upstream_status=503, outcome="http_5xx")])
    server, _ = build_spans(record, capture_content=False)
    assert (server.status_code, server.attributes["error.type"]) == (STATUS_ERROR, "503")


def test_a_client_that_hung_up_is_no_error() -> None:
    record = traced(
        status=499,
        streamed=True,
        ttft_ms=100.0,
        response_tail=STREAM_TAIL[:120],
        attempt_spans=[attempt(upstream_status=200, first_token=0.09)],
    )
    server, client = build_spans(record, capture_content=False)
    assert server.attributes["http.response.status_code"] == 499
    assert server.status_code == STATUS_UNSET and "error.type" not in server.attributes
    assert client.status_code == STATUS_UNSET and "error.type" not in client.attributes
    end = server.events[-1]
    assert end.name == "llm_proxy.stream_end"
    assert end.attributes["llm_proxy.stream.complete"] is False

    waiting = traced(status=499, attempt_spans=[attempt(outcome="client_closed")])
    _, cancelled = build_spans(waiting, capture_content=False)
    assert cancelled.status_code == STATUS_UNSET and "error.type" not in cancelled.attributes


@pytest.mark.parametrize(
    ("status", "code", "error"), [(401, "invalid_api_key", False), (503, "no_provider", True)]
)
def test_refused_by_the_proxy_is_a_server_span_only(status: int, code: str, error: bool) -> None:
    record = traced(
        status=status,
        error_code=code,
        provider="none",
        attempts=[],
        attempt_spans=[],
        model_sent=None,
        response_tail=b'{"error":{"message":"no","type":"invalid_request_error"}}',
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
    )
    (server,) = build_spans(record, capture_content=True)
    assert server.attributes["llm_proxy.error.code"] == code
    assert server.attributes["llm_proxy.attempt.count"] == 0
    assert server.attributes["llm_proxy.provider.name"] == "none"
    assert "gen_ai.provider.name" not in server.attributes
    assert server.status_code == (STATUS_ERROR if error else STATUS_UNSET)
    assert server.attributes.get("error.type") == (code if error else None)


def test_content_only_with_capture_on() -> None:
    record = traced(prompt=PROMPT, completion=COMPLETION)
    off = build_spans(record, capture_content=False)
    assert not any(PROMPT in s or COMPLETION in s for s in strings(off))
    assert all(not span.events for span in off)

    server, client = build_spans(record, capture_content=True)
    assert server.events == []
    (event,) = client.events  # on the inference span that answered
    assert event.name == "gen_ai.client.inference.operation.details"
    assert event.time_ns == client.end_ns
    assert event.attributes["gen_ai.operation.name"] == "chat"
    assert orjson.loads(str(event.attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert orjson.loads(str(event.attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": COMPLETION}],
            "finish_reason": "stop",
        }
    ]


def test_content_of_a_request_no_attempt_answered_goes_on_the_server_span() -> None:
    record = traced(
        status=502,
        completion=None,
        response_tail=None,
        attempt_spans=[attempt(outcome="timeout", upstream_status=None)],
        prompt="half a surrogate \ud83d",
    )
    server, client = build_spans(record, capture_content=True)
    assert client.events == []
    (event,) = server.events
    assert "gen_ai.output.messages" not in event.attributes
    messages = orjson.loads(str(event.attributes["gen_ai.input.messages"]))
    assert messages[0]["parts"][0]["content"] == "half a surrogate ?"


def test_the_clients_trace_is_continued() -> None:
    record = traced(parent_span_id=CLIENT_PARENT, trace_state="vendor=abc,other=1")
    server, client = build_spans(record, capture_content=False)
    assert server.parent_span_id == bytes.fromhex(CLIENT_PARENT)
    assert server.flags == FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
    assert client.flags == FLAG_SAMPLED | FLAG_HAS_IS_REMOTE
    assert server.trace_state == client.trace_state == "vendor=abc,other=1"
    assert server.trace_id == client.trace_id == bytes.fromhex(TRACE)


def test_not_sampled_means_no_spans() -> None:
    assert build_spans(traced(sampled=False), capture_content=True) == []
    assert build_spans(traced(span_id=None), capture_content=True) == []


@pytest.mark.parametrize(
    ("route", "operation", "api"),
    [
        ("/v1/chat/completions", "chat", "chat_completions"),
        ("/chat/completions", "chat", "chat_completions"),
        ("/openai/deployments/{deployment}/chat/completions", "chat", "chat_completions"),
        ("/v1/completions", "text_completion", None),
        ("/v1/embeddings", "embeddings", None),
        ("/v1/responses", "chat", "responses"),
        ("/v1/messages", "chat", None),
        ("/v1/images/generations", None, None),
        ("/v1/audio/speech", None, None),
    ],
)
def test_operation_names(route: str, operation: str | None, api: str | None) -> None:
    server, client = build_spans(traced(route=route, path=route), capture_content=False)
    assert server.attributes.get("gen_ai.operation.name") == operation
    assert client.attributes.get("gen_ai.operation.name") == operation
    assert client.attributes.get("openai.api.type") == api
    if operation is None:  # no GenAI attributes at all; an HTTP client span's name
        assert not any(k.startswith("gen_ai.") for s in (server, client) for k in s.attributes)
        assert client.name == "POST"
    else:
        assert client.name == f"{operation} gpt-4o-2024-08-06"


def test_provider_names() -> None:
    for kind, name in [
        ("openai", "openai"),
        ("azure", "azure.ai.openai"),
        ("anthropic", "anthropic"),
        ("someday", "someday"),
    ]:
        record = traced(attempt_spans=[attempt(provider_type=kind)])
        _, client = build_spans(record, capture_content=False)
        assert client.attributes["gen_ai.provider.name"] == name


def test_other_routes_and_methods() -> None:
    record = traced(method="GET", route="/v1/models", path="/v1/models", attempt_spans=[])
    (server,) = build_spans(record, capture_content=True)
    assert server.name == "GET /v1/models"
    assert not any(k.startswith("gen_ai.") for k in server.attributes)
    assert server.events == []  # no content event off generation routes

    odd = traced(method="PURGE", route=None, path="/nowhere", status=404, attempt_spans=[])
    (server,) = build_spans(odd, capture_content=False)
    assert server.name == "HTTP"
    assert server.attributes["http.request.method"] == "_OTHER"
    assert server.attributes["http.request.method_original"] == "PURGE"
    assert "http.route" not in server.attributes
    assert server.attributes["url.path"] == "/nowhere"


def test_an_attempt_without_an_end_ends_with_the_request() -> None:
    record = traced(attempt_spans=[attempt(end=0.0)])
    server, client = build_spans(record, capture_content=False)
    assert client.end_ns == server.end_ns


def test_an_answer_that_failed_mid_body_is_still_the_answer() -> None:
    record = traced(
        status=200,
        streamed=True,
        response_tail=STREAM_TAIL[:200],
        attempt_spans=[attempt(outcome="mid_body_timeout", first_token=0.1, detail="idle")],
    )
    server, client = build_spans(record, capture_content=True)
    assert client.status_code == STATUS_ERROR
    assert client.attributes["error.type"] == "mid_body_timeout"
    assert client.attributes["gen_ai.usage.input_tokens"] == 1200  # the answer's facts
    assert [e.name for e in client.events] == [
        "llm_proxy.first_token",
        "llm_proxy.stream_end",
        "gen_ai.client.inference.operation.details",
    ]
    assert client.events[1].attributes["llm_proxy.stream.complete"] is False
    assert server.attributes["gen_ai.provider.name"] == "openai"


@pytest.mark.parametrize(
    ("status", "outcome", "detail", "error"),
    [
        (499, "incomplete", None, None),  # the client hung up mid-answer
        (499, "client_closed", "CancelledError", None),
        (200, "incomplete", None, "incomplete"),  # the upstream cut it
        (500, "error", "ProtocolError", "ProtocolError"),  # an exception: its class
        (500, "error", None, "_OTHER"),
    ],
)
def test_cancelled_or_cut_answers(
    status: int, outcome: str, detail: str | None, error: str | None
) -> None:
    record = traced(
        status=status,
        streamed=True,
        response_tail=STREAM_TAIL[:300],
        attempt_spans=[attempt(outcome=outcome, detail=detail, first_token=0.1)],
    )
    _, client = build_spans(record, capture_content=False)
    assert client.attributes.get("error.type") == error
    assert client.status_code == (STATUS_UNSET if error is None else STATUS_ERROR)
    # the provider answered (a status): the client got that answer, in part
    assert client.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert client.events[-1].name == "llm_proxy.stream_end"
    assert client.events[-1].attributes["llm_proxy.stream.complete"] is False


def test_a_request_of_a_key_in_a_team_names_the_team() -> None:
    server, client = build_spans(traced(team="search"), capture_content=False)
    assert server.attributes["llm_proxy.team.name"] == "search"
    assert "llm_proxy.team.name" not in client.attributes  # the key's, as llm_proxy.key.name
    (alone, _) = build_spans(traced(), capture_content=False)
    assert "llm_proxy.team.name" not in alone.attributes
