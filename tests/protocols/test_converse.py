"""An Anthropic Messages request as a Bedrock Converse request, and Converse's answers, usage
and errors as Anthropic's (`llm_proxy.protocols.converse`)."""

from __future__ import annotations

import base64
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import orjson
import pytest
from botocore.validate import ParamValidator  # type: ignore[import-untyped]

from llm_proxy.protocols.converse import (
    EMPTY_RESULT,
    PLACEHOLDER_TOOL,
    ConverseCall,
    bedrock_to_anthropic_error,
    converse_path,
    converse_request,
    converse_usage,
    messages_answer,
    stream_error,
    upstream_status,
)
from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.tool_names import upstream_name
from llm_proxy.protocols.usage import TokenUsage

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
PDF = base64.b64encode(b"%PDF-1.7").decode()
EPHEMERAL = {"type": "ephemeral"}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
        "description": "The weather in a city.",
    }
}


def request(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    body.update(fields)
    return body


CONVERSE = botocore.session.get_session().get_service_model("bedrock-runtime")


def valid(body: dict[str, Any], model: str) -> dict[str, Any]:
    """`body`, once botocore's own validator (types, required members, enums, unions,
    lengths of the Converse model) found it a valid Converse request."""
    shape = CONVERSE.operation_model("Converse").input_shape
    report = ParamValidator().validate({**body, "modelId": model}, shape)
    assert not report.has_errors(), report.generate_report()
    return body


def translate(model: str = CLAUDE, **fields: Any) -> dict[str, Any]:
    return valid(converse_request(request(**fields), model=model)[0], model)


def refused(model: str = CLAUDE, **fields: Any) -> TranslationError:
    with pytest.raises(TranslationError) as caught:
        converse_request(request(**fields), model=model)
    return caught.value


# --- the request -----------------------------------------------------------------------


def test_a_plain_request() -> None:
    body, call = converse_request(request(stream=True), model=CLAUDE)
    valid(body, CLAUDE)
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "inferenceConfig": {"maxTokens": 1024},
    }
    assert call == ConverseCall(model="claude-sonnet-4-5", stream=True)


def test_the_path_encodes_the_model_id_as_a_uri_label() -> None:
    assert converse_path(CLAUDE, False) == (
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    )
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2"
    assert converse_path(arn, True) == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3A"
        "application-inference-profile%2Fa1b2/converse-stream"
    )


def test_a_multi_turn_tool_conversation_with_images_thinking_and_cache_points() -> None:
    data = request(
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0;"},
            {"type": "text", "text": "You are a weather bot.", "cache_control": EPHEMERAL},
            {"type": "text", "text": "Be brief."},
        ],
        tools=[WEATHER, {**WEATHER, "name": "mcp__maps__find.place", "cache_control": EPHEMERAL}],
        tool_choice={"type": "auto"},
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END", ""],
        metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this, and the weather in Paris?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        "cache_control": {"type": "ephemeral", "ttl": "1h"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Look it up.", "signature": "sig=="},
                    {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
                    {"type": "thinking", "thinking": "unsigned", "signature": ""},
                    {"type": "text", "text": ""},
                    {"type": "text", "text": "A logo. Looking up Paris."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "content": [
                            {"type": "text", "text": "Sunny, 21°C"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/jpeg",
                                    "data": PNG,
                                },
                            },
                        ],
                        "cache_control": EPHEMERAL,
                    },
                ],
            },
            {"role": "user", "content": "And the map?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_02",
                        "name": "mcp__maps__find.place",
                        "input": {},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": "not found",
                        "is_error": True,
                    }
                ],
            },
        ],
    )
    body, call = converse_request(data, model=CLAUDE)
    valid(body, CLAUDE)
    shortened = upstream_name("mcp__maps__find.place")
    assert shortened != "mcp__maps__find.place"
    assert body == {
        "system": [
            {"text": "You are a weather bot."},
            {"cachePoint": {"type": "default"}},
            {"text": "Be brief."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this, and the weather in Paris?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                    {"cachePoint": {"type": "default", "ttl": "1h"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "reasoningContent": {
                            "reasoningText": {"text": "Look it up.", "signature": "sig=="}
                        }
                    },
                    {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}},
                    {"text": "A logo. Looking up Paris."},
                    {
                        "toolUse": {
                            "toolUseId": "toolu_01",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "toolu_01",
                            "content": [
                                {"text": "Sunny, 21°C"},
                                {"image": {"format": "jpeg", "source": {"bytes": PNG}}},
                            ],
                        }
                    },
                    {"cachePoint": {"type": "default"}},
                    {"text": "And the map?"},
                ],
            },
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "toolu_02", "name": shortened, "input": {}}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "toolu_02",
                            "content": [{"text": "not found"}],
                            "status": "error",
                        }
                    }
                ],
            },
        ],
        "toolConfig": {
            "tools": [
                WEATHER_SPEC,
                {"toolSpec": {**WEATHER_SPEC["toolSpec"], "name": shortened}},
                {"cachePoint": {"type": "default"}},
            ],
            "toolChoice": {"auto": {}},
        },
        "inferenceConfig": {
            "maxTokens": 1024,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "additionalModelRequestFields": {
            "top_k": 40,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
        },
        "additionalModelResponseFieldPaths": ["/stop_sequence"],
    }
    assert call == ConverseCall(
        model="claude-sonnet-4-5",
        stop_sequences=("END",),
        tool_names={shortened: "mcp__maps__find.place"},
    )


