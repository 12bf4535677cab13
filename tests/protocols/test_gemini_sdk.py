"""The real `anthropic` SDK against the Gemini translators: its request goes through
`gemini_request`, the translated Gemini stream through its stream accumulator, and the message
it built goes back as the next turn, whose Gemini body must carry Gemini's signatures where
Gemini put them and the tool names Gemini knows. No server: the SDK's HTTP client gets bytes
from a MockTransport (`test_messages_sdk.sdk_client`)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_proxy.protocols.gemini import THOUGHT_SIGNATURE, gemini_request, messages_answer
from llm_proxy.protocols.gemini_stream import MessagesFromGemini
from tests.helpers.grammar_anthropic import check_anthropic_stream
from tests.protocols.test_messages_sdk import sdk_client, sent_body

anthropic = pytest.importorskip("anthropic")

TOOLS = [
    {
        "name": "mcp__files__read.file",
        "description": "Read a file",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "format": "uri-reference"}},
            "required": ["path"],
        },
    }
]
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Read /etc/hosts"}]
THINKING = {"type": "enabled", "budget_tokens": 1024}


def gemini_stream(function: str) -> bytes:
    chunks = [
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Need the file.", "thought": True, "thoughtSignature": "T1="}
                        ],
                    }
                }
            ],
            "usageMetadata": {"promptTokenCount": 50, "cachedContentTokenCount": 20},
            "responseId": "gem1",
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {"name": function, "args": {"path": "/etc/hosts"}},
                                "thoughtSignature": "F1=",
                            }
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 50,
                "cachedContentTokenCount": 20,
                "candidatesTokenCount": 8,
                "thoughtsTokenCount": 4,
            },
            "responseId": "gem1",
        },
    ]
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)


def test_the_sdk_streams_and_sends_the_signatures_back() -> None:
    sent = sent_body(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        messages=MESSAGES,
        tools=TOOLS,
        thinking=THINKING,
        stream=True,
    )
    body, call = gemini_request(sent, model="gemini-2.5-flash")
    function = body["tools"][0]["functionDeclarations"][0]["name"]
    assert function != TOOLS[0]["name"]
    translator = MessagesFromGemini(call)
    raw = gemini_stream(function)
    out = b"".join(translator.feed(raw[start : start + 7]) for start in range(0, len(raw), 7))
    out += translator.flush()
    check_anthropic_stream(out)

    client = sdk_client(out, "text/event-stream", [])
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=2048, messages=MESSAGES, tools=TOOLS
    ) as stream:
        message = stream.get_final_message()
    assert message.id == "msg_gem1"
    assert [block.type for block in message.content] == ["thinking", "thinking", "tool_use"]
    assert message.content[0].thinking == "Need the file."
    assert message.content[0].signature == THOUGHT_SIGNATURE + "T1="
    tool_use = message.content[2]
    assert (tool_use.name, tool_use.input) == (TOOLS[0]["name"], {"path": "/etc/hosts"})
    assert tool_use.id.startswith("toolu_")
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (30, 20)
    assert message.usage.output_tokens == 12

    # The next turn, as an agent sends it: the assistant's content as the SDK holds it.
    history = [
        *MESSAGES,
        {"role": "assistant", "content": message.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "::1"}],
        },
    ]
    sent = sent_body(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        messages=history,
        tools=TOOLS,
        thinking=THINKING,
    )
    body, _ = gemini_request(sent, model="gemini-2.5-flash")
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"text": "Need the file.", "thought": True, "thoughtSignature": "T1="},
                {
                    "functionCall": {
                        "id": tool_use.id,
                        "name": function,
                        "args": {"path": "/etc/hosts"},
                    },
                    "thoughtSignature": "F1=",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": tool_use.id,
                        "name": function,
                        "response": {"output": "::1"},
                    }
                }
            ],
        },
    ]


def test_the_sdk_parses_the_translated_answer() -> None:
    sent = sent_body(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, tools=TOOLS)
    body, call = gemini_request(sent, model="gemini-2.5-flash")
    function = body["tools"][0]["functionDeclarations"][0]["name"]
    gemini = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Reading."},
                        {"functionCall": {"id": "c1", "name": function, "args": {"path": "/x"}}},
                    ]
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3},
        "responseId": "gem2",
    }
    answer = orjson.dumps(messages_answer(gemini, call))
    client = sdk_client(answer, "application/json", [])
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES)
    assert message.id == "msg_gem2"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].name == TOOLS[0]["name"]
    assert message.content[1].input == {"path": "/x"}
    assert message.stop_reason == "tool_use"


def test_the_sdk_raises_a_google_error_event() -> None:
    translator = MessagesFromGemini(gemini_request(sent_body(**_minimal()), model="g")[1])
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    out = translator.feed(b"data: " + orjson.dumps(error) + b"\r\n\r\n") + translator.flush()
    client = sdk_client(out, "text/event-stream", [])
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(**_minimal()) as stream,
    ):
        stream.get_final_message()
    assert "The model is overloaded." in str(caught.value)


def _minimal() -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": MESSAGES}
