"""The mock's chat completions beyond text: tool calls (streamed in fragments, two in parallel
interleaved by index), a tool result quoted, reasoning, and the stream quirks of
OpenAI-compatible servers; the official SDK reads each."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_proxy.testing.mock import (
    QUIRKS,
    ChatAnswer,
    MockOptions,
    chat_message,
    chat_stream_events,
    plan_chat,
    stream_events,
)
from tests.helpers import sdk
from tests.testing.conftest import MockFactory

HELLO = [{"role": "user", "content": "hi"}]


def function(name: str, **properties: Any) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": sorted(properties)}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


SHELL = function("shell", command={"type": "string"})
LOOKUP = function("lookup", query={"type": "string"}, limit={"type": "integer"})


def chunks_of(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The stream's JSON chunks, and whether it ended with `data: [DONE]`."""
    assert raw.endswith(b"\n\n") and b"\r" not in raw
    events = [event.removeprefix(b"data: ") for event in raw[:-2].split(b"\n\n")]
    done = events[-1] == b"[DONE]"
    return [orjson.loads(event) for event in events[: -1 if done else None]], done


def fold(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The message a stream's deltas add up to (tool calls by index), its finish reason."""
    message: dict[str, Any] = {"content": "", "reasoning_content": "", "tool_calls": {}}
    finish = None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            message["content"] += delta.get("content") or ""
            message["reasoning_content"] += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                entry = message["tool_calls"].setdefault(call["index"], {"arguments": ""})
                if "id" in call:
                    entry.update(id=call["id"], name=call["function"]["name"])
                entry["arguments"] += call["function"].get("arguments", "")
            finish = choice.get("finish_reason") or finish
    message["finish_reason"] = finish
    return message


async def stream(
    http: aiohttp.ClientSession, url: str, **body: Any
) -> tuple[list[dict[str, Any]], bool]:
    body = {"model": "m", "messages": HELLO, "stream": True, **body}
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        return chunks_of(await resp.read())


async def test_parallel_tool_calls_stream_interleaved_by_index(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(chunks=2)
    chunks, done = await stream(http, mock.url, tools=[SHELL, LOOKUP])
    assert done
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"] and
             "tool_calls" in c["choices"][0]["delta"]]  # fmt: skip
    assert [call["index"] for call in calls[:2]] == [0, 1]
    fragments = [call["index"] for call in calls[2:]]
    assert fragments == [0, 1] * (len(fragments) // 2) and len(fragments) >= 4
    message = fold(chunks)
    assert message["finish_reason"] == "tool_calls"
    assert message["content"] == "tok0 tok1 "
    assert message["tool_calls"] == {
        0: {"id": "call_mock_0", "name": "shell", "arguments": '{"command":"echo mock"}'},
        1: {"id": "call_mock_1", "name": "lookup", "arguments": '{"limit":1,"query":"mock"}'},
    }
    chunks, _ = await stream(http, mock.url, tools=[SHELL, LOOKUP], parallel_tool_calls=False)
    assert list(fold(chunks)["tool_calls"]) == [0]
    assert fold(chunks)["tool_calls"][0]["id"] == "call_mock_2_0"  # ids differ per request


async def test_the_sdk_rebuilds_tool_calls_with_and_without_quirks(
    start_mock: MockFactory,
) -> None:
    plain = await start_mock("plain", chunks=3)
    quirky = await start_mock("quirky", chunks=3, quirks=QUIRKS - {"reasoning"})
    finals = []
    for mock in (plain, quirky):
        async with sdk(mock.url) as client, client.chat.completions.stream(
            model="m", messages=HELLO, tools=[SHELL, LOOKUP],  # type: ignore[list-item]
            stream_options={"include_usage": True},
        ) as events:  # fmt: skip
            final = await events.get_final_completion()
        finals.append(final)
        choice = final.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "tok0 tok1 tok2 "
        calls = choice.message.tool_calls or []
        assert [call.function.name for call in calls] == ["shell", "lookup"]  # type: ignore[union-attr]
        arguments = calls[0].function.arguments  # type: ignore[union-attr]
        assert orjson.loads(arguments) == {"command": "echo mock"}
        assert final.usage is not None and final.usage.completion_tokens > 3
    assert finals[0].usage == finals[1].usage


async def test_a_tool_result_is_quoted(start_mock: MockFactory) -> None:
    mock = await start_mock(chunks=4)
    messages: Any = [
        *HELLO,
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "shell", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "mock\n"},
    ]  # fmt: skip
    async with sdk(mock.url) as client:
        answer = await client.chat.completions.create(model="m", messages=messages, tools=[SHELL])  # type: ignore[list-item]
        streamed = await client.chat.completions.create(
            model="m",
            messages=messages,
            tools=[SHELL],
            stream=True,  # type: ignore[list-item]
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in streamed])
    assert answer.choices[0].message.content == text == 'The tool said: "mock"'
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls


