"""A chat-completions stream as an Anthropic Messages stream
(`llm_proxy.protocols.messages_stream.MessagesStream`): each quirk on a recorded-style input,
then random chunk sequences split at random bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.messages_answer import ChatCall
from llm_proxy.protocols.messages_stream import EMPTY_STREAM_MESSAGE, MessagesStream
from llm_proxy.protocols.stream import StreamTranslator
from llm_proxy.protocols.usage import TokenUsage
from tests.helpers.chat_streams import chunk, sse, tool, upstream_streams
from tests.helpers.grammar_anthropic import assemble, check_anthropic_stream

CALL = ChatCall(model="claude-sonnet-4-5", stream=True, stop_sequences=("END",))
USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "prompt_tokens_details": {"cached_tokens": 60},
}


def run(raw: bytes, call: ChatCall = CALL, step: int = 0) -> bytes:
    """The client's stream for the upstream's `raw`, fed whole or `step` bytes at a time."""
    stream = MessagesStream(call)
    if step:
        out = b"".join(stream.feed(raw[start : start + step]) for start in range(0, len(raw), step))
    else:
        out = stream.feed(raw)
    return out + stream.flush()


def message(raw: bytes, call: ChatCall = CALL, step: int = 0) -> dict[str, Any]:
    return assemble(check_anthropic_stream(run(raw, call, step)))


def test_text_with_the_usage_after_the_finish_and_no_done() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}, usage=None),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        {"id": "chatcmpl-7", "choices": [], "usage": USAGE},
    )
    for step in (0, 1, 7):
        assert message(raw, step=step) == {
            "id": "msg_7",
            "type": "message",
            "role": "assistant",
            "model": "qwen3",
            "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 40,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 60,
                "output_tokens": 20,
            },
        }


def test_the_end_waits_for_the_usage_chunk() -> None:
    stream = MessagesStream(CALL)
    out = stream.feed(sse(chunk({"content": "Hi"}), chunk({}, "stop")))
    assert b"message_delta" not in out
    assert stream.usage is None
    out += stream.feed(sse({"choices": [], "usage": USAGE}, "[DONE]"))
    assert stream.usage == TokenUsage(40, 20, 60)
    events = check_anthropic_stream(out)
    assert events[-2]["usage"]["output_tokens"] == 20
    assert stream.flush() == b""
    assert stream.feed(sse(chunk({"content": "late"}))) == b""


def test_reasoning_text_and_a_tool_call_in_one_chunk() -> None:
    delta = {
        "reasoning_content": "Think.",
        "content": "Checking.",
        "tool_calls": [tool(0, '{"city": "Paris"}', "call_1", "get_weather")],
    }
    result = message(sse(chunk(delta), chunk({}, "tool_calls", usage=USAGE), "[DONE]"))
    assert result["content"] == [
        {"type": "thinking", "thinking": "Think.", "signature": ""},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert result["stop_reason"] == "tool_use"


def test_reasoning_as_openrouter_sends_it() -> None:
    result = message(sse(chunk({"reasoning": "Hm"}), chunk({"content": "Yes"}, "stop")))
    assert [block["type"] for block in result["content"]] == ["thinking", "text"]
    assert result["content"][0]["thinking"] == "Hm"


def test_sequential_tool_calls_are_forwarded_live() -> None:
    stream = MessagesStream(CALL)
    stream.feed(sse(chunk({"tool_calls": [tool(0, '{"a":', "c0", "first")]})))
    stream.feed(sse(chunk({"tool_calls": [tool(0, " 1}")]})))
    out = stream.feed(sse(chunk({"tool_calls": [tool(1, '{"b":', "c1", "second")]})))
    # The first call is whole: its block closes, the second's opens with its first fragment.
    assert b'"content_block_stop","index":0' in out
    assert b'"partial_json":"{\\"b\\":"' in out


def test_interleaved_tool_calls_are_serialized() -> None:
    stream = MessagesStream(CALL)
    out = stream.feed(sse(chunk({"tool_calls": [tool(0, '{"a":', "c0", "first")]})))
    held = stream.feed(sse(chunk({"tool_calls": [tool(1, '{"b":', "c1", "second")]})))
    assert b"content_block" not in held  # the first call is not whole: the second waits
    out += held + stream.feed(sse(chunk({"tool_calls": [tool(0, "1}"), tool(1, "2}")]})))
    out += stream.feed(sse(chunk({}, "tool_calls"))) + stream.flush()
    result = assemble(check_anthropic_stream(out))
    assert [(block["id"], block["name"], block["input"]) for block in result["content"]] == [
        ("c0", "first", {"a": 1}),
        ("c1", "second", {"b": 2}),
    ]


def test_interleaved_calls_wait_for_the_end_when_the_first_never_looks_whole() -> None:
    raw = sse(
        chunk(
            {"tool_calls": [tool(0, '{"a": "', "c0", "first"), tool(1, '{"b": 2', "c1", "second")]}
        ),
        chunk({"tool_calls": [tool(1, "}"), tool(0, 'x"')]}),
        chunk({"tool_calls": [tool(0, "}")]}, "tool_calls"),
    )
    result = message(raw, step=3)
    assert [block["input"] for block in result["content"]] == [{"a": "x"}, {"b": 2}]


def test_text_after_tool_calls_comes_after_them() -> None:
    raw = sse(
        chunk({"content": "Before. "}),
        chunk({"tool_calls": [tool(0, "{}", "c0", "now")]}),
        chunk({"content": "After."}, "tool_calls"),
    )
    result = message(raw)
    assert [block["type"] for block in result["content"]] == ["text", "tool_use", "text"]
    assert result["content"][2]["text"] == "After."


def test_tool_names_are_restored() -> None:
    call = ChatCall(model="m", tool_names={"read_file_1234abcd": "read.file"})
    raw = sse(chunk({"tool_calls": [tool(0, "{}", "c0", "read_file_1234abcd")]}, "tool_calls"))
    assert message(raw, call)["content"][0]["name"] == "read.file"


def test_arguments_that_are_not_an_object() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "", "c0", "empty")]}),
        chunk({"tool_calls": [tool(1, "not ", "c1", "broken")]}),
        chunk({"tool_calls": [tool(1, "json")]}),
        chunk({"tool_calls": [tool(2, json.dumps('{"x": 1}'), "c2", "twice")]}, "tool_calls"),
    )
    result = message(raw)
    assert [block["input"] for block in result["content"]] == [{}, {}, {"x": 1}]


def test_tool_calls_without_index_or_id() -> None:
    raw = sse(
        chunk({"tool_calls": [{"id": "g0", "function": {"name": "a", "arguments": '{"x":1}'}}]}),
        chunk({"tool_calls": [{"id": "g1", "function": {"name": "b", "arguments": '{"y":'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "2}"}}]}),
        chunk({"tool_calls": [{"index": 5, "function": {"name": "c", "arguments": "{}"}}]}, "stop"),
    )
    result = message(raw)
    assert [(block["id"], block["input"]) for block in result["content"]] == [
        ("g0", {"x": 1}),
        ("g1", {"y": 2}),
        ("toolu_7_2", {}),
    ]
    assert result["stop_reason"] == "tool_use"  # calls with a "stop" finish


def test_a_stop_sequence_vllm_reports() -> None:
    result = message(sse(chunk({"content": "Hi"}), chunk({}, "stop"), "[DONE]"))
    assert result["stop_sequence"] is None
    finished = chunk({}, "stop")
    finished["choices"][0]["stop_reason"] = "END"
    result = message(sse(chunk({"content": "Hi"}), finished))
    assert (result["stop_reason"], result["stop_sequence"]) == ("stop_sequence", "END")


def test_length_keeps_arguments_cut_short() -> None:
    raw = sse(chunk({"tool_calls": [tool(0, '{"path": "/tm', "c0", "write")]}), chunk({}, "length"))
    events = check_anthropic_stream(run(raw))
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    fragments = [
        event["delta"]["partial_json"] for event in events if event["type"] == "content_block_delta"
    ]
    assert "".join(fragments) == '{"path": "/tm'


def test_quirks_empty_choices_role_only_and_null_usage() -> None:
    raw = sse(
        {"id": "chatcmpl-7", "choices": [], "usage": None},
        chunk({"role": "assistant"}),
        chunk({"content": None, "reasoning_content": None}, usage=None),
        {"id": "chatcmpl-7", "choices": None},
        chunk({"content": "ok"}),
        "not json",
        "[1, 2]",
    )
    result = message(raw)
    assert result["content"] == [{"type": "text", "text": "ok"}]
    assert result["stop_reason"] == "end_turn"  # no finish_reason: the stream just ended


def test_a_last_event_without_its_blank_line() -> None:
    raw = sse(chunk({"content": "a"}), chunk({"content": "b"}, "stop"))
    assert message(raw[:-2])["content"][0]["text"] == "ab"


def test_crlf_lines() -> None:
    raw = sse(chunk({"content": "a"}), chunk({"content": "b"}, "stop")).replace(b"\n", b"\r\n")
    assert message(raw, step=1)["content"][0]["text"] == "ab"


def test_the_usage_of_the_first_chunk_is_in_message_start() -> None:
    raw = sse(
        chunk({"content": "a"}, usage={"prompt_tokens": 9, "completion_tokens": 1}),
        chunk({}, "stop"),
    )
    events = check_anthropic_stream(run(raw))
    assert events[0]["message"]["usage"]["input_tokens"] == 9


def test_a_message_id_given() -> None:
    stream = MessagesStream(CALL, message_id="msg_given")
    events = check_anthropic_stream(stream.feed(sse(chunk({"content": "a"}))) + stream.flush())
    assert events[0]["message"]["id"] == "msg_given"


def test_an_upstream_error_mid_stream_closes_the_block_then_errors() -> None:
    raw = sse(
        chunk({"content": "Hi"}),
        {"error": {"message": "Rate limited", "code": 429}},
        chunk({"content": "never"}),
    )
    events = check_anthropic_stream(run(raw))
    assert [event["type"] for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "error",
    ]
    assert events[-1]["error"] == {"type": "rate_limit_error", "message": "Rate limited"}


def test_error_types() -> None:
    for error, kind in [
        ({"message": "x", "code": "503"}, "api_error"),
        ({"message": "x", "code": 529}, "overloaded_error"),
        ({"message": "x", "type": "overloaded_error"}, "overloaded_error"),
        ({"message": "x", "type": "server_error"}, "api_error"),
        ("plain", "api_error"),
    ]:
        events = check_anthropic_stream(run(sse({"error": error})))
        assert [event["type"] for event in events] == ["error"]
        assert events[0]["error"]["type"] == kind


def test_nothing_at_all_is_an_error() -> None:
    for raw in (b"", sse("[DONE]"), b": keep-alive\n\n"):
        events = check_anthropic_stream(run(raw))
        assert events == [
            {"type": "error", "error": {"type": "api_error", "message": EMPTY_STREAM_MESSAGE}}
        ]


def test_fail_mid_stream() -> None:
    stream = MessagesStream(CALL)
    out = stream.feed(sse(chunk({"tool_calls": [tool(0, '{"a"', "c0", "f")]})))
    out += stream.fail("The upstream timed out.", "timeout_error")
    events = check_anthropic_stream(out)
    assert events[-2] == {"type": "content_block_stop", "index": 0}
    assert events[-1]["error"] == {"type": "timeout_error", "message": "The upstream timed out."}
    assert stream.fail("again") == b""
    assert stream.flush() == b""


def test_fail_after_the_end_sends_nothing() -> None:
    stream = MessagesStream(CALL)
    out = stream.feed(sse(chunk({"content": "a"}, "stop"), "[DONE]"))
    assert stream.fail("late") == b""
    check_anthropic_stream(out)


def test_it_is_a_stream_translator() -> None:
    translator: StreamTranslator = MessagesStream(CALL)  # checked by mypy
    assert translator.usage is None


def test_pings() -> None:
    stream = MessagesStream(CALL)
    out = stream.ping() + stream.feed(sse(chunk({"content": "a"}))) + stream.ping() + stream.flush()
    events = check_anthropic_stream(out)
    assert [event["type"] for event in events].count("ping") == 2


# --- random streams (tests/helpers/chat_streams.py) ----------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upstream_streams(), st.data())
def test_any_stream_split_anywhere_is_valid_and_loses_nothing(
    generated: tuple[bytes, dict[str, Any]], data: st.DataObject
) -> None:
    raw, expected = generated
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(raw)), max_size=12))))
    pieces = [raw[start:end] for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    stream = MessagesStream(CALL)
    out = b"".join(stream.feed(piece) for piece in pieces) + stream.flush()
    result = assemble(check_anthropic_stream(out))
    blocks = result["content"]
    assert (
        "".join(block["thinking"] for block in blocks if block["type"] == "thinking")
        == expected["thinking"]
    )
    assert "".join(block["text"] for block in blocks if block["type"] == "text") == expected["text"]
    tools = [
        (block["id"], block["name"], block["input"])
        for block in blocks
        if block["type"] == "tool_use"
    ]
    assert tools == expected["tools"]
    assert result["stop_reason"] == expected["stop_reason"]
    if expected["usage"] is not None:
        assert result["usage"]["input_tokens"] == expected["usage"]["prompt_tokens"]
        assert result["usage"]["output_tokens"] == expected["usage"]["completion_tokens"]
        assert stream.usage == TokenUsage(
            expected["usage"]["prompt_tokens"], expected["usage"]["completion_tokens"]
        )
    else:
        assert stream.usage is None
        assert result["usage"]["output_tokens"] == 0
