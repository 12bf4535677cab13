"""Anthropic Messages requests as Gemini `generateContent` bodies, Gemini answers as Anthropic
Messages, usage and errors (`llm_proxy.protocols.gemini`), on recorded-shape inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini import (
    PART_SIGNATURE,
    SKIP_SIGNATURE,
    THOUGHT_SIGNATURE,
    ContentBlocks,
    GeminiCall,
    gemini_request,
    gemini_to_anthropic_error,
    gemini_usage,
    messages_answer,
)
from llm_proxy.protocols.usage import TokenUsage

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


def test_a_multi_turn_request_with_tools_images_and_thinking() -> None:
    data = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0"},
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": [
                    # Anthropic's own thinking (another model's signature): dropped.
                    {"type": "thinking", "thinking": "Two calls.", "signature": "EqQBCkYIBxgC"},
                    {"type": "redacted_thinking", "data": "EmwKAhgB"},
                    {"type": "text", "text": "Checking both."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01B",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01B",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "timeout"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": PNG,
                                },
                            },
                        ],
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "And this one?",
                        "cache_control": {"type": "ephemeral"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://x.test/a.WEBP?s=1"},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                    },
                    {"type": "document", "source": {"type": "url", "url": "https://x.test/r"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    },
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "temperature": 0.4,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "user-1"},
    }
    body, call = gemini_request(data, model="gemini-2.5-pro")
    assert call == GeminiCall(model="claude-sonnet-4-5", stream=True, tool_names={})
    assert body == {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and Oslo?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Checking both."},
                    {
                        "functionCall": {
                            "id": "toolu_01A",
                            "name": "get_weather",
                            "args": {"city": "Paris"},
                        },
                        # Gemini did not sign this turn: Google's placeholder on the first call.
                        "thoughtSignature": SKIP_SIGNATURE,
                    },
                    {
                        "functionCall": {
                            "id": "toolu_01B",
                            "name": "get_weather",
                            "args": {"city": "Oslo"},
                        }
                    },
                ],
            },
            {
                # Two user turns merged: the responses, the result's image, then the text.
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "toolu_01A",
                            "name": "get_weather",
                            "response": {"output": "18C sunny"},
                        }
                    },
                    {
                        "functionResponse": {
                            "id": "toolu_01B",
                            "name": "get_weather",
                            "response": {"error": "timeout"},
                        }
                    },
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"text": "And this one?"},
                    {
                        "fileData": {
                            "mimeType": "image/webp",
                            "fileUri": "https://x.test/a.WEBP?s=1",
                        }
                    },
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/r"}},
                    {"text": "notes"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "The weather in a city.",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string"},
                                "unit": {"type": "string", "enum": ["c", "f"]},
                            },
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {
            "maxOutputTokens": 4096,
            "temperature": 0.4,
            "topP": 0.9,
            "topK": 40,
            "stopSequences": ["END"],
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
        },
    }


def _request(**fields: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
    } | fields


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ({"type": "any"}, {"mode": "ANY"}),
        ({"type": "none"}, {"mode": "NONE"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], config: dict[str, Any]) -> None:
    body, _ = gemini_request(_request(tools=[WEATHER_TOOL], tool_choice=choice), model="g")
    assert body["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize(
    ("thinking", "config"),
    [
        ({"type": "disabled"}, {"thinkingBudget": 0}),
        ({"type": "adaptive"}, {"includeThoughts": True}),
        (
            {"type": "enabled", "budget_tokens": 31_999},
            {"thinkingBudget": 24_576, "includeThoughts": True},
        ),
    ],
)
def test_thinking_settings(thinking: dict[str, Any], config: dict[str, Any]) -> None:
    body, _ = gemini_request(_request(thinking=thinking), model="g")
    assert body["generationConfig"] == {"maxOutputTokens": 10, "thinkingConfig": config}


def test_a_tool_without_parameters_and_a_long_mcp_name() -> None:
    name = "mcp__playwright__browser_take_screenshot_of_the_whole_page_with_all_frames.v2"
    data = _request(
        tools=[{"name": name, "input_schema": {"type": "object", "properties": {}}}],
        tool_choice={"type": "tool", "name": name},
    )
    body, call = gemini_request(data, model="g")
    declaration = body["tools"][0]["functionDeclarations"][0]
    sent = declaration["name"]
    assert declaration == {"name": sent}  # no parameters: Gemini refuses empty objects
    assert len(sent) <= 64 and sent != name
    assert body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == [sent]
    assert call.tool_names == {sent: name}
    answer = {"candidates": [{"content": {"parts": [{"functionCall": {"name": sent}}]}}]}
    assert messages_answer(answer, call)["content"][0]["name"] == name


def test_a_name_starting_with_a_digit_gets_a_leading_underscore() -> None:
    body, call = gemini_request(_request(tools=[{"name": "3d_render"}]), model="g")
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "_3d_render"
    assert call.tool_names == {"_3d_render": "3d_render"}


@pytest.mark.parametrize(
    ("data", "param"),
    [
        (
            _request(
                messages=[
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}
                        ],
                    },
                ]
            ),
            "messages[1].content[0].tool_use_id",
        ),
        (
            _request(tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}]),
            "tools[1].type",
        ),
        (
            _request(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            ),
            "messages[0].content[0].source",
        ),
        (
            _request(
                messages=[{"role": "user", "content": [{"type": "search_result", "source": "s"}]}]
            ),
            "messages[0].content[0]",
        ),
        (
            _request(
                tools=[
                    {
                        "name": "t",
                        "input_schema": {"type": "object", "properties": {"x": {"not": {}}}},
                    }
                ]
            ),
            "tools[0].input_schema.properties.x.not",
        ),
        (_request(mcp_servers=[{"type": "url", "url": "https://m.test"}]), "mcp_servers"),
        (_request(tool_choice={"type": "sometimes"}, tools=[WEATHER_TOOL]), "tool_choice"),
        (_request(thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (_request(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
    ],
)
def test_refusals_name_the_field(data: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as raised:
        gemini_request(data, model="g")
    assert raised.value.param == param


# --- answers --------------------------------------------------------------------------------

CALL = GeminiCall(model="claude-sonnet-4-5")
USAGE = {
    "promptTokenCount": 1200,
    "cachedContentTokenCount": 1000,
    "candidatesTokenCount": 40,
    "thoughtsTokenCount": 300,
    "toolUsePromptTokenCount": 5,
    "totalTokenCount": 1545,
}
# A Gemini 2.5 answer with thoughts and two function calls, the first one signed.
THINKING_TOOLS_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "**Planning**\nTwo cities.", "thought": True},
                    {"text": "I'll look both up.", "thoughtSignature": "CtYBAdHtim8="},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "Cs0CAdHtim9=",
                    },
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}
            ],
        }
    ],
    "usageMetadata": USAGE,
    "modelVersion": "gemini-2.5-pro",
    "responseId": "mJ9qaL7BNq",
}


def test_an_answer_with_thoughts_signatures_and_tool_calls() -> None:
    answer = messages_answer(THINKING_TOOLS_ANSWER, CALL)
    content = answer.pop("content")
    assert answer == {
        "id": "msg_mJ9qaL7BNq",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 205,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1000,
            "output_tokens": 340,
        },
    }
    first_id, second_id = content[4]["id"], content[5]["id"]
    assert first_id.startswith("toolu_") and second_id.startswith("toolu_")
    assert first_id != second_id
    assert content == [
        {"type": "thinking", "thinking": "**Planning**\nTwo cities.", "signature": ""},
        {"type": "thinking", "thinking": "", "signature": PART_SIGNATURE + "CtYBAdHtim8="},
        {"type": "text", "text": "I'll look both up."},
        {"type": "thinking", "thinking": "", "signature": PART_SIGNATURE + "Cs0CAdHtim9="},
        {"type": "tool_use", "id": first_id, "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": second_id, "name": "get_weather", "input": {"city": "Oslo"}},
    ]


def test_signatures_go_back_where_gemini_put_them() -> None:
    answer = messages_answer(THINKING_TOOLS_ANSWER, CALL)
    signed_thought = {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "Hm.", "thought": True, "thoughtSignature": "Sig0"}]
                },
                "finishReason": "STOP",
            }
        ]
    }
    thought = messages_answer(signed_thought, CALL)["content"]
    assert thought == [
        {"type": "thinking", "thinking": "Hm.", "signature": THOUGHT_SIGNATURE + "Sig0"}
    ]
    ids = [block["id"] for block in answer["content"] if block["type"] == "tool_use"]
    data = _request(
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": answer["content"]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": ids[0], "content": "18C"},
                    {"type": "tool_result", "tool_use_id": ids[1], "content": "2C"},
                ],
            },
            {"role": "assistant", "content": thought},
            {"role": "user", "content": "Thanks"},
        ],
    )
    body, _ = gemini_request(data, model="g")
    assert body["contents"][1]["parts"] == [
        {"text": "I'll look both up.", "thoughtSignature": "CtYBAdHtim8="},
        {
            "functionCall": {"id": ids[0], "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "Cs0CAdHtim9=",
        },
        {"functionCall": {"id": ids[1], "name": "get_weather", "args": {"city": "Oslo"}}},
    ]
    assert body["contents"][3]["parts"] == [
        {"text": "Hm.", "thought": True, "thoughtSignature": "Sig0"}
    ]


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        ({"content": {"parts": [{"text": "Cut"}]}, "finishReason": "MAX_TOKENS"}, "max_tokens"),
        ({"finishReason": "SAFETY", "safetyRatings": [{"blocked": True}]}, "refusal"),
        ({"content": {"parts": [{"text": "Lyrics"}]}, "finishReason": "RECITATION"}, "refusal"),
        ({"finishReason": "PROHIBITED_CONTENT"}, "refusal"),
        ({"finishReason": "MALFORMED_FUNCTION_CALL", "finishMessage": "Malformed"}, "end_turn"),
        ({"content": {"parts": [{"text": "Hi"}]}, "finishReason": "OTHER"}, "end_turn"),
        ({"content": {"parts": [{"text": "Hi"}]}}, "end_turn"),
    ],
)
def test_stop_reasons(candidate: dict[str, Any], reason: str) -> None:
    assert messages_answer({"candidates": [candidate]}, CALL)["stop_reason"] == reason


def test_a_blocked_prompt_is_an_empty_refusal() -> None:
    blocked = {
        "promptFeedback": {
            "blockReason": "PROHIBITED_CONTENT",
            "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ],
        },
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    answer = messages_answer(blocked, CALL)
    assert (answer["content"], answer["stop_reason"]) == ([], "refusal")
    assert answer["usage"]["input_tokens"] == 9
    assert answer["id"].startswith("msg_")


def test_generated_images_and_code_parts_are_dropped() -> None:
    answer = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Here:"},
                        {"inlineData": {"mimeType": "image/png", "data": PNG}},
                        {"executableCode": {"language": "PYTHON", "code": "1"}},
                        {"text": " done."},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }
    assert messages_answer(answer, CALL)["content"] == [{"type": "text", "text": "Here: done."}]


def test_usage() -> None:
    assert gemini_usage(THINKING_TOOLS_ANSWER) == TokenUsage(
        input_tokens=205, output_tokens=340, cache_read_tokens=1000
    )
    assert gemini_usage({"usageMetadata": {"promptTokenCount": 7}}) == TokenUsage(7, 0)
    assert gemini_usage({"candidates": []}) is None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_COUNT = st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.just(2.0), st.just("4"))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "promptTokenCount",
                "candidatesTokenCount",
                "totalTokenCount",
                "cachedContentTokenCount",
                "toolUsePromptTokenCount",
                "thoughtsTokenCount",
            ]
        ),
        _COUNT,
    )
)
def test_usage_of_any_counts(usage: dict[str, Any]) -> None:
    """Whichever counts are there (the common pair read first), the usage is the whole rule's."""
    prompt = _count(usage.get("promptTokenCount"))
    cached = min(_count(usage.get("cachedContentTokenCount")), prompt)
    assert gemini_usage({"usageMetadata": usage}) == TokenUsage(
        input_tokens=prompt - cached + _count(usage.get("toolUsePromptTokenCount")),
        output_tokens=_count(usage.get("candidatesTokenCount"))
        + _count(usage.get("thoughtsTokenCount")),
        cache_read_tokens=cached,
    )


