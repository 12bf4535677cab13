"""A chat.completion answer as an Anthropic Message (`llm_proxy.protocols.messages_answer`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_proxy.protocols.messages_answer import ChatCall, message_answer, tool_input

CALL = ChatCall(model="claude-sonnet-4-5", stop_sequences=("END",))


def answer(message: dict[str, Any], finish: str | None = "stop", **choice: Any) -> dict[str, Any]:
    return message_answer(
        {
            "id": "chatcmpl-abc",
            "model": "qwen3-32b",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "prompt_tokens_details": {"cached_tokens": 60},
            },
        },
        CALL,
    )


def test_a_text_answer() -> None:
    assert answer({"role": "assistant", "content": "Hello"}) == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "qwen3-32b",
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


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_text_and_tool_calls_in_order(field: str) -> None:
    message = {
        field: "Think.",
        "content": "Calling.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "a", "arguments": '{"x": 1}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{broken"}},
        ],
    }
    result = answer(message, "tool_calls")
    assert result["content"] == [
        {"type": "thinking", "thinking": "Think.", "signature": ""},
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "call_1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "call_2", "name": "b", "input": {}},
    ]
    assert result["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "choice", "reason", "sequence"),
    [
        ("stop", {}, "end_turn", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),
        ("stop", {"stop_reason": 151645}, "end_turn", None),  # vLLM: a stop token id
        ("stop", {"stop_reason": "OTHER"}, "end_turn", None),
        ("length", {}, "max_tokens", None),
        ("tool_calls", {}, "tool_use", None),
        ("function_call", {}, "tool_use", None),
        ("content_filter", {}, "refusal", None),
        (None, {}, "end_turn", None),
        ("something_new", {}, "end_turn", None),
    ],
)
def test_stop_reasons(
    finish: str | None, choice: dict[str, Any], reason: str, sequence: str | None
) -> None:
    result = answer({"content": "x"}, finish, **choice)
    assert (result["stop_reason"], result["stop_sequence"]) == (reason, sequence)


def test_tool_calls_that_say_stop_are_tool_use() -> None:
    calls = [{"id": "c", "function": {"name": "a", "arguments": "{}"}}]
    assert answer({"content": None, "tool_calls": calls}, "stop")["stop_reason"] == "tool_use"


def test_a_refusal() -> None:
    result = answer({"content": None, "refusal": "I cannot help."})
    assert result["content"] == [{"type": "text", "text": "I cannot help."}]
    assert result["stop_reason"] == "refusal"


def test_an_empty_or_odd_answer_never_crashes() -> None:
    for chat in ({}, {"choices": []}, {"choices": [None]}, {"choices": [{"message": None}]}):
        result = message_answer(chat, CALL)
        assert result["content"] == []
        assert result["model"] == "claude-sonnet-4-5"
        assert result["id"].startswith("msg_")
        assert result["usage"]["output_tokens"] == 0


@pytest.mark.parametrize(
    ("arguments", "value"),
    [
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        (json.dumps('{"a": 1}'), {"a": 1}),  # encoded twice
        ("", {}),
        ("not json", {}),
        ("[1, 2]", {}),
        ("3", {}),
        (None, {}),
        ({"a": 1}, {"a": 1}),
    ],
)
def test_tool_input(arguments: Any, value: dict[str, Any]) -> None:
    assert tool_input(arguments) == value
