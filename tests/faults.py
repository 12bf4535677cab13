"""A programmable fake upstream for fault tests: each request takes the next behaviour from a
script (or the default), so a test says exactly what the provider does, request by request."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson
from aiohttp import web

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
USAGE_EVENT = (
    b'data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22,'
    b'"total_tokens":33}}\n\n'
)


class FaultyUpstream:
    """Behaviours: "ok", "slow_headers", "status:<code>", "status:429:<retry_after>",
    "sse_error_first", "die_mid_stream", "stall_mid_stream", "trickle_body", "reset",
    "blame_request" (a 500 `invalid_request_error`), "linger_after_done" (a stream with a
    usage chunk whose body ends `delay` after [DONE], as real front ends do)."""

    def __init__(self, default: str = "ok", *, delay: float = 2.0, events: int = 5) -> None:
        self.script: deque[str] = deque()
        self.default = default
        self.delay = delay
        self.events = events
        self.seen: list[str] = []  # behaviour used, per request
        self.peers: list[int] = []  # the client port of each request (connection reuse)
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._handle)
        self.app.router.add_get("/v1/models", self._models)

    def then(self, *behaviours: str) -> FaultyUpstream:
        self.script.extend(behaviours)
        return self

    async def _models(self, request: web.Request) -> web.Response:
        behaviour = self.script.popleft() if self.script else self.default
        self.seen.append(f"models:{behaviour}")
        if behaviour.startswith("status:"):
            return web.json_response({}, status=int(behaviour.split(":")[1]))
        return web.json_response({"object": "list", "data": []})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        data: dict[str, Any] = orjson.loads(await request.read())
        behaviour = self.script.popleft() if self.script else self.default
        self.seen.append(behaviour)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if peer else 0)
        stream = bool(data.get("stream"))
        if behaviour == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if behaviour == "slow_headers":
            await asyncio.sleep(self.delay)
            behaviour = "ok"
        if behaviour == "blame_request":  # a 500 that says the request is at fault
            error = {"message": "prompt too large", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=500)
        if behaviour.startswith("status:"):
            parts = behaviour.split(":", 2)
            headers = {"Retry-After": parts[2]} if len(parts) > 2 else {}
            body = {"error": {"message": "upstream says no", "type": "x", "code": parts[1]}}
            return web.json_response(body, status=int(parts[1]), headers=headers)
        if not stream:
            if behaviour == "trickle_body":
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                resp.content_length = 1000
                await resp.prepare(request)
                for _ in range(1000):
                    await resp.write(b" ")
                    await asyncio.sleep(0.1)
                return resp
            return web.json_response(
                {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if behaviour == "sse_error_first":
            await resp.write(b'data: {"error": {"message": "overloaded", "type": "server"}}\n\n')
            return resp
        for i in range(self.events):
            await resp.write(EVENT)
            if i == 1 and behaviour == "die_mid_stream":
                assert request.transport is not None
                request.transport.abort()
                return resp
            if i == 0 and behaviour == "stall_mid_stream":
                await asyncio.sleep(60)
            await asyncio.sleep(0.001)
        if behaviour == "linger_after_done":
            await resp.write(USAGE_EVENT + DONE)
            await asyncio.sleep(self.delay)
            return resp
        await resp.write(DONE)
        return resp
