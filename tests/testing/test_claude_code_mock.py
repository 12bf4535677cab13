"""The real Claude Code CLI against the mock's Anthropic Messages routes: a plain answer and a
tool round trip (Bash runs `echo mock`, its output goes back as a tool_result), each request
streamed (Claude Code never falls back to a non-streamed retry), with its key and headers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.helpers import Upstream
from tests.helpers.claude_code import claude_bin, run_claude
from tests.testing.conftest import MockFactory

pytestmark = pytest.mark.skipif(
    claude_bin() is None,
    reason="the Claude Code CLI is not installed (.ci/run installs it into .ci/node)",
)

KEY = "sk-ant-mock"
# What every test's mock has: the key Claude Code must send, short answers.
MOCK: dict[str, Any] = {"anthropic_key": KEY, "chunks": 3, "delay_ms": 0}


def streamed_messages(mock: Upstream) -> list[dict[str, Any]]:
    """The bodies of the Messages requests the mock received, each checked: Claude Code's
    headers, and streamed."""
    bodies = []
    for request in mock.recorded:
        assert (request.method, request.path, request.query) == (
            "POST",
            "/v1/messages",
            "beta=true",
        )
        assert request.headers["x-api-key"] == KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert "claude-code-20250219" in request.headers["anthropic-beta"]
        body = orjson.loads(request.body)
        assert body["stream"] is True
        bodies.append(body)
    return bodies


async def test_plain_answer(start_mock: MockFactory) -> None:
    mock = await start_mock(tool="none", **MOCK)
    status, output, stderr = await run_claude(mock.url, KEY, "say hi", "--model", "claude-mock-1")
    assert status == 0, stderr
    assert output is not None, stderr
    assert (output["is_error"], output["result"]) == (False, "tok0 tok1 tok2 ")
    (body,) = streamed_messages(mock)
    assert body["model"] == "claude-mock-1"
    assert body["tools"], "Claude Code offers its tools"
    assert any(block.get("text") == "say hi" for block in body["messages"][0]["content"])


async def test_tool_round_trip(start_mock: MockFactory) -> None:
    mock = await start_mock(tool="Bash", **MOCK)
    status, output, stderr = await run_claude(
        mock.url, KEY, "run echo", "--allowedTools", "Bash(echo:*)"
    )
    assert status == 0, stderr
    assert output is not None, stderr
    assert (output["result"], output["num_turns"]) == ('The tool said: "mock"', 2)
    first, second = streamed_messages(mock)
    assert len(second["messages"]) > len(first["messages"])
    call, result = second["messages"][-2:]
    assert call["role"] == "assistant"
    tool_use = next(block for block in call["content"] if block["type"] == "tool_use")
    assert (tool_use["name"], tool_use["input"]) == ("Bash", {"command": "echo mock"})
    (tool_result,) = [block for block in result["content"] if block["type"] == "tool_result"]
    assert tool_result["tool_use_id"] == tool_use["id"]
    assert tool_result["content"] == "mock"
    assert tool_result.get("is_error") is not True


async def test_overloaded_answers_are_retried(start_mock: MockFactory) -> None:
    """Claude Code retries a 529 overloaded_error (the same streamed request) until it gets
    an answer."""
    mock = await start_mock(tool="none", fail_status=529, fail_times=2, **MOCK)
    status, output, stderr = await run_claude(mock.url, KEY, "say hi")
    assert status == 0, stderr
    assert output is not None, stderr
    assert output["result"] == "tok0 tok1 tok2 "
    first, second, third = streamed_messages(mock)
    assert first == second == third


async def test_error_events_mid_stream_end_in_a_non_streamed_request(
    start_mock: MockFactory,
) -> None:
    """A stream that keeps ending in `event: error` is retried as a stream, then Claude Code
    falls back to one non-streamed request, whose Message it reads."""
    mock = await start_mock(tool="none", error_after=1, **MOCK)
    status, output, stderr = await run_claude(mock.url, KEY, "say hi")
    assert status == 0, stderr
    assert output is not None, stderr
    assert output["result"] == "tok0 tok1 tok2 "
    *streams, fallback = [orjson.loads(request.body) for request in mock.recorded]
    assert len(streams) >= 2
    assert all(body["stream"] is True for body in streams)
    assert "stream" not in fallback or fallback["stream"] is False
    assert fallback["messages"] == streams[0]["messages"]
