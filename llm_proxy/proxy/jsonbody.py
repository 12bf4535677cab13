"""Reading the one field the proxy needs from a request body, and rewriting it without
re-encoding anything else (forward compatibility: unknown fields, number formats, key order
and big integers reach the upstream exactly as the client wrote them)."""

from __future__ import annotations

import json
import re
from typing import Any

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

    The fast path splices the one `"model": "<old>"` occurrence; a body where that is
    ambiguous (the same pair nested elsewhere, or an escaped spelling) is re-encoded with the
    stdlib, which keeps big integers exact. Either result is checked before it is used.
    """
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(orjson.dumps(old)))
    matches = pattern.findall(body, 0)
    if len(matches) == 1:
        spliced = pattern.sub(b'"model":' + orjson.dumps(new), body, count=1)
        if orjson.loads(spliced).get("model") == new:
            return spliced
    data = exact_loads(body)
    data["model"] = new
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
