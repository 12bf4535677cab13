"""Anthropic Messages streams as OpenAI chat-completions streams
(`llm_proxy.protocols.chat_stream.ChatStream`): each mapping, the ends (finish, usage, [DONE],
errors, cut streams), generated event sequences split at random bytes, and the OpenAI SDK
reading the result."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from llm_proxy.protocols.chat_stream import ChatStream
from llm_proxy.protocols.chat_via_messages import MessagesCall
from llm_proxy.protocols.usage import TokenUsage
from tests.helpers.grammar_openai import accumulate, check_openai_stream

CALL = MessagesCall(model="gpt-x", stream=True)
USAGE_CALL = MessagesCall(model="gpt-x", stream=True, include_usage=True)
JSON_CALL = MessagesCall(model="gpt-x", stream=True, json_tool="result")


def event(kind: str, **fields: Any) -> bytes:
    return (
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"
    )


def start(input_tokens: int = 10, **usage: int) -> bytes:
    message = {
        "id": "msg_01XyZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return event("message_start", message=message)


def text_block(index: int, *pieces: str) -> bytes:
    return (
        event("content_block_start", index=index, content_block={"type": "text", "text": ""})
        + b"".join(
            event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
            for piece in pieces
        )
        + event("content_block_stop", index=index)
    )


def tool_block(index: int, tool_id: str, name: str, *fragments: str) -> bytes:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return (
        event("content_block_start", index=index, content_block=block)
        + b"".join(
            event(
                "content_block_delta",
                index=index,
                delta={"type": "input_json_delta", "partial_json": fragment},
            )
            for fragment in fragments
        )
        + event("content_block_stop", index=index)
    )


def end(stop_reason: str = "end_turn", output_tokens: int = 7) -> bytes:
    return event(
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": output_tokens},
    ) + event("message_stop")


def run(call: MessagesCall, *chunks: bytes) -> tuple[bytes, ChatStream]:
    stream = ChatStream(call, created=1700000000)
    said = b"".join(stream.feed(chunk) for chunk in chunks) + stream.flush()
    return said, stream


def payloads(raw: bytes) -> list[Any]:
    return [
        orjson.loads(line[6:]) if line != b"data: [DONE]" else "[DONE]"
        for line in raw.split(b"\n\n")
        if line
    ]


def test_a_text_stream_chunk_by_chunk() -> None:
    raw, stream = run(CALL, start(), text_block(0, "Hel", "lo"), end())
    base = {
        "id": "chatcmpl-01XyZ",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "claude-sonnet-4-5",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    assert payloads(raw) == [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        "[DONE]",
    ]
    assert stream.usage == TokenUsage(10, 7)
    check_openai_stream(raw, include_usage=False)


def test_include_usage_adds_the_usage_chunk_last_and_null_usage_before() -> None:
    raw, _ = run(
        USAGE_CALL,
        start(10, cache_read_input_tokens=100, cache_creation_input_tokens=5),
        text_block(0, "Hi"),
        end(output_tokens=3),
    )
    chunks = check_openai_stream(raw, include_usage=True)
    assert all("usage" in chunk and chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 115,
        "completion_tokens": 3,
        "total_tokens": 118,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_thinking_is_reasoning_content_and_signatures_are_dropped() -> None:
    thinking = (
        event(
            "content_block_start",
            index=0,
            content_block={"type": "thinking", "thinking": "", "signature": ""},
        )
        + event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm"})
        + event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "s"})
        + event("content_block_stop", index=0)
        + event(
            "content_block_start", index=1, content_block={"type": "redacted_thinking", "data": "x"}
        )
        + event("content_block_stop", index=1)
    )
    raw, _ = run(CALL, start(), thinking, text_block(2, "Yes"), end())
    said = accumulate(check_openai_stream(raw))
    assert said["reasoning_content"] == "Hmm"
    assert said["content"] == "Yes"
    assert b"signature" not in raw
    assert b'"s"' not in raw


def test_tool_calls_are_indexed_among_tool_calls() -> None:
    raw, _ = run(
        CALL,
        start(),
        text_block(0, "Looking."),
        tool_block(1, "toolu_a", "weather", "", '{"city":', ' "Paris"}'),
        tool_block(2, "toolu_b", "clock", '{"tz": "UTC"}'),
        end("tool_use"),
    )
    chunks = check_openai_stream(raw)
    tool_deltas = [
        call for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert tool_deltas[0] == {
        "index": 0,
        "id": "toolu_a",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    assert tool_deltas[1] == {"index": 0, "function": {"arguments": '{"city":'}}
    said = accumulate(chunks)
    assert said["tool_calls"] == [
        {"id": "toolu_a", "name": "weather", "arguments": '{"city": "Paris"}'},
        {"id": "toolu_b", "name": "clock", "arguments": '{"tz": "UTC"}'},
    ]
    assert said["finish_reason"] == "tool_calls"
    assert said["content"] == "Looking."


def test_a_tool_call_without_input_deltas_has_empty_object_arguments() -> None:
    raw, _ = run(CALL, start(), tool_block(0, "toolu_a", "clock"), end("tool_use"))
    assert accumulate(check_openai_stream(raw))["tool_calls"][0]["arguments"] == "{}"


def test_the_json_tool_streams_as_content_and_finishes_with_stop() -> None:
    raw, _ = run(
        JSON_CALL,
        start(),
        tool_block(0, "toolu_a", "result", '{"answer"', ": 42}"),
        end("tool_use"),
    )
    said = accumulate(check_openai_stream(raw))
    assert said["content"] == '{"answer": 42}'
    assert said["tool_calls"] == []
    assert said["finish_reason"] == "stop"


def test_with_the_json_tool_a_client_tool_call_stays_a_tool_call() -> None:
    raw, _ = run(JSON_CALL, start(), tool_block(0, "toolu_a", "clock", "{}"), end("tool_use"))
    said = accumulate(check_openai_stream(raw))
    assert said["finish_reason"] == "tool_calls"
    assert said["tool_calls"][0]["name"] == "clock"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    raw, _ = run(CALL, start(), text_block(0, "x"), end(stop_reason))
    assert accumulate(check_openai_stream(raw))["finish_reason"] == finish_reason


def test_pings_unknown_events_and_server_tool_blocks_say_nothing() -> None:
    server_tool = event(
        "content_block_start",
        index=1,
        content_block={
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {},
        },
    ) + event(
        "content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": "{}"}
    )
    noise = event("ping") + event("a_future_event", detail=1) + b": comment\n\n"
    plain, _ = run(CALL, start(), text_block(0, "Hi"), end())
    noisy, _ = run(
        CALL, noise, start(), noise, text_block(0, "Hi"), server_tool, noise, end(), noise
    )
    assert noisy == plain


def test_any_split_of_the_bytes_says_the_same() -> None:
    upstream = (
        start() + text_block(0, "Hé", "llo") + tool_block(1, "t", "f", '{"a": 1}') + end("tool_use")
    )
    whole, _ = run(CALL, upstream)
    assert run(CALL, *(upstream[i : i + 1] for i in range(len(upstream))))[0] == whole
    for cut in range(len(upstream)):
        assert run(CALL, upstream[:cut], upstream[cut:])[0] == whole


def test_an_upstream_error_event_ends_the_stream_with_an_openai_error() -> None:
    stream = ChatStream(CALL, created=1)
    said = stream.feed(start() + text_block(0, "Hi"))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    said += stream.feed(b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")
    assert stream.feed(end()) == b""
    assert stream.flush() == b""
    assert stream.fail("late") == b""
    chunks = check_openai_stream(said)
    assert chunks[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": "overloaded_error",
        }
    }
    assert b"[DONE]" not in said


def test_fail_mid_stream_ends_with_an_error_event() -> None:
    stream = ChatStream(CALL, created=1)
    said = stream.feed(start() + tool_block(0, "t", "f", '{"a"'))
    said += stream.fail("The upstream went away.", "timeout_error")
    assert check_openai_stream(said)[-1]["error"]["type"] == "timeout_error"
    assert stream.flush() == b""
    assert stream.ping() == b""


def test_flush_without_message_stop_still_ends_validly() -> None:
    delta = event("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 9})
    raw, stream = run(USAGE_CALL, start(), text_block(0, "Cut"), delta)
    said = accumulate(check_openai_stream(raw, include_usage=True))
    assert said["finish_reason"] == "length"
    assert said["usage"]["completion_tokens"] == 9
    assert stream.usage == TokenUsage(10, 9)


def test_flush_mid_block_without_the_final_blank_line() -> None:
    raw, _ = run(CALL, start() + text_block(0, "Cut")[:-2])
    said = accumulate(check_openai_stream(raw))
    assert said["content"] == "Cut"
    assert said["finish_reason"] == "stop"


def test_flush_inside_a_tool_call_is_an_error_event() -> None:
    """Its arguments are cut: a client must not run the tool on a part of them."""
    raw, _ = run(CALL, start(), tool_block(0, "t", "f", '{"path": "/tm')[:-40])
    chunks = check_openai_stream(raw)
    assert chunks[-1]["error"]["message"] == "The upstream ended its stream inside a tool call."


def test_flush_inside_the_json_answer_finishes_like_cut_text() -> None:
    raw, _ = run(JSON_CALL, start(), tool_block(0, "t", "result", '{"a": ', "1}")[:-40])
    said = accumulate(check_openai_stream(raw))
    assert said["content"] == '{"a": 1}'
    assert said["finish_reason"] == "stop"


@pytest.mark.parametrize("upstream", [b"", event("ping"), b"not sse at all"])
def test_flush_after_nothing_is_an_error_event(upstream: bytes) -> None:
    raw, stream = run(CALL, upstream)
    [error] = check_openai_stream(raw)
    assert error["error"]["type"] == "api_error"
    assert stream.usage is None


def test_ping_is_an_sse_comment() -> None:
    stream = ChatStream(CALL, created=1)
    assert stream.ping() == b": ping\n\n"
    said = stream.feed(start()) + stream.ping() + stream.feed(text_block(0, "x") + end())
    check_openai_stream(said)
    assert stream.ping() == b""


# The OpenAI SDK reads what ChatStream says.


def sdk_client(raw: bytes) -> openai.OpenAI:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return openai.OpenAI(
        api_key="test",
        base_url="http://proxy.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    )


def test_the_openai_sdk_reads_each_chunk_and_accumulates_the_completion() -> None:
    raw, _ = run(
        USAGE_CALL,
        start(),
        text_block(0, "Hi"),
        tool_block(1, "toolu_a", "weather", '{"city": "Paris"}'),
        end("tool_use"),
    )
    for chunk in check_openai_stream(raw, include_usage=True):
        ChatCompletionChunk.model_validate(chunk)
    client = sdk_client(raw)
    with client.chat.completions.stream(
        model="gpt-x", messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()
    [choice] = completion.choices
    assert choice.message.content == "Hi"
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage is not None
    assert completion.usage.total_tokens == 17


def test_the_openai_sdk_raises_the_error_event() -> None:
    stream = ChatStream(CALL, created=1)
    raw = stream.feed(start() + text_block(0, "Hi")) + stream.fail("Upstream lost.")
    client = sdk_client(raw)
    chunks = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match=r"Upstream lost\."):
        for _ in chunks:
            pass


# Generated event sequences.

_TEXT = st.text(max_size=12)
_INPUT = st.dictionaries(
    st.text(max_size=6),
    st.one_of(
        st.integers(),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
    max_size=4,
)
_BLOCKS = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.lists(_TEXT, max_size=4)),
        st.tuples(st.just("thinking"), st.lists(_TEXT, max_size=4)),
        st.tuples(st.just("tool"), _INPUT),
        st.tuples(st.just("json"), _INPUT),
    ),
    max_size=6,
)
_STOP_REASONS = st.sampled_from(
    ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"]
)
_TOKENS = st.integers(min_value=0, max_value=10**6)


def _split(text: str, draw: st.DrawFn) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    edges = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], TokenUsage]:
    """An Anthropic event stream and what it says: text, reasoning, tool calls (id, name,
    arguments exactly as sent), the json answer, the usage."""
    noise = [event("ping"), event("a_future_event"), b": keep-alive\n\n"]
    usage = TokenUsage(draw(_TOKENS), draw(_TOKENS), draw(_TOKENS), draw(_TOKENS))
    events = [
        start(
            usage.input_tokens,
            cache_read_input_tokens=usage.cache_read_tokens,
            cache_creation_input_tokens=usage.cache_write_tokens,
        )
    ]
    expected: dict[str, Any] = {"content": "", "reasoning_content": "", "tool_calls": []}
    for index, (kind, value) in enumerate(draw(_BLOCKS)):
        if kind == "text":
            events.append(text_block(index, *value))
            expected["content"] += "".join(value)
        elif kind == "thinking":
            events.append(
                event(
                    "content_block_start",
                    index=index,
                    content_block={"type": "thinking", "thinking": ""},
                )
            )
            for piece in value:
                delta = {"type": "thinking_delta", "thinking": piece}
                events.append(event("content_block_delta", index=index, delta=delta))
            events.append(
                event(
                    "content_block_delta",
                    index=index,
                    delta={"type": "signature_delta", "signature": "Eu8="},
                )
            )
            events.append(event("content_block_stop", index=index))
            expected["reasoning_content"] += "".join(value)
        else:
            arguments = json.dumps(value)
            name = "result" if kind == "json" else f"tool_{index}"
            events.append(tool_block(index, f"toolu_{index}", name, "", *_split(arguments, draw)))
            if kind == "json":
                expected["content"] += arguments
            else:
                expected["tool_calls"].append(
                    {"id": f"toolu_{index}", "name": name, "arguments": arguments}
                )
        events.extend(draw(st.lists(st.sampled_from(noise), max_size=2)))
    stop_reason = draw(_STOP_REASONS)
    events.append(end(stop_reason, usage.output_tokens))
    expected["stop_reason"] = stop_reason
    raw = b"".join(events)
    if draw(st.booleans()):
        raw = raw.replace(b"\n", b"\r\n")
    return raw, expected, usage


def _pieces(raw: bytes, cuts: list[int]) -> Iterator[bytes]:
    edges = [0, *sorted(cut % (len(raw) + 1) for cut in cuts), len(raw)]
    for a, b in itertools.pairwise(edges):
        yield raw[a:b]


_EXPECTED_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anthropic_streams(), st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_generated_streams_split_anywhere(
    upstream: tuple[bytes, dict[str, Any], TokenUsage], cuts: list[int], include_usage: bool
) -> None:
    raw, expected, usage = upstream
    call = MessagesCall(model="gpt-x", stream=True, include_usage=include_usage, json_tool="result")
    said, stream = run(call, *_pieces(raw, cuts))
    chunks = check_openai_stream(said, include_usage=include_usage)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    result = accumulate(chunks)
    assert result["content"] == expected["content"]
    assert result["reasoning_content"] == expected["reasoning_content"]
    assert result["tool_calls"] == expected["tool_calls"]
    if expected["stop_reason"] == "tool_use":
        assert result["finish_reason"] == ("tool_calls" if expected["tool_calls"] else "stop")
    else:
        assert result["finish_reason"] == _EXPECTED_FINISH[expected["stop_reason"]]
    assert stream.usage == usage
    if include_usage:
        assert result["usage"]["prompt_tokens"] == usage.prompt_tokens
        assert result["usage"]["completion_tokens"] == usage.output_tokens
        assert result["usage"]["prompt_tokens_details"] == {
            "cached_tokens": usage.cache_read_tokens
        }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anthropic_streams(), st.integers(min_value=0), st.booleans(), st.booleans())
def test_generated_streams_cut_anywhere_still_end_validly(
    upstream: tuple[bytes, dict[str, Any], TokenUsage], cut: int, failed: bool, include_usage: bool
) -> None:
    """An upstream that stops at any byte: `flush` (the body ended) or `fail` (it broke)
    still gives a stream the grammar accepts."""
    raw = upstream[0][: cut % (len(upstream[0]) + 1)]
    call = MessagesCall(model="gpt-x", stream=True, include_usage=include_usage, json_tool="result")
    stream = ChatStream(call, created=1)
    said = stream.feed(raw)
    complete = said.endswith(b"data: [DONE]\n\n")
    said += stream.fail("The upstream broke.") if failed else stream.flush()
    chunks = check_openai_stream(said, include_usage=include_usage)
    if failed and not complete:
        assert chunks[-1]["error"]["message"] == "The upstream broke."
    elif not failed and "error" in chunks[-1] and chunks[:-1]:
        # Only a cut tool call (its arguments incomplete) ends a started stream in an error.
        assert chunks[-1]["error"]["message"] == "The upstream ended its stream inside a tool call."
        assert accumulate(chunks)["tool_calls"]
