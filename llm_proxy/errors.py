"""Typed errors and the one place that renders them in the client's protocol's shape.

Anything in the proxy may raise a :class:`ProxyError`; the errors middleware turns it into
``{"error": {"message", "type", "param", "code"}}`` with the right status, or, for a client of
the Anthropic Messages API, ``{"type": "error", "error": {"type", "message"}, "request_id"}``
(`llm_proxy.protocols.errors`). Once a stream has started, the relay finishes it with
:func:`sse_error_event` instead.
"""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import LooseHeaders

from llm_proxy.protocols.errors import anthropic_error, anthropic_error_event
from llm_proxy.protocols.gemini_client import gemini_error

INVALID_REQUEST: Final = "invalid_request_error"
API_ERROR: Final = "api_error"


class ProxyError(Exception):
    """An error the proxy answers itself (as opposed to one passed through from upstream)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: LooseHeaders | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers


def error_body(
    message: str, type: str = INVALID_REQUEST, code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def error_response(
    err: ProxyError,
    anthropic: bool = False,
    request_id: str | None = None,
    gemini: bool = False,
) -> web.Response:
    """`err` as an answer: OpenAI's shape, or Anthropic's for its clients (`anthropic`), its
    type named by the status as Anthropic's SDKs expect, with the `request_id`; or Google's
    for Gemini clients (`gemini`: `{"error": {"code", "message", "status"}}`)."""
    if gemini:
        message = err.message
        if err.param and err.param not in message:  # Google's shape has no `param`
            message = f"{err.param}: {message}"
        return web.Response(
            status=err.status,
            body=gemini_error(err.status, message),
            content_type="application/json",
            headers=err.headers,
        )
    if not anthropic:
        body = error_body(err.message, err.type, err.code, err.param)
        return web.Response(
            status=err.status, body=body, content_type="application/json", headers=err.headers
        )
    response = web.Response(
        status=err.status,
        body=anthropic_error(err.status, err.message, request_id),
        content_type="application/json",
        headers=err.headers,
    )
    if request_id is not None:
        response.headers["request-id"] = request_id  # where Anthropic's SDKs read it
    return response


def sse_error_event(
    message: str,
    type: str = API_ERROR,
    code: str | None = None,
    anthropic: bool = False,
    gemini: bool = False,
) -> bytes:
    """The error event that ends a stream which already started: OpenAI's `data:` error,
    Anthropic's `event: error` (`anthropic`), or Google's error object (`gemini`)."""
    if gemini:
        return b"data: " + gemini_error(502, message) + b"\r\n\r\n"
    if anthropic:
        return anthropic_error_event(message, type)
    return b"data: " + error_body(message, type, code) + b"\n\n"


# Constructors for the errors the proxy makes, so wording and codes live in one place.


def invalid_json(detail: str) -> ProxyError:
    return ProxyError(400, f"The request body is not valid JSON: {detail}", code="invalid_json")


def bad_param(param: str, message: str) -> ProxyError:
    return ProxyError(400, message, code="invalid_value", param=param)


def model_not_found(model: str) -> ProxyError:
    return ProxyError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


# Why a connection could not be made, in words (ConnectError.kind -> text).
_CONNECT_CAUSES: Final = {
    "dns": "its host name does not resolve",
    "refused": "connection refused",
    "unreachable": "no route to its host",
    "tls": "the TLS handshake failed (certificate or protocol)",
    "proxy": "the forward proxy refused or failed the tunnel",
}


def upstream_unreachable(provider: str, kind: str | None = None) -> ProxyError:
    cause = _CONNECT_CAUSES.get(kind or "")
    suffix = f" ({cause})" if cause else ""
    return ProxyError(
        502,
        f"Upstream provider {provider!r} is unreachable{suffix}.",
        type=API_ERROR,
        code="upstream_unreachable",
    )


def upstream_bad_answer(provider: str, disconnected: bool) -> ProxyError:
    what = (
        "closed the connection before answering"
        if disconnected
        else "answered with an invalid HTTP response"
    )
    return ProxyError(
        502, f"Upstream provider {provider!r} {what}.", type=API_ERROR, code="upstream_error"
    )


def upstream_busy(provider: str, why: str) -> ProxyError:
    """The proxy's own limit (connections to the provider, file descriptors), not the
    provider's failure: 503, retry shortly."""
    return ProxyError(
        503,
        f"No connection to upstream provider {provider!r} is available ({why}); retry shortly.",
        type=API_ERROR,
        code="upstream_busy",
        headers={"Retry-After": "1"},
    )


def upstream_timeout(provider: str, seconds: float, what: str = "did not answer") -> ProxyError:
    return ProxyError(
        504,
        f"Upstream provider {provider!r} {what} within {seconds:g}s.",
        type=API_ERROR,
        code="upstream_timeout",
    )
