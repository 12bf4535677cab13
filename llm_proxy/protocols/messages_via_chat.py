"""Anthropic Messages clients served by an OpenAI-compatible (chat completions) upstream: the
request (the whole answer is `messages_answer.message_answer`, re-exported here; the stream is
`messages_stream.MessagesStream`).

What the chat API cannot carry is refused with a `TranslationError` (the client gets a 400
naming the field), never sent as text the model would misread: documents, files, server tools
(web search, code execution, `bash_20250124` and the other typed tools), search results,
container uploads, MCP servers. What only Anthropic's own service means is dropped:
`cache_control`, thinking blocks of earlier turns and the `thinking` setting (a chat upstream
cannot verify their signatures), `context_management`, `top_k`, `service_tier`, Claude Code's
`x-anthropic-billing-header` system block, `$schema` and `defer_loading` of tools.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.messages_answer import ChatCall, message_answer
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

__all__ = ["BILLING_HEADER", "ChatCall", "chat_request", "message_answer", "request_text"]

# How a failed tool's result is marked for a model that has no is_error flag.
TOOL_ERROR_PREFIX: Final = "Error: "
# The chat API has no counterpart for documents either.
_TARGET: Final = Target("this model", {"document": "document blocks", **UNSUPPORTED_BLOCKS})


def chat_request(
    data: dict[str, Any], *, model: str, max_tokens_cap: int | None = None
) -> tuple[dict[str, Any], ChatCall]:
    """The Anthropic Messages request `data` as a chat-completions request for the upstream
    model `model`, and the call that translates its answer. `max_tokens_cap`: the most output
    tokens the upstream may be asked for (a smaller request is kept; a request without
    max_tokens gets the cap). A TranslationError names what the chat API cannot carry (its
    `param` the field's path, e.g. `messages[2].content[0]`)."""
    names = ToolNames()
    body: dict[str, Any] = {"model": model, "messages": _messages(data, names)}
    tools = data.get("tools")
    if tools:
        body["tools"] = _tools(tools, names)
        body.update(_tool_choice(data.get("tool_choice"), names))
    max_tokens = _max_tokens(data.get("max_tokens"), max_tokens_cap)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    stop_sequences = _stop_sequences(data.get("stop_sequences"))
    if stop_sequences:
        body["stop"] = list(stop_sequences)
    for name in ("temperature", "top_p"):
        if data.get(name) is not None:
            body[name] = _number(data[name], name)
    stream = data.get("stream") is True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    user = _user(data.get("metadata"))
    if user is not None:
        body["user"] = user
    if data.get("mcp_servers"):
        raise TranslationError(
            "mcp_servers", "mcp_servers: MCP servers are not supported by this model"
        )
    requested = data.get("model")
    call = ChatCall(  # (positional: made per request, and cheaper so)
        requested if isinstance(requested, str) else model,
        stream,
        stop_sequences,
        names.restored,
    )
    return body, call


# --- the request -------------------------------------------------------------------------


def _messages(data: dict[str, Any], names: ToolNames) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _system_text(data.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    turns = data.get("messages")
    if not isinstance(turns, list):
        raise TranslationError("messages", "messages: a list of messages is required")
    for position, turn in enumerate(turns):
        where = f"messages[{position}]"
        if not isinstance(turn, dict):
            raise TranslationError(where, f"{where}: a message must be an object")
        role = turn.get("role")
        content = turn.get("content")
        if role == "user":
            messages.extend(_user_turn(content, where))
        elif role == "assistant":
            messages.append(_assistant_turn(content, where, names))
        elif role == "system":
            # Not in Anthropic's API, but clients send it: an instruction where it stands.
            messages.append({"role": "system", "content": _system_text(content, where)})
        else:
            raise TranslationError(f"{where}.role", f"{where}.role: unknown role {role!r}")
    return messages


def _system_text(system: Any, where: str) -> str:
    """The system prompt (a string or text blocks) as one string, blocks apart by a blank
    line, without Claude Code's billing header block."""
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts = []
    for position, block in enumerate(content_blocks(system, where)):
        text = text_of(block, f"{where}[{position}]", _TARGET)
        if not text.startswith(BILLING_HEADER):
            texts.append(text)
    return "\n\n".join(texts)


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """A user turn: each tool result as its own `tool` message first (the chat API wants them
    right after the assistant's calls), then the images of those results and the turn's own
    text and images as one user message."""
    if isinstance(content, str):  # (most turns: the text as it is, inline)
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    result_images: list[dict[str, Any]] = []
    for position, block in enumerate(content_blocks(content, f"{where}.content")):
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                text = text_of(block, f"{where}.content[{position}]", _TARGET)  # (raises)
            parts.append({"type": "text", "text": text})
        elif kind == "tool_result":
            message, images = _tool_result(block, f"{where}.content[{position}]")
            tool_messages.append(message)
            result_images.extend(images)
        elif kind == "image":
            parts.append(_image(block, f"{where}.content[{position}]"))
        else:
            raise refused_block(kind, f"{where}.content[{position}]", _TARGET)
    parts = result_images + parts
    if not parts:
        return tool_messages
    return [*tool_messages, {"role": "user", "content": _user_content(parts)}]


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text only: one string (what every chat server accepts); with images: the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media_type, data = source.get("media_type"), source.get("data")
        if isinstance(media_type, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    elif kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    elif kind == "file":
        raise TranslationError(f"{where}.source", f"{where}.source: files are not supported")
    raise TranslationError(
        f"{where}.source", f"{where}.source: a base64 or url image source is required"
    )


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result block as a `tool` message, and its images (a tool message carries only
    text: they follow in the turn's user message)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise TranslationError(f"{where}.tool_use_id", f"{where}.tool_use_id: a string required")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if content is not None:
        for position, part in enumerate(content_blocks(content, f"{where}.content")):
            place = f"{where}.content[{position}]"
            if part.get("type") == "image":
                images.append(_image(part, place))
            else:
                texts.append(text_of(part, place, _TARGET))
    text = "\n\n".join(texts)
    if images and not text:
        text = "(the result is the image that follows)"
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + (text or "the tool failed")
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _assistant_turn(content: Any, where: str, names: ToolNames) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for position, block in enumerate(content_blocks(content, f"{where}.content")):
        place = f"{where}.content[{position}]"
        kind = block.get("type")
        if kind == "text":
            texts.append(text_of(block, place, _TARGET))
        elif kind == "tool_use":
            calls.append(_tool_call(block, place, names))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # signed by Anthropic for Anthropic: no other model can use them
        else:
            raise refused_block(kind, place, _TARGET)
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tool_call(block: dict[str, Any], where: str, names: ToolNames) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise TranslationError(where, f"{where}: a tool_use block needs an id and a name")
    arguments = block.get("input", {})
    return {
        "id": call_id,
        "type": "function",
        "function": {
            "name": _upstream_name(names, name, f"{where}.name"),
            "arguments": orjson.dumps(arguments).decode(),
        },
    }


def _upstream_name(names: ToolNames, name: str, where: str) -> str:
    try:
        return names.upstream(name)
    except ValueError as error:
        raise TranslationError(where, f"{where}: {error}") from None


def _tools(tools: Any, names: ToolNames) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise TranslationError("tools", "tools: a list is required")
    return [_tool(tool, f"tools[{position}]", names) for position, tool in enumerate(tools)]


def _tool(tool: Any, where: str, names: ToolNames) -> dict[str, Any]:
    name = custom_tool(tool, where, _TARGET)
    schema = tool.get("input_schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise TranslationError(f"{where}.input_schema", f"{where}.input_schema: an object")
    function: dict[str, Any] = {
        "name": _upstream_name(names, name, f"{where}.name"),
        "parameters": {key: value for key, value in schema.items() if key != "$schema"},
    }
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, names: ToolNames) -> dict[str, Any]:
    """`tool_choice` and `parallel_tool_calls` of the chat request (none when the client did
    not choose: the upstream's default is auto, with parallel calls)."""
    if choice is None:
        return {}
    if not isinstance(choice, dict):
        raise TranslationError("tool_choice", "tool_choice: an object is required")
    kind = choice.get("type")
    chosen: dict[str, Any] = {}
    if kind in ("auto", "none"):
        chosen["tool_choice"] = kind
    elif kind == "any":
        chosen["tool_choice"] = "required"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        name = _upstream_name(names, choice["name"], "tool_choice.name")
        chosen["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise TranslationError("tool_choice", "tool_choice: auto, any, tool (with a name) or none")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        chosen["parallel_tool_calls"] = False
    return chosen


def _max_tokens(value: Any, cap: int | None) -> int | None:
    if value is None:
        return cap
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TranslationError("max_tokens", "max_tokens: a positive integer is required")
    return value if cap is None else min(value, cap)


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TranslationError("stop_sequences", "stop_sequences: a list of strings is required")
    return tuple(value)


def _number(value: Any, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranslationError(name, f"{name}: a number is required")
    return value


def _user(metadata: Any) -> str | None:
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        return str(metadata["user_id"])
    return None


def request_text(data: dict[str, Any]) -> str:
    """All the text of an Anthropic request, for a local token estimate: the system prompt,
    the messages' text and tool results, tool calls' input and the tools' names, descriptions
    and schemas (as JSON). Tolerant: a malformed part is skipped, never an error."""
    return "\n".join(_texts(data))


def _texts(data: dict[str, Any]) -> Iterator[str]:
    yield from _block_texts(data.get("system"))
    turns = data.get("messages")
    for turn in turns if isinstance(turns, list) else ():
        if isinstance(turn, dict):
            yield from _block_texts(turn.get("content"))
    tools = data.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            for key in ("name", "description"):
                if isinstance(tool.get(key), str):
                    yield tool[key]
            if "input_schema" in tool:
                yield _json(tool["input_schema"])


def _block_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
        return
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            yield block["text"]
        if block.get("type") == "tool_use":
            yield str(block.get("name", ""))
            yield _json(block.get("input"))
        elif block.get("type") == "tool_result":
            yield from _block_texts(block.get("content"))


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return ""
