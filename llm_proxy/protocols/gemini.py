"""Anthropic Messages clients served by Google's Gemini API (`generateContent`): the request
(the whole answer, its usage and its errors are `gemini_response`'s, re-exported here; the
stream is `gemini_stream.MessagesFromGemini`, tool schemas `gemini_schema`).

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
"""

from __future__ import annotations

from typing import Any, Final

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini_response import (
    ERROR_TYPES,
    PART_SIGNATURE,
    STOP_REASONS,
    THOUGHT_SIGNATURE,
    ContentBlocks,
    GeminiCall,
    candidate_parts,
    finish_reason,
    first_candidate,
    gemini_to_anthropic_error,
    gemini_usage,
    google_error,
    message_id,
    messages_answer,
    stop_reason,
)
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
from llm_proxy.protocols.tool_names import upstream_name

__all__ = [
    "ERROR_TYPES",
    "MAX_THINKING_BUDGET",
    "PART_SIGNATURE",
    "SKIP_SIGNATURE",
    "STOP_REASONS",
    "THOUGHT_SIGNATURE",
    "ContentBlocks",
    "GeminiCall",
    "candidate_parts",
    "finish_reason",
    "first_candidate",
    "gemini_request",
    "gemini_to_anthropic_error",
    "gemini_usage",
    "google_error",
    "message_id",
    "messages_answer",
    "stop_reason",
]

# The largest thinking budget every Gemini 2.5 model takes (Flash's; Pro's is 32,768): a larger
# one (Claude Code asks up to 31,999) is capped rather than refused by Gemini.
MAX_THINKING_BUDGET: Final = 24_576
# Google's placeholder for a function call Gemini did not sign (its thought signatures guide).
SKIP_SIGNATURE: Final = "skip_thought_signature_validator"
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
# The sampling parameters and their generationConfig names.
_SAMPLING: Final = {"temperature": "temperature", "top_p": "topP", "top_k": "topK"}


def gemini_request(data: dict[str, Any], *, model: str) -> tuple[dict[str, Any], GeminiCall]:
    """The Anthropic Messages request `data` as a `generateContent` body (the model `model`
    goes in the URL), and the call that translates its answer. A TranslationError names what
    Gemini cannot carry (its `param` the field's path, e.g. `messages[2].content[0]`)."""
    if data.get("mcp_servers"):
        raise TranslationError("mcp_servers", "mcp_servers: MCP servers are not supported here")
    names = _Names()
    body: dict[str, Any] = {"contents": _Contents(names).build(data.get("messages"))}
    system = data.get("system")
    if system is not None:
        parts = _system(system)
        if parts:
            body["systemInstruction"] = {"parts": parts}
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
    call = GeminiCall(  # (positional: made per request, and cheaper so)
        requested if isinstance(requested, str) and requested else model,
        data.get("stream") is True,
        names.restored,
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
        if not self._clients:  # (no tool named, the common case: no comprehension)
            return {}
        return {sent: name for sent, name in self._clients.items() if sent != name}


def _system(system: Any) -> list[dict[str, Any]]:
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
            place = f"{where}.content"
            content = content_blocks(turn.get("content"), place)
            if role == "user":
                self._add("user", self._user(content, place))
            elif role == "assistant":
                self._add("model", self._model(content, place))
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
    name = custom_tool(tool, where, _TARGET)
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
    if not data.keys().isdisjoint(_SAMPLING):  # (most requests set none of them)
        for name, key in _SAMPLING.items():
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
    thinking = data.get("thinking")
    if thinking is not None:
        config["thinkingConfig"] = _thinking(thinking)
    return config


def _thinking(thinking: Any) -> dict[str, Any]:
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
