"""Anthropic Messages clients served by Google's Gemini API (`generateContent`): the request,
the whole answer, its usage and its errors (the stream is `gemini_stream.MessagesFromGemini`,
tool schemas `gemini_schema`).

The request: `system` becomes `systemInstruction`; user and assistant turns become `user` and
`model` contents (consecutive turns of one role merged); text, images (base64 as
`inlineData`, a URL as `fileData` with the type its extension names, else `image/jpeg`),
documents (base64 as `inlineData`, a URL as a PDF `fileData`, plain text as text),
`tool_use` as `functionCall` and `tool_result` as `functionResponse` (its name found from the
`tool_use` of that id in an earlier turn; the text under `output`, or `error` when
`is_error`; its images follow the responses as `inlineData` parts, which every Gemini model
reads). Custom tools become `functionDeclarations`; `tool_choice` the calling mode;
`max_tokens`, `temperature`, `top_p`, `top_k`, `stop_sequences` the `generationConfig`;
`thinking` enabled asks for thoughts with its budget (at most `MAX_THINKING_BUDGET`),
adaptive for thoughts at the model's own budget, disabled (only when the client says so) for
a budget of 0 (which Gemini 2.5 Pro refuses). Dropped: `metadata`, `cache_control`,
`service_tier`, `disable_parallel_tool_use`, thinking blocks Gemini did not sign, and
`redacted_thinking`. Refused (TranslationError): server tools, MCP servers, files, search
results and other blocks Gemini has no part for.

Thought signatures: Gemini signs its reasoning, and Gemini 3 refuses a history whose function
calls lost their signature. The answer carries each signature in a `thinking` block's
`signature`, which the client sends back: `THOUGHT_SIGNATURE` + signature for a thought part
that was signed (the block holds that thought), `PART_SIGNATURE` + signature for a signed
text or function call part (an empty thinking block just before the block of that part). The
request puts them back where they came from; thinking blocks without such a signature (from
another model, or unsigned thoughts) are dropped. The first function call of a model turn
that has no signature (history from another model) gets Google's documented placeholder
`SKIP_SIGNATURE`, so Gemini 3 accepts the conversation.

The answer: the first candidate's parts become blocks (see `ContentBlocks`); generated images
and code execution parts are dropped. Stop reasons: `STOP_REASONS`; a prompt Gemini blocked
(`promptFeedback.blockReason`, no candidate) is an empty answer with stop_reason `refusal`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import TranslationError, anthropic_error, anthropic_type
from llm_proxy.protocols.gemini_schema import to_gemini_schema
from llm_proxy.protocols.messages_request import (
    BILLING_HEADER,
    UNSUPPORTED_BLOCKS,
    Target,
    content_blocks,
    custom_tool,
    refused_block,
    text_of,
)
from llm_proxy.protocols.tool_names import client_name, upstream_name
from llm_proxy.protocols.usage import TokenUsage

THOUGHT_SIGNATURE: Final = "gemini-thought:"
PART_SIGNATURE: Final = "gemini-part:"
# The largest thinking budget every Gemini 2.5 model takes (Flash's; Pro's is 32,768): a larger
# one (Claude Code asks up to 31,999) is capped rather than refused by Gemini.
MAX_THINKING_BUDGET: Final = 24_576
# Google's placeholder for a function call Gemini did not sign (its thought signatures guide).
SKIP_SIGNATURE: Final = "skip_thought_signature_validator"
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
# An image URL's type by its extension; another extension is sent as a JPEG.
_IMAGE_TYPES: Final = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_TARGET: Final = Target("Gemini", UNSUPPORTED_BLOCKS)


@dataclass(frozen=True, slots=True)
class GeminiCall:
    """What translating the answer needs to know of the request."""

    model: str  # the model as the client named it: the answer's `model`
    stream: bool = False
    # Gemini function name -> the client's, for names that had to change.
    tool_names: Mapping[str, str] = field(default_factory=dict)


# --- the request ---------------------------------------------------------------------------


def gemini_request(data: dict[str, Any], *, model: str) -> tuple[dict[str, Any], GeminiCall]:
    """The Anthropic Messages request `data` as a `generateContent` body (the model `model`
    goes in the URL), and the call that translates its answer. A TranslationError names what
    Gemini cannot carry (its `param` the field's path, e.g. `messages[2].content[0]`)."""
    if data.get("mcp_servers"):
        raise TranslationError("mcp_servers", "mcp_servers: MCP servers are not supported here")
    names = _Names()
    body: dict[str, Any] = {"contents": _Contents(names).build(data.get("messages"))}
    system = _system(data.get("system"))
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = data.get("tools")
    if tools:
        declarations = _tools(tools, names)
        body["tools"] = [{"functionDeclarations": declarations}]
        config = _tool_config(data.get("tool_choice"), names)
        if config is not None:
            body["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation(data)
    if generation:
        body["generationConfig"] = generation
    requested = data.get("model")
    call = GeminiCall(
        model=requested if isinstance(requested, str) and requested else model,
        stream=data.get("stream") is True,
        tool_names=names.restored,
    )
    return body, call


class _Names:
    """The client's tool names and the Gemini function names they are sent as: OpenAI's rule
    (`tool_names.upstream_name`, 64 characters of `[a-zA-Z0-9_-]`) plus Gemini's own (a name
    starts with a letter or an underscore)."""

    __slots__ = ("_clients",)

    def __init__(self) -> None:
        self._clients: dict[str, str] = {}

    def gemini(self, name: str, where: str) -> str:
        sent = upstream_name(name)
        if sent[:1].isdigit():
            sent = upstream_name("_" + name)
        first = self._clients.setdefault(sent, name)
        if first != name:
            raise TranslationError(
                where, f"{where}: the tool names {first!r} and {name!r} clash once shortened"
            )
        return sent

    @property
    def restored(self) -> dict[str, str]:
        return {sent: name for sent, name in self._clients.items() if sent != name}


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    parts = []
    for position, block in enumerate(content_blocks(system, "system")):
        text = text_of(block, f"system[{position}]", _TARGET)
        if text and not text.startswith(BILLING_HEADER):
            parts.append({"text": text})
    return parts


class _Contents:
    """The turns as Gemini contents, remembering each tool call's name by its id (a
    `functionResponse` must name its function; a `tool_result` only names the call)."""

    __slots__ = ("_calls", "_contents", "_names")

    def __init__(self, names: _Names) -> None:
        self._names = names
        self._calls: dict[str, str] = {}  # tool_use id -> Gemini function name
        self._contents: list[dict[str, Any]] = []

    def build(self, turns: Any) -> list[dict[str, Any]]:
        if not isinstance(turns, list):
            raise TranslationError("messages", "messages: a list of messages is required")
        for position, turn in enumerate(turns):
            where = f"messages[{position}]"
            if not isinstance(turn, dict):
                raise TranslationError(where, f"{where}: a message must be an object")
            role = turn.get("role")
            content = content_blocks(turn.get("content"), f"{where}.content")
            if role == "user":
                self._add("user", self._user(content, f"{where}.content"))
            elif role == "assistant":
                self._add("model", self._model(content, f"{where}.content"))
            else:
                raise TranslationError(f"{where}.role", f"{where}.role: unknown role {role!r}")
        return self._contents

    def _add(self, role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return  # Gemini refuses a content without parts (a turn of dropped blocks)
        if self._contents and self._contents[-1]["role"] == role:
            self._contents[-1]["parts"].extend(parts)
        else:
            self._contents.append({"role": role, "parts": parts})

    def _user(self, blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        """Function responses first, then the images of tool results, then the turn's own
        text and media."""
        responses: list[dict[str, Any]] = []
        result_media: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for position, block in enumerate(blocks):
            place = f"{where}[{position}]"
            kind = block.get("type")
            if kind == "tool_result":
                response, media = self._tool_result(block, place)
                responses.append(response)
                result_media.extend(media)
            elif kind == "text":
                text = text_of(block, place, _TARGET)
                if text:
                    parts.append({"text": text})
            elif kind in ("image", "document"):
                parts.append(_media(block, place))
            else:
                raise refused_block(kind, place, _TARGET)
        return responses + result_media + parts

    def _tool_result(
        self, block: dict[str, Any], where: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str):
            raise TranslationError(f"{where}.tool_use_id", f"{where}.tool_use_id: a string")
        name = self._calls.get(call_id)
        if name is None:
            raise TranslationError(
                f"{where}.tool_use_id",
                f"{where}.tool_use_id: no earlier tool_use has the id {call_id!r}",
            )
        texts: list[str] = []
        media: list[dict[str, Any]] = []
        content = block.get("content")
        if content is not None:
            for position, part in enumerate(content_blocks(content, f"{where}.content")):
                place = f"{where}.content[{position}]"
                if part.get("type") in ("image", "document"):
                    media.append(_media(part, place))
                else:
                    texts.append(text_of(part, place, _TARGET))
        key = "error" if block.get("is_error") is True else "output"
        response = {"id": call_id, "name": name, "response": {key: "\n\n".join(texts)}}
        return {"functionResponse": response}, media

    def _model(self, blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        pending: str | None = None  # a part signature for the next part
        for position, block in enumerate(blocks):
            place = f"{where}[{position}]"
            kind = block.get("type")
            part: dict[str, Any] | None = None
            if kind == "thinking":
                signature = block.get("signature")
                signature = signature if isinstance(signature, str) else ""
                thinking = block.get("thinking")
                if signature.startswith(THOUGHT_SIGNATURE):
                    parts.append(
                        {
                            "text": thinking if isinstance(thinking, str) else "",
                            "thought": True,
                            "thoughtSignature": signature.removeprefix(THOUGHT_SIGNATURE),
                        }
                    )
                elif signature.startswith(PART_SIGNATURE):
                    pending = signature.removeprefix(PART_SIGNATURE)
                continue  # unsigned thoughts, or another model's: Gemini cannot take them
            if kind == "redacted_thinking":
                continue
            if kind == "text":
                text = text_of(block, place, _TARGET)
                part = {"text": text} if text or pending else None
            elif kind == "tool_use":
                part = {"functionCall": self._tool_use(block, place)}
            else:
                raise refused_block(kind, place, _TARGET)
            if part is not None:
                if pending is not None:
                    part["thoughtSignature"] = pending
                    pending = None
                parts.append(part)
        calls = [part for part in parts if "functionCall" in part]
        if calls and not any("thoughtSignature" in part for part in calls):
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE
        return parts

    def _tool_use(self, block: dict[str, Any], where: str) -> dict[str, Any]:
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise TranslationError(where, f"{where}: a tool_use block needs an id and a name")
        arguments = block.get("input", {})
        if not isinstance(arguments, dict):
            raise TranslationError(f"{where}.input", f"{where}.input: an object is required")
        sent = self._names.gemini(name, f"{where}.name")
        self._calls[call_id] = sent
        return {"id": call_id, "name": sent, "args": arguments}


def _media(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An image or document block as an `inlineData` or `fileData` part (plain text documents
    as text)."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise TranslationError(f"{where}.source", f"{where}.source: an object is required")
    kind, image = source.get("type"), block.get("type") == "image"
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if isinstance(media_type, str) and isinstance(data, str):
            return {"inlineData": {"mimeType": media_type, "data": data}}
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
        media_type = _image_type(url) if image else "application/pdf"
        return {"fileData": {"mimeType": media_type, "fileUri": url}}
    elif kind == "text" and not image and isinstance(source.get("data"), str):
        return {"text": source["data"]}
    elif kind == "file":
        raise TranslationError(f"{where}.source", f"{where}.source: files are not supported")
    raise TranslationError(
        f"{where}.source", f"{where}.source: a base64, url or (for documents) text source"
    )


def _image_type(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    for extension, media_type in _IMAGE_TYPES.items():
        if path.endswith(extension):
            return media_type
    return "image/jpeg"


def _tools(tools: Any, names: _Names) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise TranslationError("tools", "tools: a list is required")
    return [_tool(tool, f"tools[{position}]", names) for position, tool in enumerate(tools)]


def _tool(tool: Any, where: str, names: _Names) -> dict[str, Any]:
    tool, name = custom_tool(tool, where, _TARGET)
    declaration: dict[str, Any] = {"name": names.gemini(name, f"{where}.name")}
    if isinstance(tool.get("description"), str):
        declaration["description"] = tool["description"]
    parameters = to_gemini_schema(tool.get("input_schema", {}), f"{where}.input_schema")
    if parameters.get("properties"):  # Gemini refuses an object without properties
        declaration["parameters"] = parameters
    return declaration


def _tool_config(choice: Any, names: _Names) -> dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        return {"mode": "AUTO"}
    if kind == "any":
        return {"mode": "ANY"}
    if kind == "none":
        return {"mode": "NONE"}
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        name = names.gemini(choice["name"], "tool_choice.name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise TranslationError("tool_choice", "tool_choice: auto, any, tool (with a name) or none")


def _generation(data: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise TranslationError("max_tokens", "max_tokens: a positive integer is required")
        config["maxOutputTokens"] = max_tokens
    for name, key in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        value = data.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TranslationError(name, f"{name}: a number is required")
            config[key] = value
    stop = data.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
            raise TranslationError("stop_sequences", "stop_sequences: a list of strings")
        config["stopSequences"] = stop
    thinking = _thinking(data.get("thinking"))
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _thinking(thinking: Any) -> dict[str, Any] | None:
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled" and isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise TranslationError(
                "thinking.budget_tokens", "thinking.budget_tokens: an integer is required"
            )
        return {"thinkingBudget": min(budget, MAX_THINKING_BUDGET), "includeThoughts": True}
    if kind == "adaptive":
        return {"includeThoughts": True}
    if kind == "disabled":
        return {"thinkingBudget": 0}
    raise TranslationError("thinking.type", "thinking.type: enabled, adaptive or disabled")


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
            identifier = "toolu_" + uuid.uuid4().hex[:24]
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


def messages_answer(answer: dict[str, Any], call: GeminiCall) -> dict[str, Any]:
    """A `GenerateContentResponse` as an Anthropic Message (see the module docstring)."""
    blocks = ContentBlocks(call.tool_names)
    candidate = first_candidate(answer)
    for part in candidate_parts(candidate):
        blocks.part(part)
    blocks.close()
    content: list[dict[str, Any]] = []
    for name, body in blocks.take():
        if name == "content_block_start":
            content.append(dict(body["content_block"]))
        elif name == "content_block_delta":
            _apply(content[-1], body["delta"])
    return {
        "id": message_id(answer.get("responseId")),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason(answer, candidate, blocks.tool_calls > 0),
        "stop_sequence": None,
        "usage": (gemini_usage(answer) or TokenUsage(0, 0)).anthropic(),
    }


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
    return "msg_" + uuid.uuid4().hex[:24]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def gemini_usage(answer: dict[str, Any]) -> TokenUsage | None:
    """`usageMetadata` in Anthropic's meaning: Gemini's `promptTokenCount` includes the
    cached tokens (`cachedContentTokenCount`), which become cache reads; tool-use prompt
    tokens are input; thoughts are output. None when the answer has no usage."""
    usage = answer.get("usageMetadata")
    if not isinstance(usage, dict):
        return None
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
