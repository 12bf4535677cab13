"""Gemini's SSE stream as an Anthropic Messages stream
(`llm_proxy.protocols.gemini_stream.MessagesFromGemini`): recorded-shape streams, every byte
boundary, the ends (no finish reason, nothing said, an error event, `fail`), and generated
streams, whose message must be the one the whole answer gives. Every stream produced is
checked against the Anthropic grammar."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.gemini import (
    PART_SIGNATURE,
    THOUGHT_SIGNATURE,
    GeminiCall,
    messages_answer,
)
from llm_proxy.protocols.gemini_stream import EMPTY_STREAM_MESSAGE, MessagesFromGemini
from llm_proxy.protocols.stream import StreamTranslator
from llm_proxy.protocols.usage import TokenUsage
from tests.helpers.grammar_anthropic import assemble, check_anthropic_stream

CALL = GeminiCall(model="claude-sonnet-4-5", stream=True)


def sse(*chunks: dict[str, Any]) -> bytes:
    """Gemini's framing: `data: {...}` and CRLF CRLF."""
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)


def chunk(
    *parts: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r3sp0nse",
    }
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def run(raw: bytes, step: int = 0, call: GeminiCall = CALL) -> bytes:
    stream = MessagesFromGemini(call)
    if step:
        out = b"".join(stream.feed(raw[start : start + step]) for start in range(0, len(raw), step))
    else:
        out = stream.feed(raw)
    return out + stream.flush()


def message(raw: bytes, step: int = 0) -> dict[str, Any]:
    return assemble(check_anthropic_stream(run(raw, step)))


FIRST_USAGE = {"promptTokenCount": 500, "cachedContentTokenCount": 400, "totalTokenCount": 500}
LAST_USAGE = {
    "promptTokenCount": 500,
    "cachedContentTokenCount": 400,
    "candidatesTokenCount": 30,
    "thoughtsTokenCount": 120,
    "totalTokenCount": 650,
}
RECORDED = sse(
    chunk({"text": "**Weighing**\nThe user wants", "thought": True}, usage=FIRST_USAGE),
    chunk({"text": " the weather.", "thought": True}, usage=FIRST_USAGE),
    chunk({"text": "Let me"}, usage=FIRST_USAGE),
    chunk({"text": " check."}, usage=FIRST_USAGE),
    chunk(
        {
            "functionCall": {"id": "fc_1", "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "CiQBjz1rX8=",
        },
        {"functionCall": {"id": "fc_2", "name": "get_time", "args": {}}},
        finish="STOP",
        usage=LAST_USAGE,
    ),
)


def test_a_recorded_stream() -> None:
    events = check_anthropic_stream(run(RECORDED))
    assert events[0]["message"]["usage"] == {
        "input_tokens": 100,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 400,
        "output_tokens": 0,
    }
    assert assemble(events) == {
        "id": "msg_r3sp0nse",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {
                "type": "thinking",
                "thinking": "**Weighing**\nThe user wants the weather.",
                "signature": "",
            },
            {"type": "text", "text": "Let me check."},
            {"type": "thinking", "thinking": "", "signature": PART_SIGNATURE + "CiQBjz1rX8="},
            {"type": "tool_use", "id": "fc_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "fc_2", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 100,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 400,
            "output_tokens": 150,
        },
    }
    # A function call comes whole: its block is start, one input_json_delta, stop.
    tool_events = [e for e in events if e.get("index") == 3]
    assert [e["type"] for e in tool_events] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    assert tool_events[1]["delta"] == {
        "type": "input_json_delta",
        "partial_json": '{"city":"Paris"}',
    }


def test_every_byte_boundary_gives_the_same_stream() -> None:
    whole = run(RECORDED)
    for cut in range(1, len(RECORDED)):
        stream = MessagesFromGemini(CALL)
        out = stream.feed(RECORDED[:cut]) + stream.feed(RECORDED[cut:]) + stream.flush()
        assert out == whole, f"split at byte {cut}"
    assert run(RECORDED, step=1) == whole


def test_the_usage_is_the_last_reported() -> None:
    stream: StreamTranslator = MessagesFromGemini(CALL)
    seen = [stream.usage]
    stream.feed(sse(chunk({"text": "Hi"}, usage=FIRST_USAGE)))
    seen.append(stream.usage)
    stream.feed(sse(chunk({"text": "!"}, finish="STOP", usage=LAST_USAGE)))
    seen.append(stream.usage)
    assert seen == [None, TokenUsage(100, 0, 400), TokenUsage(100, 150, 400)]


def test_an_end_without_a_finish_reason_still_closes() -> None:
    result = message(sse(chunk({"text": "Partial"})))
    assert result["content"] == [{"type": "text", "text": "Partial"}]
    assert result["stop_reason"] == "end_turn"


def test_a_stream_that_said_nothing_is_an_error() -> None:
    events = check_anthropic_stream(run(b""))
    assert events == [
        {"type": "error", "error": {"type": "api_error", "message": EMPTY_STREAM_MESSAGE}}
    ]


def test_a_blocked_prompt_stream_is_a_refusal() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
    }
    result = message(sse(blocked))
    assert (result["content"], result["stop_reason"]) == ([], "refusal")
    assert result["usage"]["input_tokens"] == 12


