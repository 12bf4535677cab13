"""The mock's Anthropic Messages API: answers (text, tool_use, thinking; streamed as Anthropic
streams, byte for byte), count_tokens, the checks and error shapes, and forced failures."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from llm_proxy.testing.mock import (
    answer_events,
    anthropic_stream_events,
    count_input_tokens,
    message,
    plan_answer,
    schema_value,
)
from tests.helpers import Upstream
from tests.helpers.anthropic_stream import fold, stream_events
from tests.testing.conftest import MockFactory

HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}
HELLO = [{"role": "user", "content": "hi"}]
BASH = {
    "name": "Bash",
    "description": "Run a command",
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "string"},
            "timeout": {"type": "number"},
            "description": {"type": "string"},
        },
        "required": ["command"],
    },
}
WEATHER = {
    "name": "weather",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "near": {"type": ["null", "boolean"]}},
                "required": ["lat", "near"],
            },
        },
        "required": ["city", "unit", "days", "where"],
    },
}


async def post(
    http: aiohttp.ClientSession,
    mock: Upstream,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
) -> tuple[int, CIMultiDict[str], bytes]:
    """POST `body` (with Anthropic's headers unless `headers` are given): status, headers, body."""
    sent = HEADERS if headers is None else headers
    async with http.post(mock.url + path, data=orjson.dumps(body), headers=sent) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 1024, "messages": HELLO, **fields}


async def test_message_and_its_stream(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    """The Message: as Anthropic writes one, its `input_tokens` what count_tokens says; the
    stream: exactly `anthropic_stream_events`'s bytes, adding up to the same Message."""
    mock = await start_mock(chunks=4)
    status, _, counted = await post(http, mock, request(), path="/v1/messages/count_tokens")
    assert status == 200
    input_tokens = orjson.loads(counted)["input_tokens"]
    assert input_tokens == max(1, len(orjson.dumps([None, HELLO, None])) // 4)

    status, headers, body = await post(http, mock, request())
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["request-id"] == "req_mock"
    assert orjson.loads(body) == {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "tok0 tok1 tok2 tok3 "}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 4,
        },
    }

    mock = await start_mock(chunks=4)
    status, headers, raw = await post(http, mock, request(stream=True))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert raw == b"".join(anthropic_stream_events("claude-x", 4, input_tokens=input_tokens))
    kinds = [event["type"] for event in stream_events(raw)]
    assert kinds == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert fold(raw) == orjson.loads(body)


async def test_requests_are_recorded_with_their_headers(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(anthropic_key="sk-ant-test")
    extra = {**HEADERS, "anthropic-beta": "interleaved-thinking-2025-05-14"}
    await post(http, mock, request(metadata={"user_id": "u"}), extra)
    await post(http, mock, request(), {"anthropic-version": "2023-06-01"})  # refused: recorded
    first, refused = mock.recorded
    assert first.path == "/v1/messages"
    assert first.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert first.headers["x-api-key"] == "sk-ant-test"
    assert orjson.loads(first.body)["metadata"] == {"user_id": "u"}
    assert "x-api-key" not in refused.headers


async def test_tool_round_trip(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    """Offered tools, the answer calls the first with an input made from its schema, streamed
    in several fragments; the tool's result sent back, the answer quotes it."""
    mock = await start_mock()
    ask = request(tools=[BASH, WEATHER], stream=True)
    status, _, raw = await post(http, mock, ask)
    assert status == 200
    answer = fold(raw)
    assert answer["stop_reason"] == "tool_use"
    (tool_use,) = answer["content"]
    assert tool_use == {
        "type": "tool_use",
        "id": "toolu_mock",
        "name": "Bash",
        "input": {"command": "echo mock"},
    }
    fragments = [
        event["delta"]["partial_json"]
        for event in stream_events(raw)
        if event["type"] == "content_block_delta"
    ]
    assert fragments[0] == "" and len([f for f in fragments if f]) >= 2

    follow_up = [
        *HELLO,
        {"role": "assistant", "content": [tool_use]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_mock", "content": "mock\n"},
                {"type": "text", "text": "and?"},
            ],
        },
    ]
    status, _, body = await post(http, mock, request(tools=[BASH], messages=follow_up))
    assert status == 200
    reply = orjson.loads(body)
    assert reply["stop_reason"] == "end_turn"
    assert reply["content"] == [{"type": "text", "text": 'The tool said: "mock"'}]

    block_result = [{"type": "tool_result", "tool_use_id": "toolu_mock", "content": [
        {"type": "text", "text": "from a block"}
    ]}]  # fmt: skip
    messages = [*follow_up[:2], {"role": "user", "content": block_result}]
    status, _, raw = await post(http, mock, request(messages=messages, stream=True))
    assert fold(raw)["content"] == [{"type": "text", "text": 'The tool said: "from a block"'}]


async def test_which_tool_is_called(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any], str | None]] = [
        ({}, {}, "Bash"),
        ({}, {"tool_choice": {"type": "tool", "name": "weather"}}, "weather"),
        ({}, {"tool_choice": {"type": "none"}}, None),
        ({"tool": "weather"}, {}, "weather"),
        ({"tool": "none"}, {}, None),
        ({"tool": "none"}, {"tool_choice": {"type": "any"}}, "Bash"),
        ({"tool": "absent"}, {}, "Bash"),
    ]
    for options, fields, expected in cases:
        mock = await start_mock(**options)
        status, _, body = await post(http, mock, request(tools=[BASH, WEATHER], **fields))
        assert status == 200
        content = orjson.loads(body)["content"]
        called = [block["name"] for block in content if block["type"] == "tool_use"]
        assert called == ([expected] if expected else []), (options, fields)


