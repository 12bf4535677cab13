"""Anthropic Messages streams as Gemini streamGenerateContent streams
(`llm_proxy.protocols.gemini_client_stream.GeminiFromMessages`): each mapping, the ends
(finish, errors, cut streams), the same bytes however the input is split, generated streams
checked by the grammar, and the grammar checker refusing what the SDK cannot read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.gemini_client import GeminiClientCall, unwrap_signature
from llm_proxy.protocols.gemini_client_stream import GeminiFromMessages
from llm_proxy.protocols.usage import TokenUsage
from tests.helpers.grammar_gemini import accumulate, check_gemini_stream

CALL = GeminiClientCall(model="claude-x", stream=True)
THOUGHTS = GeminiClientCall(model="claude-x", stream=True, include_thoughts=True)


def event(kind: str, **fields: Any) -> bytes:
    return (
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"
    )


def start(input_tokens: int = 10, **usage: int) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_01XyZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return event("message_start", message=message)


def delta(index: int, **fields: Any) -> bytes:
    return event("content_block_delta", index=index, delta=fields)


def text_block(index: int, *pieces: str) -> bytes:
    return (
        event("content_block_start", index=index, content_block={"type": "text", "text": ""})
        + b"".join(delta(index, type="text_delta", text=piece) for piece in pieces)
        + event("content_block_stop", index=index)
    )


def thinking_block(index: int, signature: str, *pieces: str) -> bytes:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return (
        event("content_block_start", index=index, content_block=block)
        + b"".join(delta(index, type="thinking_delta", thinking=piece) for piece in pieces)
        + delta(index, type="signature_delta", signature=signature)
        + event("content_block_stop", index=index)
    )


def tool_block(index: int, tool_id: str, name: str, *fragments: str) -> bytes:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return (
        event("content_block_start", index=index, content_block=block)
        + b"".join(delta(index, type="input_json_delta", partial_json=part) for part in fragments)
        + event("content_block_stop", index=index)
    )


def end(stop_reason: str = "end_turn", output_tokens: int = 7) -> bytes:
    return event(
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": output_tokens},
    ) + event("message_stop")


def translate(raw: bytes, call: GeminiClientCall = CALL, step: int = 0) -> bytes:
    """The translated stream, the input fed whole or `step` bytes at a time, then flushed."""
    translator = GeminiFromMessages(call)
    if not step:
        return translator.feed(raw) + translator.flush()
    pieces = [translator.feed(raw[at : at + step]) for at in range(0, len(raw), step)]
    return b"".join(pieces) + translator.flush()


def said(raw: bytes, call: GeminiClientCall = CALL) -> dict[str, Any]:
    return accumulate(check_gemini_stream(translate(raw, call)))


def test_the_bytes_of_a_text_stream() -> None:
    out = translate(start() + text_block(0, "Hel", "lo") + end())
    tail = b'"modelVersion":"claude-x","responseId":"01XyZ"}\r\n\r\n'
    assert out == (
        b'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],'
        + tail
        + b'data: {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"index":0}],'
        + tail
        + b'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},'
        b'"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,'
        b'"candidatesTokenCount":7,"totalTokenCount":17},' + tail
    )
    for line in out.split(b"\r\n\r\n")[:-1]:
        assert orjson.loads(line.removeprefix(b"data: "))  # each chunk is the JSON it says


def test_thoughts_and_their_signature_when_asked_for() -> None:
    raw = start() + thinking_block(0, "EqQBsig==", "Let me ", "think.") + text_block(1, "A") + end()
    shown = said(raw, THOUGHTS)
    assert shown["thoughts"] == "Let me think."
    assert [unwrap_signature(value) for value in shown["signatures"]] == ["EqQBsig=="]
    assert shown["text"] == "A"
    hidden = said(raw)
    assert (hidden["thoughts"], hidden["signatures"], hidden["text"]) == ("", [], "A")


def test_a_function_call_is_said_whole_at_its_end() -> None:
    raw = (
        start()
        + text_block(0, "Checking.")
        + tool_block(1, "toolu_1", "weather", '{"ci', 'ty": "Pa', 'ris"}')
        + tool_block(2, "toolu_2", "time")
        + end("tool_use")
    )
    out = said(raw)
    assert out["calls"] == [
        {"id": "toolu_1", "name": "weather", "args": {"city": "Paris"}},
        {"id": "toolu_2", "name": "time", "args": {}},
    ]
    assert out["finish"] == "STOP"


def test_arguments_that_are_not_json_end_the_stream_with_an_error() -> None:
    raw = start() + tool_block(0, "toolu_1", "weather", '{"city": ') + end("tool_use")
    out = said(raw)
    assert out["calls"] == []
    assert out["error"]["code"] == 502
    assert out["error"]["status"] == "UNAVAILABLE"


def test_json_mode_streams_its_answer_as_text() -> None:
    call = GeminiClientCall(model="claude-x", stream=True, json_tool="json_answer")
    raw = start() + tool_block(0, "t", "json_answer", '{"a": ', "1}") + end("tool_use")
    out = said(raw, call)
    assert (out["text"], out["calls"], out["finish"]) == ('{"a": 1}', [], "STOP")
    empty = said(start() + tool_block(0, "t", "json_answer") + end("tool_use"), call)
    assert empty["text"] == "{}"
    block = {"type": "tool_use", "id": "t", "name": "json_answer", "input": {}}
    cut = start() + event("content_block_start", index=0, content_block=block)
    cut += delta(0, type="input_json_delta", partial_json='{"a": ')
    assert said(cut, call)["error"]["message"].startswith("The upstream ended its stream inside")


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("max_tokens", "MAX_TOKENS"), ("refusal", "SAFETY"), ("stop_sequence", "STOP")],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    assert said(start() + text_block(0, "a") + end(stop_reason))["finish"] == finish


def test_usage_with_the_cache() -> None:
    translator = GeminiFromMessages(CALL)
    raw = start(10, cache_read_input_tokens=30, cache_creation_input_tokens=5)
    out = translator.feed(raw + text_block(0, "a") + end(output_tokens=4))
    assert accumulate(check_gemini_stream(out))["usage"] == {
        "promptTokenCount": 45,
        "candidatesTokenCount": 4,
        "totalTokenCount": 49,
        "cachedContentTokenCount": 30,
    }
    assert translator.usage == TokenUsage(10, 4, 30, 5)
    assert translator.flush() == b""


def test_an_upstream_error_event() -> None:
    error = event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    out = said(start() + text_block(0, "a") + error + text_block(1, "never"))
    assert out["text"] == "a"
    assert out["error"] == {"code": 529, "message": "Overloaded", "status": "UNAVAILABLE"}


def test_fail_ends_the_stream_once() -> None:
    translator = GeminiFromMessages(CALL)
    out = translator.feed(start() + text_block(0, "a"))
    out += translator.fail("The upstream timed out.", "timeout_error")
    assert translator.fail("again") == b""
    assert translator.flush() == b""
    assert translator.feed(text_block(1, "b")) == b""
    said = accumulate(check_gemini_stream(out))
    assert said["error"] == {
        "code": 504,
        "message": "The upstream timed out.",
        "status": "DEADLINE_EXCEEDED",
    }


def test_streams_cut_short() -> None:
    no_stop = said(start() + text_block(0, "a") + event("message_delta", delta={}, usage={}))
    assert (no_stop["text"], no_stop["finish"], no_stop["error"]) == ("a", "STOP", None)
    nothing = said(b"")
    assert nothing["error"]["message"] == "The upstream ended its stream without an answer."
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    cut = start() + event("content_block_start", index=0, content_block=block)
    cut += delta(0, type="input_json_delta", partial_json='{"a": 1}')
    inside = said(cut)
    assert inside["calls"] == [] and inside["error"]["code"] == 500


def test_pings_say_nothing() -> None:
    translator = GeminiFromMessages(CALL)
    assert translator.feed(start() + event("ping")) == b""
    assert translator.ping() == b""


def test_a_stream_split_at_every_byte_gives_the_same_bytes() -> None:
    raw = (
        start()
        + thinking_block(0, "sig", "héllo ", "wörld")
        + text_block(1, "Ça va ", "😀")
        + tool_block(2, "toolu_1", "f", '{"a": [1, ', "2]}")
        + end("tool_use")
    ).replace(b"\n", b"\r\n")
    whole = translate(raw, THOUGHTS)
    check_gemini_stream(whole)
    for at in range(len(raw) + 1):
        translator = GeminiFromMessages(THOUGHTS)
        assert translator.feed(raw[:at]) + translator.feed(raw[at:]) + translator.flush() == whole
    assert translate(raw, THOUGHTS, step=1) == whole


_BLOCKS = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.lists(st.text(min_size=1), min_size=1, max_size=3)),
        st.tuples(st.just("thinking"), st.lists(st.text(min_size=1), min_size=1, max_size=3)),
        st.tuples(
            st.just("tool"),
            st.dictionaries(
                st.text(max_size=5), st.integers(-(2**53), 2**53) | st.text(), max_size=3
            ),
        ),
    ),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(blocks=_BLOCKS, step=st.integers(1, 200), cut=st.booleans())
def test_generated_streams_follow_the_grammar(
    blocks: list[tuple[str, Any]], step: int, cut: bool
) -> None:
    raw = start()
    text, thoughts, calls = "", "", []
    for index, (kind, content) in enumerate(blocks):
        if kind == "text":
            raw += text_block(index, *content)
            text += "".join(content)
        elif kind == "thinking":
            raw += thinking_block(index, f"sig{index}", *content)
            thoughts += "".join(content)
        else:
            encoded = orjson.dumps(content).decode()
            raw += tool_block(index, f"toolu_{index}", "f", encoded[:3], encoded[3:])
            calls.append({"id": f"toolu_{index}", "name": "f", "args": content})
    if not cut:
        raw += end()
    out = accumulate(check_gemini_stream(translate(raw, THOUGHTS, step)))
    assert (out["text"], out["thoughts"], out["calls"]) == (text, thoughts, calls)
    assert out["finish"] == "STOP" and out["error"] is None


# The checker refuses what the SDK would not read.

_CHUNK = b'data: {"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"},"index":0}],"modelVersion":"m","responseId":"r"}\r\n\r\n'  # noqa: E501
_LAST = b'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2},"modelVersion":"m","responseId":"r"}\r\n\r\n'  # noqa: E501


@pytest.mark.parametrize(
    "raw",
    [
        _CHUNK,  # no finishReason
        _CHUNK + b": ping\r\n\r\n" + _LAST,  # a comment
        _LAST + _CHUNK,  # a chunk after the finish
        _CHUNK.replace(b'[{"text":"a"}]', b"[]") + _LAST,  # no part
        _CHUNK.replace(b'"responseId":"r"', b'"responseId":"s"') + _LAST,
        _LAST.replace(b'Count":2', b'Count":3'),  # a wrong total
        b'data: {"error":{"code":500,"message":"x","status":"INTERNAL"}}\r\n\r\n' + _LAST,
        b'data: {"error":{"code":"500","message":"x","status":"INTERNAL"}}\r\n\r\n',
        _CHUNK.replace(b'{"text":"a"}', b'{"functionCall":{"name":"f"}}') + _LAST,
    ],
)
def test_the_checker_refuses(raw: bytes) -> None:
    with pytest.raises(AssertionError):
        check_gemini_stream(raw)
    check_gemini_stream(_CHUNK + _LAST)
