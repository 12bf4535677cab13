"""Anthropic's Messages API: `POST /v1/messages` (streamed or not) and
`POST /v1/messages/count_tokens`, checked as Anthropic checks them and failing as it fails, every
error in its shape (`{"type": "error", "error": {"type", "message"}}`).

Checked, in Anthropic's order: the key (`x-api-key`, only when the mock has one:
`MockOptions.anthropic_key`; 401 authentication_error), the `anthropic-version` header, the JSON
body, then the fields (400 invalid_request_error): `model`, `max_tokens` (not for count_tokens),
`messages` non-empty, starting with a user turn, every `tool_use` answered by a `tool_result` in
the next turn and every `tool_result` answering one, a thinking budget below `max_tokens`.
(A `system` turn inside `messages` is accepted: Claude Code sends one, under a beta.)

Forced failures, per request (body fields) or for the whole instance (`MockOptions`):
`mock_status` / `fail_status` with `mock_error_type` / `fail_type` (default: the status's type)
and `mock_retry_after` / `retry_after` (a `retry-after` header); `fail_times` fails only the
first N requests; `mock_error_after` / `error_after` ends a stream with an `event: error` after
that many content deltas."""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from llm_proxy.testing.mock.anthropic_answer import (
    answer_events,
    count_input_tokens,
    message,
    plan_answer,
)
from llm_proxy.testing.mock.errors import MockError, anthropic_error
from llm_proxy.testing.mock.state import OPTIONS, STATE
from llm_proxy.testing.mock.wire import record, send, stream_chunks, stream_delay

# Anthropic's error type for each status it answers (docs.anthropic.com, "Errors").
ERROR_TYPES: Final = {
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
_HEADERS: Final = {"request-id": "req_mock"}


def invalid(message: str) -> MockError:
    return anthropic_error(400, "invalid_request_error", message)


def _check_headers(request: web.Request) -> None:
    expected = request.app[OPTIONS].anthropic_key
    if expected is not None:
        key = request.headers.get("x-api-key")
        if key is None:
            raise anthropic_error(401, "authentication_error", "x-api-key header is required")
        if key != expected:
            raise anthropic_error(401, "authentication_error", "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        raise invalid("anthropic-version: header is required")


async def _read(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, recorded first (a refused request too), its headers checked."""
    body = await request.read()
    record(request, body)
    _check_headers(request)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise invalid("There was an issue with the JSON body of your request.")
    return data


def _tool_ids(message: dict[str, Any], kind: str) -> list[str]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    key = "id" if kind == "tool_use" else "tool_use_id"
    return [
        str(block.get(key))
        for block in content
        if isinstance(block, dict) and block.get("type") == kind
    ]


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: at least one message is required")
    for index, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "system"):
            raise invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
    # (index, turn) of the user and assistant turns: a system turn sits between them unseen.
    turns = [(index, turn) for index, turn in enumerate(messages) if turn["role"] != "system"]
    if not turns or turns[0][1]["role"] != "user":
        raise invalid('messages: first message must use the "user" role')
    for position, (index, turn) in enumerate(turns):
        previous = turns[position - 1][1] if position else {}
        offered = set(_tool_ids(previous, "tool_use"))
        if stray := [i for i in _tool_ids(turn, "tool_result") if i not in offered]:
            raise invalid(
                f"messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks:"
                f" {', '.join(stray)}. Each `tool_result` block must have a corresponding"
                " `tool_use` block in the previous message."
            )
        if position + 1 == len(turns):
            break
        answered = set(_tool_ids(turns[position + 1][1], "tool_result"))
        if missing := [i for i in _tool_ids(turn, "tool_use") if i not in answered]:
            raise invalid(
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks"
                f" immediately after: {', '.join(missing)}. Each `tool_use` block must have"
                " a corresponding `tool_result` block in the next message."
            )


def _check(data: dict[str, Any], *, needs_max_tokens: bool) -> None:
    if not isinstance(data.get("model"), str):
        raise invalid("model: Field required")
    max_tokens = data.get("max_tokens")
    if needs_max_tokens and max_tokens is None:
        raise invalid("max_tokens: Field required")
    if needs_max_tokens and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    _check_messages(data.get("messages"))
    thinking = data.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise invalid("thinking.enabled.budget_tokens: Input should be at least 1024")
        if isinstance(max_tokens, int) and budget >= max_tokens:
            raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`")


def _forced(request: web.Request, data: dict[str, Any]) -> None:
    """The failure the request (`mock_status`) or the instance (`fail_status`) asks for."""
    options = request.app[OPTIONS]
    status, error_type = data.get("mock_status"), data.get("mock_error_type")
    retry_after = data.get("mock_retry_after")
    if status is None and options.fail_status is not None:
        attempt = request.app[STATE].tally("messages")
        if options.fail_times == 0 or attempt <= options.fail_times:
            status, error_type = options.fail_status, options.fail_type
            retry_after = options.retry_after
    if status is None:
        return
    status = int(status)
    error_type = error_type or ERROR_TYPES.get(status, "api_error")
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    raise anthropic_error(status, error_type, f"mock upstream error {status}", headers)


async def messages(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    _check(data, needs_max_tokens=True)
    _forced(request, data)
    options, state = request.app[OPTIONS], request.app[STATE]
    answer = plan_answer(data, state.new_id("msg_"), stream_chunks(request, data), options.tool)
    if not data.get("stream"):
        return web.Response(
            body=orjson.dumps(message(answer)), content_type="application/json", headers=_HEADERS
        )
    error_after = data.get("mock_error_after", options.error_after)
    error_type = data.get("mock_error_type") or options.fail_type or "overloaded_error"
    events = answer_events(
        answer, None if error_after is None else int(error_after), error_type=error_type
    )
    delay = stream_delay(request, data)
    return await send(request, "text/event-stream", events, delay, headers=_HEADERS)


async def count_tokens(request: web.Request) -> web.Response:
    data = await _read(request)
    _check(data, needs_max_tokens=False)
    return web.Response(
        body=orjson.dumps({"input_tokens": count_input_tokens(data)}),
        content_type="application/json",
        headers=_HEADERS,
    )
