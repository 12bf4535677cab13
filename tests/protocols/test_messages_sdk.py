"""The real `anthropic` SDK reads what `messages_via_chat` and `MessagesStream` produce: the
SDK's own request goes through `chat_request`, and the translated answer and stream go back
through the SDK's parser and stream accumulator (`messages.stream().get_final_message()`).
The SDK's HTTP client gets the bytes from a MockTransport: no server is involved, only the
SDK's parsing of pure bytes."""

from __future__ import annotations

import importlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from llm_proxy.protocols.messages_stream import MessagesStream
from llm_proxy.protocols.messages_via_chat import chat_request, message_answer
from tests.helpers.chat_streams import upstream_streams
from tests.helpers.grammar_anthropic import check_anthropic_stream

anthropic = pytest.importorskip("anthropic")
# The SDK's HTTP client library: httpx, or the httpx2 fork newer SDKs use.
http = importlib.import_module("httpx2" if "httpx2" in vars(anthropic._base_client) else "httpx")

TOOLS = [
    {
        "name": "mcp__files__read.file",
        "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    }
]
MESSAGES = [{"role": "user", "content": "Read /etc/hosts"}]


def sdk_client(answer: bytes, content_type: str, seen: list[dict[str, Any]]) -> Any:
    """An SDK client whose every request is answered `answer`; the request bodies it sent
    are appended to `seen`."""

    def handler(request: Any) -> Any:
        seen.append(orjson.loads(request.content))
        return http.Response(200, headers={"content-type": content_type}, content=answer)

    transport = http.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="test", max_retries=0, http_client=http.Client(transport=transport)
    )


def sent_body(**arguments: Any) -> dict[str, Any]:
    """The request body the SDK sends for `messages.create(**arguments)`."""
    seen: list[dict[str, Any]] = []
    sdk_client(b"{}", "application/json", seen).messages.with_raw_response.create(**arguments)
    return seen[0]


def chat_stream(name: str) -> bytes:
    chunks: list[dict[str, Any]] = [
        {
            "id": "chatcmpl-9",
            "model": "qwen3",
            "choices": [{"index": 0, "delta": {"role": "assistant"}}],
        },
        {
            "id": "chatcmpl-9",
            "choices": [{"index": 0, "delta": {"reasoning_content": "Need the file."}}],
        },
        {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"content": "Reading."}}]},
        {
            "id": "chatcmpl-9",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": name, "arguments": '{"pa'},
                            }
                        ]
                    },
                }
            ],
        },
        {
            "id": "chatcmpl-9",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "function": {"arguments": 'th": "/etc/hosts"}'}}
                        ]
                    },
                }
            ],
        },
        {
            "id": "chatcmpl-9",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            "usage": None,
        },
        {
            "id": "chatcmpl-9",
            "choices": [],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 12,
                "prompt_tokens_details": {"cached_tokens": 20},
            },
        },
    ]
    return (
        b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)
        + b"data: [DONE]\n\n"
    )


def test_the_sdk_accumulates_the_translated_stream() -> None:
    sent = sent_body(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, tools=TOOLS, stream=True
    )
    body, call = chat_request(sent, model="qwen3")
    upstream_name = body["tools"][0]["function"]["name"]
    assert upstream_name != TOOLS[0]["name"]
    assert body["stream_options"] == {"include_usage": True}

    translator = MessagesStream(call)
    raw = chat_stream(upstream_name)
    out = b"".join(translator.feed(raw[start : start + 5]) for start in range(0, len(raw), 5))
    out += translator.flush()
    check_anthropic_stream(out)

    client = sdk_client(out, "text/event-stream", [])
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, tools=TOOLS
    ) as stream:
        message = stream.get_final_message()
    assert message.id == "msg_9"
    assert message.model == "qwen3"
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "Need the file."
    assert message.content[1].text == "Reading."
    tool_use = message.content[2]
    assert (tool_use.id, tool_use.name, tool_use.input) == (
        "call_1",
        TOOLS[0]["name"],
        {"path": "/etc/hosts"},
    )
    assert message.stop_reason == "tool_use"
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (30, 20, 12)


def test_the_sdk_raises_the_error_event() -> None:
    translator = MessagesStream(
        chat_request({"model": "c", "max_tokens": 5, "messages": MESSAGES}, model="m")[1]
    )
    out = translator.feed(b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n')
    out += translator.fail("The upstream timed out.", "overloaded_error")
    client = sdk_client(out, "text/event-stream", [])
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="c", max_tokens=5, messages=MESSAGES) as stream,
    ):
        stream.get_final_message()
    assert "The upstream timed out." in str(caught.value)


def test_the_sdk_parses_the_translated_answer() -> None:
    sent = sent_body(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
    )
    body, call = chat_request(sent, model="qwen3", max_tokens_cap=64)
    assert body["max_tokens"] == 64
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    name = body["tools"][0]["function"]["name"]
    chat = {
        "id": "chatcmpl-5",
        "object": "chat.completion",
        "model": "qwen3",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "Read it.",
                    "tool_calls": [
                        {
                            "id": "call_5",
                            "type": "function",
                            "function": {"name": name, "arguments": '{"path": "/a"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3},
    }
    answer = orjson.dumps(message_answer(chat, call))
    message = sdk_client(answer, "application/json", []).messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    )
    assert [block.type for block in message.content] == ["thinking", "tool_use"]
    assert message.content[1].name == TOOLS[0]["name"]
    assert message.content[1].input == {"path": "/a"}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 10


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upstream_streams())
def test_the_sdk_accumulates_any_translated_stream(generated: tuple[bytes, dict[str, Any]]) -> None:
    raw, expected = generated
    translator = MessagesStream(
        chat_request({"model": "c", "max_tokens": 5, "messages": MESSAGES}, model="m")[1]
    )
    out = translator.feed(raw) + translator.flush()
    client = sdk_client(out, "text/event-stream", [])
    with client.messages.stream(model="c", max_tokens=5, messages=MESSAGES) as stream:
        message = stream.get_final_message()
    assert (
        "".join(block.text for block in message.content if block.type == "text") == expected["text"]
    )
    tools = [
        (block.id, block.name, block.input) for block in message.content if block.type == "tool_use"
    ]
    assert tools == expected["tools"]
    assert message.stop_reason == expected["stop_reason"]