def _blocks_of(parts: list[Any]) -> list[dict[str, Any]]:
    """The content `ContentBlocks` makes of parts, its events folded (as the stream does)."""
    blocks = ContentBlocks({})
    for part in parts:
        blocks.part(part)
    blocks.close()
    content: list[dict[str, Any]] = []
    for name, body in blocks.take():
        if name == "content_block_start":
            content.append(dict(body["content_block"]))
        elif name == "content_block_delta":
            delta = body["delta"]
            if delta["type"] == "input_json_delta":
                content[-1]["input"] = json.loads(delta["partial_json"])
            else:
                key = delta["type"].removesuffix("_delta")
                content[-1][key] += delta[key]
    return content


_TEXT_PART = st.builds(lambda text: {"text": text}, st.sampled_from(["", " ", "a", "b c"]))
_OTHER_PART = st.sampled_from(
    [
        {"text": 3},
        {"text": None},
        {"text": "t", "thought": True},
        {"text": "s", "thoughtSignature": "c2ln"},
        {"functionCall": {"id": "c", "name": "get_weather", "args": {"a": 1}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {},
        "not a part",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_TEXT_PART, _TEXT_PART, _TEXT_PART, _OTHER_PART), max_size=5))
def test_an_answer_of_text_parts_is_what_content_blocks_make_of_them(parts: list[Any]) -> None:
    answer = {"candidates": [{"content": {"parts": parts}}], "responseId": "r"}
    assert messages_answer(answer, GeminiCall(model="g"))["content"] == _blocks_of(parts)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "* GenerateContentRequest.contents: contents is not specified",
                    "status": "INVALID_ARGUMENT",
                }
            },
            "invalid_request_error",
            "* GenerateContentRequest.contents: contents is not specified",
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                        }
                    ],
                }
            },
            "authentication_error",
            "API key not valid. Please pass a valid API key.",
        ),
        (
            429,
            [{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}],
            "rate_limit_error",
            "Quota exceeded",
        ),
        (
            503,
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded.",
                    "status": "UNAVAILABLE",
                }
            },
            "overloaded_error",
            "The model is overloaded.",
        ),
        (
            404,
            {"error": {"code": 404, "message": "models/x is not found"}},
            "not_found_error",
            "models/x is not found",
        ),
    ],
)
def test_google_errors(status: int, body: Any, kind: str, message: str) -> None:
    error = json.loads(gemini_to_anthropic_error(status, json.dumps(body).encode()))
    assert error == {"type": "error", "error": {"type": kind, "message": message}}


