"""Reading the one field the proxy needs from a request body, and rewriting it without
re-encoding anything else (forward compatibility: unknown fields, number formats, key order
and big integers reach the upstream exactly as the client wrote them)."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

from llm_proxy import errors


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_json(str(exc)) from None
    if not isinstance(data, dict):
        raise errors.ProxyError(
            400, "The request body must be a JSON object.", code="invalid_request_body"
        )
    return data


def has_duplicate_model(body: bytes) -> bool:
    """Does the top-level object name `model` twice? (The proxy would authorize one and an
    upstream might use the other.) Cheap unless the body could: `"model"` twice, or a key
    spelled with escapes (`"\\u006dodel"`)."""
    if body.count(b'"model"') < 2 and b"\\u006" not in body and b"\\u0064" not in body:
        return False
    count = 0

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        count = sum(1 for key, _ in items if key == "model")  # the top level comes last
        return dict(items)

    exact_loads(body, object_pairs_hook=pairs)
    return count > 1


def exact_loads(body: bytes, **kwargs: Any) -> Any:
    """The stdlib parser (exact big integers, hooks), with deep nesting a 400, not a crash."""
    try:
        return json.loads(body, **kwargs)
    except RecursionError:
        raise errors.invalid_json("it is nested too deeply") from None
    except ValueError as exc:
        raise errors.invalid_json(str(exc)) from None


def replace_model(body: bytes, old: str, new: str) -> bytes:
    """`body` with its top-level `"model": old` replaced by `new`, all other bytes untouched.

    The fast path splices the value of the one `"model": "<old>"` occurrence (checked before
    it is used); a body where that is ambiguous (the same pair nested elsewhere, or an escaped
    spelling) has the top-level member's value found by walking the object (`with_model`).
    """
    was = orjson.dumps(old)
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(was))
    found = pattern.search(body)
    if found is not None and pattern.search(body, found.end()) is None:
        start = found.end() - len(was)
        spliced = body[:start] + orjson.dumps(new) + body[found.end() :]
        if orjson.loads(spliced).get("model") == new:
            return spliced
    return with_model(body, parse_object(body), new)[0]


def with_model(body: bytes, data: dict[str, Any], model: str) -> tuple[bytes, dict[str, Any]]:
    """`body` and `data` with the top-level `model` set to `model`, whatever it was (another
    name, null, any value) or added first when absent: only that member's value changes, every
    other byte stays as the client wrote it (an Azure deployment route, where the path names
    the model). `body` parsed as `data` already."""
    if "model" not in data:
        start = body.find(b"{")
        rest = body[start + 1 :]
        joiner = b"," if rest.strip() and not rest.lstrip().startswith(b"}") else b""
        new = body[: start + 1] + b'"model":' + orjson.dumps(model) + joiner + rest
        return new, {"model": model, **data}
    if data["model"] == model:
        return body, data
    text = body.decode()  # UTF-8 already (orjson parsed it): decoding round-trips exactly
    start, end = _model_span(text)
    new = (text[:start] + orjson.dumps(model).decode() + text[end:]).encode()
    return new, {**data, "model": model}


_DECODER: Final = json.JSONDecoder()


def _model_span(text: str) -> tuple[int, int]:
    """Where the value of the first top-level `model` member of the JSON object `text` starts
    and ends: its members are walked with the stdlib's scanner (each value skipped whole, so a
    nested `"model"` or one in a string is never taken for it; a key spelled with escapes is
    decoded)."""
    at = _past_space(text, _past_space(text, 0) + 1)  # past the `{`
    while True:
        try:
            key, at = _DECODER.raw_decode(text, at)
            at = _past_space(text, _past_space(text, at) + 1)  # past the `:`
            _, end = _DECODER.raw_decode(text, at)
        except RecursionError:
            raise errors.invalid_json("it is nested too deeply") from None
        if key == "model":
            return at, end
        at = _past_space(text, _past_space(text, end) + 1)  # past the `,`


def _past_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at
