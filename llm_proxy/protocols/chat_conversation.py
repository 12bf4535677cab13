"""The conversation of an OpenAI chat-completions request as Anthropic Messages: the system
blocks and the alternating turns (`chat_via_messages` tells what each message becomes)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import TranslationError

IMAGE_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL: Final = re.compile(r"data:([^;,]+)((?:;[^;,]*)*),(.*)", re.DOTALL)
_TOOL_ID_REFUSED: Final = re.compile(r"[^A-Za-z0-9_-]")


def conversation(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system blocks and the alternating turns of an OpenAI `messages` list."""
    if not isinstance(messages, list):
        raise TranslationError("messages", "messages must be a list.")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            content = message.get("content")
            if isinstance(content, str):  # (most messages: `_user_blocks`' first case, inline)
                blocks = [{"type": "text", "text": content}] if content.strip() else []
            else:
                blocks = _user_blocks(content, f"messages[{index}].content")
        elif role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"messages[{index}].content"))
            continue
        elif role == "assistant":
            blocks = _assistant_blocks(message, f"messages[{index}]")
        elif role == "tool":
            blocks = [_tool_result(message, f"messages[{index}]")]
            role = "user"
        else:
            raise TranslationError(
                f"messages[{index}].role",
                "role must be system, developer, user, assistant or tool.",
            )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise TranslationError("messages", "messages needs a user message with content.")
    for turn in turns:
        # Anthropic wants a turn's tool results before anything else in it.
        if len(turn["content"]) > 1:
            turn["content"].sort(key=_not_tool_result)
    last = turns[-1]["content"][-1]
    if turns[-1]["role"] == "assistant" and last["type"] == "text":
        # A last assistant turn is a prefill to Anthropic, which refuses trailing whitespace.
        last["text"] = last["text"].rstrip()
    return system, turns


def _not_tool_result(block: dict[str, Any]) -> bool:
    return bool(block["type"] != "tool_result")


def _parts(content: Any, param: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A message's content as (param, part) pairs: a string is one text part."""
    if isinstance(content, str):
        yield param, {"type": "text", "text": content}
    elif isinstance(content, list):
        for index, part in enumerate(content):
            if not isinstance(part, dict):
                raise TranslationError(f"{param}[{index}]", "A content part must be an object.")
            yield f"{param}[{index}]", part
    elif content is not None:
        raise TranslationError(param, "content must be a string or a list of content parts.")


def _text_block(part: dict[str, Any], param: str) -> dict[str, Any] | None:
    """A text part as a text block; None when only whitespace (Anthropic refuses a text
    block without other characters)."""
    text = part.get("text")
    if not isinstance(text, str):
        raise TranslationError(f"{param}.text", "A text part needs a text.")
    if not text.strip():
        return None
    return _with_cache_control({"type": "text", "text": text}, part)


def _with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks = []
    for part_param, part in _parts(content, param):
        if part.get("type") not in ("text", "refusal"):
            raise TranslationError(f"{part_param}.type", "Only text parts are allowed here.")
        text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
        block = _text_block({**part, "text": text}, part_param)
        if block is not None:
            blocks.append(block)
    return blocks


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):  # (most messages: `_text_block` of one text part, inline)
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = []
    for part_param, part in _parts(content, param):
        kind = part.get("type")
        block: dict[str, Any] | None
        if kind == "text":
            block = _text_block(part, part_param)
        elif kind == "image_url":
            block = _image_block(part, part_param)
        elif kind == "file":
            block = _document_block(part, part_param)
        else:
            raise TranslationError(
                f"{part_param}.type", f"Content parts of type {kind!r} are not supported."
            )
        if block is not None:
            blocks.append(block)
    return blocks


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    param = f"{param}.image_url"
    if not isinstance(url, str):
        raise TranslationError(param, "An image_url part needs a url.")
    if url.startswith(("http://", "https://")):
        return _with_cache_control({"type": "image", "source": {"type": "url", "url": url}}, part)
    media_type, data = _base64_data_url(url, param)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise TranslationError(
            param, f"Images of type {media_type} are not supported: JPEG, PNG, GIF or WebP."
        )
    source = {"type": "base64", "media_type": media_type, "data": data}
    return _with_cache_control({"type": "image", "source": source}, part)


def _document_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    file_data = file.get("file_data") if isinstance(file, dict) else None
    param = f"{param}.file"
    if not isinstance(file_data, str):
        raise TranslationError(param, "Only files sent inline (file_data) are supported.")
    media_type, data = _base64_data_url(file_data, f"{param}.file_data")
    if media_type != "application/pdf":
        raise TranslationError(f"{param}.file_data", "Only PDF files are supported.")
    source = {"type": "base64", "media_type": media_type, "data": data}
    return _with_cache_control({"type": "document", "source": source}, part)


def _base64_data_url(url: str, param: str) -> tuple[str, str]:
    """The media type and the base64 data of a `data:` URL."""
    match = _DATA_URL.fullmatch(url)
    if match is None or not match.group(2).endswith(";base64"):
        raise TranslationError(param, "Expected an http(s) URL or a base64 data: URL.")
    return match.group(1).lower(), match.group(3)


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), f"{param}.content")
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise TranslationError(f"{param}.tool_calls", "tool_calls must be a list.")
    for index, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{param}.tool_calls[{index}]"))
    return blocks


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise TranslationError(param, "A tool call needs a function.")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{param}.function.name", "A tool call needs a name.")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise TranslationError(
            f"{param}.function.arguments", "A tool call's arguments must be a JSON object."
        )
    return {
        "type": "tool_use",
        "id": _tool_id(call.get("id"), param),
        "name": name,
        "input": parsed,
    }


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": _tool_id(message.get("tool_call_id"), f"{param}.tool_call_id"),
    }
    content = message.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    else:
        blocks = _text_blocks(content, f"{param}.content")
        if blocks:
            result["content"] = blocks
    return result


def _tool_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise TranslationError(param, "A tool call id is required.")
    return _TOOL_ID_REFUSED.sub("_", value)