def test_a_body_that_is_not_google_json() -> None:
    error = json.loads(gemini_to_anthropic_error(502, b"<html>Bad Gateway</html>"))
    assert error["error"] == {
        "type": "api_error",
        "message": "The upstream answered HTTP 502: <html>Bad Gateway</html>",
    }


# --- generated answers: every signature goes back on its part ---------------------------------

_SIGNATURES = st.one_of(st.none(), st.text("ABC=", min_size=1, max_size=4))
_PARTS = st.lists(
    st.tuples(
        st.sampled_from(["text", "thought", "call"]), st.text("xy ", min_size=1), _SIGNATURES
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(_PARTS)
def test_every_signature_goes_back_on_its_part(specs: list[tuple[str, str, str | None]]) -> None:
    parts: list[dict[str, Any]] = []
    for position, (kind, text, signature) in enumerate(specs):
        part: dict[str, Any] = {"text": text}
        if kind == "thought":
            part["thought"] = True
        elif kind == "call":
            part = {"functionCall": {"id": f"c{position}", "name": "get_weather", "args": {}}}
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    answer = messages_answer({"candidates": [{"content": {"parts": parts}}]}, CALL)
    results = [
        {"type": "tool_result", "tool_use_id": block["id"], "content": "ok"}
        for block in answer["content"]
        if block["type"] == "tool_use"
    ]
    messages = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": answer["content"]},
        {"role": "user", "content": results or "Next"},
    ]
    body, _ = gemini_request(_request(messages=messages, tools=[WEATHER_TOOL]), model="g")
    replayed = body["contents"][1]["parts"] if len(body["contents"]) == 3 else []

    def signatures(items: list[dict[str, Any]], kind: str) -> list[str]:
        return [
            item["thoughtSignature"]
            for item in items
            if "thoughtSignature" in item
            and kind
            == ("call" if "functionCall" in item else "thought" if item.get("thought") else "text")
        ]

    calls = [part for part in parts if "functionCall" in part]
    expected_calls = signatures(parts, "call")
    if calls and not expected_calls:
        expected_calls = [SKIP_SIGNATURE]
    assert signatures(replayed, "call") == expected_calls
    assert signatures(replayed, "text") == signatures(parts, "text")
    assert signatures(replayed, "thought") == signatures(parts, "thought")
    # Each call keeps its own signature (not merely the same list).
    for part in replayed:
        if "functionCall" in part and part.get("thoughtSignature") != SKIP_SIGNATURE:
            original = next(
                p for p in calls if p["functionCall"]["id"] == part["functionCall"]["id"]
            )
            assert part.get("thoughtSignature") == original.get("thoughtSignature")


# --- generated conversations --------------------------------------------------------------------

_TEXT_BLOCKS = st.builds(lambda text: {"type": "text", "text": text}, st.text("ab", max_size=2))
_USER_BLOCKS = st.one_of(
    _TEXT_BLOCKS,
    st.builds(
        lambda data: {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": data},
        },
        st.text("AB", min_size=1, max_size=2),
    ),
    st.builds(
        lambda number, error: {
            "type": "tool_result",
            "tool_use_id": f"t{number}",
            "content": "r",
            "is_error": error,
        },
        st.integers(0, 5),
        st.booleans(),
    ),
)
_ASSISTANT_BLOCKS = st.one_of(
    _TEXT_BLOCKS,
    st.builds(
        lambda number, name: {"type": "tool_use", "id": f"t{number}", "name": name, "input": {}},
        st.integers(0, 5),
        st.sampled_from(["get_weather", "9lives", "mcp__x__" + "y" * 70]),
    ),
    st.builds(
        lambda prefix, text: {"type": "thinking", "thinking": text, "signature": prefix + "S"},
        st.sampled_from(["", THOUGHT_SIGNATURE, PART_SIGNATURE, "Eq"]),
        st.text("t", max_size=1),
    ),
)
_TURNS = st.lists(
    st.one_of(
        st.builds(lambda blocks: ("user", blocks), st.lists(_USER_BLOCKS, max_size=4)),
        st.builds(lambda blocks: ("assistant", blocks), st.lists(_ASSISTANT_BLOCKS, max_size=4)),
    ),
    max_size=6,
)


def _unknown_result(turns: list[tuple[str, list[dict[str, Any]]]]) -> bool:
    """Whether a tool_result names a call no earlier turn made (the request is refused)."""
    called: set[str] = set()
    for _, blocks in turns:
        for block in blocks:
            if block["type"] == "tool_use":
                called.add(block["id"])
            elif block["type"] == "tool_result" and block["tool_use_id"] not in called:
                return True
    return False


@settings(max_examples=300, deadline=None)
@given(_TURNS)
def test_generated_conversations_make_valid_contents(
    turns: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    data = _request(messages=[{"role": role, "content": blocks} for role, blocks in turns])
    if _unknown_result(turns):
        with pytest.raises(TranslationError, match="no earlier tool_use"):
            gemini_request(data, model="g")
        return
    contents = gemini_request(data, model="g")[0]["contents"]
    called: dict[str, str] = {}
    for position, content in enumerate(contents):
        assert content["parts"], f"contents[{position}] has no part"
        if position:
            assert content["role"] != contents[position - 1]["role"]
        for part in content["parts"]:
            if "functionCall" in part:
                assert content["role"] == "model"
                call = part["functionCall"]
                assert call["name"][:1].isalpha() or call["name"][0] == "_"
                assert len(call["name"]) <= 64
                called[call["id"]] = call["name"]
            if "functionResponse" in part:
                assert content["role"] == "user"
                response = part["functionResponse"]
                assert called[response["id"]] == response["name"]
