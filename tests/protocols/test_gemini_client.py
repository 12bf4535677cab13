"""Gemini generateContent requests as Anthropic Messages requests, and the answers, errors,
model list and countTokens back (`llm_proxy.protocols.gemini_client`): each mapping, both
spellings of the fields, and what is refused."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini_client import (
    GeminiClientCall,
    anthropic_to_gemini_error,
    count_tokens_answer,
    count_tokens_request,
    gemini_answer,
    gemini_error,
    gemini_model,
    gemini_models,
    json_schema,
    messages_from_gemini,
    openai_to_gemini_error,
    unwrap_signature,
    wrap_signature,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\xff\xfe").decode()
CALL = GeminiClientCall(model="claude-sonnet-4-5")


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def model(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def translate(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    return messages_from_gemini(body, model="models/claude-sonnet-4-5", stream=False, **options)[0]


def refused(body: dict[str, Any]) -> TranslationError:
    with pytest.raises(TranslationError) as caught:
        translate(body)
    return caught.value


def test_a_plain_request() -> None:
    body, call = messages_from_gemini(
        {"contents": [user({"text": "Hello"})]}, model="models/claude-x", stream=True
    )
    assert body == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 4096,
        "stream": True,
    }
    assert call == GeminiClientCall(model="claude-x", stream=True)


def test_system_instruction_as_content_or_string() -> None:
    contents = [user({"text": "Hi"})]
    as_content = translate(
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": " "}]},
            "contents": contents,
        }
    )
    assert as_content["system"] == [{"type": "text", "text": "Be brief."}]
    as_string = translate({"system_instruction": "Be brief.", "contents": contents})
    assert as_string["system"] == [{"type": "text", "text": "Be brief."}]


def test_roles_merge_and_a_conversation_the_model_starts() -> None:
    body = translate(
        {
            "contents": [
                model({"text": "Hello! How can I help?"}),
                {"parts": [{"text": "one"}]},
                user({"text": "two"}, {"text": "  "}),
                model({"text": "Sure:  "}),
            ]
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello! How can I help?"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Sure:"}]},
    ]


def test_inline_data_images_pdf_and_text_in_either_alphabet_and_spelling() -> None:
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()  # "-__-"
    text = base64.b64encode(b"notes\n").decode()
    body = translate(
        {
            "contents": [
                user(
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"inline_data": {"mime_type": "image/webp", "data": urlsafe.rstrip("=")}},
                    {"inlineData": {"mimeType": "application/pdf", "data": PNG}},
                    {"inlineData": {"mimeType": "text/plain", "data": text}},
                )
            ]
        }
    )
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/webp", "data": "+//+"},
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PNG},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "notes\n"},
        },
    ]


def test_inline_data_of_another_type_is_refused() -> None:
    error = refused(
        {"contents": [user({"text": "hi"}, {"inlineData": {"mimeType": "audio/mp3", "data": PNG}})]}
    )
    assert error.param == "contents[0].parts[1].inlineData.mimeType"
    assert "audio/mp3" in error.message


def test_file_data_by_url_and_what_cannot_be_fetched() -> None:
    body = translate(
        {
            "contents": [
                user(
                    {"fileData": {"fileUri": "https://x.test/a.png", "mimeType": "image/png"}},
                    {
                        "file_data": {
                            "file_uri": "https://x.test/a.pdf",
                            "mime_type": "application/pdf",
                        }
                    },
                )
            ]
        }
    )
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
    ]
    for uri in (
        "gs://bucket/a.png",
        "https://generativelanguage.googleapis.com/v1beta/files/abc",
    ):
        error = refused(
            {"contents": [user({"fileData": {"fileUri": uri, "mimeType": "image/png"}})]}
        )
        assert error.param == "contents[0].parts[0].fileData.fileUri"
    error = refused(
        {"contents": [user({"fileData": {"fileUri": "https://x.test/v", "mimeType": "video/mp4"}})]}
    )
    assert error.param == "contents[0].parts[0].fileData.mimeType"


def test_function_calls_and_responses_with_ids() -> None:
    body = translate(
        {
            "contents": [
                user({"text": "Weather in Paris and Rome?"}),
                model(
                    {"functionCall": {"id": "c.1", "name": "weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"id": "c2", "name": "weather", "args": {"city": "Rome"}}},
                ),
                user(
                    {"functionResponse": {"id": "c2", "name": "weather", "response": {"t": 20}}},
                    {
                        "functionResponse": {
                            "id": "c.1",
                            "name": "weather",
                            "response": {"output": "sunny"},
                        }
                    },
                ),
            ]
        }
    )
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "c2", "name": "weather", "input": {"city": "Rome"}},
    ]
    assert body["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "c2",
            "content": [{"type": "text", "text": '{"t":20}'}],
        },
        {
            "type": "tool_result",
            "tool_use_id": "c_1",
            "content": [{"type": "text", "text": "sunny"}],
        },
    ]


def test_function_responses_without_ids_pair_with_the_earliest_unanswered_call() -> None:
    body = translate(
        {
            "contents": [
                user({"text": "go"}),
                model(
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "time", "args": {}}},
                    {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                ),
                {
                    "role": "function",
                    "parts": [
                        {"functionResponse": {"name": "weather", "response": {"result": "a"}}},
                        {"functionResponse": {"name": "time", "response": {"result": "b"}}},
                        {"functionResponse": {"name": "weather", "response": {"error": "c"}}},
                    ],
                },
                user({"text": "thanks"}),
            ]
        }
    )
    ids = [block["id"] for block in body["messages"][1]["content"]]
    assert ids == ["call_1_0", "call_1_1", "call_1_2"]
    assert body["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "call_1_0",
            "content": [{"type": "text", "text": "a"}],
        },
        {
            "type": "tool_result",
            "tool_use_id": "call_1_1",
            "content": [{"type": "text", "text": "b"}],
        },
        {
            "type": "tool_result",
            "tool_use_id": "call_1_2",
            "content": [{"type": "text", "text": "c"}],
            "is_error": True,
        },
        {"type": "text", "text": "thanks"},
    ]


def test_a_function_response_answering_no_call_is_refused() -> None:
    error = refused(
        {
            "contents": [
                user({"text": "go"}),
                user({"functionResponse": {"name": "weather", "response": {"result": "a"}}}),
            ]
        }
    )
    assert error.param == "contents[1].parts[0].functionResponse"


def test_a_function_response_with_image_parts() -> None:
    body = translate(
        {
            "contents": [
                user({"text": "shot"}),
                model({"functionCall": {"id": "s", "name": "screenshot", "args": {}}}),
                user(
                    {
                        "functionResponse": {
                            "id": "s",
                            "name": "screenshot",
                            "response": {},
                            "parts": [{"inline_data": {"mime_type": "image/png", "data": PNG}}],
                        }
                    }
                ),
            ]
        }
    )
    assert body["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "s",
            "content": [
                {"type": "text", "text": "{}"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        }
    ]


THINKING = {"thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}}


def test_signed_thoughts_come_back_as_thinking_blocks() -> None:
    signature = wrap_signature("EqQBCkgIAR==")
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(signature)).decode()
    body, call = messages_from_gemini(
        {
            "contents": [
                user({"text": "go"}),
                model(
                    {"text": "Let me ", "thought": True},
                    {"text": "think.", "thought": True},
                    {"text": "", "thought": True, "thought_signature": urlsafe},
                    {"text": "unsigned", "thought": True},
                    {"functionCall": {"id": "c", "name": "f", "args": {}}},
                ),
                user({"functionResponse": {"id": "c", "name": "f", "response": {"result": "x"}}}),
            ],
            "generationConfig": THINKING,
        },
        model="claude-x",
        stream=False,
    )
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCkgIAR=="},
        {"type": "tool_use", "id": "c", "name": "f", "input": {}},
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert call.include_thoughts


def test_thoughts_signed_by_someone_else_are_dropped() -> None:
    foreign = base64.b64encode(b"\xff\x00binary").decode()  # not UTF-8: not one of ours
    assert unwrap_signature(foreign) is None
    body = translate(
        {
            "contents": [
                user({"text": "go"}),
                model({"text": "hm", "thought": True, "thoughtSignature": foreign}, {"text": "A"}),
                user({"text": "more"}),
            ],
            "generationConfig": THINKING,
        }
    )
    assert body["messages"][1]["content"] == [{"type": "text", "text": "A"}]


def test_a_tool_loop_without_its_signed_thought_goes_without_thinking() -> None:
    body = translate(
        {
            "contents": [
                user({"text": "go"}),
                model({"functionCall": {"name": "f", "args": {}}}),
                user({"functionResponse": {"name": "f", "response": {"result": "x"}}}),
            ],
            "generationConfig": {"temperature": 0.5, **THINKING},
        }
    )
    assert "thinking" not in body
    assert body["temperature"] == 0.5


def test_thinking_budgets_and_levels() -> None:
    def thinking(config: dict[str, Any], **generation: Any) -> dict[str, Any]:
        body = translate(
            {
                "contents": [user({"text": "go"})],
                "generationConfig": {"thinkingConfig": config, **generation},
            }
        )
        return {key: body[key] for key in ("max_tokens", "thinking") if key in body}

    assert thinking({"thinkingBudget": 0}) == {"max_tokens": 4096}
    assert thinking({"thinking_budget": 100}) == {
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    assert thinking({"thinkingBudget": -1}, maxOutputTokens=1000) == {
        "max_tokens": 9192,
        "thinking": {"type": "enabled", "budget_tokens": 8192},
    }
    assert thinking({"thinkingLevel": "HIGH"})["thinking"]["budget_tokens"] == 24576
    assert thinking({"thinking_level": "low"})["thinking"]["budget_tokens"] == 2048
    assert thinking({"includeThoughts": True})["thinking"]["budget_tokens"] == 8192
    assert thinking({"includeThoughts": False}) == {"max_tokens": 4096}


def test_thinking_is_off_when_a_call_is_forced() -> None:
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": THINKING,
        }
    )
    assert "thinking" not in body
    assert body["tool_choice"] == {"type": "any"}


def test_generation_config() -> None:
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "generationConfig": {
                "maxOutputTokens": 100,
                "temperature": 1.7,
                "topP": 0.9,
                "topK": 40.0,
                "stopSequences": ["END"],
                "candidateCount": 1,
                "seed": 3,
                "presencePenalty": 0.5,
                "frequencyPenalty": 0.5,
                "responseMimeType": "text/plain",
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
            "labels": {"team": "a"},
            "somethingNew": 1,
        },
        default_max_tokens=50,
    )
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "go"}]}],
        "max_tokens": 100,
        "temperature": 1.0,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "stream": False,
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
        ({"generationConfig": {"responseLogprobs": True}}, "generationConfig.responseLogprobs"),
        (
            {"generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType",
        ),
        (
            {"generationConfig": {"responseMimeType": "application/json", "responseSchema": {}}},
            "generationConfig.responseSchema",
        ),
        (
            {
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseJsonSchema": {"type": "array"},
                }
            },
            "generationConfig.responseJsonSchema",
        ),
        (
            {
                "generationConfig": {"responseMimeType": "application/json"},
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            },
            "toolConfig.functionCallingConfig.mode",
        ),
        (
            {
                "generationConfig": {"responseMimeType": "application/json"},
                "tools": [{"functionDeclarations": [{"name": "json_answer"}]}],
            },
            "tools",
        ),
        (
            {"generationConfig": {"response_modalities": ["TEXT", "IMAGE"]}},
            "generationConfig.responseModalities",
        ),
        ({"generationConfig": {"stopSequences": ["\n"]}}, "generationConfig.stopSequences"),
        ({"generationConfig": {"maxOutputTokens": 0}}, "generationConfig.maxOutputTokens"),
        ({"cachedContent": "cachedContents/abc"}, "cachedContent"),
        ({"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"tools": [{"code_execution": {}}]}, "tools[0].codeExecution"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        (
            {"contents": [user({"executableCode": {"code": "1"}})]},
            "contents[0].parts[0].executableCode",
        ),
        (
            {"contents": [user({"functionCall": {"name": "f", "args": {}}})]},
            "contents[0].parts[0].functionCall",
        ),
        (
            {
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}
                },
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames",
        ),
    ],
)
def test_what_is_refused(body: dict[str, Any], param: str) -> None:
    assert refused({"contents": [user({"text": "go"})], **body}).param == param


def test_function_declarations_and_the_openapi_schema() -> None:
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "find",
                            "description": "Find things",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {
                                    "query": {"type": "STRING", "description": "what"},
                                    "kind": {
                                        "type": "STRING",
                                        "enum": ["a", "b"],
                                        "nullable": True,
                                    },
                                    "tags": {
                                        "type": "ARRAY",
                                        "items": {"type": "STRING"},
                                        "max_items": "5",
                                    },
                                    "type": {"any_of": [{"type": "INTEGER"}], "nullable": True},
                                },
                                "required": ["query"],
                                "propertyOrdering": ["query", "kind"],
                            },
                        },
                        {"name": "raw", "parameters_json_schema": {"type": "object", "x-a": 1}},
                        {"name": "bare"},
                    ]
                },
                {"function_declarations": [{"name": "second"}]},
            ],
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["raw"]}
            },
        }
    )
    assert body["tools"] == [
        {
            "name": "find",
            "description": "Find things",
            "input_schema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "what"},
                    "kind": {"type": ["string", "null"], "enum": ["a", "b", None]},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                    "type": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["query"],
            },
        },
        {"name": "raw", "input_schema": {"type": "object", "x-a": 1}},
        {"name": "bare", "input_schema": {"type": "object", "properties": {}}},
        {"name": "second", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "raw"}


@pytest.mark.parametrize(
    ("config", "choice"),
    [
        ({"mode": "AUTO"}, {"type": "auto"}),
        ({"mode": "VALIDATED"}, {"type": "auto"}),
        ({"mode": "NONE"}, {"type": "none"}),
        ({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}, {"type": "any"}),
        ({"mode": "MODE_UNSPECIFIED"}, None),
    ],
)
def test_function_calling_modes(config: dict[str, Any], choice: dict[str, Any] | None) -> None:
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
            "tool_config": {"function_calling_config": config},
        }
    )
    assert body.get("tool_choice") == choice


def test_json_schema_keeps_property_names_as_they_are() -> None:
    schema = {"type": "OBJECT", "properties": {"user_id": {"type": "STRING"}, "nullable": {}}}
    assert json_schema(schema) == {
        "type": "object",
        "properties": {"user_id": {"type": "string"}, "nullable": {}},
    }


# The answer.


def test_an_answer_with_text_thinking_and_a_call() -> None:
    message = {
        "id": "msg_01ABC",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "EqQBsig=="},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 5,
        },
    }
    answer = gemini_answer(message, GeminiClientCall(model="claude-x", include_thoughts=True))
    assert answer == {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {
                            "text": "Hmm.",
                            "thought": True,
                            "thoughtSignature": wrap_signature("EqQBsig=="),
                        },
                        {"text": "Checking."},
                        {
                            "functionCall": {
                                "id": "toolu_1",
                                "name": "weather",
                                "args": {"city": "Paris"},
                            }
                        },
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 45,
            "candidatesTokenCount": 20,
            "totalTokenCount": 65,
            "cachedContentTokenCount": 30,
        },
        "modelVersion": "claude-x",
        "responseId": "01ABC",
    }
    hidden = gemini_answer(message, GeminiClientCall(model="claude-x"))
    assert [list(part) for part in hidden["candidates"][0]["content"]["parts"]] == [
        ["text"],
        ["functionCall"],
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "STOP"),
        ("stop_sequence", "STOP"),
        ("max_tokens", "MAX_TOKENS"),
        ("model_context_window_exceeded", "MAX_TOKENS"),
        ("refusal", "SAFETY"),
        ("something_new", "OTHER"),
        (None, "STOP"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    message: dict[str, Any] = {
        "id": "msg_1",
        "content": [],
        "stop_reason": stop_reason,
        "usage": {},
    }
    answer = gemini_answer(message, CALL)
    assert answer["candidates"][0]["finishReason"] == finish
    assert answer["candidates"][0]["content"]["parts"] == [{"text": ""}]


def test_a_signature_survives_any_base64_round_trip() -> None:
    signature = "EqQBCkgIAhABGAIiQL+/_-=="  # any text, even what is not valid base64
    wrapped = wrap_signature(signature)
    decoded = base64.b64decode(wrapped)
    assert unwrap_signature(wrapped) == signature
    assert unwrap_signature(base64.urlsafe_b64encode(decoded).decode()) == signature
    assert unwrap_signature(base64.urlsafe_b64encode(decoded).decode().rstrip("=")) == signature


# Errors, models, countTokens.


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (529, "UNAVAILABLE"),
        (418, "INVALID_ARGUMENT"),
        (599, "INTERNAL"),
    ],
)
def test_error_statuses(status: int, name: str) -> None:
    assert orjson.loads(gemini_error(status, "boom")) == {
        "error": {"code": status, "message": "boom", "status": name}
    }


def test_errors_of_the_other_protocols() -> None:
    anthropic = b'{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}'
    assert orjson.loads(anthropic_to_gemini_error(429, anthropic)) == {
        "error": {"code": 429, "message": "Slow down", "status": "RESOURCE_EXHAUSTED"}
    }
    openai = b'{"error":{"message":"No key","type":"invalid_request_error","code":null}}'
    assert orjson.loads(openai_to_gemini_error(401, openai))["error"]["message"] == "No key"
    garbage = orjson.loads(anthropic_to_gemini_error(502, b"<html>bad gateway</html>"))
    assert garbage["error"] == {
        "code": 502,
        "message": "The upstream answered HTTP 502: <html>bad gateway</html>",
        "status": "UNAVAILABLE",
    }


def test_the_model_list_a_page_at_a_time() -> None:
    names = [f"m{number}" for number in range(5)]
    first = gemini_models(names, page_size=2)
    assert [model["name"] for model in first["models"]] == ["models/m0", "models/m1"]
    assert first["nextPageToken"] == "2"
    last = gemini_models(names, page_size=2, page_token="4")
    assert [model["name"] for model in last["models"]] == ["models/m4"]
    assert "nextPageToken" not in last
    assert len(gemini_models(names)["models"]) == 5
    assert gemini_model("models/m1")["supportedGenerationMethods"] == [
        "generateContent",
        "streamGenerateContent",
        "countTokens",
    ]
    with pytest.raises(TranslationError):
        gemini_models(names, page_token="abc")


def test_count_tokens() -> None:
    contents = [user({"text": "hello"})]
    assert count_tokens_request({"contents": contents}, model="models/claude-x") == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }
    whole = count_tokens_request(
        {
            "generateContentRequest": {
                "model": "models/claude-x",
                "contents": contents,
                "systemInstruction": "Be brief.",
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "generationConfig": {"maxOutputTokens": 10},
            }
        },
        model="claude-x",
    )
    assert set(whole) == {"model", "messages", "system", "tools"}
    assert count_tokens_answer({"input_tokens": 12}) == {"totalTokens": 12}


def test_without_thinking_a_thought_only_turn_disappears_and_its_neighbours_join() -> None:
    signed = {"text": "hm", "thought": True, "thoughtSignature": wrap_signature("sig")}
    body = translate({"contents": [user({"text": "a"}), model(signed), user({"text": "b"})]})
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    with_thinking = translate(
        {
            "contents": [user({"text": "a"}), model(signed), user({"text": "b"})],
            "generationConfig": THINKING,
        }
    )
    assert with_thinking["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"}],
    }


def test_json_mode_is_a_forced_tool() -> None:
    body, call = messages_from_gemini(
        {
            "contents": [user({"text": "List two colours."})],
            "generationConfig": {
                "response_mime_type": "application/json",
                "response_schema": {
                    "type": "OBJECT",
                    "properties": {"colours": {"type": "ARRAY", "items": {"type": "STRING"}}},
                },
                **THINKING,
            },
        },
        model="claude-x",
        stream=False,
    )
    assert body["tools"] == [
        {
            "name": "json_answer",
            "description": body["tools"][0]["description"],
            "input_schema": {
                "type": "object",
                "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
            },
        }
    ]
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "json_answer",
        "disable_parallel_tool_use": True,
    }
    assert "thinking" not in body
    assert call.json_tool == "json_answer"
    reply = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "json_answer", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    candidate = gemini_answer(reply, call)["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": '{"a":1}'}]
    assert candidate["finishReason"] == "STOP"


def test_json_mode_with_functions_requires_one_call_of_any() -> None:
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "required": ["a"]},
            },
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        }
    )
    assert [tool["name"] for tool in body["tools"]] == ["f", "json_answer"]
    assert body["tools"][1]["input_schema"] == {"type": "object", "required": ["a"]}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def snake(value: Any) -> Any:
    """`value` with every key of every object in snake_case (as `field` spells it)."""
    if isinstance(value, dict):
        return {
            "".join("_" + c.lower() if c.isupper() else c for c in key): snake(item)
            for key, item in value.items()
        }
    return [snake(item) for item in value] if isinstance(value, list) else value


FULL_REQUEST: dict[str, Any] = {
    "contents": [user({"text": "go"})],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
    "generationConfig": {
        "maxOutputTokens": 100,
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["END"],
        "candidateCount": 1,
        "responseMimeType": "text/plain",
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    },
}


@pytest.mark.parametrize(
    "config",
    [
        FULL_REQUEST["generationConfig"],
        {"thinkingConfig": {"thinkingLevel": "LOW", "includeThoughts": True}},
        {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        {"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"}},
    ],
)
def test_every_field_read_is_read_in_snake_case_too(config: dict[str, Any]) -> None:
    camel = {**FULL_REQUEST, "generationConfig": config}
    if "responseMimeType" in config:
        camel = {key: value for key, value in camel.items() if key != "toolConfig"}
    assert messages_from_gemini(snake(camel), model="m", stream=False) == messages_from_gemini(
        camel, model="m", stream=False
    )


def test_a_field_in_both_spellings_is_the_camel_case_one_unless_it_is_null() -> None:
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "generationConfig": {"maxOutputTokens": 10, "max_output_tokens": 20},
            "generation_config": {"maxOutputTokens": 30},
        }
    )
    assert body["max_tokens"] == 10
    body = translate(
        {
            "contents": [user({"text": "go"})],
            "generationConfig": None,
            "generation_config": {"maxOutputTokens": None, "max_output_tokens": 20},
        }
    )
    assert body["max_tokens"] == 20


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"cached_content": "cachedContents/abc"}, "cachedContent"),
        ({"generation_config": {"candidate_count": 2}}, "generationConfig.candidateCount"),
        ({"generationConfig": {"speech_config": {}}}, "generationConfig.speechConfig"),
        (
            {"generationConfig": {"response_mime_type": "text/x.enum"}},
            "generationConfig.responseMimeType",
        ),
        (
            {"generationConfig": {"thinking_config": {"thinking_budget": -2}}},
            "generationConfig.thinkingConfig.thinkingBudget",
        ),
        (
            {"generationConfig": {"thinkingConfig": {"thinkingBudget": True}}},
            "generationConfig.thinkingConfig.thinkingBudget",
        ),
        ({"generationConfig": {"maxOutputTokens": True}}, "generationConfig.maxOutputTokens"),
        ({"generationConfig": {"max_output_tokens": 1.5}}, "generationConfig.maxOutputTokens"),
        ({"generationConfig": []}, "generationConfig"),
        ({"generationConfig": {"thinkingConfig": 1}}, "thinkingConfig"),
        (
            {"contents": [user({"text": "go", "code_execution_result": {}})]},
            "contents[0].parts[0].codeExecutionResult",
        ),
        ({"contents": [user({"text": "go"}), "x"]}, "contents[1]"),
        ({"contents": [{"role": "user", "parts": {}}]}, "contents[0].parts"),
        ({"contents": [user({"text": "go"}, [])]}, "contents[0].parts[1]"),
    ],
)
def test_what_is_refused_in_either_spelling(body: dict[str, Any], param: str) -> None:
    assert refused({"contents": [user({"text": "go"})], **body}).param == param
