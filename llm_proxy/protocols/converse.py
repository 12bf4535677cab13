"""Anthropic Messages clients served by Amazon Bedrock's Converse API: the request (the whole
answer, its usage and Bedrock's errors are `converse_response`'s, re-exported here; the stream
is `converse_stream.MessagesFromConverse`, its bytes decoded by `eventstream`).

The request goes to `converse_path(model_id, stream)`; its body has no model. Blocks map one
to one: text, base64 images (`bytes` carries the base64 string: Converse's JSON encoding of a
blob), base64 PDF and plain-text documents, tool_use/toolUse, tool_result/toolResult,
signed thinking/reasoningContent, and `cache_control` on a system block, a content block or a
tool becomes a `cachePoint` right after it (its 1h `ttl` kept). Refused with a
`TranslationError`: URL and file sources (Bedrock fetches no URL), server tools and their
blocks, search results, MCP servers. Dropped: `metadata`, `service_tier`,
`disable_parallel_tool_use` and `context_management` (Converse has no field for them).

Model families: Anthropic's models (an id containing `anthropic.`: `anthropic.claude-...`,
the `us.`/`eu.`/`global.` inference profiles, foundation-model ARNs) get `top_k` and
`thinking` through `additionalModelRequestFields`, keep the earlier turns' thinking blocks
(those with a signature: Bedrock verifies it) and are asked for the matched stop sequence.
Other models: `top_k` and thinking blocks are dropped, `thinking` is refused (each model
has its own reasoning switch, when it has one); `cache_control` is kept for Anthropic and
Amazon Nova models only, the models Bedrock caches prompts for (others refuse a
`cachePoint`); a failed tool's result is marked `status: error` for those two, with an
`Error: ` text for others, which have no status field.

`tool_choice` none: Converse has no such choice, so the tools are left out. A conversation
with tool calls or results but no tool offered (none given, or `tool_choice` none) gets one
placeholder tool, `no_tool_available`, that says not to call it:
Converse refuses tool blocks without a `toolConfig`. A tool result without content says
`(no content)` (Converse refuses an empty text block).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from llm_proxy.protocols.converse_response import (
    EXCEPTIONS,
    STOP_REASONS,
    ConverseCall,
    bedrock_to_anthropic_error,
    converse_usage,
    exception_name,
    message_id,
    messages_answer,
    stop_reason,
    stream_error,
    upstream_status,
)
from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.messages_request import (
    BILLING_HEADER,
    UNSUPPORTED_BLOCKS,
    Target,
    content_blocks,
    custom_tool,
    refused_block,
    text_of,
)
from llm_proxy.protocols.tool_names import ToolNames

__all__ = [
    "EMPTY_RESULT",
    "EXCEPTIONS",
    "IMAGE_FORMATS",
    "PLACEHOLDER_TOOL",
    "STOP_REASONS",
    "TOOL_ERROR_PREFIX",
    "ConverseCall",
    "bedrock_to_anthropic_error",
    "converse_path",
    "converse_request",
    "converse_usage",
    "exception_name",
    "is_anthropic",
    "message_id",
    "messages_answer",
    "stop_reason",
    "stream_error",
    "upstream_status",
]

# How a failed tool's result is marked for a model without the `status` field.
TOOL_ERROR_PREFIX: Final = "Error: "
IMAGE_FORMATS: Final = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_TARGET: Final = Target("Bedrock", UNSUPPORTED_BLOCKS)
# The only tool of a request whose conversation has tool calls or results but that offers no
# tool (Converse refuses tool blocks without a `toolConfig`).
PLACEHOLDER_TOOL: Final = {
    "toolSpec": {
        "name": "no_tool_available",
        "description": "Not a tool: no tool is available now. Never call it.",
        "inputSchema": {"json": {"type": "object", "properties": {}}},
    }
}
# What a tool result without content says (Converse refuses an empty text block).
EMPTY_RESULT: Final = "(no content)"
# What a document's name may hold (Bedrock: letters, digits, single spaces, hyphens,
# parentheses, square brackets); anything else becomes a space.
_NAME_INVALID: Final = re.compile(r"[^A-Za-z0-9\-()\[\] ]+|\s+")
_NAME_LENGTH: Final = 200


def is_anthropic(model_id: str) -> bool:
    """Whether the Bedrock model id names one of Anthropic's models."""
    return "anthropic." in model_id


def converse_path(model_id: str, stream: bool) -> str:
    """The request's path: `/model/{modelId}/converse` or `/converse-stream`, the id encoded
    as botocore encodes a URI label (an ARN's `:` and `/` too)."""
    return f"/model/{quote(model_id, safe='')}/{'converse-stream' if stream else 'converse'}"


