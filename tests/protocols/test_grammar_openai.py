"""The OpenAI chat stream grammar checker (`tests/helpers/grammar_openai.py`) rejects what it
must: a checker that accepts anything would make every stream test pass."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_proxy.testing.mock.chat import stream_events
from tests.helpers.grammar_openai import accumulate, check_openai_stream

BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta: dict[str, Any], finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **fields}


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (event.encode() if isinstance(event, str) else orjson.dumps(event)) + b"\n\n"
        for event in events
    )


ROLE = chunk({"role": "assistant", "content": ""})
FINISH = chunk({}, "stop")
USAGE = {
    **BASE,
    "choices": [],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


def call(index: int, arguments: str, first: bool = False) -> dict[str, Any]:
    """A tool call delta; `first`: with the id, type and name a call's first delta has."""
    if not first:
        return {"index": index, "function": {"arguments": arguments}}
    return {
        "index": index,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": arguments},
    }


def test_a_valid_stream_and_what_it_says() -> None:
    raw = sse(
        ROLE,
        chunk({"content": "Hi"}),
        chunk({"tool_calls": [call(0, "", first=True)]}),
        chunk({"tool_calls": [call(0, '{"a": 1}')]}),
        chunk({}, "tool_calls"),
        USAGE,
        "[DONE]",
    )
    chunks = check_openai_stream(raw, include_usage=True)
    assert len(chunks) == 6
    said = accumulate(chunks)
    assert said["content"] == "Hi"
    assert said["tool_calls"] == [{"id": "call_1", "name": "f", "arguments": '{"a": 1}'}]
    assert said["finish_reason"] == "tool_calls"
    assert said["usage"]["total_tokens"] == 3


def test_an_error_event_may_end_a_stream() -> None:
    error = {"error": {"message": "boom", "type": "api_error", "param": None, "code": None}}
    chunks = check_openai_stream(sse(ROLE, chunk({"content": "x"}), error))
    assert chunks[-1] == error


@pytest.mark.parametrize(
    ("raw", "include_usage", "complaint"),
    [
        (b"", None, "blank line"),
        (sse(ROLE, FINISH), None, "does not end with \\[DONE\\]"),
        (sse(ROLE, FINISH, "[DONE]", "[DONE]"), None, "\\[DONE\\] before the end"),
        (sse(ROLE, "[DONE]"), None, "without a finish_reason"),
        (sse(ROLE, FINISH, FINISH, "[DONE]"), None, "after this choice's finish_reason"),
        (sse(chunk({"content": "x"}), FINISH, "[DONE]"), None, "no role"),
        (sse(ROLE, {**FINISH, "id": "other"}, "[DONE]"), None, "id changed"),
        (sse(ROLE, {**FINISH, "object": "chat.completion"}, "[DONE]"), None, "not a chunk"),
        (sse(ROLE, FINISH, "[DONE]"), True, "0 usage chunks"),
        (sse(ROLE, FINISH, USAGE, "[DONE]"), False, "not asked for"),
        (sse(ROLE, USAGE, FINISH, "[DONE]"), None, "after the usage chunk"),
        (
            sse(ROLE, FINISH, {**USAGE, "usage": {**USAGE["usage"], "total_tokens": 4}}, "[DONE]"),
            None,
            "total_tokens",
        ),
        (
            sse(ROLE, chunk({"tool_calls": [call(0, "{}")]}), FINISH, "[DONE]"),
            None,
            "starts without id",
        ),
        (
            sse(ROLE, chunk({"tool_calls": [call(1, "{}", first=True)]}), FINISH, "[DONE]"),
            None,
            "skips one",
        ),
        (
            sse(
                ROLE,
                chunk({"tool_calls": [call(0, '{"a"', first=True)]}),
                FINISH,
                "[DONE]",
            ),
            None,
            "not JSON",
        ),
        (
            sse(
                ROLE,
                chunk({"tool_calls": [call(0, "{", first=True)]}),
                chunk(
                    {"tool_calls": [{"index": 0, "id": "other", "function": {"arguments": "}"}}]}
                ),
                FINISH,
                "[DONE]",
            ),
            None,
            "changes its id",
        ),
        (
            sse(ROLE, {"error": {"message": "x", "type": "t"}}, FINISH, "[DONE]"),
            None,
            "error event before",
        ),
        (sse(ROLE, {"error": {"type": "t"}}), None, "without message"),
        (b"event: x\n\n", None, "not a data: line"),
        (b"data: {}\ndata: {}\n\n", None, "not one data: line"),
    ],
)
def test_what_the_checker_rejects(raw: bytes, include_usage: bool | None, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_openai_stream(raw, include_usage=include_usage)


@pytest.mark.parametrize("include_usage", [True, False])
def test_the_mock_upstreams_streams_pass(include_usage: bool) -> None:
    """The suite's OpenAI streams (the mock upstream's) are what the checker accepts."""
    raw = b"".join(stream_events("chat", "m", 3, include_usage))
    said = accumulate(check_openai_stream(raw, include_usage=include_usage))
    assert said["content"] == "tok0 tok1 tok2 "