def test_tool_input_fills_the_required_properties() -> None:
    assert schema_value(WEATHER["input_schema"]) == {
        "city": "mock",
        "unit": "celsius",
        "days": 1,
        "where": {"lat": 1, "near": True},
    }
    assert schema_value({"type": "object"}) == {}


async def test_thinking_comes_first_with_a_signature(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(chunks=2)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    status, _, raw = await post(
        http, mock, request(max_tokens=2048, thinking=thinking, stream=True)
    )
    assert status == 200
    blocks = fold(raw)["content"]
    assert [block["type"] for block in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"] and blocks[0]["signature"] == "sig_msg_mock"
    deltas = [e["delta"]["type"] for e in stream_events(raw) if e["type"] == "content_block_delta"]
    thinking_deltas = ["thinking_delta", "thinking_delta", "signature_delta"]
    assert deltas == [*thinking_deltas, "text_delta", "text_delta"]
    status, _, body = await post(http, mock, request(thinking={"type": "adaptive"}))
    assert [block["type"] for block in orjson.loads(body)["content"]] == ["thinking", "text"]


def _tool_use_turn(tool_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": tool_id, "name": "Bash", "input": {}}],
    }


def _tool_result_turn(*tool_ids: str) -> dict[str, Any]:
    results = [{"type": "tool_result", "tool_use_id": tool_id} for tool_id in tool_ids]
    return {"role": "user", "content": results}


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ({"model": None}, "model: Field required"),
    ({"messages": []}, "messages: at least one message is required"),
    ({"messages": None}, "messages: Field required"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "first message must use"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role: Input should be"),
    (
        {"messages": [*HELLO, _tool_use_turn("toolu_1"), {"role": "user", "content": "x"}]},
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after:"
        " toolu_1",
    ),
    (
        {"messages": [*HELLO, _tool_use_turn("toolu_1"), _tool_result_turn("toolu_1", "toolu_2")]},
        "messages.2: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2",
    ),
    ({"messages": [_tool_result_turn("toolu_1")]}, "unexpected `tool_use_id`"),
    (
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
]


@pytest.mark.parametrize(("change", "message_part"), INVALID)
async def test_invalid_requests_are_400s_in_anthropics_shape(
    start_mock: MockFactory, http: aiohttp.ClientSession, change: dict[str, Any], message_part: str
) -> None:
    mock = await start_mock()
    body = {k: v for k, v in {**request(), **change}.items() if v is not None}
    status, headers, answer = await post(http, mock, body)
    assert status == 400, answer
    error = orjson.loads(answer)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message_part in error["error"]["message"]
    assert headers["request-id"] == error["request_id"]


async def test_a_system_turn_and_a_valid_tool_round_trip_pass(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    """What Claude Code sends: a `system` turn among the messages (a beta), tool results."""
    mock = await start_mock()
    messages = [
        *HELLO,
        {"role": "system", "content": "agents: none"},
        _tool_use_turn("toolu_1"),
        _tool_result_turn("toolu_1"),
    ]
    status, _, answer = await post(http, mock, request(messages=messages))
    assert status == 200, answer


async def test_headers_are_checked_first(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(anthropic_key="sk-ant-test")
    version = {"anthropic-version": "2023-06-01"}
    cases = [
        ({**version, "x-api-key": "wrong"}, 401, "authentication_error", "invalid x-api-key"),
        (version, 401, "authentication_error", "x-api-key header is required"),
        ({"x-api-key": "sk-ant-test"}, 400, "invalid_request_error", "anthropic-version"),
    ]
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        for headers, status, error_type, message_part in cases:
            got, _, answer = await post(http, mock, {"model": None}, headers, path)
            error = orjson.loads(answer)["error"]
            assert (got, error["type"]) == (status, error_type), (path, headers)
            assert message_part in error["message"]
        got, _, answer = await post(http, mock, {"x": 1}, path=path)  # past the headers
        assert got == 400 and "model: Field required" in answer.decode()
    mock = await start_mock()  # without a key of its own, any key (or none) passes
    status, _, _ = await post(http, mock, request(), version)
    assert status == 200


async def test_count_tokens(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    mock = await start_mock()
    body = {"model": "claude-x", "messages": HELLO, "system": "be brief", "tools": [BASH]}
    status, _, answer = await post(http, mock, body, path="/v1/messages/count_tokens")
    assert status == 200
    assert orjson.loads(answer) == {"input_tokens": count_input_tokens(body)}
    assert count_input_tokens(body) == len(orjson.dumps(["be brief", HELLO, [BASH]])) // 4
    status, _, answer = await post(http, mock, {"model": "m"}, path="/v1/messages/count_tokens")
    assert status == 400 and b"messages: Field required" in answer


async def test_forced_errors(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    mock = await start_mock()
    status, _, body = await post(http, mock, request(mock_status=529))
    assert status == 529
    assert orjson.loads(body)["error"] == {
        "type": "overloaded_error",
        "message": "mock upstream error 529",
    }
    status, headers, body = await post(http, mock, request(mock_status=429, mock_retry_after=7))
    assert (status, headers["retry-after"]) == (429, "7")
    assert orjson.loads(body)["error"]["type"] == "rate_limit_error"
    status, _, body = await post(
        http, mock, request(mock_status=500, mock_error_type="overloaded_error")
    )
    assert (status, orjson.loads(body)["error"]["type"]) == (500, "overloaded_error")


async def test_an_instance_fails_its_first_requests(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(fail_status=429, fail_times=2, retry_after=3)
    answers = [await post(http, mock, request()) for _ in range(3)]
    assert [status for status, _, _ in answers] == [429, 429, 200]
    assert answers[0][1]["retry-after"] == "3"
    mock = await start_mock(fail_status=529, fail_type="api_error")
    for _ in range(2):
        status, _, body = await post(http, mock, request())
        assert (status, orjson.loads(body)["error"]["type"]) == (529, "api_error")


async def test_error_event_mid_stream(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    mock = await start_mock(chunks=5)
    status, _, raw = await post(http, mock, request(stream=True, mock_error_after=2))
    assert status == 200
    input_tokens = count_input_tokens(request())
    expected = anthropic_stream_events("claude-x", 5, input_tokens=input_tokens, error_after=2)
    assert raw == b"".join(expected)
    events = stream_events(raw)
    assert [e["type"] for e in events][-3:] == ["content_block_delta"] * 2 + ["error"]
    assert events[-1]["error"] == {"type": "overloaded_error", "message": "Overloaded"}

    mock = await start_mock(chunks=2, error_after=2, fail_type="api_error")  # after every delta
    status, _, raw = await post(http, mock, request(stream=True))
    events = stream_events(raw)
    assert [e["type"] for e in events][-2:] == ["content_block_stop", "error"]
    assert events[-1]["error"]["type"] == "api_error"


async def test_cache_usage_fields(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    mock = await start_mock()
    body = request(stream=True, mock_cache_read_tokens=100, mock_cache_write_tokens=20)
    _, _, raw = await post(http, mock, body)
    usage = fold(raw)["usage"]
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (100, 20)


TOOL_RESULT = [
    *HELLO,
    _tool_use_turn("toolu_1"),
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}
    ]},
]  # fmt: skip


@given(
    chunks=st.integers(1, 12),
    thinking=st.booleans(),
    tools=st.sampled_from([None, [BASH], [WEATHER, BASH]]),
    after_tool=st.booleans(),
    content=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
)
def test_every_stream_adds_up_to_its_message(
    chunks: int, thinking: bool, tools: Any, after_tool: bool, content: str | None
) -> None:
    """Whatever the answer (text, tool_use, thinking, after a tool result), its stream folds
    into the very Message the mock answers without streaming."""
    data = request(messages=copy.deepcopy(TOOL_RESULT if after_tool else HELLO))
    if thinking:
        data["thinking"] = {"type": "adaptive"}
    if tools is not None:
        data["tools"] = tools
    if content is not None:
        data["mock_content"] = content
    answer = plan_answer(data, "msg_x", chunks)
    assert fold(b"".join(answer_events(answer))) == message(answer)
