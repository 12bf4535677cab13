"""Anthropic Messages answers as Gemini's, for Gemini-native clients (the request is
`gemini_client`'s): the whole answer, its parts, finish reason and usage (shared with the
stream, `gemini_client_stream`), errors in Google's shape, the model list and countTokens'
answer; `GeminiClientCall`, what the request tells the answer's translation.

Answer (`gemini_answer`): text blocks -> text parts; `tool_use` -> `functionCall` parts
{id, name, args} (JSON mode's tool: a text part, its input's JSON); `thinking` (when
`includeThoughts`) -> a part {text, thought: true, thoughtSignature}, the signature being the
base64 of the Anthropic signature's UTF-8 bytes (the SDK decodes a thoughtSignature as base64
and sends it back re-encoded, URL-safe: the signature survives any such round trip);
`redacted_thinking` and server tool blocks are dropped. finishReason: STOP (end_turn,
stop_sequence, tool_use, pause_turn), MAX_TOKENS (max_tokens, model_context_window_exceeded),
SAFETY (refusal), OTHER (any other). usageMetadata: promptTokenCount counts cache reads and
writes, cachedContentTokenCount the reads; candidatesTokenCount counts thinking (Anthropic
does not count it apart).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.usage import TokenUsage, from_anthropic

GENERATION_METHODS: Final = ("generateContent", "streamGenerateContent", "countTokens")
MODELS_PAGE_SIZE: Final = 50  # Google's default pageSize for models.list
FINISH_REASONS: Final = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "pause_turn": "STOP",
    "max_tokens": "MAX_TOKENS",
    "model_context_window_exceeded": "MAX_TOKENS",
    "refusal": "SAFETY",
}
# Google's canonical error status for each HTTP status (google.rpc.Code's HTTP mapping).
GOOGLE_STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}


@dataclass(slots=True)  # (not frozen: one per request, and a frozen one is twice as slow to make)
class GeminiClientCall:
    """What translating the answer needs to know of the request."""

    model: str  # as the client named it in the URL (answers carry it as modelVersion)
    stream: bool = False
    include_thoughts: bool = False  # thinkingConfig.includeThoughts: thought parts shown
    json_tool: str | None = None  # the tool standing for JSON mode: its input is the text


def model_name(name: str) -> str:
    """A model as the client named it, without the resource prefix (`models/X` -> `X`)."""
    return name.removeprefix("models/")


def wrap_signature(signature: str) -> str:
    """The thoughtSignature standing for an Anthropic signature (the module's docstring)."""
    return base64.b64encode(signature.encode()).decode()


# The answer.


def gemini_answer(
    message: dict[str, Any], call: GeminiClientCall, *, usage: TokenUsage | None = None
) -> dict[str, Any]:
    """An Anthropic Message as a GenerateContentResponse. `usage`: the message's, when the
    caller has read it already (a translation in two steps reads it once)."""
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    for block in content if isinstance(content, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"text": block["text"]})
        elif kind == "thinking" and call.include_thoughts:
            parts.append(thought_part(block.get("thinking"), block.get("signature")))
        elif (
            kind == "tool_use"
            and call.json_tool is not None
            and block.get("name") == call.json_tool
        ):
            parts.append({"text": orjson.dumps(block.get("input") or {}).decode()})
        elif kind == "tool_use":
            parts.append(function_call_part(block.get("id"), block.get("name"), block.get("input")))
    candidate: dict[str, Any] = {
        "content": {"parts": parts or [{"text": ""}], "role": "model"},
        "finishReason": finish_reason(message.get("stop_reason")),
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(
            usage or from_anthropic(message.get("usage")) or TokenUsage(0, 0)
        ),
        "modelVersion": call.model,
        "responseId": response_id(message.get("id")),
    }


def thought_part(thinking: Any, signature: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"text": thinking if isinstance(thinking, str) else "", "thought": True}
    if isinstance(signature, str) and signature:
        part["thoughtSignature"] = wrap_signature(signature)
    return part


def function_call_part(id: Any, name: Any, args: Any) -> dict[str, Any]:
    call = {"id": id, "name": name, "args": args if isinstance(args, dict) else {}}
    return {"functionCall": call}


def finish_reason(stop_reason: Any) -> str:
    if stop_reason is None:
        return "STOP"
    return FINISH_REASONS.get(stop_reason, "OTHER") if isinstance(stop_reason, str) else "OTHER"


def usage_metadata(usage: TokenUsage) -> dict[str, Any]:
    prompt = usage.prompt_tokens
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": prompt + usage.output_tokens,
    }
    if usage.cache_read_tokens:
        metadata["cachedContentTokenCount"] = usage.cache_read_tokens
    return metadata


def response_id(message_id: Any) -> str:
    """The responseId for an Anthropic message id (`msg_01X` -> `01X`)."""
    if not isinstance(message_id, str) or not message_id:
        return "anthropic"
    return message_id.removeprefix("msg_")


# Errors.


def google_status(status: int) -> str:
    """Google's error status for an HTTP status: the table's, else by class."""
    known = GOOGLE_STATUSES.get(status)
    if known is not None:
        return known
    return "INVALID_ARGUMENT" if status < 500 else "INTERNAL"


def error_object(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": google_status(status)}}


def gemini_error(status: int, message: str) -> bytes:
    """The body of a Google API error answer (the SDK raises ClientError for a 4xx,
    ServerError for a 5xx, reading `code`, `message` and `status`)."""
    return orjson.dumps(error_object(status, message))


def _message(status: int, body: bytes, *paths: tuple[str, ...]) -> str:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    for path in paths:
        value = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    text = body[:300].decode("utf-8", "replace").strip()
    return f"The upstream answered HTTP {status}" + (f": {text}" if text else ".")


def anthropic_to_gemini_error(status: int, body: bytes) -> bytes:
    """An Anthropic error answer (or any body) in Google's shape, the status kept."""
    return gemini_error(status, _message(status, body, ("error", "message"), ("message",)))


def openai_to_gemini_error(status: int, body: bytes) -> bytes:
    """An OpenAI error answer (or any body) in Google's shape, the status kept."""
    return gemini_error(
        status, _message(status, body, ("error", "message"), ("error",), ("message",))
    )


# Models and countTokens.


def gemini_model(name: str) -> dict[str, Any]:
    """A Model resource (GET /v1beta/models/X) for a model of the proxy's."""
    name = model_name(name)
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "1",
        "displayName": name,
        "supportedGenerationMethods": list(GENERATION_METHODS),
    }


def gemini_models(
    names: Iterable[str], *, page_size: int | None = None, page_token: str | None = None
) -> dict[str, Any]:
    """The models.list answer (GET /v1beta/models?pageSize&pageToken): the models in the
    order given, a page at a time; `nextPageToken` (an offset) when more follow."""
    models = [gemini_model(name) for name in names]
    size = page_size if page_size is not None and page_size > 0 else MODELS_PAGE_SIZE
    start = 0
    if page_token:
        if not page_token.isdigit():
            raise TranslationError("pageToken", "pageToken is not one this server gave.")
        start = int(page_token)
    answer: dict[str, Any] = {"models": models[start : start + size]}
    if start + size < len(models):
        answer["nextPageToken"] = str(start + size)
    return answer


def count_tokens_answer(anthropic_answer: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's `{"input_tokens": n}` as Gemini's `{"totalTokens": n}`."""
    tokens = anthropic_answer.get("input_tokens")
    return {"totalTokens": tokens if isinstance(tokens, int) else 0}
