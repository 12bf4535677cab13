"""The grammar of an OpenAI chat-completions stream, checked on the bytes a client receives:
`check_openai_stream` for every streamed OpenAI answer in the suite, `accumulate` for what it
says. Written from OpenAI's API reference, independently of the proxy's own SSE reader."""

from __future__ import annotations

import json
from typing import Any

DONE = "[DONE]"


def _events(raw: bytes) -> list[str]:
    """The `data:` payloads of each event; comments (`: ping`) skipped. Each event must be
    one `data:` line (OpenAI's streams never use `event:` or multi-line data)."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    assert text.endswith("\n\n"), f"the stream does not end with a blank line: {text[-80:]!r}"
    payloads = []
    for block in text[:-2].split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 1, f"an event is not one data: line: {block!r}"
        assert lines[0].startswith("data: "), f"an event is not a data: line: {block!r}"
        payloads.append(lines[0][len("data: ") :])
    return payloads


def _error(payload: str) -> dict[str, Any] | None:
    """The payload as an OpenAI error event, or None when it is not one."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or "error" not in data:
        return None
    error = data["error"]
    assert isinstance(error, dict), f"an error event's error is not an object: {payload}"
    assert isinstance(error.get("message"), str), f"an error event without message: {payload}"
    assert isinstance(error.get("type"), str), f"an error event without type: {payload}"
    assert set(data) == {"error"}, f"an error event with more than an error: {payload}"
    return data


class _Choice:
    """One choice index's state along the stream."""

    def __init__(self) -> None:
        self.seen = False
        self.finished = False
        self.tool_ids: dict[int, str] = {}
        self.arguments: dict[int, str] = {}

    def check(self, choice: dict[str, Any], where: str) -> None:
        assert not self.finished, f"{where}: a chunk after this choice's finish_reason"
        delta = choice.get("delta")
        assert isinstance(delta, dict), f"{where}: a choice without a delta object"
        if not self.seen:
            assert delta.get("role") == "assistant", f"{where}: the first delta has no role"
        self.seen = True
        for call in delta.get("tool_calls") or []:
            self._tool_call(call, where)
        if choice.get("finish_reason") is not None:
            assert isinstance(choice["finish_reason"], str), f"{where}: finish_reason type"
            self.finished = True
            for index, arguments in self.arguments.items():
                try:
                    json.loads(arguments)
                except ValueError:
                    raise AssertionError(
                        f"{where}: tool call {index}'s arguments are not JSON: {arguments!r}"
                    ) from None

    def _tool_call(self, call: dict[str, Any], where: str) -> None:
        index = call.get("index")
        assert isinstance(index, int), f"{where}: a tool call delta without an index"
        function = call.get("function") or {}
        if index not in self.tool_ids:
            assert isinstance(call.get("id"), str), f"{where}: tool call {index} starts without id"
            assert call.get("type") == "function", f"{where}: tool call {index} has no type"
            assert isinstance(function.get("name"), str) and function["name"], (
                f"{where}: tool call {index} starts without a name"
            )
            assert index == len(self.tool_ids), f"{where}: tool call index {index} skips one"
            self.tool_ids[index] = call["id"]
            self.arguments[index] = ""
        else:
            assert call.get("id") in (None, self.tool_ids[index]), (
                f"{where}: tool call {index} changes its id"
            )
            assert function.get("name") is None, f"{where}: tool call {index} renamed"
        arguments = function.get("arguments")
        if arguments is not None:
            assert isinstance(arguments, str), f"{where}: arguments are not a string"
            self.arguments[index] += arguments


