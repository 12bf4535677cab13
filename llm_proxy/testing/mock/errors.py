"""Errors in OpenAI's shape (or Anthropic's, on the Messages routes: `anthropic_error`): raised
anywhere in the mock as a `MockError` and rendered in one place, `render_errors` (the app's only
middleware), which also answers an unknown path or method."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler


class MockError(Exception):
    """An error answer, in OpenAI's shape unless `body` is given; `render_errors` renders it,
    with `headers`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body = body or {
            "error": {
                "message": message,
                "type": "server_error" if status >= 500 else "invalid_request_error",
                "param": param,
                "code": code,
            }
        }


def anthropic_error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> MockError:
    """An error in Anthropic's shape, with its `request-id` (as a header and in the body)."""
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_mock",
    }
    return MockError(
        status, message, body=body, headers={"request-id": "req_mock", **(headers or {})}
    )


def forced(status: int) -> MockError:
    """The error a `mock_status` field asks for."""
    return MockError(status, f"mock upstream error {status}", code=f"mock_{status}")


def not_found(what: str, object_id: str, param: str | None = None) -> MockError:
    return MockError(404, f"No {what} found with id '{object_id}'.", param=param)


def missing(name: str) -> MockError:
    return MockError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error the mock answers with, in OpenAI's shape: a `MockError`, and an unknown path
    or method (as OpenAI's `Invalid URL (POST /v1/nothing)`)."""
    try:
        return await handler(request)
    except MockError as e:
        error = e
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as e:
        error = MockError(e.status, f"Invalid URL ({request.method} {request.path})")
    return web.json_response(
        error.body,
        status=error.status,
        headers=error.headers,
        dumps=lambda o: orjson.dumps(o).decode(),
    )
