"""A tiny OpenAI-like ASGI app served by the real servers under test (uvicorn, hypercorn,
gunicorn; nginx and HAProxy front it). It counts every chat request by the id in its first
message, so a test can prove that no request was lost or sent twice: `GET /_seen` returns
{id: count}.

The model name scripts the answer: "slow" streams its events `SLOW_SECS` apart.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EVENTS: Final = 4
SLOW_SECS: Final = 0.3
USAGE: Final = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}

seen: collections.Counter[str] = collections.Counter()


def _chunk(content: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": content}}], "usage": None}
    return b"data: " + json.dumps(delta, separators=(",", ":")).encode() + b"\n\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/_seen":
        await _answer(send, 200, "application/json", json.dumps(seen).encode())
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    data = json.loads(body)
    request_id = str(data["messages"][0]["content"])
    seen[request_id] += 1
    if not data.get("stream"):
        answer = {
            "id": request_id,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": request_id}}],
            "usage": USAGE,
        }
        await _answer(send, 200, "application/json", json.dumps(answer).encode())
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    delay = SLOW_SECS if data.get("model") == "slow" else 0.0
    for i in range(EVENTS):
        event = _chunk(f"{request_id}:{i};")
        await send({"type": "http.response.body", "body": event, "more_body": True})
        if delay:
            await asyncio.sleep(delay)
    tail = b""
    if (data.get("stream_options") or {}).get("include_usage"):
        usage = {"choices": [], "usage": USAGE}
        tail = b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})


async def _answer(send: Send, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
