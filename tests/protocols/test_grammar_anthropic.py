"""The Anthropic stream grammar checker (`tests/helpers/grammar_anthropic.py`) accepts a valid
stream and names each broken rule: a checker that cannot fail would prove nothing."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helpers.grammar_anthropic import assemble, check_anthropic_stream

START: dict[str, Any] = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}
VALID: list[dict[str, Any]] = [
    START,
    {"type": "ping"},
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Hm."},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "s"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ": 1}"},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
]


def encode(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events
    )


def test_a_valid_stream_passes_and_assembles() -> None:
    events = check_anthropic_stream(encode(VALID))
    assert events == VALID
    message = assemble(events)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Hm.", "signature": "s"},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 3, "output_tokens": 9}


def test_an_error_may_end_a_stream_anywhere() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    for cut in (0, 1, 4, 8):
        check_anthropic_stream(encode([*VALID[:cut], error]))


def without(position: int) -> list[dict[str, Any]]:
    return VALID[:position] + VALID[position + 1 :]


def replaced(position: int, event: dict[str, Any]) -> list[dict[str, Any]]:
    return [*VALID[:position], event, *VALID[position + 1 :]]


ERROR = {"type": "error", "error": {"type": "api_error", "message": "x"}}
BROKEN: dict[str, tuple[bytes, str]] = {
    "no message_start": (encode(VALID[1:]), "before message_start"),
    "two message_starts": (encode([START, *VALID]), "a second message_start"),
    "a block skipped": (encode([START, VALID[6]]), "index 1, expected 0"),
    "two blocks open": (encode(without(5)), "block 0 is still open"),
    "a wrong delta": (
        encode(
            replaced(
                7,
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "thinking_delta", "thinking": "x"},
                },
            )
        ),
        "a 'thinking_delta' in a text block",
    ),
    "a delta to another block": (
        encode(
            replaced(
                7,
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "x"},
                },
            )
        ),
        "index 0, open 1",
    ),
    "broken arguments": (
        encode(
            replaced(
                11,
                {
                    "type": "content_block_delta",
                    "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": ": 1"},
                },
            )
        ),
        "not JSON",
    ),
    "no message_delta": (encode(without(13)), "message_stop without message_delta"),
    "two message_deltas": (encode([*VALID[:14], VALID[13], VALID[14]]), "after message_delta"),
    "no message_stop": (encode(VALID[:-1]), "ends without message_stop"),
    "an event after message_stop": (encode([*VALID, VALID[6]]), "after message_stop"),
    "an event after the error": (encode([START, ERROR, VALID[6]]), "events after the error"),
    "a name that is not the type": (
        encode(VALID).replace(b"event: content_block_stop", b"event: content_block_end", 1),
        "its data's type",
    ),
    "no blank line at the end": (encode(VALID)[:-1], "does not end with a blank line"),
    "a stop_sequence without its reason": (
        encode(
            replaced(13, {**VALID[13], "delta": {"stop_reason": "end_turn", "stop_sequence": "X"}})
        ),
        "stop_sequence 'X' with end_turn",
    ),
    "an unknown stop reason": (
        encode(
            replaced(13, {**VALID[13], "delta": {"stop_reason": "done", "stop_sequence": None}})
        ),
        "stop_reason 'done'",
    ),
    "no usage in message_delta": (
        encode(replaced(13, {"type": "message_delta", "delta": VALID[13]["delta"]})),
        "no usage",
    ),
    "a message_start with content": (
        encode(
            [
                {
                    "type": "message_start",
                    "message": {**START["message"], "content": [{"type": "text", "text": "x"}]},
                },
                *VALID[1:],
            ]
        ),
        "message.content is not empty",
    ),
    "a delta to a block that takes none": (
        encode(
            [
                START,
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "redacted_thinking", "data": "x"},
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "x"},
                },
            ]
        ),
        "a 'text_delta' in a redacted_thinking block",
    ),
    "data that is not JSON": (b"event: ping\ndata: {\n\n", "not JSON"),
    "an empty stream": (b"", "no event"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_each_broken_rule_is_named(case: str) -> None:
    raw, message = BROKEN[case]
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_anthropic_stream(raw)
