"""The answer of an OpenAI-compatible (chat completions) upstream as an Anthropic Message, and
what the answer and its stream (`messages_stream`) share: the call (what translating needs to
know of the request), stop reasons, ids, tool input and reasoning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from llm_proxy.protocols.ids import random_hex
from llm_proxy.protocols.tool_names import client_name
from llm_proxy.protocols.usage import TokenUsage, from_openai

# Finish reasons of the chat API as Anthropic stop reasons.
STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


@dataclass(slots=True)
class ChatCall:
    """What translating the answer needs to know of the request."""

    model: str  # the model the client asked for: the answer's model when the upstream's is absent
    stream: bool = False
    stop_sequences: tuple[str, ...] = ()
    # Upstream tool name -> the client's, for names that were shortened.
    tool_names: Mapping[str, str] = field(default_factory=dict)


def message_answer(
    chat: dict[str, Any], call: ChatCall, *, usage: TokenUsage | None = None
) -> dict[str, Any]:
    """A chat.completion answer as an Anthropic Message: reasoning as a `thinking` block
    (empty signature), then the text, then each tool call as a `tool_use` block with its
    client name. Arguments that are not a JSON object become `{}` (see `tool_input`).
    `usage`: the answer's, when the caller has read it already (a translation in two steps
    reads it once)."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    identifier = message_id(chat.get("id"))
    content: list[dict[str, Any]] = []
    if "reasoning_content" in message or "reasoning" in message:
        reasoning = reasoning_of(message)
        if reasoning:
            content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _answer_text(message)
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    called = False
    for position, tool_call in enumerate(calls if isinstance(calls, list) else ()):
        if isinstance(tool_call, dict):
            content.append(_tool_use(tool_call, call, f"{identifier}_{position}"))
            called = True
    reason, sequence = final_stop_reason(choice, call, called)
    refusal = message.get("refusal")
    if reason == "end_turn" and isinstance(refusal, str) and refusal:
        reason = "refusal"
    usage = usage or from_openai(chat.get("usage")) or TokenUsage(0, 0)
    model = chat.get("model")
    return {
        "id": identifier,
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) and model else call.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage.anthropic(),
    }


def _answer_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # some servers answer in parts
        content = "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    if isinstance(content, str) and content:
        return content
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def _tool_use(tool_call: dict[str, Any], call: ChatCall, fallback_id: str) -> dict[str, Any]:
    function = tool_call.get("function")
    function = function if isinstance(function, dict) else {}
    name = function.get("name")
    return {
        "type": "tool_use",
        "id": tool_id(tool_call.get("id"), fallback_id),
        "name": client_name(name if isinstance(name, str) else "", call.tool_names),
        "input": tool_input(function.get("arguments")),
    }


def reasoning_of(delta: dict[str, Any]) -> str:
    """The reasoning text of a message or a stream delta: `reasoning_content` (vLLM,
    DeepSeek, llama.cpp) or `reasoning` (OpenRouter, Ollama)."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments (a JSON string) as the `input` object. A JSON object encoded
    twice (a JSON string holding one) is unwrapped. Anything else (invalid JSON, an array, a
    number) becomes `{}`: Anthropic's `input` must be an object, and an empty one makes the
    client's tool report the missing arguments to the model, which can then retry."""
    value: Any = arguments
    for _ in range(2):
        if isinstance(value, dict):
            return value
        if not isinstance(value, str | bytes):
            return {}
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def stop_reason(choice: dict[str, Any], call: ChatCall) -> tuple[str, str | None]:
    """The Anthropic stop reason of a choice that finished, and the stop sequence it matched:
    vLLM reports the matched string in the choice's `stop_reason`; a `stop` without one is an
    `end_turn`. An unknown or absent finish reason is an `end_turn`."""
    finish = choice.get("finish_reason")
    reason = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in call.stop_sequences:
        return "stop_sequence", matched
    return reason, None


def final_stop_reason(
    choice: dict[str, Any], call: ChatCall, has_tool_calls: bool
) -> tuple[str, str | None]:
    """`stop_reason`, except that an answer with tool calls that says it just stopped (some
    servers finish with `stop` after calls) is a `tool_use`: the client runs its tools only
    then."""
    reason, sequence = stop_reason(choice, call)
    if reason == "end_turn" and has_tool_calls:
        return "tool_use", None
    return reason, sequence


def message_id(upstream_id: Any) -> str:
    """`msg_` and the upstream's id (its `chatcmpl-` prefix dropped), or a random id."""
    if isinstance(upstream_id, str) and upstream_id:
        return "msg_" + upstream_id.removeprefix("chatcmpl-")
    return "msg_" + random_hex(24)


def tool_id(upstream_id: Any, fallback: str) -> str:
    """A tool call's id: the upstream's (the client sends it back in its tool_result, which
    goes upstream as the `tool_call_id`), or `toolu_` and `fallback` when it gave none."""
    if isinstance(upstream_id, str) and upstream_id:
        return upstream_id
    return "toolu_" + fallback.removeprefix("msg_")
