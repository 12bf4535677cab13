"""Bedrock Converse answers as Anthropic Messages answers: the whole answer, its stop reason
and usage, and Bedrock's errors (an answer's, or a stream's exception event), shared with the
stream (`converse_stream`); `ConverseCall`, what the request (`converse.converse_request`)
tells the answer's translation.

Blocks map back one to one (text, toolUse as tool_use, reasoningContent as thinking or
redacted_thinking); what Anthropic has no block for (citations, images) is dropped. A
stop_sequence stop names its sequence (`stop_reason`). Converse's usage already has
Anthropic's meaning (`converse_usage`). Errors: `EXCEPTIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import anthropic_error, anthropic_type
from llm_proxy.protocols.ids import random_hex
from llm_proxy.protocols.messages_answer import tool_id, tool_input
from llm_proxy.protocols.tool_names import client_name
from llm_proxy.protocols.usage import TokenUsage

# Converse's stop reasons as Anthropic's; the malformed_* ones (no counterpart) end the turn.
STOP_REASONS: Final = {
    "end_turn": "end_turn",
    "stop_sequence": "stop_sequence",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "content_filtered": "refusal",
    "guardrail_intervened": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
}
# Bedrock's exceptions (lower case: a stream names them camelCase, an answer PascalCase) whose
# status the proxy reads differently from the wire's, and each one's Anthropic type. A model
# not ready (429 on the wire) is no rate limit: it is overloaded; a model's timeout (408) and
# failure (424) are the upstream's, not the request's; a quota exceeded (400) is a limit.
EXCEPTIONS: Final = {
    "throttlingexception": (429, "rate_limit_error"),
    "servicequotaexceededexception": (429, "rate_limit_error"),
    "modelnotreadyexception": (503, "overloaded_error"),
    "serviceunavailableexception": (503, "overloaded_error"),
    "modeltimeoutexception": (504, "timeout_error"),
    "modelerrorexception": (502, "api_error"),
    "modelstreamerrorexception": (502, "api_error"),
    "internalserverexception": (500, "api_error"),
    "validationexception": (400, "invalid_request_error"),
    "accessdeniedexception": (403, "permission_error"),
    "resourcenotfoundexception": (404, "not_found_error"),
}


@dataclass(slots=True)
class ConverseCall:
    """What translating the answer needs to know of the request."""

    model: str  # the model the client asked for: the answer's `model`
    stream: bool = False
    stop_sequences: tuple[str, ...] = ()
    # Upstream tool name -> the client's, for names that were shortened.
    tool_names: Mapping[str, str] = field(default_factory=dict)


# --- the answer ------------------------------------------------------------------------


def messages_answer(
    answer: dict[str, Any],
    call: ConverseCall,
    request_id: str | None = None,
    *,
    usage: TokenUsage | None = None,
) -> dict[str, Any]:
    """A Converse answer as an Anthropic Message. Its id: `msg_` and Bedrock's request id
    (the `x-amzn-RequestId` header: the body has none) when given, else a random one.
    `usage`: the answer's, when the caller has read it already (`converse_usage`)."""
    identifier = message_id(request_id)
    output = answer.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    blocks: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict):
            text = block.get("text")
            if type(text) is str:  # (most blocks: `_answer_block`'s first case, inline)
                if text:
                    blocks.append({"type": "text", "text": text})
                continue
            blocks.extend(_answer_block(block, call, f"{identifier}_{len(blocks)}"))
    reason, sequence = stop_reason(
        answer.get("stopReason"), answer.get("additionalModelResponseFields"), call
    )
    usage = usage or converse_usage(answer.get("usage")) or TokenUsage(0, 0)
    return {
        "id": identifier,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage.anthropic(),
    }


def _answer_block(
    block: dict[str, Any], call: ConverseCall, fallback_id: str
) -> list[dict[str, Any]]:
    """A content block of the answer (none for what Anthropic has no block for: citations,
    images)."""
    text = block.get("text")
    if isinstance(text, str):
        return [{"type": "text", "text": text}] if text else []
    use = block.get("toolUse")
    if isinstance(use, dict):
        name = use.get("name")
        return [
            {
                "type": "tool_use",
                "id": tool_id(use.get("toolUseId"), fallback_id),
                "name": client_name(name if isinstance(name, str) else "", call.tool_names),
                "input": tool_input(use.get("input")),
            }
        ]
    reasoning = block.get("reasoningContent")
    if not isinstance(reasoning, dict):
        return []
    redacted = reasoning.get("redactedContent")
    if isinstance(redacted, str) and redacted:
        return [{"type": "redacted_thinking", "data": redacted}]
    reasoning_text = reasoning.get("reasoningText")
    if not isinstance(reasoning_text, dict):
        return []
    thinking, signature = reasoning_text.get("text"), reasoning_text.get("signature")
    return [
        {
            "type": "thinking",
            "thinking": thinking if isinstance(thinking, str) else "",
            "signature": signature if isinstance(signature, str) else "",
        }
    ]


