"""A Bedrock ConverseStream answer (event-stream bytes) as an Anthropic Messages stream
(`llm_proxy.protocols.converse_stream.MessagesFromConverse`): every stream produced is checked
against Anthropic's grammar, fed whole, byte by byte and split at random points."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import orjson
import pytest
from botocore.eventstream import EventStream  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    EventStreamError as BotocoreEventStreamError,
)
from botocore.parsers import EventStreamJSONParser  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.converse import ConverseCall
from llm_proxy.protocols.converse_stream import (
    EMPTY_STREAM_MESSAGE,
    MessagesFromConverse,
)
from llm_proxy.protocols.eventstream import encode_message
from llm_proxy.protocols.stream import StreamTranslator
from llm_proxy.protocols.tool_names import upstream_name
from llm_proxy.protocols.usage import TokenUsage
from tests.helpers.grammar_anthropic import assemble, check_anthropic_stream

CALL = ConverseCall(
    model="claude-sonnet-4-5",
    stream=True,
    stop_sequences=("END", "STOP"),
    tool_names={upstream_name("mcp__maps__find.place"): "mcp__maps__find.place"},
)
USAGE = {
    "inputTokens": 25,
    "outputTokens": 40,
    "totalTokens": 1065,
    "cacheReadInputTokens": 1000,
    "cacheWriteInputTokens": 0,
}


def event(kind: str, **payload: Any) -> bytes:
    """One ConverseStream event as Bedrock frames it (a `p` padding field included)."""
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps({**payload, "p": "abcdefghijkl"}))


def exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


def start() -> bytes:
    return event("messageStart", role="assistant")


def text(index: int, value: str) -> bytes:
    return event("contentBlockDelta", contentBlockIndex=index, delta={"text": value})


def stop(index: int) -> bytes:
    return event("contentBlockStop", contentBlockIndex=index)


def end(reason: str = "end_turn", usage: dict[str, Any] | None = None, **fields: Any) -> bytes:
    return event("messageStop", stopReason=reason, **fields) + event(
        "metadata", usage=usage or USAGE, metrics={"latencyMs": 420}
    )


def run(raw: bytes, step: int = 0, call: ConverseCall = CALL) -> bytes:
    stream = MessagesFromConverse(call, message_id="msg_test")
    if step:
        out = b"".join(stream.feed(raw[at : at + step]) for at in range(0, len(raw), step))
    else:
        out = stream.feed(raw)
    return out + stream.flush()


def message(raw: bytes, step: int = 0) -> dict[str, Any]:
    return assemble(check_anthropic_stream(run(raw, step)))


class _Body:
    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def stream(self) -> Iterator[bytes]:
        yield self._raw


def test_the_fake_frames_are_what_botocore_reads_as_converse_stream_events() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("ConverseStream").output_shape.members["stream"]
    raw = start() + text(0, "Hi") + end() + exception("throttlingException", "Slow down")
    events = EventStream(_Body(raw), shape, EventStreamJSONParser(), "ConverseStream")
    seen: list[dict[str, Any]] = []
    with pytest.raises(BotocoreEventStreamError, match="throttlingException"):
        seen.extend(events)
    assert seen == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hi"}, "contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": USAGE, "metrics": {"latencyMs": 420}}},
    ]


def test_it_is_a_stream_translator() -> None:
    translator: StreamTranslator = MessagesFromConverse(CALL)
    assert translator.ping() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_text_with_the_usage_at_the_end() -> None:
    raw = start() + text(0, "Hel") + text(0, "lo") + stop(0) + end()
    for step in (0, 1, 7, 100):
        assert message(raw, step) == {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1000,
                "output_tokens": 40,
            },
        }


def test_the_end_waits_for_the_metadata() -> None:
    stream = MessagesFromConverse(CALL)
    out = stream.feed(
        start() + text(0, "Hi") + stop(0) + event("messageStop", stopReason="end_turn")
    )
    assert b"message_delta" not in out
    assert [stream.usage] == [None]  # (a list: mypy would narrow the property for good)
    out += stream.feed(event("metadata", usage=USAGE, metrics={"latencyMs": 1}))
    assert stream.usage == TokenUsage(25, 40, 1000)
    events = check_anthropic_stream(out)
    assert events[0]["message"]["usage"]["input_tokens"] == 0
    assert events[-2]["usage"]["input_tokens"] == 25
    assert stream.flush() == b""
    assert stream.feed(text(0, "late")) == b""


def test_without_metadata_the_message_ends_at_flush() -> None:
    raw = start() + text(0, "Hi") + stop(0) + event("messageStop", stopReason="max_tokens")
    result = message(raw)
    assert result["stop_reason"] == "max_tokens"
    assert result["usage"]["output_tokens"] == 0


def test_thinking_text_and_tool_calls() -> None:
    raw = b"".join(
        [
            start(),
            event(
                "contentBlockDelta",
                contentBlockIndex=0,
                delta={"reasoningContent": {"text": "Let me "}},
            ),
            event(
                "contentBlockDelta",
                contentBlockIndex=0,
                delta={"reasoningContent": {"text": "look."}},
            ),
            event(
                "contentBlockDelta",
                contentBlockIndex=0,
                delta={"reasoningContent": {"signature": "EqQBCkYI=="}},
            ),
            stop(0),
            text(1, "Checking."),
            stop(1),
            event(
                "contentBlockStart",
                contentBlockIndex=2,
                start={"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
            ),
            event("contentBlockDelta", contentBlockIndex=2, delta={"toolUse": {"input": '{"ci'}}),
            event(
                "contentBlockDelta",
                contentBlockIndex=2,
                delta={"toolUse": {"input": 'ty":"Paris"}'}},
            ),
            stop(2),
            event(
                "contentBlockStart",
                contentBlockIndex=3,
                start={
                    "toolUse": {
                        "toolUseId": "tooluse_2",
                        "name": upstream_name("mcp__maps__find.place"),
                    }
                },
            ),
            stop(3),
            end("tool_use"),
        ]
    )
    for step in (0, 1, 13):
        result = message(raw, step)
        assert result["content"] == [
            {"type": "thinking", "thinking": "Let me look.", "signature": "EqQBCkYI=="},
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "tooluse_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "tooluse_2", "name": "mcp__maps__find.place", "input": {}},
        ]
        assert result["stop_reason"] == "tool_use"


def test_redacted_thinking_and_deltas_without_a_counterpart() -> None:
    raw = b"".join(
        [
            start(),
            event(
                "contentBlockDelta",
                contentBlockIndex=0,
                delta={"reasoningContent": {"redactedContent": "c2VjcmV0"}},
            ),
            stop(0),
            event("contentBlockDelta", contentBlockIndex=1, delta={"citation": {"title": "t"}}),
            event("contentBlockDelta", contentBlockIndex=1, delta={"toolUse": {"input": "{}"}}),
            text(1, "Done."),
            stop(1),
            event("somethingNew", x=1),
            end(),
        ]
    )
    assert message(raw)["content"] == [
        {"type": "redacted_thinking", "data": "c2VjcmV0"},
        {"type": "text", "text": "Done."},
    ]


def test_the_stop_sequence_comes_from_the_additional_fields() -> None:
    raw = start() + text(0, "one two") + stop(0)
    matched = message(
        raw + end("stop_sequence", additionalModelResponseFields={"stop_sequence": "STOP"})
    )
    assert (matched["stop_reason"], matched["stop_sequence"]) == ("stop_sequence", "STOP")
    unknown = message(raw + end("stop_sequence"))
    assert (unknown["stop_reason"], unknown["stop_sequence"]) == ("end_turn", None)


def test_an_exception_mid_stream_ends_it() -> None:
    raw = (
        start()
        + text(0, "Hal")
        + exception("throttlingException", "Too many tokens")
        + text(0, "f")
        + end()
    )
    for step in (0, 1):
        out = run(raw, step)
        events = check_anthropic_stream(out)
        assert [e["type"] for e in events][-3:] == [
            "content_block_delta",
            "content_block_stop",
            "error",
        ]
        assert events[-1]["error"] == {"type": "rate_limit_error", "message": "Too many tokens"}


def test_an_exception_before_anything_and_an_error_message() -> None:
    events = check_anthropic_stream(run(exception("validationException", "Bad input")))
    assert events == [
        {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad input"}}
    ]
    headers = {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "Oops"}
    events = check_anthropic_stream(run(start() + encode_message(headers, b"")))
    assert events[-1]["error"] == {"type": "api_error", "message": "Oops"}


def test_a_corrupted_crc_mid_stream_ends_with_an_error_and_nothing_after() -> None:
    bad = bytearray(text(0, "lo"))
    bad[-6] ^= 0x20  # inside the payload: the message CRC no longer matches
    raw = start() + text(0, "Hel") + bytes(bad) + text(0, "!") + end()
    for step in (0, 1, 9):
        stream = MessagesFromConverse(CALL)
        if step:
            out = b"".join(stream.feed(raw[at : at + step]) for at in range(0, len(raw), step))
        else:
            out = stream.feed(raw)
        events = check_anthropic_stream(out + stream.flush())
        deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
        assert deltas == ["Hel"]
        assert events[-2] == {"type": "content_block_stop", "index": 0}
        error = events[-1]["error"]
        assert error["type"] == "api_error"
        assert error["message"].startswith(
            "The upstream's event stream is corrupted (message CRC mismatch"
        )
        assert stream.feed(text(0, "more")) == b""
        assert stream.usage is None


def test_a_stream_cut_inside_a_message() -> None:
    raw = start() + text(0, "Hi") + stop(0) + end()[:30]
    events = check_anthropic_stream(run(raw))
    assert "ends inside a message" in events[-1]["error"]["message"]


def test_an_empty_stream_and_a_failure() -> None:
    assert check_anthropic_stream(run(b""))[-1]["error"]["message"] == EMPTY_STREAM_MESSAGE
    stream = MessagesFromConverse(CALL)
    out = stream.feed(start() + text(0, "Hi"))
    out += stream.fail("The upstream stopped answering.", "timeout_error")
    events = check_anthropic_stream(out)
    assert events[-2] == {"type": "content_block_stop", "index": 0}
    assert events[-1]["error"]["type"] == "timeout_error"
    assert stream.fail("again") == b""
    assert stream.flush() == b""


# --- random streams --------------------------------------------------------------------

BLOCKS = st.one_of(
    st.tuples(st.just("text"), st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4)),
    st.tuples(
        st.just("thinking"), st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3)
    ),
    st.tuples(st.just("tool"), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(BLOCKS, max_size=5),
    st.sampled_from(["end_turn", "tool_use", "max_tokens", "content_filtered"]),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=5000), max_size=10),
)
def test_random_streams_split_anywhere(
    blocks: list[tuple[str, Any]], reason: str, metadata: bool, cuts: list[int]
) -> None:
    frames = [start()]
    expected: list[dict[str, Any]] = []
    for index, (kind, value) in enumerate(blocks):
        if kind == "text":
            frames += [text(index, piece) for piece in value]
            expected.append({"type": "text", "text": "".join(value)})
        elif kind == "thinking":
            frames += [
                event(
                    "contentBlockDelta",
                    contentBlockIndex=index,
                    delta={"reasoningContent": {"text": piece}},
                )
                for piece in value
            ]
            frames.append(
                event(
                    "contentBlockDelta",
                    contentBlockIndex=index,
                    delta={"reasoningContent": {"signature": "s"}},
                )
            )
            expected.append({"type": "thinking", "thinking": "".join(value), "signature": "s"})
        else:
            start_tool = {"toolUse": {"toolUseId": f"t{index}", "name": "f"}}
            frames.append(event("contentBlockStart", contentBlockIndex=index, start=start_tool))
            arguments = json.dumps(value)
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                frames.append(
                    event(
                        "contentBlockDelta",
                        contentBlockIndex=index,
                        delta={"toolUse": {"input": piece}},
                    )
                )
            expected.append({"type": "tool_use", "id": f"t{index}", "name": "f", "input": value})
        frames.append(stop(index))
    frames.append(end(reason) if metadata else event("messageStop", stopReason=reason))
    raw = b"".join(frames)
    points = sorted({cut % (len(raw) + 1) for cut in cuts} | {0, len(raw)})
    stream = MessagesFromConverse(CALL)
    out = b"".join(stream.feed(raw[a:b]) for a, b in itertools.pairwise(points))
    result = assemble(check_anthropic_stream(out + stream.flush()))
    assert result["content"] == expected
    assert result["stop_reason"] == ("refusal" if reason == "content_filtered" else reason)
    assert stream.usage == (TokenUsage(25, 40, 1000) if metadata else None)