def test_other_models_lose_what_only_anthropic_models_take() -> None:
    data = request(
        top_k=5,
        system=[{"type": "text", "text": "Sys", "cache_control": EPHEMERAL}],
        tools=[WEATHER],
        stop_sequences=["END"],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "Q", "cache_control": EPHEMERAL}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "X"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True}],
            },
        ],
    )
    llama = valid(converse_request(data, model=LLAMA)[0], LLAMA)
    assert llama["system"] == [{"text": "Sys"}]
    assert llama["messages"] == [
        {"role": "user", "content": [{"text": "Q"}]},
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "X"}}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "Error: (no content)"}]}}
            ],
        },
    ]
    assert "additionalModelRequestFields" not in llama
    assert "additionalModelResponseFieldPaths" not in llama
    nova = valid(converse_request(data, model=NOVA)[0], NOVA)
    assert nova["system"] == [{"text": "Sys"}, {"cachePoint": {"type": "default"}}]
    assert nova["messages"][2]["content"][0]["toolResult"]["status"] == "error"
    assert "reasoningContent" not in orjson.dumps(nova).decode()


def test_thinking_is_refused_for_other_models_unless_disabled() -> None:
    error = refused(model=NOVA, thinking={"type": "enabled", "budget_tokens": 1024})
    assert error.param == "thinking"
    assert "additionalModelRequestFields" not in translate(NOVA, thinking={"type": "disabled"})


def with_calls_messages() -> list[dict[str, Any]]:
    call = {"type": "tool_use", "id": "t", "name": "get_weather", "input": {}}
    return [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": []}]},
    ]


def test_tool_choice() -> None:
    assert translate(tools=[WEATHER], tool_choice={"type": "any"})["toolConfig"]["toolChoice"] == {
        "any": {}
    }
    chosen = translate(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert chosen["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert "toolConfig" not in translate(tools=[WEATHER], tool_choice={"type": "none"})
    with_calls = translate(
        tools=[WEATHER],
        tool_choice={"type": "none", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
            },
        ],
    )
    assert with_calls["toolConfig"] == {"tools": [PLACEHOLDER_TOOL]}
    without_tools = translate(messages=with_calls_messages())
    assert without_tools["toolConfig"] == {"tools": [PLACEHOLDER_TOOL]}
    assert without_tools["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "t", "content": [{"text": EMPTY_RESULT}]}}
    ]
    assert refused(tools=[WEATHER], tool_choice={"type": "some"}).param == "tool_choice"


def test_documents() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                        "title": "Q3_report.final (draft)  v2!",
                        "context": "Finance",
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "hello"},
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "again"},
                        "title": "document-2",
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {
            "document": {
                "format": "pdf",
                "name": "Q3 report final (draft) v2",
                "source": {"bytes": PDF},
                "context": "Finance",
            }
        },
        {"document": {"format": "txt", "name": "document-2", "source": {"bytes": "aGVsbG8="}}},
        {"document": {"format": "txt", "name": "document-2 (3)", "source": {"bytes": "YWdhaW4="}}},
        {"text": "Summarise."},
    ]


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].source",
            "cannot fetch a url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/bmp",
                                    "data": PNG,
                                },
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].source.media_type",
            "image/png",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "url", "url": "https://x/y.pdf"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].source",
            "not a url source",
        ),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type",
            "server tool",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "search_result", "source": "s", "title": "t", "content": []}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
            "search_result blocks",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "unknown role"),
        ({"max_tokens": 0}, "max_tokens", "positive integer"),
        ({"top_k": "many"}, "top_k", "positive integer"),
        ({"temperature": "hot"}, "temperature", "a number"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp"}]}, "mcp_servers", "MCP servers"),
    ],
)
def test_refusals_name_the_field(fields: dict[str, Any], param: str, words: str) -> None:
    error = refused(**fields)
    assert error.param == param
    assert words in error.message


def test_consecutive_turns_merge_and_system_turns_join_the_system() -> None:
    body = translate(
        messages=[
            {"role": "user", "content": "A"},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "B"}]},
            {"role": "assistant", "content": []},
            {"role": "assistant", "content": "C"},
        ]
    )
    assert body["system"] == [{"text": "Answer in French."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "A"}, {"text": "B"}]},
        {"role": "assistant", "content": [{"text": "C"}]},
    ]


# --- the answer ------------------------------------------------------------------------