def test_a_safety_stop_mid_text() -> None:
    result = message(sse(chunk({"text": "Sure, here"}), chunk(finish="SAFETY")))
    assert result["content"] == [{"type": "text", "text": "Sure, here"}]
    assert result["stop_reason"] == "refusal"


def test_an_error_event_mid_stream() -> None:
    error = {
        "error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}
    }
    stream = MessagesFromGemini(CALL)
    out = stream.feed(sse(chunk({"text": "Hel"}), error, chunk({"text": "lo"})))
    events = check_anthropic_stream(out)
    assert [event["type"] for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "error",
    ]
    assert events[-1]["error"] == {"type": "rate_limit_error", "message": "Resource exhausted"}
    assert stream.feed(sse(chunk({"text": "late"}))) == b""
    assert stream.flush() == b""
    assert stream.fail("late") == b""


def test_fail_after_text_closes_the_block_and_ends_once() -> None:
    stream = MessagesFromGemini(CALL)
    out = stream.feed(sse(chunk({"text": "Hel"})))
    out += stream.fail("The upstream timed out.", "timeout_error")
    events = check_anthropic_stream(out)
    assert events[-2] == {"type": "content_block_stop", "index": 0}
    assert events[-1] == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "The upstream timed out."},
    }
    assert stream.flush() == b""


def test_a_signed_thought_then_more_thoughts() -> None:
    result = message(
        sse(
            chunk({"text": "One.", "thought": True}),
            chunk({"text": "", "thought": True, "thoughtSignature": "S1"}),
            chunk({"text": "Two.", "thought": True}),
            chunk({"text": "Done."}, finish="STOP"),
        )
    )
    assert result["content"] == [
        {"type": "thinking", "thinking": "One.", "signature": THOUGHT_SIGNATURE + "S1"},
        {"type": "thinking", "thinking": "Two.", "signature": ""},
        {"type": "text", "text": "Done."},
    ]


def test_ping_is_an_anthropic_ping() -> None:
    assert MessagesFromGemini(CALL).ping() == b'event: ping\ndata: {"type":"ping"}\n\n'


# --- generated streams ------------------------------------------------------------------------

_TEXT = st.text("ab \n", min_size=1, max_size=4)
_SIGNATURE = st.one_of(st.none(), st.text("XYZ=", min_size=1, max_size=3))


def _with_signature(part: dict[str, Any], signature: str | None) -> dict[str, Any]:
    return part if signature is None else {**part, "thoughtSignature": signature}


PARTS = st.lists(
    st.one_of(
        st.builds(lambda text, sig: _with_signature({"text": text}, sig), _TEXT, _SIGNATURE),
        st.builds(
            lambda text, sig: _with_signature({"text": text, "thought": True}, sig),
            _TEXT,
            _SIGNATURE,
        ),
        st.builds(
            lambda number, args, sig: _with_signature(
                {"functionCall": {"id": f"fc_{number}", "name": "tool", "args": args}}, sig
            ),
            st.integers(0, 9),
            st.dictionaries(
                st.text("kq", min_size=1, max_size=2), st.integers(-(2**63), 2**63 - 1), max_size=2
            ),
            _SIGNATURE,
        ),
        st.just({"inlineData": {"mimeType": "image/png", "data": "AA=="}}),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    PARTS,
    st.lists(st.integers(1, 3), min_size=8, max_size=8),
    st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", None]),
    st.integers(1, 40),
)
def test_a_generated_stream_says_what_the_whole_answer_says(
    parts: list[dict[str, Any]], sizes: list[int], finish: str | None, step: int
) -> None:
    chunks, position = [], 0
    for size in sizes:
        chunks.append(chunk(*parts[position : position + size]))
        position += size
    chunks[-1] = chunk(*parts[position - sizes[-1] :], finish=finish, usage=LAST_USAGE)
    whole = chunk(*parts, finish=finish, usage=LAST_USAGE)
    streamed = message(sse(*chunks), step=step)
    answered = messages_answer(whole, CALL)
    assert streamed == answered
