"""Renders every error the proxy answers itself in the client's protocol's shape (OpenAI's, or
Anthropic's on the Messages API's paths, whatever failed: the key, a limit, the body, the
route). The one place that does."""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy.errors import API_ERROR, ProxyError, error_response
from llm_proxy.keys import STATE
from llm_proxy.proxy.state import CLIENT_CLOSED, speaks_anthropic, speaks_gemini

log = structlog.get_logger()

# A client without a valid key does not keep a connection open, nor one whose body is late.
_CLOSES: Final = frozenset({401, 408})
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets exactly one response: a handler's, or an OpenAI-shaped error."""
    try:
        return await handler(request)
    except ProxyError as err:
        state = request[STATE]
        state.error_code = err.code or err.type
        response = _answer(request, err, state.request_id)
        if err.status in _CLOSES:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        made = _from_http_exception(request, exc)
        state = request[STATE]
        state.error_code = made.code or made.type
        return _answer(request, made, state.request_id)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        # The client hung up while its answer was being written (the handler was not
        # cancelled yet): a 499 in the access log, not an error. aiohttp drops the reply.
        request[STATE].final_status = CLIENT_CLOSED
        return web.Response(status=CLIENT_CLOSED)
    except Exception:
        log.exception("unhandled_error", path=_bounded(request.path))
        state = request[STATE]
        state.error_code = "internal_error"
        return _answer(
            request,
            ProxyError(500, "Internal proxy error.", type=API_ERROR, code="internal_error"),
            state.request_id,
        )


def _answer(request: web.Request, err: ProxyError, request_id: str) -> web.Response:
    """`err` in the shape of the client's protocol, told by the path."""
    path = request.path
    return error_response(err, speaks_anthropic(path), request_id, speaks_gemini(path))


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ProxyError:
    path = _bounded(request.path)
    if exc.status == 404:
        message = f"Unknown request URL: {request.method} {path}."
    elif exc.status == 405:
        message = f"Method {request.method} is not allowed for {path}."
    else:
        message = exc.text or exc.reason
        if message.startswith(f"{exc.status}: "):
            message = message[len(f"{exc.status}: ") :]
    return ProxyError(exc.status, message, code=_HTTP_CODES.get(exc.status))


_ECHO_MAX: Final = 200


def _bounded(text: str) -> str:
    """A client-chosen string as it may be echoed in an error (never more than a line)."""
    return text if len(text) <= _ECHO_MAX else text[:_ECHO_MAX] + "..."
