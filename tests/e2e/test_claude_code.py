"""The real Claude Code CLI through the proxy (`ANTHROPIC_BASE_URL` at it, a master key as its
API key): to an Anthropic provider (passed through) and to an OpenAI-compatible one
(translated), a plain answer and a tool round trip (`--allowedTools "Bash(echo:*)"`: the model
asks for `echo mock`, Claude Code runs it and sends the result back). Every call it makes is
streamed: it never had to fall back to a non-streamed retry (it does after a broken stream)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import ProxyFactory, Upstream, make_config, provider, serve
from tests.helpers.claude_code import claude_bin, run_claude

# CI installs the CLI (.ci/run): there a missing one is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    claude_bin() is None and not os.environ.get("CI"),
    reason="the Claude Code CLI is not installed (.ci/run installs it into .ci/node)",
)

CLIENT_KEY = "sk-team-claude-code-0123"
PROVIDER_KEY = "sk-ant-provider-secret"
MODEL = "claude-mock-1"  # what Claude Code is told to use (--model)


@pytest.fixture(params=["anthropic", "openai"])
async def provider_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


async def mock(tool: str) -> AsyncIterator[Upstream]:
    app = create_mock_app(
        MockOptions(chunks=3, delay_ms=0, record=True, tool=tool, anthropic_key=PROVIDER_KEY)
    )
    async with serve(app) as url:
        yield Upstream(app, url)


async def proxy(start_proxy: ProxyFactory, upstream: Upstream, kind: str) -> str:
    if kind == "anthropic":
        served = {
            "name": "anth",
            "provider_type": "anthropic",
            "api_base": upstream.url,
            "api_key": PROVIDER_KEY,
            "model_mapping": {MODEL: "claude-upstream"},
        }
    else:
        served = provider("oai", upstream.api_base, {MODEL: "gpt-upstream"})
    return await start_proxy(make_config(served, master_keys=[{"name": "dev", "key": CLIENT_KEY}]))


def upstream_calls(upstream: Upstream, kind: str) -> list[dict[str, Any]]:
    """What reached the provider, each call checked: the provider's key (never the client's)
    and streamed."""
    path = "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"
    bodies = []
    for request in upstream.recorded:
        assert request.path == path
        assert CLIENT_KEY not in repr(request.headers)
        if kind == "anthropic":
            assert request.headers["x-api-key"] == PROVIDER_KEY
            assert "claude-code-20250219" in request.headers["anthropic-beta"]
        body = orjson.loads(request.body)
        assert body["stream"] is True, "Claude Code fell back to a non-streamed request"
        bodies.append(body)
    return bodies


async def test_a_plain_answer(start_proxy: ProxyFactory, provider_kind: str) -> None:
    async for upstream in mock(tool="none"):
        url = await proxy(start_proxy, upstream, provider_kind)
        status, output, stderr = await run_claude(url, CLIENT_KEY, "say hi", "--model", MODEL)
        assert status == 0, stderr
        assert output is not None, stderr
        assert (output["is_error"], output["result"].strip()) == (False, "tok0 tok1 tok2")
        (body,) = upstream_calls(upstream, provider_kind)
        expected = "claude-upstream" if provider_kind == "anthropic" else "gpt-upstream"
        assert body["model"] == expected


async def test_a_tool_round_trip(start_proxy: ProxyFactory, provider_kind: str) -> None:
    async for upstream in mock(tool="Bash"):
        url = await proxy(start_proxy, upstream, provider_kind)
        status, output, stderr = await run_claude(
            url, CLIENT_KEY, "run echo", "--model", MODEL, "--allowedTools", "Bash(echo:*)"
        )
        assert status == 0, stderr
        assert output is not None, stderr
        assert "mock" in output["result"]
        _, second = upstream_calls(upstream, provider_kind)
        if provider_kind == "anthropic":
            result = second["messages"][-1]["content"]
            (tool_result,) = [b for b in result if b.get("type") == "tool_result"]
            assert tool_result["content"] == "mock"
            return
        # Translated: the mock's chat answer made two parallel Bash calls (tool_use blocks for
        # Claude Code, run both); they come back as an assistant tool_calls message and one
        # tool message per call (in the order Claude Code's runs ended).
        *_, call, first, last = second["messages"]
        calls = call["tool_calls"]
        assert [c["function"]["name"] for c in calls] == ["Bash", "Bash"]
        assert orjson.loads(calls[0]["function"]["arguments"]) == {"command": "echo mock"}
        assert (first["role"], last["role"]) == ("tool", "tool")
        assert {first["tool_call_id"], last["tool_call_id"]} == {c["id"] for c in calls}
        assert "mock" in str(first["content"]) and "mock" in str(last["content"])
