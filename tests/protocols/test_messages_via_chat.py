"""An Anthropic Messages request as a chat-completions request
(`llm_proxy.protocols.messages_via_chat`)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.messages_via_chat import (
    TOOL_ERROR_PREFIX,
    ChatCall,
    chat_request,
    message_answer,
    request_text,
)
from llm_proxy.protocols.tool_names import upstream_name


def request(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    body.update(fields)
    return body


def translate(**fields: Any) -> dict[str, Any]:
    return chat_request(request(**fields), model="qwen3")[0]


def refused(**fields: Any) -> TranslationError:
    with pytest.raises(TranslationError) as caught:
        chat_request(request(**fields), model="qwen3")
    return caught.value


# --- the request -----------------------------------------------------------------------


def test_a_plain_request() -> None:
    body, call = chat_request(request(), model="qwen3")
    assert body == {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
    }
    assert call == ChatCall(model="claude-sonnet-4-5")


def test_system_as_a_string_and_as_blocks_without_the_billing_header() -> None:
    assert translate(system="Be brief.")["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0; cch=1;"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
    ]
    assert translate(system=system)["messages"][0] == {
        "role": "system",
        "content": "You are Claude Code.\n\nBe brief.",
    }


def test_an_empty_system_sends_no_system_message() -> None:
    assert translate(system=[])["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_system_message_inside_messages_stays_where_it_is() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": [{"type": "text", "text": "Now in French."}]},
        {"role": "user", "content": "Bye"},
    ]
    assert translate(messages=messages)["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Now in French."},
        {"role": "user", "content": "Bye"},
    ]


def test_text_blocks_become_one_string_and_images_parts() -> None:
    text_only = [
        {"type": "text", "text": "<system-reminder>x</system-reminder>"},
        {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}},
    ]
    assert translate(messages=[{"role": "user", "content": text_only}])["messages"] == [
        {"role": "user", "content": "<system-reminder>x</system-reminder>\n\nHi"}
    ]
    with_images = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    assert translate(messages=[{"role": "user", "content": with_images}])["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather of a city",
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "cache_control": {"type": "ephemeral"},
        "defer_loading": False,
    },
    {"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True},
]


def test_tool_definitions_become_functions_without_anthropic_fields() -> None:
    assert translate(tools=TOOLS)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather of a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "now",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "now"},
            {"tool_choice": {"type": "function", "function": {"name": "now"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": False},
            {"tool_choice": "required"},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(tools=TOOLS, tool_choice=choice)
    assert {key: body[key] for key in ("tool_choice", "parallel_tool_calls") if key in body} == (
        expected
    )


def test_no_tool_choice_without_tools() -> None:
    body = translate(tool_choice={"type": "auto"})
    assert "tool_choice" not in body
    assert "tools" not in body


def test_a_tool_round_trip_in_the_history() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two calls.", "signature": "abc"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here you go."},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "Service down"}],
                    "is_error": True,
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        },
    ]
    assert translate(messages=messages, tools=TOOLS)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": TOOL_ERROR_PREFIX + "Service down"},
        {"role": "user", "content": "Here you go."},
    ]


def test_an_assistant_turn_of_tool_calls_only_has_null_content() -> None:
    messages = [
        {"role": "user", "content": "Now?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "now", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]
    chat = translate(messages=messages)["messages"]
    assert chat[1]["content"] is None
    assert chat[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert chat[2:] == [{"role": "tool", "tool_call_id": "t", "content": ""}]


def test_a_tool_result_image_follows_in_the_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    content = [{"type": "tool_result", "tool_use_id": "t", "content": [image]}]
    chat = translate(messages=[{"role": "user", "content": content}])["messages"]
    assert chat[0]["role"] == "tool"
    assert chat[0]["content"]  # a tool message says the image follows, never empty
    assert chat[1] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
    }


def test_an_error_without_text_is_still_marked() -> None:
    content = [{"type": "tool_result", "tool_use_id": "t", "is_error": True}]
    chat = translate(messages=[{"role": "user", "content": content}])["messages"]
    assert chat[0]["content"].startswith(TOOL_ERROR_PREFIX)


def test_sampling_stop_sequences_user_and_stream() -> None:
    body, call = chat_request(
        request(
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END", "\n\nHuman:"],
            metadata={"user_id": "user-42"},
            stream=True,
            thinking={"type": "enabled", "budget_tokens": 2000},
            context_management={"edits": []},
            service_tier="auto",
        ),
        model="qwen3",
    )
    assert body == {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stop": ["END", "\n\nHuman:"],
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "user-42",
    }
    assert call.stream
    assert call.stop_sequences == ("END", "\n\nHuman:")


@pytest.mark.parametrize(
    ("asked", "cap", "sent"), [(1024, 512, 512), (256, 512, 256), (None, 512, 512)]
)
def test_max_tokens_is_capped(asked: int | None, cap: int, sent: int) -> None:
    body, _ = chat_request(request(max_tokens=asked), model="m", max_tokens_cap=cap)
    assert body["max_tokens"] == sent


def test_long_and_dotted_tool_names_are_shortened_and_restored() -> None:
    long_name = "mcp__a_server_with_a_long_name__" + "x" * 60
    dotted = "mcp__files__read.file"
    tools = [{"name": long_name, "input_schema": {}}, {"name": dotted, "input_schema": {}}]
    history = [
        {"role": "user", "content": "Go"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": dotted, "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
    ]
    body, call = chat_request(
        request(tools=tools, messages=history, tool_choice={"type": "tool", "name": long_name}),
        model="m",
    )
    sent = [tool["function"]["name"] for tool in body["tools"]]
    assert all(
        len(name) <= 64 and name.replace("_", "").replace("-", "").isalnum() for name in sent
    )
    assert sent == [upstream_name(long_name), upstream_name(dotted)]
    assert body["messages"][1]["tool_calls"][0]["function"]["name"] == sent[1]
    assert body["tool_choice"]["function"]["name"] == sent[0]
    assert dict(call.tool_names) == {sent[0]: long_name, sent[1]: dotted}
    answer = message_answer(
        {
            "choices": [
                {
                    "message": {
                        "tool_calls": [
                            {"id": "c", "function": {"name": sent[1], "arguments": "{}"}}
                        ]
                    }
                }
            ]
        },
        call,
    )
    assert answer["content"][0]["name"] == dotted


def test_names_that_clash_once_shortened_are_refused() -> None:
    dotted = "read.file"
    tools = [
        {"name": dotted, "input_schema": {}},
        {"name": upstream_name(dotted), "input_schema": {}},
    ]
    assert refused(tools=tools).param == "tools[1].name"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "source": "x"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "server_tool_use",
                                "id": "s",
                                "name": "web_search",
                                "input": {},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
        ({"tools": [{"description": "no name"}]}, "tools[0].name"),
        ({"tool_choice": {"type": "sometimes"}, "tools": TOOLS}, "tool_choice"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": "Hi"}, "messages"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"temperature": "hot"}, "temperature"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
        ({"system": [{"type": "image", "source": {}}]}, "system[0]"),
    ],
)
def test_what_the_chat_api_cannot_carry_is_refused(fields: dict[str, Any], param: str) -> None:
    error = refused(**fields)
    assert error.param == param
    assert param.split("[")[0] in error.message


def test_request_text_has_every_text_the_model_reads() -> None:
    data = request(
        system=[{"type": "text", "text": "SYSTEM"}],
        messages=[
            {"role": "user", "content": "QUESTION"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "CALL", "input": {"q": "ARG"}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "text", "text": "RESULT"}],
                    }
                ],
            },
        ],
        tools=[
            {
                "name": "TOOL",
                "description": "DESCRIPTION",
                "input_schema": {"properties": {"PROP": {}}},
            }
        ],
    )
    text = request_text(data)
    for word in ("SYSTEM", "QUESTION", "CALL", "ARG", "RESULT", "TOOL", "DESCRIPTION", "PROP"):
        assert word in text
    assert request_text({"messages": 3, "tools": "x"}) == ""
