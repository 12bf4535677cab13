"""OpenAI chat-completions requests as Anthropic Messages requests, and Anthropic Messages as
chat completions (`llm_proxy.protocols.chat_via_messages`); the stream is in test_chat_stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from llm_proxy.protocols.chat_via_messages import MessagesCall, chat_answer, messages_request
from llm_proxy.protocols.errors import TranslationError

USER = {"role": "user", "content": "Hi"}


def translate(
    *messages: dict[str, Any], cap: int | None = None, **fields: Any
) -> tuple[dict[str, Any], MessagesCall]:
    data = {"model": "gpt-x", "messages": list(messages) or [USER], **fields}
    return messages_request(data, model="claude-x", max_tokens_cap=cap)


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return translate(*messages, **fields)[0]


def refused(*messages: dict[str, Any], **fields: Any) -> TranslationError:
    with pytest.raises(TranslationError) as raised:
        translate(*messages, **fields)
    return raised.value


# The conversation.


def test_a_plain_request() -> None:
    translated, call = translate(USER)
    assert translated == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 4096,
    }
    assert call == MessagesCall(model="gpt-x")


def test_system_and_developer_messages_become_the_system_blocks_in_order() -> None:
    translated = body(
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
    )
    assert translated["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]
    assert [turn["role"] for turn in translated["messages"]] == ["user"]


def test_images_as_base64_and_url_sources() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
    ]
    [turn] = body({"role": "user", "content": content})["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]


def test_a_pdf_file_part_is_a_document_and_cache_control_is_kept() -> None:
    content = [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}},
        {"type": "text", "text": "Sum it up.", "cache_control": {"type": "ephemeral"}},
    ]
    [turn] = body({"role": "user", "content": content})["messages"]
    assert turn["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
        },
        {"type": "text", "text": "Sum it up.", "cache_control": {"type": "ephemeral"}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}, "image_url"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}, "image_url"),
        ({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}, "image_url"),
        ({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}, "type"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "file"),
        ({"type": "file", "file": {"file_data": "data:text/plain;base64,AA"}}, "file_data"),
    ],
)
def test_content_anthropic_cannot_take_is_a_400(part: dict[str, Any], param: str) -> None:
    error = refused({"role": "user", "content": [part]})
    assert error.param.startswith("messages[0].content[0]")
    assert error.param.endswith(param)


def test_assistant_tool_calls_and_tool_results_alternate_with_the_next_user_text() -> None:
    translated = body(
        USER,
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "functions.time:2", "type": "function", "function": {"name": "time"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {
            "role": "tool",
            "tool_call_id": "functions.time:2",
            "content": [{"type": "text", "text": "Noon"}],
        },
        {"role": "user", "content": "Thanks. And tomorrow?"},
    )
    assert translated["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "functions_time_2", "name": "time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "functions_time_2",
                    "content": [{"type": "text", "text": "Noon"}],
                },
                {"type": "text", "text": "Thanks. And tomorrow?"},
            ],
        },
    ]


def test_consecutive_turns_of_a_role_merge_and_empty_ones_drop() -> None:
    translated = body(
        {"role": "user", "content": "One."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Two."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"role": "assistant", "content": "Sorry."},
    )
    assert translated["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "No."}, {"type": "text", "text": "Sorry."}],
        },
    ]


def test_a_user_message_before_tool_results_still_puts_the_results_first() -> None:
    """Anthropic wants tool_result blocks first in their turn."""
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    translated = body(
        USER,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "user", "content": "Hurry."},
        {"role": "tool", "tool_call_id": "c", "content": "done"},
    )
    assert [block["type"] for block in translated["messages"][-1]["content"]] == [
        "tool_result",
        "text",
    ]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ("hello", "messages"),
        ([{"role": "system", "content": "Only a system prompt."}], "messages"),
        ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 3}], "messages[0].content"),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                }
            ],
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}],
                }
            ],
            "messages[0].tool_calls[0].function.arguments",
        ),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
    ],
)
def test_malformed_conversations_are_a_400(messages: Any, param: str) -> None:
    with pytest.raises(TranslationError) as raised:
        messages_request({"messages": messages}, model="claude-x")
    assert raised.value.param == param


# Fields.


def test_sampling_stop_user_stream_and_usage_option() -> None:
    translated, call = translate(
        USER,
        temperature=0.3,
        top_p=0.9,
        stop=["END", "\n\nHuman:"],
        user="user-7",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert translated["temperature"] == 0.3
    assert translated["top_p"] == 0.9
    assert translated["stop_sequences"] == ["END", "\n\nHuman:"]
    assert translated["metadata"] == {"user_id": "user-7"}
    assert translated["stream"] is True
    assert "stream_options" not in translated
    assert call.stream and call.include_usage


def test_a_stop_string_and_a_temperature_above_anthropics_range() -> None:
    translated = body(stop="END", temperature=1.6)
    assert translated["stop_sequences"] == ["END"]
    assert translated["temperature"] == 1.0


def test_include_usage_counts_only_for_a_stream() -> None:
    assert not translate(stream_options={"include_usage": True})[1].include_usage


def test_a_whitespace_stop_sequence_is_a_400() -> None:
    assert refused(stop=["END", "\n"]).param == "stop"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
        ({"max_tokens": 100_000}, 8000),
    ],
)
def test_max_tokens_default_and_cap(fields: dict[str, Any], expected: int) -> None:
    assert body(cap=8000, **fields)["max_tokens"] == expected


def test_the_default_is_capped_too() -> None:
    assert body(cap=1000)["max_tokens"] == 1000


@pytest.mark.parametrize("value", [0, -1, "100", 1.5, True])
def test_a_bad_max_tokens_is_a_400(value: Any) -> None:
    assert refused(max_completion_tokens=value).param == "max_completion_tokens"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
def test_what_anthropic_cannot_do_is_a_400(fields: dict[str, Any], param: str) -> None:
    error = refused(**fields)
    assert error.param == param
    assert error.message


def test_harmless_openai_only_fields_are_dropped() -> None:
    translated = body(
        n=1,
        logprobs=False,
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        store=True,
        metadata={"tag": "x"},
        service_tier="flex",
        prediction={"type": "content", "content": "x"},
        prompt_cache_key="k",
        verbosity="low",
        modalities=["text"],
        some_future_field=1,
    )
    assert set(translated) == {"model", "messages", "max_tokens"}


# Tools.

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "clock"}}


def test_tools_become_input_schemas() -> None:
    assert body(tools=[WEATHER, CLOCK])["tools"] == [
        {
            "name": "weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "The weather of a city.",
        },
        {"name": "clock", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "clock"}}, {"type": "tool", "name": "clock"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert body(tools=[WEATHER, CLOCK], tool_choice=choice)["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    assert body(tools=[CLOCK], parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert body(tools=[CLOCK], tool_choice="required", parallel_tool_calls=False)[
        "tool_choice"
    ] == {"type": "any", "disable_parallel_tool_use": True}
    assert body(tools=[CLOCK], tool_choice="none", parallel_tool_calls=False)["tool_choice"] == {
        "type": "none"
    }


def test_a_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in body(tool_choice="none")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [CLOCK], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [CLOCK], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
    ],
)
def test_tools_anthropic_cannot_take_are_a_400(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


# response_format.

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "result", "schema": SCHEMA}}


def test_response_format_text_is_nothing() -> None:
    translated, call = translate(response_format={"type": "text"})
    assert "tools" not in translated
    assert call.json_tool is None


def test_a_json_schema_is_a_forced_tool() -> None:
    translated, call = translate(response_format=JSON_SCHEMA)
    [tool] = translated["tools"]
    assert tool["name"] == "result"
    assert tool["input_schema"] == SCHEMA
    assert translated["tool_choice"] == {
        "type": "tool",
        "name": "result",
        "disable_parallel_tool_use": True,
    }
    assert call.json_tool == "result"


def test_json_object_is_a_forced_tool_of_any_object() -> None:
    translated, call = translate(response_format={"type": "json_object"})
    assert translated["tools"][0]["input_schema"] == {"type": "object"}
    assert call.json_tool == translated["tools"][0]["name"] == "json_answer"


def test_a_json_schema_with_the_clients_tools_requires_one_of_them() -> None:
    translated, call = translate(tools=[CLOCK], tool_choice="auto", response_format=JSON_SCHEMA)
    assert [tool["name"] for tool in translated["tools"]] == ["clock", "result"]
    assert translated["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert call.json_tool == "result"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [CLOCK], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [CLOCK], "tool_choice": "none"}, "tool_choice"),
        (
            {"tools": [CLOCK], "tool_choice": {"type": "function", "function": {"name": "clock"}}},
            "tool_choice",
        ),
        ({"tools": [{"type": "function", "function": {"name": "result"}}]}, "response_format"),
    ],
)
def test_a_json_schema_conflicting_with_the_clients_tools_is_a_400(
    fields: dict[str, Any], param: str
) -> None:
    assert refused(response_format=JSON_SCHEMA, **fields).param == param


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "array"}}},
    ],
)
def test_a_response_format_anthropic_cannot_honour_is_a_400(response_format: Any) -> None:
    assert refused(response_format=response_format).param.startswith("response_format")


# reasoning_effort.


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 24576)]
)
def test_reasoning_effort_is_a_thinking_budget(effort: str, budget: int) -> None:
    translated = body(reasoning_effort=effort, max_completion_tokens=30_000)
    assert translated["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert translated["max_tokens"] == 30_000


def test_reasoning_effort_none_is_no_thinking() -> None:
    translated = body(reasoning_effort="none", temperature=0.5)
    assert "thinking" not in translated
    assert translated["temperature"] == 0.5


def test_max_tokens_grows_past_the_budget_keeping_the_answers_room() -> None:
    translated = body(reasoning_effort="medium", max_tokens=1000)
    assert translated["max_tokens"] == 8192 + 1000
    assert body(reasoning_effort="medium")["max_tokens"] == 8192 + 4096
    assert body(reasoning_effort="low")["max_tokens"] == 4096  # above the budget already


def test_the_cap_bounds_max_tokens_and_then_the_budget() -> None:
    translated = body(reasoning_effort="high", cap=10_000)
    assert translated["max_tokens"] == 10_000
    assert translated["thinking"]["budget_tokens"] == 5_000
    translated = body(reasoning_effort="high", cap=1500)
    assert translated["max_tokens"] == 1500
    assert translated["thinking"]["budget_tokens"] == 1024


def test_a_cap_leaving_no_room_for_thinking_is_a_400() -> None:
    assert refused(reasoning_effort="minimal", cap=1024).param == "reasoning_effort"


def test_thinking_drops_temperature_and_top_p() -> None:
    translated = body(reasoning_effort="low", temperature=0.2, top_p=0.5)
    assert "temperature" not in translated
    assert "top_p" not in translated


@pytest.mark.parametrize(
    "fields",
    [
        {"reasoning_effort": "extreme"},
        {"reasoning_effort": "low", "response_format": JSON_SCHEMA},
        {"reasoning_effort": "low", "tools": [CLOCK], "tool_choice": "required"},
    ],
)
def test_reasoning_effort_anthropic_cannot_honour_is_a_400(fields: dict[str, Any]) -> None:
    assert refused(**fields).param == "reasoning_effort"


def test_thinking_with_tool_choice_auto_is_fine() -> None:
    translated = body(reasoning_effort="low", tools=[CLOCK], tool_choice="auto")
    assert translated["tool_choice"] == {"type": "auto"}


# The answer.


def message(
    *content: dict[str, Any], stop_reason: str = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_01AbC",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


CALL = MessagesCall(model="gpt-x")


def answer(msg: dict[str, Any], call: MessagesCall = CALL) -> dict[str, Any]:
    completion = chat_answer(msg, call, created=1700000000)
    ChatCompletion.model_validate(completion)  # the OpenAI SDK reads it
    return completion


def test_a_text_answer() -> None:
    completion = answer(
        message(
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": ", world"},
            cache_read_input_tokens=100,
            cache_creation_input_tokens=20,
        )
    )
    assert completion == {
        "id": "chatcmpl-01AbC",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 130,
            "completion_tokens": 5,
            "total_tokens": 135,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }


def test_tool_calls_and_thinking() -> None:
    completion = answer(
        message(
            {"type": "thinking", "thinking": "The user wants", "signature": "sig"},
            {"type": "redacted_thinking", "data": "secret"},
            {"type": "thinking", "thinking": " the weather.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "clock", "input": {}},
            stop_reason="tool_use",
        )
    )
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["reasoning_content"] == "The user wants the weather."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "toolu_2", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
    ]


def test_only_tool_calls_have_no_content() -> None:
    completion = answer(
        message({"type": "tool_use", "id": "t", "name": "f", "input": {}}, stop_reason="tool_use")
    )
    assert completion["choices"][0]["message"]["content"] is None


def test_the_json_tool_is_the_text_content() -> None:
    call = MessagesCall(model="gpt-x", json_tool="result")
    completion = answer(
        message(
            {"type": "tool_use", "id": "t", "name": "result", "input": {"answer": 42}},
            stop_reason="tool_use",
        ),
        call,
    )
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "stop"
    assert orjson.loads(choice["message"]["content"]) == {"answer": 42}
    assert "tool_calls" not in choice["message"]


def test_with_the_json_tool_a_client_tool_call_is_still_a_tool_call() -> None:
    call = MessagesCall(model="gpt-x", json_tool="result")
    completion = answer(
        message(
            {"type": "tool_use", "id": "t", "name": "clock", "input": {}}, stop_reason="tool_use"
        ),
        call,
    )
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "clock"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("a_future_reason", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    completion = answer(message({"type": "text", "text": "x"}, stop_reason=stop_reason))
    assert completion["choices"][0]["finish_reason"] == finish_reason


def test_an_answer_without_content_nor_usage_is_still_a_completion() -> None:
    completion = answer({"id": "msg_1", "content": [], "stop_reason": "max_tokens"})
    assert completion["model"] == "gpt-x"
    assert completion["choices"][0]["message"]["content"] == ""
    assert completion["usage"]["total_tokens"] == 0


def test_a_tool_loops_next_step_goes_without_thinking() -> None:
    """Anthropic would want the signed thinking block before the tool calls, which an OpenAI
    client cannot send back."""
    call = {"id": "c", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    loop = (
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
    )
    translated = body(*loop, tools=[CLOCK], reasoning_effort="high", temperature=0.5)
    assert "thinking" not in translated
    assert translated["max_tokens"] == 4096
    assert translated["temperature"] == 0.5
    answered = (
        *loop,
        {"role": "assistant", "content": "It is noon."},
        {"role": "user", "content": "Thanks"},
    )
    assert (
        body(*answered, tools=[CLOCK], reasoning_effort="high")["thinking"]["budget_tokens"]
        == 24576
    )
    assert refused(*loop, reasoning_effort="sometimes").param == "reasoning_effort"


def test_whitespace_text_is_dropped_and_a_last_assistant_turn_loses_trailing_whitespace() -> None:
    """Anthropic refuses text blocks of only whitespace, and a prefill ending in whitespace."""
    content = [{"type": "text", "text": "Hi"}, {"type": "text", "text": " \n"}]
    translated = body(
        {"role": "user", "content": content},
        {"role": "assistant", "content": "The answer is \n"},
    )
    assert translated["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]},
    ]
