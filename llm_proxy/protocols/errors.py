"""Error shapes of each protocol, and an error of one protocol in the shape of the other.

OpenAI: `{"error": {"message", "type", "param", "code"}}`.
Anthropic: `{"type": "error", "error": {"type", "message"}, "request_id"}`, its `error.type`
named by the HTTP status (the SDKs pick their exception class by status; Claude Code also reads
the type). In a stream that has started: `event: error` with the same body.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from llm_proxy.protocols.sse import encode

# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors").
ANTHROPIC_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The status of each type, for an error event that arrives mid-stream (no status of its own).
ANTHROPIC_STATUSES: Final = {name: status for status, name in ANTHROPIC_TYPES.items()}


def anthropic_type(status: int) -> str:
    """The Anthropic error type for an HTTP status: the table's, else by class (a 4xx the
    request's fault: invalid_request_error; a 408 a timeout; a 5xx api_error)."""
    known = ANTHROPIC_TYPES.get(status)
    if known is not None:
        return known
    if status == 408:
        return "timeout_error"
    return "invalid_request_error" if status < 500 else "api_error"


def anthropic_error(
    status: int, message: str, request_id: str | None = None, type: str | None = None
) -> bytes:
    """The body of an Anthropic error answer."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": type or anthropic_type(status), "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)


def anthropic_error_event(message: str, type: str = "api_error") -> bytes:
    """The `event: error` that ends an Anthropic stream which already started."""
    return encode(
        orjson.dumps({"type": "error", "error": {"type": type, "message": message}}), "error"
    )


def openai_error(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _fallback_message(status: int, body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").strip()
    return f"The upstream answered HTTP {status}" + (f": {text}" if text else ".")


def openai_to_anthropic(status: int, body: bytes, request_id: str | None = None) -> bytes:
    """An upstream's OpenAI-shaped error answer (or any body) as an Anthropic error: the
    status names the type, the message is kept."""
    data = _object(body)
    error = data.get("error") if data is not None else None
    message = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    elif isinstance(error, str):
        message = error
    elif data is not None and isinstance(data.get("message"), str):
        message = data["message"]
    return anthropic_error(status, message or _fallback_message(status, body), request_id)


def anthropic_to_openai(status: int, body: bytes) -> bytes:
    """An upstream's Anthropic error answer (or any body) in OpenAI's shape: the message and
    the Anthropic type kept (`type`), the status as the SDK reads it."""
    data = _object(body)
    error = data.get("error") if data is not None else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return openai_error(
            error["message"],
            kind if isinstance(kind, str) else anthropic_type(status),
            code=kind if isinstance(kind, str) else None,
        )
    return openai_error(_fallback_message(status, body), anthropic_type(status))


class TranslationError(ValueError):
    """A request the other protocol cannot carry (a document block for a chat upstream, a
    response_format Anthropic cannot honour): the client gets a 400 naming `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