async def test_non_streamed_tool_calls_and_reasoning(start_mock: MockFactory) -> None:
    mock = await start_mock(quirks=frozenset({"reasoning"}))
    async with sdk(mock.url) as client:
        answer = await client.chat.completions.create(
            model="m", messages=HELLO, tools=[LOOKUP], tool_choice="required",  # type: ignore[list-item]
        )  # fmt: skip
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    assert [call.function.arguments for call in message.tool_calls or []] == [  # type: ignore[union-attr]
        '{"limit":1,"query":"mock"}'
    ] * 2
    assert message.model_extra == {"reasoning_content": "Thinking it over."}
    assert message.content == "Hello from the mock upstream."


QUIRK_CASES: list[tuple[frozenset[str], bool]] = [
    (frozenset(combo), include_usage)
    for size in range(len(QUIRKS) + 1)
    for combo in itertools.combinations(sorted(QUIRKS), size)
    for include_usage in (False, True)
    if size <= 2
]


@pytest.mark.parametrize(("quirks", "include_usage"), QUIRK_CASES)
async def test_quirks(
    start_mock: MockFactory,
    http: aiohttp.ClientSession,
    quirks: frozenset[str],
    include_usage: bool,
) -> None:
    """Each quirk (and each pair), with and without include_usage, per request
    (`mock_quirks`): what the stream looks like, and what it adds up to (unchanged)."""
    mock = await start_mock(chunks=3)
    options: Any = {"include_usage": include_usage}
    chunks, done = await stream(
        http, mock.url, tools=[SHELL], mock_quirks=sorted(quirks), stream_options=options
    )
    assert done == ("no-done" not in quirks)
    carries_usage = include_usage or "usage-null" in quirks
    assert all(("usage" in chunk) == carries_usage for chunk in chunks[:-1])
    finish = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(finish) == 1
    usage = {"prompt_tokens": 5}
    if "usage-in-finish" in quirks:
        assert finish[0]["usage"]["prompt_tokens"] == 5 and chunks[-1] is finish[0]
    elif include_usage or "usage-after-finish" in quirks:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"].items() >= usage.items()
        assert chunks[-2] is finish[0]
    else:
        assert chunks[-1] is finish[0] and not chunks[-1].get("usage")
    kinds_per_chunk = [
        sum(k in c["choices"][0]["delta"] for k in ("content", "reasoning_content", "tool_calls"))
        for c in chunks
        if c["choices"]
    ]
    assert (max(kinds_per_chunk) > 1) == ("merged-chunks" in quirks)
    message = fold(chunks)
    assert message["content"] == "tok0 tok1 tok2 "
    assert bool(message["reasoning_content"]) == ("reasoning" in quirks)
    assert [call["arguments"] for call in message["tool_calls"].values()] == [
        '{"command":"echo mock"}'
    ] * 2


async def test_instance_quirks_and_unknown_ones(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(quirks=frozenset({"no-done"}))
    _, done = await stream(http, mock.url)
    assert not done
    body = {"model": "m", "messages": HELLO, "stream": True, "mock_quirks": ["sparkles"]}
    async with http.post(mock.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "mock_quirks"
    with pytest.raises(ValueError, match="unknown quirks"):
        MockOptions(quirks=frozenset({"sparkles"}))


@given(
    chunks=st.integers(0, 10),
    include_usage=st.booleans(),
    quirks=st.frozensets(st.sampled_from(sorted(QUIRKS))),
    tools=st.sampled_from([[], [SHELL], [SHELL, LOOKUP]]),
    parallel=st.booleans(),
)
def test_every_quirky_stream_adds_up_to_the_message(
    chunks: int, include_usage: bool, quirks: frozenset[str], tools: Any, parallel: bool
) -> None:
    data = {"model": "m", "messages": HELLO, "tools": tools, "parallel_tool_calls": parallel}
    answer = plan_chat(data, chunks, quirks)
    raw = b"".join(chat_stream_events("m", answer, include_usage=include_usage, quirks=quirks))
    streamed = fold(chunks_of(raw)[0])
    message = chat_message(answer)
    assert streamed["content"] == (message["content"] or "")
    assert streamed["reasoning_content"] == message.get("reasoning_content", "")
    expected = [
        {"id": call["id"], "name": function["name"], "arguments": function["arguments"]}
        for call in message.get("tool_calls", [])
        for function in [call["function"]]
    ]
    assert list(streamed["tool_calls"].values()) == expected
    assert streamed["finish_reason"] == answer.finish_reason


def test_a_plain_answer_without_quirks_is_the_classic_stream() -> None:
    answer = ChatAnswer(tuple(f"tok{i} " for i in range(7)))
    for include_usage in (False, True):
        assert chat_stream_events("m", answer, name="n", include_usage=include_usage) == (
            stream_events("chat", "m", 7, include_usage, name="n")
        )
