"""What upstreams answer when the prompt is too long for the model or they refuse on content
policy, in each protocol's real shapes (from the services' documentation and the answers their
users reported), and look-alikes that are neither: for the tests of
`llm_proxy.protocols.refusals` and for the fakes to answer with.

- `CASES`: every canned answer, named "<service>-<what>", with the reason it is (None: a
  near miss, no fallback may be taken on it); `case(name)` one of them.
- `error(protocol, reason)`: (status, body) of that protocol's usual error for `reason` (None:
  a plain bad request, a 400 that is neither); `refused(protocol)`: the body of a 2xx answer
  that is a refusal on content policy.
- `response(status, body, protocol)`: either as an aiohttp answer (with Bedrock's
  `x-amzn-ErrorType`); `scripted(status, body)`: as an `anthropic_upstream.Answer`.

How each fake answers them:
- `upstreams.FaultyUpstream` (OpenAI): the behaviours "context_window", "content_policy" (Azure's
  content filter) and "content_filter" (a 200 whose choice was filtered; streamed: a chunk
  whose finish_reason is content_filter).
- `anthropic_upstream` (and Vertex's Claude): `fake.answers.append(scripted(*error("anthropic",
  "context_window")))`; `scripted(200, refused("anthropic"))` for a refusal.
- `gemini_upstream.FakeGemini`, `vertex_upstream.FakeVertex`: `fake.fail_next(1, 400,
  message=GEMINI_CONTEXT)`; `fake.block_next(1, "prompt" | "response")` for a refusal.
- `bedrock_upstream.FakeBedrock`: `fake.fail_next(1, "ValidationException", BEDROCK_CONTEXT)`;
  `fake.refuse_next(1, "guardrail_intervened" | "content_filtered")` for a refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from llm_proxy.protocols.refusals import Reason

GEMINI_CONTEXT: Final = (
    "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."
)
BEDROCK_CONTEXT: Final = "Input is too long for requested model."
AZURE_FILTERED: Final = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
# What Bedrock answers instead of the model, by stopReason: a guardrail's blocked message (the
# default one), a model's own content filter's.
BEDROCK_REFUSALS: Final = {
    "guardrail_intervened": "Sorry, the model cannot answer this question.",
    "content_filtered": " - The generated text has been blocked by our content filters.",
}
_CORAL: Final = "http://internal.amazon.com/coral/com.amazon.bedrock/"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    protocol: str  # the upstream's wire protocol
    status: int
    body: bytes
    reason: Reason | None  # what the classifier must say


def _json(data: Any, *, pretty: bool = False) -> bytes:
    # OpenAI's API answers indented JSON; the others compact.
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 if pretty else 0)


def _openai(message: str, type: str | None, code: Any, param: str | None = None) -> bytes:
    return _json(
        {"error": {"message": message, "type": type, "param": param, "code": code}}, pretty=True
    )


def _anthropic(type: str, message: str) -> bytes:
    body = {"type": "error", "error": {"type": type, "message": message}}
    return _json({**body, "request_id": "req_011CVQe1dLrGNMJyE1ghG1av"})


def _google(status: int, message: str, grpc: str = "INVALID_ARGUMENT") -> bytes:
    return _json({"error": {"code": status, "message": message, "status": grpc}})


def _aws(message: str) -> bytes:
    return _json({"message": message})


def _chat(message: dict[str, Any], finish: str, **choice: Any) -> bytes:
    """A chat completion of one choice, as Azure answers it."""
    return _json(
        {
            "id": "chatcmpl-AzUr3",
            "object": "chat.completion",
            "created": 1733500000,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
            "usage": {"prompt_tokens": 18, "completion_tokens": 0, "total_tokens": 18},
        },
        pretty=True,
    )


def _message(content: list[dict[str, Any]], stop: str, **extra: Any) -> bytes:
    return _json(
        {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 3},
            **extra,
        }
    )


def _generated(candidates: list[dict[str, Any]] | None, **extra: Any) -> bytes:
    body: dict[str, Any] = {} if candidates is None else {"candidates": candidates}
    usage = {"promptTokenCount": 12559, "totalTokenCount": 12559}
    return _json({**body, **extra, "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"})


_RATINGS: Final = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
]


def _converse(text: str, stop: str) -> bytes:
    content = [{"text": text}] if text else []
    return _json(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": 673, "outputTokens": 0, "totalTokens": 673},
            "metrics": {"latencyMs": 312},
        }
    )


CASES: Final = (
    # OpenAI and compatible servers: a context window exceeded.
    Case(
        "openai-context-length",
        "openai",
        400,
        _openai(
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 140004 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        "context_window",
    ),
    Case(
        "openai-input-exceeds-window",
        "openai",
        400,
        _openai(
            "Your input exceeds the context window of this model. Please adjust your input and "
            "try again.",
            "invalid_request_error",
            "context_length_exceeded",
            "input",
        ),
        "context_window",
    ),
    Case(
        "openai-configured-limit",
        "openai",
        400,
        _openai(
            "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted "
            "in 301223 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            None,
            "messages",
        ),
        "context_window",
    ),
    Case(
        "vllm-context-length",
        "openai",
        400,
        _json(
            {
                "object": "error",
                "message": "This model's maximum context length is 4096 tokens. However, you "
                "requested 5000 tokens (4000 in the messages, 1000 in the completion). Please "
                "reduce the length of the messages or completion.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        ),
        "context_window",
    ),
    Case(
        "deepseek-context-length",
        "openai",
        400,
        _openai(
            "This model's maximum context length is 65536 tokens. However, you requested 70155 "
            "tokens (70155 in the messages, 0 in the completion). Please reduce the length of "
            "the messages or completion.",
            "invalid_request_error",
            "invalid_request_error",
        ),
        "context_window",
    ),
    Case(
        "mistral-context-length",
        "openai",
        400,
        _json(
            {
                "object": "error",
                "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model "
                "with 32768 maximum context length",
                "type": "invalid_request_message_error",
                "param": None,
                "code": None,
            }
        ),
        "context_window",
    ),
    Case(
        "sglang-context-length",
        "openai",
        400,
        _json(
            {
                "object": "error",
                "message": "The input (5120 tokens) is longer than the model's context length "
                "(4096 tokens).",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        ),
        "context_window",
    ),
    Case(
        "llamacpp-context-size",
        "openai",
        400,
        _json(
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 4096,
                }
            }
        ),
        "context_window",
    ),
    Case(
        "xai-prompt-length",
        "openai",
        400,
        _json(
            {
                "code": "Client specified an invalid argument",
                "error": "This model's maximum prompt length is 131072 but the request contains "
                "150000 tokens.",
            }
        ),
        "context_window",
    ),
    Case(
        "cerebras-current-length",
        "openai",
        400,
        _json(
            {
                "message": "Please reduce the length of the messages or completion. Current "
                "length is 9000 while limit is 8192",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        ),
        "context_window",
    ),
    Case(
        "tgi-inputs-tokens",
        "openai",
        422,
        _json(
            {
                "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                "8192. Given: 9000 `inputs` tokens and 1024 `max_new_tokens`",
                "error_type": "validation",
            }
        ),
        "context_window",
    ),
    Case(
        "tgi-inputs-less-than",
        "openai",
        422,
        _json(
            {
                "error": "Input validation error: `inputs` must have less than 4096 tokens. "
                "Given: 5000",
                "error_type": "validation",
            }
        ),
        "context_window",
    ),
    Case(
        "openrouter-relayed-bedrock",
        "openai",
        400,
        _json(
            {
                "error": {
                    "message": "Provider returned error",
                    "code": 400,
                    "metadata": {
                        "raw": '{"message":"input length and `max_tokens` exceed context limit: '
                        "149674 + 64000 > 204658, decrease input length or `max_tokens` and "
                        'try again"}',
                        "provider_name": "Amazon Bedrock",
                    },
                },
                "user_id": "user_2uqLSwEPUxV3eobBtagk2bR7nQw",
            }
        ),
        "context_window",
    ),
    Case(
        "gemini-openai-compatible",
        "openai",
        400,
        _json([{"error": {"code": 400, "message": GEMINI_CONTEXT, "status": "INVALID_ARGUMENT"}}]),
        "context_window",
    ),
    Case(
        "bedrock-openai-compatible",
        "openai",
        400,
        _openai(
            "prompt tokens (210000) exceed model maximum (200000)", "invalid_request_error", None
        ),
        "context_window",
    ),
    # OpenAI and compatible servers: a refusal on content policy.
    Case(
        "azure-content-filter",
        "openai",
        400,
        _json(
            {
                "error": {
                    "message": AZURE_FILTERED,
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                    "status": 400,
                    "innererror": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_result": {
                            "hate": {"filtered": False, "severity": "safe"},
                            "jailbreak": {"filtered": True, "detected": True},
                            "self_harm": {"filtered": False, "severity": "safe"},
                            "sexual": {"filtered": False, "severity": "safe"},
                            "violence": {"filtered": False, "severity": "safe"},
                        },
                    },
                }
            },
            pretty=True,
        ),
        "content_policy",
    ),
    Case(
        "azure-inner-error-only",
        "openai",
        400,
        _json(
            {
                "error": {
                    "message": "The prompt was blocked.",
                    "type": "invalid_request_error",
                    "code": "invalid_request_error",
                    "inner_error": {"code": "ResponsibleAIPolicyViolation"},
                }
            }
        ),
        "content_policy",
    ),
    Case(
        "openai-invalid-prompt",
        "openai",
        400,
        _openai(
            "Invalid prompt: your prompt was flagged as potentially violating our usage policy. "
            "Please try again with a different prompt: "
            "https://platform.openai.com/docs/guides/reasoning#advice-on-prompting",
            "invalid_request_error",
            "invalid_prompt",
        ),
        "content_policy",
    ),
    Case(
        "openai-safety-system",
        "openai",
        400,
        _openai(
            "Your request was rejected as a result of our safety system. Your prompt may contain "
            "text that is not allowed by our safety system.",
            "invalid_request_error",
            "content_policy_violation",
        ),
        "content_policy",
    ),
    Case(
        "openai-moderation-blocked",
        "openai",
        400,
        _openai(
            "Your request was rejected by the safety system. If you believe this is an error, "
            "contact us at help.openai.com and include the request ID req_7f2e.",
            "image_generation_user_error",
            "moderation_blocked",
        ),
        "content_policy",
    ),
    # OpenAI and compatible servers: answers that are refusals.
    Case(
        "azure-filtered-choice",
        "openai",
        200,
        _chat(
            {"role": "assistant", "content": None},
            "content_filter",
            content_filter_results={
                "hate": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": True, "severity": "high"},
            },
        ),
        "content_policy",
    ),
    Case(
        "openai-refusal-field",
        "openai",
        200,
        _chat(
            {
                "role": "assistant",
                "content": None,
                "refusal": "I'm sorry, I cannot assist with that request.",
            },
            "stop",
        ),
        "content_policy",
    ),
    # OpenAI and compatible servers: near misses.
    Case(
        "openai-bad-parameter",
        "openai",
        400,
        _openai(
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got "
            "200 instead.",
            "invalid_request_error",
            "decimal_above_max_value",
            "temperature",
        ),
        None,
    ),
    Case(
        "openai-string-too-long",  # a string's length in characters, every model's
        "openai",
        400,
        _openai(
            "Invalid 'messages[0].content': string too long. Expected a string with maximum "
            "length 10485760, but got a string with length 10485761 instead.",
            "invalid_request_error",
            "string_above_max_length",
            "messages[0].content",
        ),
        None,
    ),
    Case(
        "openai-max-tokens-too-large",
        "openai",
        400,
        _openai(
            "max_tokens is too large: 100000. This model supports at most 16384 completion "
            "tokens, whereas you provided 100000.",
            "invalid_request_error",
            "invalid_value",
            "max_tokens",
        ),
        None,
    ),
    Case(
        "openai-echoed-parameter",  # the request's words echoed back in another error
        "openai",
        400,
        _openai(
            "Invalid value for 'stop': 'prompt is too long' is not a list.",
            "invalid_request_error",
            "invalid_type",
            "stop",
        ),
        None,
    ),
    Case(
        "openai-tokens-per-minute",  # a rate limit, whatever its wording
        "openai",
        429,
        _openai(
            "Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit "
            "30000, Requested 50000. The input or output tokens must be reduced in order to run "
            "successfully.",
            "tokens",
            "rate_limit_exceeded",
        ),
        None,
    ),
    Case(
        "openai-500-context-length",
        "openai",
        500,
        _openai(
            "This model's maximum context length is 8192 tokens.",
            "server_error",
            "context_length_exceeded",
        ),
        None,
    ),
    Case(
        "azure-413-content-filter",  # a content filter is a 400, nothing else
        "openai",
        413,
        _json({"error": {"code": "content_filter", "message": AZURE_FILTERED}}),
        None,
    ),
    Case(
        "openai-answer",
        "openai",
        200,
        _chat({"role": "assistant", "content": "Hello!", "refusal": None}, "stop"),
        None,
    ),
    Case(
        "azure-filtered-end",  # the end was filtered: what came before is an answer
        "openai",
        200,
        _chat({"role": "assistant", "content": "Here is the first part"}, "content_filter"),
        None,
    ),
    Case(
        "openai-filtered-tool-call",
        "openai",
        200,
        _chat(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            "content_filter",
        ),
        None,
    ),
    # Anthropic: a context window exceeded.
    Case(
        "anthropic-prompt-too-long",
        "anthropic",
        400,
        _anthropic("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"),
        "context_window",
    ),
    Case(
        "anthropic-input-and-max-tokens",
        "anthropic",
        400,
        _anthropic(
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 198981 + 21333 > 200000, "
            "decrease input length or `max_tokens` and try again",
        ),
        "context_window",
    ),
    Case(
        "anthropic-request-too-large",
        "anthropic",
        413,
        _anthropic("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        "context_window",
    ),
    # Anthropic: a refusal on content policy.
    Case(
        "anthropic-output-blocked",
        "anthropic",
        400,
        _anthropic("invalid_request_error", "Output blocked by content filtering policy"),
        "content_policy",
    ),
    Case(
        "anthropic-refusal",
        "anthropic",
        200,
        _message(
            [{"type": "text", "text": "Hello.."}],
            "refusal",
            stop_details={
                "type": "refusal",
                "category": "cyber",
                "explanation": "This request was declined because it could enable cyber harm.",
            },
        ),
        "content_policy",
    ),
    # Anthropic: near misses.
    Case(
        "anthropic-max-tokens",
        "anthropic",
        400,
        _anthropic(
            "invalid_request_error",
            "max_tokens: 21333 > 4096, which is the maximum allowed number of output tokens for "
            "claude-3-opus-20240229",
        ),
        None,
    ),
    Case(
        "anthropic-bad-request",
        "anthropic",
        400,
        _anthropic("invalid_request_error", "messages: text content blocks must be non-empty"),
        None,
    ),
    Case(
        "anthropic-overloaded",
        "anthropic",
        529,
        _anthropic("overloaded_error", "Overloaded"),
        None,
    ),
    Case(
        "anthropic-500-prompt-too-long",
        "anthropic",
        500,
        _anthropic("api_error", "prompt is too long: 208310 tokens > 200000 maximum"),
        None,
    ),
    Case(
        "anthropic-413-html",  # a front end's page, not the API's answer
        "anthropic",
        413,
        b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
        b"<center><h1>413 Request Entity Too Large</h1></center>\r\n</body>\r\n</html>\r\n",
        None,
    ),
    Case(
        "anthropic-answer",
        "anthropic",
        200,
        _message([{"type": "text", "text": "Hello!"}], "end_turn"),
        None,
    ),
    Case(
        "anthropic-context-window-stop",  # generation reached the window: still an answer
        "anthropic",
        200,
        _message([{"type": "text", "text": "A long answer"}], "model_context_window_exceeded"),
        None,
    ),
    Case(
        "anthropic-refusal-in-tool-input",  # the words, but not the answer's stop reason
        "anthropic",
        200,
        _message(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "log",
                    "input": {"stop_reason": "refusal"},
                }
            ],
            "tool_use",
        ),
        None,
    ),
    # Gemini and Vertex: a context window exceeded.
    Case(
        "gemini-input-token-count",
        "gemini",
        400,
        _google(400, GEMINI_CONTEXT),
        "context_window",
    ),
    Case(
        "gemini-input-token-count-unnumbered",
        "gemini",
        400,
        _google(400, "The input token count exceeds the maximum number of tokens allowed 1048576."),
        "context_window",
    ),
    Case(
        "vertex-input-token-count",
        "gemini",
        400,
        _google(
            400,
            "Unable to submit request because the input token count is 1251952 but model only "
            "supports up to 1048576. Reduce the input token count and try again. You can also "
            "use the CountTokens API to calculate prompt token count and billable characters. "
            "Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/models",
        ),
        "context_window",
    ),
    Case(
        "gemini-payload-size",
        "gemini",
        400,
        _google(400, "Request payload size exceeds the limit: 20971520 bytes."),
        "context_window",
    ),
    # Gemini and Vertex: answers that are refusals.
    Case(
        "gemini-prompt-blocked",
        "gemini",
        200,
        _generated(None, promptFeedback={"blockReason": "PROHIBITED_CONTENT"}),
        "content_policy",
    ),
    Case(
        "gemini-prompt-blocked-safety",
        "gemini",
        200,
        _generated([], promptFeedback={"blockReason": "SAFETY", "safetyRatings": _RATINGS}),
        "content_policy",
    ),
    Case(
        "gemini-response-safety",
        "gemini",
        200,
        _generated([{"finishReason": "SAFETY", "index": 0, "safetyRatings": _RATINGS}]),
        "content_policy",
    ),
    Case(
        "vertex-response-prohibited",
        "gemini",
        200,
        _generated(
            [
                {
                    "content": {"role": "model", "parts": []},
                    "finishReason": "PROHIBITED_CONTENT",
                    "finishMessage": "Response has been blocked for prohibited content.",
                }
            ]
        ),
        "content_policy",
    ),
    Case(
        "gemini-recitation",
        "gemini",
        200,
        _generated(
            [
                {
                    "finishReason": "RECITATION",
                    "index": 0,
                    "citationMetadata": {
                        "citationSources": [{"startIndex": 0, "endIndex": 120, "uri": "x"}]
                    },
                }
            ]
        ),
        "content_policy",
    ),
    Case(
        "gemini-spii-after-thinking",
        "gemini",
        200,
        _generated(
            [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "Let me see", "thought": True}],
                    },
                    "finishReason": "SPII",
                    "index": 0,
                }
            ]
        ),
        "content_policy",
    ),
    # Gemini and Vertex: near misses.
    Case(
        "gemini-unknown-field",
        "gemini",
        400,
        _google(
            400,
            "Invalid JSON payload received. Unknown name \"foo\" at 'contents[0]': Cannot "
            "find field.",
        ),
        None,
    ),
    Case(
        "vertex-max-output-tokens",
        "gemini",
        400,
        _google(
            400,
            "Unable to submit request because it has a maxOutputTokens value of 100000 but the "
            "supported range is from 1 (inclusive) to 65537 (exclusive). Update the value and try "
            "again.",
        ),
        None,
    ),
    Case(
        "gemini-location",
        "gemini",
        400,
        _google(400, "User location is not supported for the API use.", "FAILED_PRECONDITION"),
        None,
    ),
    Case(
        "gemini-quota",
        "gemini",
        429,
        _google(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
        None,
    ),
    Case(
        "gemini-answer",
        "gemini",
        200,
        _generated(
            [
                {
                    "content": {"role": "model", "parts": [{"text": "Hello!"}]},
                    "finishReason": "STOP",
                    "index": 0,
                    "safetyRatings": _RATINGS,
                }
            ]
        ),
        None,
    ),
    Case(
        "gemini-safety-after-text",  # a filter cut it short: what came before is an answer
        "gemini",
        200,
        _generated(
            [
                {
                    "content": {"role": "model", "parts": [{"text": "The first part"}]},
                    "finishReason": "SAFETY",
                    "index": 0,
                }
            ]
        ),
        None,
    ),
    Case(
        "gemini-max-tokens",
        "gemini",
        200,
        _generated([{"finishReason": "MAX_TOKENS", "index": 0}]),
        None,
    ),
    # Bedrock (Converse): a context window exceeded.
    Case(
        "bedrock-input-too-long",
        "bedrock",
        400,
        _aws(BEDROCK_CONTEXT),
        "context_window",
    ),
    Case(
        "bedrock-claude-prompt-too-long",
        "bedrock",
        400,
        _aws(
            "The model returned the following errors: prompt is too long: 200049 tokens > "
            "200000 maximum"
        ),
        "context_window",
    ),
    Case(
        "bedrock-too-many-input-tokens",
        "bedrock",
        400,
        _aws("Too many input tokens. Max input tokens: 8192, request input token count: 9279 "),
        "context_window",
    ),
    Case(
        "bedrock-aws-capitalized",
        "bedrock",
        400,
        _json({"Message": "Input is too long for requested model."}),
        "context_window",
    ),
    # Bedrock: a refusal on content policy.
    Case(
        "bedrock-content-filters",
        "bedrock",
        400,
        _aws("This request has been blocked by our content filters."),
        "content_policy",
    ),
    Case(
        "bedrock-guardrail",
        "bedrock",
        200,
        _converse(BEDROCK_REFUSALS["guardrail_intervened"], "guardrail_intervened"),
        "content_policy",
    ),
    Case(
        "bedrock-content-filtered",
        "bedrock",
        200,
        _converse(BEDROCK_REFUSALS["content_filtered"], "content_filtered"),
        "content_policy",
    ),
    # Bedrock: near misses.
    Case(
        "bedrock-max-tokens",
        "bedrock",
        400,
        _aws("The maximum tokens you requested exceeds the model limit of 32768"),
        None,
    ),
    Case(
        "bedrock-bad-conversation",
        "bedrock",
        400,
        _aws(
            "A conversation must start with a user message. Try again with a conversation that "
            "starts with a user message."
        ),
        None,
    ),
    Case(
        "bedrock-throttled-tokens",
        "bedrock",
        429,
        _aws("Too many tokens, please wait before trying again."),
        None,
    ),
    Case(
        "bedrock-answer",
        "bedrock",
        200,
        _converse("You said: hello", "end_turn"),
        None,
    ),
    Case(
        "bedrock-context-window-stop",
        "bedrock",
        200,
        _converse("A long answer", "model_context_window_exceeded"),
        None,
    ),
)
_BY_NAME: Final = {c.name: c for c in CASES}
assert len(_BY_NAME) == len(CASES), "case names are unique"

# The usual one of each kind, by protocol.
_USUAL: Final = {
    ("openai", "context_window"): "openai-context-length",
    ("openai", "content_policy"): "azure-content-filter",
    ("openai", None): "openai-bad-parameter",
    ("anthropic", "context_window"): "anthropic-prompt-too-long",
    ("anthropic", "content_policy"): "anthropic-output-blocked",
    ("anthropic", None): "anthropic-bad-request",
    ("gemini", "context_window"): "gemini-input-token-count",
    ("gemini", None): "gemini-unknown-field",
    ("bedrock", "context_window"): "bedrock-input-too-long",
    ("bedrock", "content_policy"): "bedrock-content-filters",
    ("bedrock", None): "bedrock-bad-conversation",
}
_REFUSED: Final = {
    "openai": "azure-filtered-choice",
    "anthropic": "anthropic-refusal",
    "gemini": "gemini-prompt-blocked",
    "bedrock": "bedrock-guardrail",
}


def case(name: str) -> Case:
    return _BY_NAME[name]


def error(protocol: str, reason: Reason | None) -> tuple[int, bytes]:
    """(status, body) of `protocol`'s usual error for `reason`; None: a plain bad request.
    Gemini has no error for a content policy (it answers 200 with the block): KeyError."""
    usual = case(_USUAL[protocol, reason])
    return usual.status, usual.body


def refused(protocol: str) -> bytes:
    """The body of a 2xx answer of `protocol` that is a refusal on content policy."""
    return case(_REFUSED[protocol]).body


def response(status: int, body: bytes, protocol: str = "") -> web.Response:
    """An aiohttp answer of these bytes (JSON, unless they are not); Bedrock's errors name
    their exception in `x-amzn-ErrorType`, as AWS does."""
    headers = {}
    if protocol == "bedrock" and status >= 400:
        kind = "ThrottlingException" if status == 429 else "ValidationException"
        headers["x-amzn-ErrorType"] = f"{kind}:{_CORAL}"
    kind = "text/html" if body.startswith(b"<") else "application/json"
    return web.Response(status=status, body=body, content_type=kind, headers=headers)


def scripted(
    status: int, body: bytes
) -> Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]:
    """An answer for `anthropic_upstream.Fake.answers` (one request's)."""

    async def answer(request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        return response(status, body)

    return answer