def check_openai_stream(raw: bytes, include_usage: bool | None = None) -> list[dict[str, Any]]:
    """The chunks (and a final error event) of a chat-completions stream, after checking its
    grammar: `data: JSON` events of `chat.completion.chunk` objects of one id; the first delta
    of each choice carries the role; exactly one finish_reason per choice, nothing after it;
    a tool call's first delta carries id, type and name, and its arguments concatenate to
    JSON; with `include_usage` True one usage chunk (`choices: []`) after the finishes, with
    False none (None: not checked); `data: [DONE]` last. Or: the chunks so far, then one error
    event, last (no `[DONE]`). Raises AssertionError saying what is wrong."""
    payloads = _events(raw)
    assert payloads, "the stream has no event"
    error = _error(payloads[-1])
    if error is None:
        assert payloads[-1] == DONE, f"the stream does not end with [DONE]: {payloads[-1]!r}"
        payloads = payloads[:-1]
    else:
        payloads = payloads[:-1]
    chunks: list[dict[str, Any]] = []
    choices: dict[int, _Choice] = {}
    usage_chunks = 0
    for number, payload in enumerate(payloads):
        where = f"event {number}"
        assert payload != DONE, f"{where}: [DONE] before the end"
        assert _error(payload) is None, f"{where}: an error event before the end"
        chunk = json.loads(payload)
        assert isinstance(chunk, dict), f"{where}: not a JSON object"
        assert chunk.get("object") == "chat.completion.chunk", f"{where}: object is not a chunk"
        assert isinstance(chunk.get("id"), str), f"{where}: no id"
        assert not chunks or chunk["id"] == chunks[0]["id"], f"{where}: the id changed"
        assert isinstance(chunk.get("created"), int), f"{where}: no created"
        assert isinstance(chunk.get("model"), str), f"{where}: no model"
        assert isinstance(chunk.get("choices"), list), f"{where}: no choices"
        if chunk.get("usage") is not None:
            assert include_usage is not False, f"{where}: usage although not asked for"
            assert chunk["choices"] == [], f"{where}: the usage chunk has choices"
            _check_usage(chunk["usage"], where)
            usage_chunks += 1
        else:
            assert chunk["choices"], f"{where}: a chunk without choices nor usage"
            assert usage_chunks == 0, f"{where}: a chunk after the usage chunk"
        for choice in chunk["choices"]:
            index = choice.get("index")
            assert isinstance(index, int), f"{where}: a choice without index"
            choices.setdefault(index, _Choice()).check(choice, where)
        chunks.append(chunk)
    if error is not None:
        return [*chunks, error]
    assert choices, "the stream has no choice"
    unfinished = [index for index, choice in choices.items() if not choice.finished]
    assert not unfinished, f"choices without a finish_reason: {unfinished}"
    if include_usage:
        assert usage_chunks == 1, f"{usage_chunks} usage chunks, expected 1"
    assert usage_chunks <= 1, f"{usage_chunks} usage chunks"
    return chunks


def _check_usage(usage: Any, where: str) -> None:
    assert isinstance(usage, dict), f"{where}: usage is not an object"
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage.get(field), int), f"{where}: usage.{field} is not an integer"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], (
        f"{where}: total_tokens is not prompt + completion tokens"
    )


def accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a checked stream says for choice 0: `content`, `reasoning_content`, `tool_calls`
    (id, name, arguments: the concatenated string), `finish_reason`, `usage` and `error`."""
    said: dict[str, Any] = {
        "content": "",
        "reasoning_content": "",
        "tool_calls": [],
        "finish_reason": None,
        "usage": None,
        "error": None,
    }
    for chunk in chunks:
        if "error" in chunk:
            said["error"] = chunk["error"]
            continue
        if chunk.get("usage") is not None:
            said["usage"] = chunk["usage"]
        for choice in chunk["choices"]:
            if choice["index"] != 0:
                continue
            delta = choice["delta"]
            said["content"] += delta.get("content") or ""
            said["reasoning_content"] += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                if call["index"] == len(said["tool_calls"]):
                    name = call["function"]["name"]
                    said["tool_calls"].append({"id": call["id"], "name": name, "arguments": ""})
                said["tool_calls"][call["index"]]["arguments"] += (
                    call.get("function", {}).get("arguments") or ""
                )
            said["finish_reason"] = choice.get("finish_reason") or said["finish_reason"]
    return said
