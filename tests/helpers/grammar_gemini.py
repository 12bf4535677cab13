"""The grammar of a Gemini streamGenerateContent stream (`?alt=sse`), checked on the bytes a
client receives: `check_gemini_stream` for every streamed Gemini answer in the suite,
`accumulate` for what it says. Written from the API reference (GenerateContentResponse) and
from what the google-genai SDK parses, independently of the proxy's own SSE reader:

* each event is one `data: <JSON object>` line and a blank line; no comments, no `event:`
  (the SDK reads a line that is not `data: ` as raw JSON, and fails on it);
* a response has one candidate (index 0) whose content is `{"role": "model", "parts": [...]}`
  with at least one part (the SDK's chat drops a turn otherwise), each part one of text or
  functionCall (`thought` and `thoughtSignature`, base64, beside it);
* finishReason is on the last response only, which ends the stream; usageMetadata's total is
  the sum of its counts; modelVersion and responseId are the same on every chunk;
* an error is `{"error": {"code": int, "message": str, "status": str}}`, "error" its only and
  first key (the SDK checks that the chunk starts with `{"error":`), and ends the stream.
"""

from __future__ import annotations

import base64
import json
from typing import Any

FINISH_REASONS = frozenset(
    {
        "FINISH_REASON_UNSPECIFIED",
        "STOP",
        "MAX_TOKENS",
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "OTHER",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
    }
)
_RESPONSE_KEYS = frozenset(
    {"candidates", "usageMetadata", "modelVersion", "responseId", "promptFeedback", "createTime"}
)
_CANDIDATE_KEYS = frozenset(
    {"content", "finishReason", "index", "safetyRatings", "citationMetadata", "finishMessage"}
)
# What Google adds to usage (and the proxy passes through untouched).
_USAGE_DETAILS = frozenset(
    {
        "promptTokensDetails",
        "candidatesTokensDetails",
        "cacheTokensDetails",
        "toolUsePromptTokensDetails",
        "trafficType",
    }
)
_USAGE_KEYS = frozenset(
    {
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
    }
)


