"""A fake Anthropic Messages API on loopback for the proxy's tests: it checks what Anthropic
checks (the key in `x-api-key`, an `anthropic-version`, a JSON body with `model`, `max_tokens`
and `messages`), answers in Anthropic's shapes, and records every request (headers and body).
A test scripts its answers with `Fake.answers` (one per request, in order; the default is a
plain text Message or stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.helpers import serve

KEY = "sk-ant-provider-secret"
VERSION = "2023-06-01"

Answer = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


@dataclass
class Fake:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)  # scripted, consumed in order


def error(status: int, type: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": "req_up"}
    return web.json_response(body, status=status)


def message(model: str, text: str = "Hello!", **extra: Any) -> dict[str, Any]:
    return {
        "id": "msg_01fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 3,
            "cache_read_input_tokens": 5,
            "output_tokens": 7,
        },
        **extra,
    }


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def text_stream(model: str, pieces: list[str], usage_out: int = 7) -> list[bytes]:
    """A real-shaped text stream (with a ping and an event type no SDK knows yet)."""
    start = message(model, "")
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 5,
        "output_tokens": 1,
    }
    events = [
        event("message_start", {"type": "message_start", "message": start}),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        event("ping", {"type": "ping"}),
    ]
    for piece in pieces:
        events.append(
            event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        )
    events += [
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event("future_event", {"type": "future_event", "detail": "kept as sent"}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage_out},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
    return events


async def send_stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream", "request-id": "req_up"})
    await out.prepare(request)
    for chunk in events:
        await out.write(chunk)
    await out.write_eof()
    return out


async def default_answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    if request.path.endswith("/count_tokens"):
        return web.json_response({"input_tokens": 42})
    if body.get("stream"):
        return await send_stream(request, text_stream(body["model"], ["Hel", "lo", "!"]))
    return web.json_response(message(body["model"]), headers={"request-id": "req_up"})


def anthropic_app(fake: Fake, key: str = KEY) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        fake.received.append(
            Received(
                request.path, dict(request.headers), body if isinstance(body, dict) else {}, raw
            )
        )
        if request.headers.get("x-api-key") != key:
            return error(401, "authentication_error", "invalid x-api-key")
        if "authorization" in {name.lower() for name in request.headers}:
            return error(400, "invalid_request_error", "send the key in x-api-key only")
        if not request.headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return error(400, "invalid_request_error", "model: Field required")
        if not request.path.endswith("/count_tokens"):
            if not isinstance(body.get("max_tokens"), int):
                return error(400, "invalid_request_error", "max_tokens: Field required")
            if not body.get("messages"):
                return error(400, "invalid_request_error", "messages: at least one message")
        if fake.answers:
            return await fake.answers.pop(0)(request, body)
        return await default_answer(request, body)

    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    app.router.add_post("/v1/messages/count_tokens", handle)
    return app


@asynccontextmanager
async def anthropic_upstream(key: str = KEY) -> AsyncIterator[Fake]:
    fake = Fake()
    async with serve(anthropic_app(fake, key)) as url:
        fake.url = url
        yield fake


def anthropic_provider(
    name: str, url: str, mapping: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A provider of type anthropic (its api_base as the SDK takes it: no /v1)."""
    return {
        "name": name,
        "provider_type": "anthropic",
        "api_base": url,
        "api_key": KEY,
        "model_mapping": mapping,
        **extra,
    }