ANSWER: dict[str, Any] = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "sig"}}},
                {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
                {"text": "Let me check."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_Ab1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {
                    "toolUse": {
                        "toolUseId": "tooluse_Cd2",
                        "name": upstream_name("mcp__a.b"),
                        "input": {},
                    }
                },
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {
        "inputTokens": 12,
        "outputTokens": 30,
        "totalTokens": 142,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 0,
    },
    "metrics": {"latencyMs": 812},
}


def test_an_answer_with_thinking_text_and_tool_calls() -> None:
    call = ConverseCall(
        model="claude-sonnet-4-5", tool_names={upstream_name("mcp__a.b"): "mcp__a.b"}
    )
    assert messages_answer(ANSWER, call, request_id="5f1c-aa") == {
        "id": "msg_bdrk_5f1caa",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Think.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "b3BhcXVl"},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "tooluse_Ab1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "tooluse_Cd2", "name": "mcp__a.b", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 100,
            "output_tokens": 30,
        },
    }
    assert messages_answer(ANSWER, call)["id"].startswith("msg_bdrk_")


@pytest.mark.parametrize(
    ("reason", "fields", "sequences", "expected"),
    [
        ("end_turn", None, (), ("end_turn", None)),
        ("max_tokens", None, (), ("max_tokens", None)),
        ("content_filtered", None, (), ("refusal", None)),
        ("guardrail_intervened", None, (), ("refusal", None)),
        ("model_context_window_exceeded", None, (), ("model_context_window_exceeded", None)),
        ("malformed_tool_use", None, (), ("end_turn", None)),
        ("stop_sequence", {"stop_sequence": "STOP"}, ("END", "STOP"), ("stop_sequence", "STOP")),
        ("stop_sequence", None, ("END",), ("stop_sequence", "END")),
        ("stop_sequence", None, ("END", "STOP"), ("end_turn", None)),
        (None, None, (), ("end_turn", None)),
    ],
)
def test_stop_reasons(
    reason: str | None, fields: Any, sequences: tuple[str, ...], expected: tuple[str, str | None]
) -> None:
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
        "stopReason": reason,
    }
    if fields is not None:
        answer["additionalModelResponseFields"] = fields
    result = messages_answer(answer, ConverseCall(model="m", stop_sequences=sequences))
    assert (result["stop_reason"], result["stop_sequence"]) == expected
    assert result["usage"]["output_tokens"] == 0


def test_usage_keeps_anthropic_meaning() -> None:
    usage = {
        "inputTokens": 5,
        "outputTokens": 7,
        "totalTokens": 312,
        "cacheReadInputTokens": 200,
        "cacheWriteInputTokens": 100,
    }
    assert converse_usage(usage) == TokenUsage(5, 7, 200, 100)
    assert converse_usage({"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}) == TokenUsage(
        3, 1
    )
    assert converse_usage(None) is None
    assert converse_usage({"inputTokens": -1, "outputTokens": True}) == TokenUsage(0, 0)


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "expected_status", "anthropic_type"),
    [
        (
            429,
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            429,
            "rate_limit_error",
        ),
        (429, "ModelNotReadyException", 503, "overloaded_error"),
        (503, "ServiceUnavailableException", 503, "overloaded_error"),
        (400, "ValidationException", 400, "invalid_request_error"),
        (403, "AccessDeniedException", 403, "permission_error"),
        (404, "ResourceNotFoundException", 404, "not_found_error"),
        (408, "ModelTimeoutException", 504, "timeout_error"),
        (424, "ModelErrorException", 502, "api_error"),
        (400, "ServiceQuotaExceededException", 429, "rate_limit_error"),
        (500, "InternalServerException", 500, "api_error"),
        (403, "com.amazon.coral.service#UnrecognizedClientException", 403, "permission_error"),
        (409, None, 409, "invalid_request_error"),
    ],
)
def test_errors(
    status: int, error_type: str | None, expected_status: int, anthropic_type: str
) -> None:
    assert upstream_status(status, error_type) == expected_status
    body = orjson.loads(
        bedrock_to_anthropic_error(status, b'{"message":"Too many requests."}', error_type)
    )
    assert body == {
        "type": "error",
        "error": {"type": anthropic_type, "message": "Too many requests."},
    }


def test_an_error_named_only_by_its_body_or_without_a_message() -> None:
    body = orjson.loads(
        bedrock_to_anthropic_error(400, b'{"__type":"ThrottlingException","Message":"Slow down"}')
    )
    assert body["error"] == {"type": "rate_limit_error", "message": "Slow down"}
    body = orjson.loads(bedrock_to_anthropic_error(502, b"<html>Bad Gateway</html>"))
    assert body["error"] == {
        "type": "api_error",
        "message": "The upstream answered HTTP 502: <html>Bad Gateway</html>",
    }
    body = orjson.loads(bedrock_to_anthropic_error(429, b"{}", "ThrottlingException"))
    assert body["error"]["message"] == "The upstream answered ThrottlingException."


def test_stream_exceptions() -> None:
    assert stream_error("throttlingException", b'{"message":"Too many tokens"}') == (
        "Too many tokens",
        "rate_limit_error",
    )
    assert stream_error(
        "modelStreamErrorException", b'{"message":"boom","originalStatusCode":500}'
    ) == ("boom", "api_error")
    assert stream_error("", b"") == ("The upstream answered an exception.", "api_error")
    assert stream_error("somethingNewException", b"") == (
        "The upstream answered somethingNewException.",
        "api_error",
    )
