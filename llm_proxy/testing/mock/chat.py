"""Chat and legacy completions (a stream is pre-encoded `data:` events, which the tests and the
benchmark compare byte for byte: `stream_events`), embeddings and `GET /v1/models`."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
from aiohttp import web

from llm_proxy.testing.mock.state import OPTIONS
from llm_proxy.testing.mock.wire import (
    CREATED,
    json_response,
    read_json,
    required,
    send,
    stream_chunks,
    stream_delay,
)


def stream_events(
    kind: str, model: str, chunks: int, include_usage: bool, name: str = "mock"
) -> list[bytes]:
    """The exact SSE bytes the mock (named `name`) sends for a stream (tests compare against
    these)."""
    rid = f"chatcmpl-{name}" if kind == "chat" else f"cmpl-{name}"
    events: list[dict[str, Any]] = []
    if kind == "chat":
        base = {"id": rid, "object": "chat.completion.chunk", "created": CREATED, "model": model}
        events.append(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        )
        for i in range(chunks):
            delta = {"content": f"tok{i} "}
            events.append(
                {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            )
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    else:
        base = {"id": rid, "object": "text_completion", "created": CREATED, "model": model}
        for i in range(chunks):
            events.append(
                {
                    **base,
                    "choices": [
                        {"text": f"tok{i} ", "index": 0, "logprobs": None, "finish_reason": None}
                    ],
                }
            )
        events.append(
            {
                **base,
                "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            }
        )
    if include_usage:
        # As OpenAI does: with include_usage every chunk carries "usage": null, and a final
        # chunk with no choices carries the usage.
        events = [{**e, "usage": None} for e in events]
        events.append({**base, "choices": [], "usage": _usage(5, chunks)})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def chat(request: web.Request) -> web.StreamResponse:
    data = await read_json(request)
    model = required(data, "model")
    name = request.app[OPTIONS].name
    if data.get("stream"):
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = stream_events("chat", model, stream_chunks(request, data), include_usage, name)
        return await send(request, "text/event-stream", events, stream_delay(request, data))
    content = data.get("mock_content", "Hello from the mock upstream.")
    return json_response(
        {
            "id": f"chatcmpl-{name}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(5, len(content.split())),
        }
    )


async def completions(request: web.Request) -> web.StreamResponse:
    data = await read_json(request)
    model = required(data, "model")
    name = request.app[OPTIONS].name
    if data.get("stream"):
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = stream_events("text", model, stream_chunks(request, data), include_usage, name)
        return await send(request, "text/event-stream", events, stream_delay(request, data))
    text = data.get("mock_content", " a mock completion")
    return json_response(
        {
            "id": f"cmpl-{name}",
            "object": "text_completion",
            "created": CREATED,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": _usage(3, len(text.split())),
        }
    )


async def embeddings(request: web.Request) -> web.StreamResponse:
    data = await read_json(request)
    model = required(data, "model")
    inputs = data.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    out = []
    for i, _ in enumerate(items):
        vector = [round(0.1 * (i + 1) + 0.01 * j, 4) for j in range(8)]
        embedding: Any = vector
        if data.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        out.append({"object": "embedding", "index": i, "embedding": embedding})
    return json_response(
        {
            "object": "list",
            "data": out,
            "model": model,
            "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
        }
    )


async def models(request: web.Request) -> web.Response:
    return json_response(
        {
            "object": "list",
            "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}],
        }
    )