@dataclass(slots=True)
class _Context:
    """What translating one request keeps: the model's family, tool names, document names."""

    anthropic: bool
    caches: bool  # the model takes cachePoint blocks and a tool result's status
    names: ToolNames = field(default_factory=ToolNames)
    documents: set[str] = field(default_factory=set)
    has_tool_blocks: bool = False


# A turn's converter of its blocks other than text (the block, its type, its path): None
# drops the block.
_BlockConverter = Callable[[dict[str, Any], Any, str, _Context], dict[str, Any] | None]


def converse_request(
    messages: dict[str, Any], *, model: str
) -> tuple[dict[str, Any], ConverseCall]:
    """The Anthropic Messages request `messages` as a Converse request body for the Bedrock
    model id `model`, and the call that translates its answer. A TranslationError names
    what Converse cannot carry (its `param` the field's path)."""
    data = messages
    anthropic = is_anthropic(model)
    context = _Context(anthropic=anthropic, caches=anthropic or _caches(model))
    body: dict[str, Any] = {}
    system, turns = _conversation(data, context)
    body["messages"] = turns
    if system:
        body["system"] = system
    tools = data.get("tools")
    if tools is not None or context.has_tool_blocks:  # (else no toolConfig, whatever the choice)
        tool_config = _tool_config(tools, data.get("tool_choice"), context)
        if tool_config is not None:
            body["toolConfig"] = tool_config
    stop = data.get("stop_sequences")
    stop_sequences = () if stop is None else _stop_sequences(stop)
    inference = _inference(data, stop_sequences)
    if inference:
        body["inferenceConfig"] = inference
    if "top_k" in data or "thinking" in data:
        additional = _additional_fields(data, context)
        if additional:
            body["additionalModelRequestFields"] = additional
    if stop_sequences and context.anthropic:
        body["additionalModelResponseFieldPaths"] = ["/stop_sequence"]
    if data.get("mcp_servers"):
        raise TranslationError("mcp_servers", "mcp_servers: MCP servers are not supported")
    requested = data.get("model")
    call = ConverseCall(  # (positional: made per request, and cheaper so)
        requested if isinstance(requested, str) else model,
        data.get("stream") is True,
        stop_sequences,
        context.names.restored,
    )
    return body, call


def _caches(model_id: str) -> bool:
    return is_anthropic(model_id) or "amazon.nova" in model_id


# --- the conversation ------------------------------------------------------------------