def gemini_events(raw: bytes) -> list[dict[str, Any]]:
    """The events' JSON objects, each checked to be one `data:` line and a blank line."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    assert text.endswith("\n\n"), f"the stream does not end with a blank line: {text[-80:]!r}"
    events = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 1, f"an event is not one line: {block!r}"
        assert lines[0].startswith("data: "), f"an event is not a data: line: {block!r}"
        data = json.loads(lines[0][len("data: ") :])
        assert isinstance(data, dict), f"an event is not a JSON object: {block!r}"
        events.append(data)
    return events


def _check_error(data: dict[str, Any], where: str) -> None:
    assert list(data) == ["error"], f"{where}: an error object with more than an error: {data}"
    error = data["error"]
    assert isinstance(error, dict), f"{where}: error is not an object"
    assert set(error) <= {"code", "message", "status", "details"}, f"{where}: error keys {error}"
    assert isinstance(error.get("code"), int), f"{where}: error.code is not an integer"
    assert isinstance(error.get("message"), str), f"{where}: error.message is not text"
    assert isinstance(error.get("status"), str), f"{where}: error.status is not text"
    assert error["status"].isupper(), f"{where}: error.status is not a Google status"


def _check_part(part: Any, where: str) -> None:
    assert isinstance(part, dict), f"{where}: a part is not an object"
    data = set(part) - {"thought", "thoughtSignature"}
    assert len(data) == 1, f"{where}: a part holds not exactly one datum: {part}"
    if "thought" in part:
        assert part["thought"] is True, f"{where}: thought is not true"
    if "thoughtSignature" in part:
        assert isinstance(part["thoughtSignature"], str)
        base64.b64decode(part["thoughtSignature"], validate=True)
    if "text" in part:
        assert isinstance(part["text"], str), f"{where}: text is not a string"
        return
    call = part.get("functionCall")
    assert isinstance(call, dict), f"{where}: a part neither text nor functionCall: {part}"
    assert "thought" not in part, f"{where}: a function call marked as a thought"
    assert set(call) <= {"id", "name", "args"}, f"{where}: functionCall keys {call}"
    assert isinstance(call.get("name"), str) and call["name"], f"{where}: a call without name"
    assert isinstance(call.get("args"), dict), f"{where}: a call's args are not an object"
    if "id" in call:
        assert isinstance(call["id"], str) and call["id"], f"{where}: a call's id is not text"


def _check_usage(usage: Any, where: str) -> None:
    assert isinstance(usage, dict), f"{where}: usageMetadata is not an object"
    assert set(usage) <= _USAGE_KEYS | _USAGE_DETAILS, f"{where}: usageMetadata keys {usage}"
    for name, value in usage.items():
        if name in _USAGE_DETAILS:
            continue  # per-modality breakdowns and the traffic type: Google's, passed through
        assert isinstance(value, int) and value >= 0, f"{where}: usageMetadata.{name} = {value}"
    total = (
        usage.get("promptTokenCount", 0)
        + usage.get("candidatesTokenCount", 0)
        + usage.get("thoughtsTokenCount", 0)
        + usage.get("toolUsePromptTokenCount", 0)
    )
    assert usage.get("totalTokenCount") == total, f"{where}: totalTokenCount is not the sum"
    cached = usage.get("cachedContentTokenCount", 0)
    assert cached <= usage.get("promptTokenCount", 0), f"{where}: more cached than prompt tokens"


def check_gemini_stream(raw: bytes) -> list[dict[str, Any]]:
    """The stream's events, each checked (the module's docstring); the last is a response with
    a finishReason, or an error object."""
    events = gemini_events(raw)
    assert events, "an empty stream"
    identity: tuple[Any, Any] | None = None
    for number, data in enumerate(events):
        where = f"event {number}"
        last = number == len(events) - 1
        if "error" in data:
            _check_error(data, where)
            assert last, f"{where}: an event after the error"
            continue
        assert set(data) <= _RESPONSE_KEYS, f"{where}: unknown keys {set(data) - _RESPONSE_KEYS}"
        here = (data.get("modelVersion"), data.get("responseId"))
        assert all(isinstance(value, str) and value for value in here), f"{where}: {here}"
        assert identity in (None, here), f"{where}: modelVersion/responseId changed: {here}"
        identity = here
        candidates = data.get("candidates")
        assert isinstance(candidates, list) and len(candidates) == 1, f"{where}: candidates"
        candidate = candidates[0]
        assert set(candidate) <= _CANDIDATE_KEYS, f"{where}: candidate keys {candidate}"
        assert candidate.get("index") == 0, f"{where}: candidate index"
        content = candidate.get("content")
        assert isinstance(content, dict) and content.get("role") == "model", f"{where}: role"
        parts = content.get("parts")
        assert isinstance(parts, list) and parts, f"{where}: a content without parts"
        for part in parts:
            _check_part(part, where)
        if "usageMetadata" in data:
            _check_usage(data["usageMetadata"], where)
        if "finishReason" in candidate:
            assert candidate["finishReason"] in FINISH_REASONS, f"{where}: finishReason"
            assert last, f"{where}: a chunk after the finishReason"
            assert "usageMetadata" in data, f"{where}: the last chunk has no usageMetadata"
        else:
            assert not last, f"{where}: the stream ends without a finishReason or an error"
    return events


def accumulate(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a checked stream says: text, thoughts, signatures, function calls, finishReason,
    usageMetadata, error."""
    said: dict[str, Any] = {
        "text": "",
        "thoughts": "",
        "signatures": [],
        "calls": [],
        "finish": None,
        "usage": None,
        "error": None,
    }
    for data in events:
        if "error" in data:
            said["error"] = data["error"]
            continue
        candidate = data["candidates"][0]
        for part in candidate["content"]["parts"]:
            if "functionCall" in part:
                said["calls"].append(part["functionCall"])
            elif part.get("thought"):
                said["thoughts"] += part["text"]
            else:
                said["text"] += part["text"]
            if "thoughtSignature" in part:
                said["signatures"].append(part["thoughtSignature"])
        said["finish"] = candidate.get("finishReason", said["finish"])
        said["usage"] = data.get("usageMetadata", said["usage"])
    return said