def stop_reason(reason: Any, fields: Any, call: ConverseCall) -> tuple[str, str | None]:
    """Converse's stop reason as Anthropic's, and the stop sequence matched: Anthropic's
    models report it in `additionalModelResponseFields` (asked for by the request); for
    others it is the request's only stop sequence, or unknown (several): `end_turn` then,
    as Anthropic's answer names the sequence whenever it says `stop_sequence`."""
    mapped = STOP_REASONS.get(reason, "end_turn") if isinstance(reason, str) else "end_turn"
    if mapped != "stop_sequence":
        return mapped, None
    matched = fields.get("stop_sequence") if isinstance(fields, dict) else None
    if isinstance(matched, str) and matched:
        return mapped, matched
    if len(call.stop_sequences) == 1:
        return mapped, call.stop_sequences[0]
    return "end_turn", None


def message_id(request_id: str | None = None) -> str:
    """`msg_bdrk_` and Bedrock's request id (dashes dropped), or a random id."""
    if request_id:
        return "msg_bdrk_" + request_id.replace("-", "")
    return "msg_bdrk_" + random_hex(24)


def converse_usage(usage: Any) -> TokenUsage | None:
    """Converse's `usage` (None, or not an object: None). Its `inputTokens` already exclude
    the tokens read from and written to the cache (AWS's prompt caching guide: the whole
    input is inputTokens + cacheReadInputTokens + cacheWriteInputTokens): Anthropic's
    meaning, kept as it is."""
    if type(usage) is not dict:
        return None
    get = usage.get
    tokens = (get("inputTokens"), get("outputTokens"))
    cached = (get("cacheReadInputTokens"), get("cacheWriteInputTokens"))
    # (`type(...) is int`: a bool is not a count)
    counts = [n if type(n) is int and n > 0 else 0 for n in (*tokens, *cached)]
    return TokenUsage(*counts)


# --- errors ----------------------------------------------------------------------------


def exception_name(error_type: str | None) -> str:
    """The exception's name from the `x-amzn-ErrorType` header or a body's `__type`:
    `ThrottlingException:http://internal.amazon.com/...` and
    `com.amazon.coral.service#ExpiredTokenException` both name the part that matters."""
    if not error_type:
        return ""
    return error_type.split(":", 1)[0].rsplit("#", 1)[-1].strip()


def upstream_status(status: int, error_type: str | None) -> int:
    """The status the proxy treats a Bedrock error as (see EXCEPTIONS): a throttle 429, a
    model not ready or the service unavailable 503, a model's timeout 504, a model's
    failure 502, a quota exceeded 429; any other exception keeps its status."""
    known = EXCEPTIONS.get(exception_name(error_type).lower())
    return known[0] if known is not None else status


def stream_error(exception: str, payload: bytes) -> tuple[str, str]:
    """A stream's exception event (`:exception-type` `exception`, its JSON `payload`) as
    the message and Anthropic type of the client's error event."""
    name = exception_name(exception)
    known = EXCEPTIONS.get(name.lower())
    message = _message(_object(payload), payload, name or "an exception")
    return message, known[1] if known else "api_error"


def bedrock_to_anthropic_error(status: int, body: bytes, error_type: str | None = None) -> bytes:
    """A Bedrock error answer (`{"message": ...}`, its exception named by the
    `x-amzn-ErrorType` header `error_type`, or by the body's `__type`) as an Anthropic error
    body: the status `upstream_status` gives, the type by the exception (EXCEPTIONS), else
    by that status."""
    data = _object(body)
    name = exception_name(error_type)
    if not name and data is not None:
        named = data.get("__type", data.get("code"))
        name = exception_name(named if isinstance(named, str) else None)
    known = EXCEPTIONS.get(name.lower())
    final = known[0] if known is not None else status
    kind = known[1] if known is not None else anthropic_type(final)
    return anthropic_error(final, _message(data, body, name or f"HTTP {status}"), type=kind)


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _message(data: dict[str, Any] | None, body: bytes, what: str) -> str:
    """The error's `message` (AWS spells it `Message` at times), else what the body says."""
    message = data.get("message", data.get("Message")) if data is not None else None
    if isinstance(message, str) and message:
        return message
    text = body[:300].decode("utf-8", "replace").strip() if data is None else ""
    return f"The upstream answered {what}" + (f": {text}" if text else ".")
