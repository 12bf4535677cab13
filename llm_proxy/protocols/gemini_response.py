"""Gemini's answers (`GenerateContentResponse`) as Anthropic Messages answers: the whole answer,
the content blocks its parts make (shared with the stream, `gemini_stream`), its usage and
Google's errors; `GeminiCall`, what the request (`gemini.gemini_request`) tells the answer's
translation.

The answer: the first candidate's parts become blocks (see `ContentBlocks`); generated images
and code execution parts are dropped. Stop reasons: `STOP_REASONS`; a prompt Gemini blocked
(`promptFeedback.blockReason`, no candidate) is an empty answer with stop_reason `refusal`.
Thought signatures go in `thinking` blocks (`THOUGHT_SIGNATURE`, `PART_SIGNATURE`: see
`gemini`'s docstring).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import anthropic_error, anthropic_type
from llm_proxy.protocols.ids import random_hex
from llm_proxy.protocols.tool_names import client_name
from llm_proxy.protocols.usage import TokenUsage

THOUGHT_SIGNATURE: Final = "gemini-thought:"
PART_SIGNATURE: Final = "gemini-part:"
# Gemini's finish reasons as Anthropic stop reasons; any other is an end_turn (a tool_use when
# the answer called tools). MALFORMED_FUNCTION_CALL ends the turn with what came before it. A
# STOP at a stop sequence is an end_turn too: Gemini does not say which sequence matched.
STOP_REASONS: Final = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "refusal",
    "RECITATION": "refusal",
    "BLOCKLIST": "refusal",
    "PROHIBITED_CONTENT": "refusal",
    "SPII": "refusal",
    "IMAGE_SAFETY": "refusal",
    "IMAGE_PROHIBITED_CONTENT": "refusal",
    "IMAGE_RECITATION": "refusal",
}
_TEXT_ONLY: Final = frozenset({"text"})  # the keys of a part of text alone
# The usageMetadata counts other than the prompt's and the candidates'.
_OTHER_COUNTS: Final = ("cachedContentTokenCount", "toolUsePromptTokenCount", "thoughtsTokenCount")
# Google's error statuses (google.rpc.Code names) as Anthropic error types.
ERROR_TYPES: Final = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "UNAVAILABLE": "overloaded_error",
    "DEADLINE_EXCEEDED": "timeout_error",
    "INTERNAL": "api_error",
}


@dataclass(slots=True)  # (not frozen: one per request, and a frozen one is twice as slow to make)
class GeminiCall:
    """What translating the answer needs to know of the request."""

    model: str  # the model as the client named it: the answer's `model`
    stream: bool = False
    # Gemini function name -> the client's, for names that had to change.
    tool_names: Mapping[str, str] = field(default_factory=dict)


# --- the answer ----------------------------------------------------------------------------


class ContentBlocks:
    """Gemini parts in, as they arrive (a whole answer's, or a stream's chunk by chunk);
    Anthropic content-block events out (`content_block_start`/`_delta`/`_stop` bodies), one
    block open at a time. Shared by the answer and the stream, so both say the same:

    * a thought (`thought: true`) is a `thinking` block; its signature a `signature_delta`
      (`THOUGHT_SIGNATURE` + it) after which a further thought opens a new block;
    * a signed text or function call part is preceded by an empty `thinking` block whose
      signature is `PART_SIGNATURE` + the part's;
    * text is a `text` block (consecutive parts one block); a function call a `tool_use`
      block (Gemini's id, else `toolu_` and a random id) whose whole `args` are one
      `input_json_delta`;
    * other parts (generated images, code execution) are dropped.
    """

    __slots__ = ("_events", "_index", "_names", "_open", "_signed", "tool_calls")

    def __init__(self, tool_names: Mapping[str, str]) -> None:
        self._names = tool_names
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._index = -1  # the last block started
        self._open: str | None = None
        self._signed = False  # the open thinking block has its signature
        self.tool_calls = 0

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        events, self._events = self._events, []
        return events

    def part(self, part: Any) -> None:
        if not isinstance(part, dict):
            return
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        text = part.get("text")
        text = text if isinstance(text, str) else ""
        call = part.get("functionCall")
        if part.get("thought") is True:
            if self._open != "thinking" or self._signed:
                self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if text:
                self._delta({"type": "thinking_delta", "thinking": text})
            if signature is not None:
                self._delta({"type": "signature_delta", "signature": THOUGHT_SIGNATURE + signature})
                self._signed = True
            return
        if not isinstance(call, dict) and "text" not in part:
            return
        if signature is not None:
            self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._delta({"type": "signature_delta", "signature": PART_SIGNATURE + signature})
            self.close()
        if isinstance(call, dict):
            self._tool_use(call)
        elif text:
            if self._open != "text":
                self._start("text", {"type": "text", "text": ""})
            self._delta({"type": "text_delta", "text": text})

    def close(self) -> None:
        if self._open is not None:
            self._events.append(
                ("content_block_stop", {"type": "content_block_stop", "index": self._index})
            )
            self._open = None

    def _start(self, kind: str, block: dict[str, Any]) -> None:
        self.close()
        self._index += 1
        self._open, self._signed = kind, False
        body = {"type": "content_block_start", "index": self._index, "content_block": block}
        self._events.append(("content_block_start", body))

    def _delta(self, delta: dict[str, Any]) -> None:
        body = {"type": "content_block_delta", "index": self._index, "delta": delta}
        self._events.append(("content_block_delta", body))

    def _tool_use(self, call: dict[str, Any]) -> None:
        identifier = call.get("id")
        if not isinstance(identifier, str) or not identifier:
            identifier = "toolu_" + random_hex(24)
        name = call.get("name")
        block = {
            "type": "tool_use",
            "id": identifier,
            "name": client_name(name if isinstance(name, str) else "", self._names),
            "input": {},
        }
        self._start("tool_use", block)
        arguments = call.get("args")
        if isinstance(arguments, dict) and arguments:
            partial = orjson.dumps(arguments).decode()
            self._delta({"type": "input_json_delta", "partial_json": partial})
        self.close()
        self.tool_calls += 1


def messages_answer(
    answer: dict[str, Any], call: GeminiCall, *, usage: TokenUsage | None = None
) -> dict[str, Any]:
    """A `GenerateContentResponse` as an Anthropic Message (see the module docstring).
    `usage`: the answer's, when the caller has read it already (`gemini_usage`)."""
    candidate = first_candidate(answer)
    parts = candidate_parts(candidate)
    text = _text_only(parts)
    if text is not None:  # (most answers: their one text block, without the events)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        tools = False
    else:
        blocks = ContentBlocks(call.tool_names)
        for part in parts:
            blocks.part(part)
        blocks.close()
        content = []
        for name, body in blocks.take():
            if name == "content_block_start":
                content.append(dict(body["content_block"]))
            elif name == "content_block_delta":
                _apply(content[-1], body["delta"])
        tools = blocks.tool_calls > 0
    return {
        "id": message_id(answer.get("responseId")),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason(answer, candidate, tools),
        "stop_sequence": None,
        "usage": (usage or gemini_usage(answer) or TokenUsage(0, 0)).anthropic(),
    }


def _text_only(parts: list[Any]) -> str | None:
    """The text of parts that are all text and nothing else (no thought, no signature), which
    `ContentBlocks` makes one text block of (none when it is empty); None for other parts."""
    texts = []
    for part in parts:
        if not isinstance(part, dict) or part.keys() != _TEXT_ONLY:
            return None
        text = part["text"]
        if not isinstance(text, str):
            return None
        texts.append(text)
    return "".join(texts)


def _apply(block: dict[str, Any], delta: dict[str, Any]) -> None:
    kind = delta["type"]
    if kind == "input_json_delta":
        block["input"] = orjson.loads(delta["partial_json"])
    else:
        key = kind.removesuffix("_delta")
        block[key] = block[key] + delta[key]


def first_candidate(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The candidate the client gets (Anthropic has one answer; the request asked for one)."""
    candidates = answer.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def candidate_parts(candidate: dict[str, Any] | None) -> list[Any]:
    content = candidate.get("content") if candidate is not None else None
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def stop_reason(answer: dict[str, Any], candidate: dict[str, Any] | None, tools: bool) -> str:
    """The Anthropic stop reason of an answer: by `finishReason` (`STOP_REASONS`, else
    end_turn; an end_turn that called tools is a tool_use); a blocked prompt (no candidate,
    `promptFeedback.blockReason`) a refusal."""
    if candidate is None:
        feedback = answer.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            return "refusal"
    finish = candidate.get("finishReason") if candidate is not None else None
    reason = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    return "tool_use" if reason == "end_turn" and tools else reason


def finish_reason(answer: dict[str, Any]) -> str | None:
    """The finish reason a chunk reports (a blocked prompt's block reason), None if none."""
    candidate = first_candidate(answer)
    finish = candidate.get("finishReason") if candidate is not None else None
    if isinstance(finish, str) and finish:
        return finish
    feedback = answer.get("promptFeedback")
    if candidate is None and isinstance(feedback, dict) and feedback.get("blockReason"):
        return str(feedback["blockReason"])
    return None


def message_id(response_id: Any) -> str:
    """`msg_` and Gemini's `responseId`, or a random id."""
    if isinstance(response_id, str) and response_id:
        return "msg_" + response_id
    return "msg_" + random_hex(24)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def gemini_usage(answer: dict[str, Any]) -> TokenUsage | None:
    """`usageMetadata` in Anthropic's meaning: Gemini's `promptTokenCount` includes the
    cached tokens (`cachedContentTokenCount`), which become cache reads; tool-use prompt
    tokens are input; thoughts are output. None when the answer has no usage."""
    usage = answer.get("usageMetadata")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("promptTokenCount", 0)
    output = usage.get("candidatesTokenCount", 0)
    if (
        type(prompt) is int
        and type(output) is int
        and prompt >= 0
        and output >= 0
        and usage.keys().isdisjoint(_OTHER_COUNTS)
    ):  # (most answers count no cache, tool use nor thoughts: two reads rather than five)
        return TokenUsage(prompt, output)
    prompt = _count(usage.get("promptTokenCount"))
    cached = min(_count(usage.get("cachedContentTokenCount")), prompt)
    return TokenUsage(
        input_tokens=prompt - cached + _count(usage.get("toolUsePromptTokenCount")),
        output_tokens=_count(usage.get("candidatesTokenCount"))
        + _count(usage.get("thoughtsTokenCount")),
        cache_read_tokens=cached,
    )


# --- errors --------------------------------------------------------------------------------


def google_error(data: Any) -> tuple[str, str] | None:
    """The message and Anthropic error type of Google's `{"error": {"code", "message",
    "status"}}` (or a list holding one, as streams send), None if `data` is not one. The type
    from `status` (`ERROR_TYPES`), else from `code`, else api_error."""
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    text = message if isinstance(message, str) and message else "The upstream failed."
    status = error.get("status")
    if isinstance(status, str) and status in ERROR_TYPES:
        return text, ERROR_TYPES[status]
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return text, anthropic_type(code)
    return text, "api_error"


def gemini_to_anthropic_error(status: int, body: bytes) -> bytes:
    """Google's error answer (or any body) as an Anthropic error body: the message kept, the
    type from Google's status name when it has one (a 400 API key error is an
    authentication_error), else from the HTTP status."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    found = google_error(data)
    if found is None:
        text = body[:300].decode("utf-8", "replace").strip()
        fallback = f"The upstream answered HTTP {status}" + (f": {text}" if text else ".")
        return anthropic_error(status, fallback)
    message, kind = found
    if _api_key_invalid(data):
        kind = "authentication_error"
    return anthropic_error(status, message, type=kind)


def _api_key_invalid(data: Any) -> bool:
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return any(
        isinstance(detail, dict) and detail.get("reason") == "API_KEY_INVALID"
        for detail in (details if isinstance(details, list) else ())
    )