def _conversation(
    data: dict[str, Any], context: _Context
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system blocks and the messages, consecutive turns of one role merged (Converse
    wants them alternating), turns left empty dropped."""
    given = data.get("system")
    system = [] if given is None else _system(given, "system", context)
    turns = data.get("messages")
    if not isinstance(turns, list):
        raise TranslationError("messages", "messages: a list of messages is required")
    merged: list[dict[str, Any]] = []
    for position, turn in enumerate(turns):
        where = f"messages[{position}]"
        if not isinstance(turn, dict):
            raise TranslationError(where, f"{where}: a message must be an object")
        role, content = turn.get("role"), turn.get("content")
        if role == "system":
            # Not in Anthropic's API, but clients send it: one more system instruction.
            system.extend(_system(content, where, context))
            continue
        if role == "user":
            blocks = _turn(content, where, context, _user_block)
        elif role == "assistant":
            blocks = _turn(content, where, context, _assistant_block)
        else:
            raise TranslationError(f"{where}.role", f"{where}.role: unknown role {role!r}")
        if not blocks:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": role, "content": blocks})
    return system, merged


def _system(system: Any, where: str, context: _Context) -> list[dict[str, Any]]:
    if system is None:
        return []
    blocks: list[dict[str, Any]] = []
    for position, block in enumerate(content_blocks(system, where)):
        place = f"{where}[{position}]" if isinstance(system, list) else where
        text = text_of(block, place, _TARGET)
        if text and not text.startswith(BILLING_HEADER):
            blocks.append({"text": text})
            _cache_point(block, blocks, context)
    return blocks


def _cache_point(block: dict[str, Any], blocks: list[dict[str, Any]], context: _Context) -> None:
    """A `cachePoint` after `block` when it has `cache_control` (and the model caches)."""
    control = block.get("cache_control")
    if not isinstance(control, dict) or not context.caches:
        return
    point: dict[str, Any] = {"type": "default"}
    if control.get("ttl") in ("5m", "1h"):
        point["ttl"] = control["ttl"]
    blocks.append({"cachePoint": point})


def _turn(
    content: Any, where: str, context: _Context, convert: _BlockConverter
) -> list[dict[str, Any]]:
    """A turn's blocks as Converse's (text here, other blocks by the role's `convert`), each
    followed by its cachePoint; a blank text block (Converse refuses it) and what `convert`
    drops are left out."""
    if isinstance(content, str):  # (most turns: one text block, inline)
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for position, block in enumerate(content_blocks(content, f"{where}.content")):
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                text = text_of(block, f"{where}.content[{position}]", _TARGET)  # (raises)
            converted = {"text": text} if text else None
        else:
            converted = convert(block, kind, f"{where}.content[{position}]", context)
        if converted is not None:
            blocks.append(converted)
            if "cache_control" in block:  # (most blocks have none: no call for them)
                _cache_point(block, blocks, context)
    return blocks


def _user_block(
    block: dict[str, Any], kind: Any, where: str, context: _Context
) -> dict[str, Any] | None:
    if kind == "image":
        return {"image": _image(block, where)}
    if kind == "document":
        return {"document": _document(block, where, context)}
    if kind == "tool_result":
        result = _tool_result(block, where, context)
        context.has_tool_blocks = True
        return {"toolResult": result}
    raise refused_block(kind, where, _TARGET)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media_type, data = source.get("media_type"), source.get("data")
        image_format = IMAGE_FORMATS.get(media_type) if isinstance(media_type, str) else None
        if image_format is None:
            raise TranslationError(
                f"{where}.source.media_type",
                f"{where}.source.media_type: one of {', '.join(IMAGE_FORMATS)} is required",
            )
        if isinstance(data, str) and data:
            return {"format": image_format, "source": {"bytes": data}}
    elif kind in ("url", "file"):
        raise TranslationError(
            f"{where}.source",
            f"{where}.source: Bedrock takes images as base64 data, it cannot fetch a {kind}",
        )
    raise TranslationError(f"{where}.source", f"{where}.source: a base64 image source required")


def _document(block: dict[str, Any], where: str, context: _Context) -> dict[str, Any]:
    """A base64 PDF or a plain-text document (sent as a `txt` document's bytes)."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    data = source.get("data") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict) and isinstance(data, str) and data:
        if source.get("media_type") != "application/pdf":
            raise TranslationError(
                f"{where}.source.media_type", f"{where}.source.media_type: application/pdf"
            )
        document_format, encoded = "pdf", data
    elif kind == "text" and isinstance(data, str) and data:
        document_format, encoded = "txt", base64.b64encode(data.encode()).decode()
    elif kind in ("url", "file", "content"):
        raise TranslationError(
            f"{where}.source",
            f"{where}.source: Bedrock takes documents as base64 PDF or text, not a {kind} source",
        )
    else:
        raise TranslationError(
            f"{where}.source", f"{where}.source: a base64 PDF or a text source is required"
        )
    document: dict[str, Any] = {
        "format": document_format,
        "name": _document_name(block.get("title"), context),
        "source": {"bytes": encoded},
    }
    if isinstance(block.get("context"), str) and block["context"]:
        document["context"] = block["context"]
    return document


def _document_name(title: Any, context: _Context) -> str:
    """The document's title in the characters Bedrock allows, else `document-N`; unique in
    the request (Bedrock tells documents apart by name)."""
    number = len(context.documents) + 1
    name = _NAME_INVALID.sub(" ", title).strip()[:_NAME_LENGTH].strip() if title else ""
    name = name or f"document-{number}"
    if name in context.documents:
        name = f"{name[: _NAME_LENGTH - 12]} ({number})"
    context.documents.add(name)
    return name


def _tool_result(block: dict[str, Any], where: str, context: _Context) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_use_id", f"{where}.tool_use_id: a string required")
    parts: list[dict[str, Any]] = []
    content = block.get("content")
    if content is not None:
        for position, part in enumerate(content_blocks(content, f"{where}.content")):
            place = f"{where}.content[{position}]"
            kind = part.get("type")
            if kind == "image":
                parts.append({"image": _image(part, place)})
            elif kind == "document":
                parts.append({"document": _document(part, place, context)})
            else:
                text = text_of(part, place, _TARGET)
                if text:
                    parts.append({"text": text})
    if not parts:
        parts.append({"text": EMPTY_RESULT})
    result: dict[str, Any] = {"toolUseId": call_id, "content": parts}
    if block.get("is_error") is True:
        if context.caches:
            result["status"] = "error"
        elif "text" in parts[0]:
            parts[0] = {"text": TOOL_ERROR_PREFIX + parts[0]["text"]}
        else:
            parts.insert(0, {"text": TOOL_ERROR_PREFIX.strip()})
    return result


def _assistant_block(
    block: dict[str, Any], kind: Any, where: str, context: _Context
) -> dict[str, Any] | None:
    if kind == "tool_use":
        use = _tool_use(block, where, context)
        context.has_tool_blocks = True
        return {"toolUse": use}
    if kind in ("thinking", "redacted_thinking"):
        reasoning = _reasoning(block, context)
        return {"reasoningContent": reasoning} if reasoning is not None else None
    raise refused_block(kind, where, _TARGET)


def _tool_use(block: dict[str, Any], where: str, context: _Context) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str) or not call_id:
        raise TranslationError(where, f"{where}: a tool_use block needs an id and a name")
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise TranslationError(f"{where}.input", f"{where}.input: an object is required")
    return {
        "toolUseId": call_id,
        "name": _upstream_name(context.names, name, f"{where}.name"),
        "input": arguments,
    }


def _reasoning(block: dict[str, Any], context: _Context) -> dict[str, Any] | None:
    """An earlier turn's thinking for an Anthropic model, which verifies its signature; None
    (the block dropped) for other models, and for thinking that has no signature (another
    upstream's reasoning: Bedrock would refuse it)."""
    if not context.anthropic:
        return None
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        return {"redactedContent": data} if isinstance(data, str) and data else None
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str) or not signature:
        return None
    return {"reasoningText": {"text": text, "signature": signature}}


def _upstream_name(names: ToolNames, name: str, where: str) -> str:
    try:
        return names.upstream(name)
    except ValueError as error:
        raise TranslationError(where, f"{where}: {error}") from None


# --- tools and settings ----------------------------------------------------------------


def _tool_config(tools: Any, choice: Any, context: _Context) -> dict[str, Any] | None:
    """`toolConfig`; without tools to offer (none given, or `tool_choice` none), nothing, or
    the placeholder tool when the conversation has tool blocks (Converse refuses them
    without a `toolConfig`; the real tools would let the model call one)."""
    if tools is not None and not isinstance(tools, list):
        raise TranslationError("tools", "tools: a list is required")
    specs: list[dict[str, Any]] = []
    for position, tool in enumerate(tools or ()):
        specs.append({"toolSpec": _tool(tool, f"tools[{position}]", context)})
        _cache_point(tool, specs, context)
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not specs or kind == "none":
        return {"tools": [PLACEHOLDER_TOOL]} if context.has_tool_blocks else None
    config: dict[str, Any] = {"tools": specs}
    if choice is None:
        return config
    if kind in ("auto", "any"):
        config["toolChoice"] = {kind: {}}
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        name = _upstream_name(context.names, choice["name"], "tool_choice.name")
        config["toolChoice"] = {"tool": {"name": name}}
    else:
        raise TranslationError("tool_choice", "tool_choice: auto, any, tool (with a name) or none")
    return config


def _tool(tool: Any, where: str, context: _Context) -> dict[str, Any]:
    name = custom_tool(tool, where, _TARGET)
    schema = tool.get("input_schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise TranslationError(f"{where}.input_schema", f"{where}.input_schema: an object")
    spec: dict[str, Any] = {
        "name": _upstream_name(context.names, name, f"{where}.name"),
        "inputSchema": {"json": {key: value for key, value in schema.items() if key != "$schema"}},
    }
    if isinstance(tool.get("description"), str) and tool["description"]:
        spec["description"] = tool["description"]
    if tool.get("strict") is True:
        spec["strict"] = True
    return spec


def _inference(data: dict[str, Any], stop_sequences: tuple[str, ...]) -> dict[str, Any]:
    inference: dict[str, Any] = {}
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise TranslationError("max_tokens", "max_tokens: a positive integer is required")
        inference["maxTokens"] = max_tokens
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        value = data.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TranslationError(name, f"{name}: a number is required")
            inference[key] = value
    if stop_sequences:
        inference["stopSequences"] = list(stop_sequences)
    return inference


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TranslationError("stop_sequences", "stop_sequences: a list of strings is required")
    return tuple(item for item in value if item)


def _additional_fields(data: dict[str, Any], context: _Context) -> dict[str, Any]:
    """`top_k` and `thinking`, which Converse passes to an Anthropic model as they are."""
    fields: dict[str, Any] = {}
    top_k = data.get("top_k")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise TranslationError("top_k", "top_k: a positive integer is required")
        if context.anthropic:
            fields["top_k"] = top_k
    thinking = data.get("thinking")
    if thinking is None:
        return fields
    if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
        raise TranslationError("thinking", "thinking: an object with a type is required")
    if context.anthropic:
        fields["thinking"] = thinking
    elif thinking["type"] != "disabled":
        raise TranslationError(
            "thinking", "thinking: extended thinking is not supported by this model"
        )
    return fields
