"""The contents of a Gemini client's request (`gemini_client`) as Anthropic Messages turns:
`systemInstruction` as system blocks, `contents` as alternating user and assistant turns
(text, inline and file data, function calls and responses paired by id or name, thought runs
with our signature as thinking blocks), and the turns without their thinking; each mapping is
told in `gemini_client`'s docstring. Also Google's JSON reading that the request shares:
`field` reads a field under either spelling (`camel_fields` puts an object's fields under their
camelCase names at once), `as_object` and `as_list` check a value's type.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from collections.abc import Set
from functools import lru_cache
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import TranslationError

FIRST_USER_TEXT: Final = "."  # the user turn put before a conversation the model starts
IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_ID_REFUSED: Final = re.compile(r"[^A-Za-z0-9_-]")
_CAMEL_HUMP: Final = re.compile(r"(?<!^)(?=[A-Z])")
_SNAKE_HUMP: Final = re.compile(r"_([a-z])")
_UNSUPPORTED_PARTS: Final = ("executableCode", "codeExecutionResult", "toolCall", "toolResponse")
_RESULT_KEYS: Final = ("output", "result", "error")


@lru_cache(maxsize=256)  # a request reads the same few field names again and again
def _snake(name: str) -> str:
    return _CAMEL_HUMP.sub("_", name).lower()


@lru_cache(maxsize=256)
def camel_case(name: str) -> str:
    return _SNAKE_HUMP.sub(lambda match: match.group(1).upper(), name)


def field(data: dict[str, Any], name: str) -> Any:
    """A field under its camelCase `name` or its snake_case spelling (None when absent)."""
    value = data.get(name)
    if value is not None or not data:  # (most objects read are small or empty)
        return value
    return data.get(_snake(name))


def snake_spellings(*names: str) -> frozenset[str]:
    """The snake_case spellings of camelCase field names, for `camel_fields`."""
    return frozenset(_snake(name) for name in names) - frozenset(names)


def camel_fields(data: dict[str, Any], spellings: Set[str]) -> dict[str, Any]:
    """`data` with each field whose snake_case spelling is in `spellings` under its camelCase
    name too, as `field` reads it (the camelCase value unless None): then `data.get(name)`
    reads a field. `data` itself when no key is one of them, the common case, which one set
    operation tells (rather than a second read for every absent field)."""
    if data.keys().isdisjoint(spellings):
        return data
    fields = dict(data)
    for snake in data.keys() & spellings:
        name = camel_case(snake)
        if fields.get(name) is None:
            fields[name] = data[snake]
    return fields


# The keys of a part of a kind refused, under either spelling.
_UNSUPPORTED_KEYS: Final = frozenset(_UNSUPPORTED_PARTS) | snake_spellings(*_UNSUPPORTED_PARTS)


def as_object(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TranslationError(param, f"{param} must be an object.")
    return value


def as_list(value: Any, param: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(param, f"{param} must be a list.")
    return value


def system_blocks(instruction: Any) -> list[dict[str, Any]]:
    if instruction is None:
        return []
    if isinstance(instruction, str):
        parts: list[Any] = [{"text": instruction}]
    else:
        parts = as_list(
            as_object(instruction, "systemInstruction").get("parts"), "systemInstruction.parts"
        )
    blocks = []
    for index, part in enumerate(parts):
        text = part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str):
            raise TranslationError(
                f"systemInstruction.parts[{index}]", "A system instruction part must be text."
            )
        if text.strip():
            blocks.append({"type": "text", "text": text})
    return blocks


class _Conversation:
    """The walk over `contents`: the turns, the function calls awaiting their response (by
    name, in order), which pairs a response without id with its call, and the texts of a run
    of thought parts until its signature (a streamed answer's thoughts come back as one
    content per chunk, as the SDK's chat records them)."""

    __slots__ = ("_pending", "_thought", "_turns")

    def __init__(self) -> None:
        self._turns: list[dict[str, Any]] = []
        self._pending: dict[str, deque[str]] = {}
        self._thought: list[str] = []

    def turns(self, contents: Any) -> list[dict[str, Any]]:
        contents = as_list(contents, "contents")
        for index, content in enumerate(contents):
            if not isinstance(content, dict):  # (the param's path is built only then)
                content = as_object(content, f"contents[{index}]")
            role = content.get("role") or "user"
            if role in ("user", "function", "tool"):
                role = "user"
            elif role == "model":
                role = "assistant"
            else:
                raise TranslationError(f"contents[{index}].role", "role must be user or model.")
            self._turns.append(
                {"role": role, "content": self._blocks(content.get("parts"), role, index)}
            )
        return _alternating(self._turns)

    def _blocks(self, parts: Any, role: str, index: int) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if role != "assistant":
            self._thought.clear()
        if not isinstance(parts, list):
            parts = as_list(parts, f"contents[{index}].parts")
        for number, part in enumerate(parts):
            if not isinstance(part, dict):
                part = as_object(part, f"contents[{index}].parts[{number}]")
            if part.get("thought") is True:
                if role == "assistant":
                    block = _thinking_block(part, self._thought)
                    if block is not None:
                        blocks.append(block)
                continue
            if part and self._thought:
                self._thought.clear()
            text = part.get("text")
            if isinstance(text, str) and part.keys().isdisjoint(_UNSUPPORTED_KEYS):
                if text.strip():  # (a text part, the common one, without a call)
                    blocks.append({"type": "text", "text": text})
                continue
            block = self._block(part, role, index, number)
            if block is not None:
                blocks.append(block)
        return blocks

    def _block(self, part: dict[str, Any], role: str, index: int, number: int) -> Any:
        if not part.keys().isdisjoint(_UNSUPPORTED_KEYS):  # (one set operation for most)
            for name in _UNSUPPORTED_PARTS:
                if field(part, name) is not None:
                    raise TranslationError(
                        f"contents[{index}].parts[{number}].{name}",
                        f"{name} parts are not supported.",
                    )
        text = part.get("text")
        if isinstance(text, str):
            return {"type": "text", "text": text} if text.strip() else None
        param = f"contents[{index}].parts[{number}]"
        inline = field(part, "inlineData")
        if inline is not None:
            return _inline_block(as_object(inline, f"{param}.inlineData"), f"{param}.inlineData")
        file = field(part, "fileData")
        if file is not None:
            return _file_block(as_object(file, f"{param}.fileData"), f"{param}.fileData")
        call = field(part, "functionCall")
        if call is not None:
            if role != "assistant":
                raise TranslationError(
                    f"{param}.functionCall", "A functionCall belongs in a model turn."
                )
            new_id = f"call_{index}_{number}"
            return self._tool_use(as_object(call, f"{param}.functionCall"), param, new_id)
        response = field(part, "functionResponse")
        if response is not None:
            if role != "user":
                raise TranslationError(
                    f"{param}.functionResponse", "A functionResponse belongs in a user turn."
                )
            return self._tool_result(
                as_object(response, f"{param}.functionResponse"), f"{param}.functionResponse"
            )
        return None  # an empty part, or one of metadata only

    def _tool_use(self, call: dict[str, Any], param: str, new_id: str) -> dict[str, Any]:
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError(f"{param}.functionCall.name", "A functionCall needs a name.")
        given = call.get("id")
        id = _TOOL_ID_REFUSED.sub("_", given) if isinstance(given, str) and given else new_id
        self._pending.setdefault(name, deque()).append(id)
        args = call.get("args")
        return {
            "type": "tool_use",
            "id": id,
            "name": name,
            "input": as_object(args, f"{param}.functionCall.args"),
        }

    def _tool_result(self, response: dict[str, Any], param: str) -> dict[str, Any]:
        name = response.get("name")
        given = response.get("id")
        pending = self._pending.get(name) if isinstance(name, str) else None
        if isinstance(given, str) and given:
            id = _TOOL_ID_REFUSED.sub("_", given)
            if pending is not None and id in pending:
                pending.remove(id)
        elif pending:
            id = pending.popleft()
        else:
            raise TranslationError(
                param,
                f"This functionResponse (name {name!r}, no id) answers no earlier functionCall"
                " of that name.",
            )
        result = as_object(response.get("response"), f"{param}.response")
        keys = list(result)
        only = result[keys[0]] if len(keys) == 1 else None
        is_error = keys == ["error"]
        if isinstance(only, str) and keys[0] in _RESULT_KEYS:
            text = only
        else:
            text = orjson.dumps(result).decode()
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
        for number, extra in enumerate(as_list(response.get("parts"), f"{param}.parts")):
            inline = field(as_object(extra, f"{param}.parts[{number}]"), "inlineData")
            if inline is not None:
                where = f"{param}.parts[{number}].inlineData"
                content.append(_inline_block(as_object(inline, where), where))
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": id}
        if content:
            block["content"] = content
        if is_error:
            block["is_error"] = True
        return block


def _thinking_block(part: dict[str, Any], run: list[str]) -> dict[str, Any] | None:
    """A thought part of a model turn: its text joins the run; with a signature of ours, the
    run is a thinking block (None until then, and for a signature not ours)."""
    text = part.get("text")
    if isinstance(text, str):
        run.append(text)
    signature = field(part, "thoughtSignature")
    if signature is None:
        return None
    thinking = "".join(run)
    run.clear()
    decoded = unwrap_signature(signature)
    if decoded is None:
        return None
    return {"type": "thinking", "thinking": thinking, "signature": decoded}


def unwrap_signature(value: Any) -> str | None:
    """The Anthropic signature a thoughtSignature stands for; None when it is not one of ours
    (a real Gemini model's, say, which Anthropic cannot verify)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _b64decode(value).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _b64decode(value: str) -> bytes:
    """Base64 of either alphabet (standard, or URL-safe as the SDK writes), padded or not."""
    value = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def _standard_base64(value: Any, param: str) -> str:
    """Base64 data in the standard alphabet, padded, which Anthropic requires."""
    if not isinstance(value, str) or not value:
        raise TranslationError(param, "data must be a base64 string.")
    data = value.replace("-", "+").replace("_", "/") if "-" in value or "_" in value else value
    return data + "=" * (-len(data) % 4)


def _inline_block(inline: dict[str, Any], param: str) -> dict[str, Any]:
    mime = field(inline, "mimeType")
    data = _standard_base64(field(inline, "data"), f"{param}.data")
    if mime in IMAGE_TYPES:
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    if mime == "application/pdf":
        return {"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}
    if mime == "text/plain":
        try:
            text = _b64decode(data).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise TranslationError(f"{param}.data", "text/plain data must be UTF-8.") from None
        return {"type": "document", "source": {"type": "text", "media_type": mime, "data": text}}
    raise TranslationError(
        f"{param}.mimeType",
        f"inline data of type {mime!r} is not supported: this model takes JPEG, PNG, GIF and"
        " WebP images, PDF and plain text.",
    )


def _file_block(file: dict[str, Any], param: str) -> dict[str, Any]:
    uri = field(file, "fileUri")
    mime = field(file, "mimeType")
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
        raise TranslationError(
            f"{param}.fileUri",
            "Only http(s) file URIs are supported: this model's provider cannot fetch gs:// or"
            " Gemini Files API files. Send the file as inlineData.",
        )
    if uri.startswith("https://generativelanguage.googleapis.com/"):
        raise TranslationError(
            f"{param}.fileUri",
            "Gemini Files API files are not supported: this model's provider cannot fetch"
            " them. Send the file as inlineData.",
        )
    if isinstance(mime, str) and mime.startswith("image/"):
        return {"type": "image", "source": {"type": "url", "url": uri}}
    if mime == "application/pdf":
        return {"type": "document", "source": {"type": "url", "url": uri}}
    raise TranslationError(
        f"{param}.mimeType",
        f"file data of type {mime!r} is not supported: this model takes images and PDFs by URL.",
    )


def _alternating(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turns as Anthropic takes them: none empty, consecutive ones of a role joined (tool
    results first in a turn), a user turn first, no trailing whitespace in a last model turn
    (a prefill)."""
    joined: list[dict[str, Any]] = []
    for turn in turns:
        if not turn["content"]:
            continue
        if joined and joined[-1]["role"] == turn["role"]:
            joined[-1]["content"].extend(turn["content"])
        else:
            joined.append({"role": turn["role"], "content": list(turn["content"])})
    if not joined:
        raise TranslationError("contents", "contents needs a user turn with content.")
    for turn in joined:
        if len(turn["content"]) > 1:  # (one block is in order)
            turn["content"].sort(key=_after_tool_results)
    if joined[0]["role"] == "assistant":
        joined.insert(0, {"role": "user", "content": [{"type": "text", "text": FIRST_USER_TEXT}]})
    last = joined[-1]["content"][-1]
    if joined[-1]["role"] == "assistant" and last["type"] == "text":
        joined[-1]["content"][-1] = {**last, "text": last["text"].rstrip()}
    return joined


def _after_tool_results(block: dict[str, Any]) -> bool:
    kind: str = block["type"]
    return kind != "tool_result"


def without_thinking(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns (as `conversation` gives them) without their thinking blocks (a request
    without thinking)."""
    for turn in turns:
        for block in turn["content"]:
            if block["type"] == "thinking":
                kept = [
                    {**each, "content": [b for b in each["content"] if b["type"] != "thinking"]}
                    for each in turns
                ]
                return _alternating(kept)
    return turns  # no thinking block: the turns are already as `_alternating` makes them


def unsigned_tool_use(turns: list[dict[str, Any]]) -> bool:
    """The last model turn called functions without its signed thinking block first."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            blocks = turn["content"]
            called = any(block["type"] == "tool_use" for block in blocks)
            return called and blocks[0]["type"] != "thinking"
    return False


def conversation(contents: Any) -> list[dict[str, Any]]:
    """`contents` as the turns of an Anthropic request (see `_Conversation`)."""
    return _Conversation().turns(contents)
