"""Chat and legacy completions (a stream is pre-encoded `data:` events, which the tests and the
benchmark compare byte for byte: `stream_events`; a chat answer's tool calls, reasoning and
stream quirks are `chat_answer`'s), embeddings and `GET /v1/models`."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
from aiohttp import web

from llm_proxy.testing.mock.chat_answer import (
    ChatAnswer,
    chat_message,
    chat_stream_events,
    plan_chat,
)
from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.state import OPTIONS, QUIRKS, STATE
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
    """The exact SSE bytes the mock (named `name`) sends for a plain stream without quirks
    (tests compare against these): `kind` "chat" or "text" (legacy completions)."""
    if kind == "chat":
        answer = ChatAnswer(tuple(f"tok{i} " for i in range(chunks)))
        return chat_stream_events(model, answer, name=name, include_usage=include_usage)
    base = {"id": f"cmpl-{name}", "object": "text_completion", "created": CREATED, "model": model}
    events: list[dict[str, Any]] = [
        {
            **base,
            "choices": [{"text": f"tok{i} ", "index": 0, "logprobs": None, "finish_reason": None}],
        }
        for i in range(chunks)
    ]
    finish = {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    events.append({**base, "choices": [finish]})
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


def _quirks(field: Any) -> frozenset[str]:
    """A request's `mock_quirks`: a list of known quirks."""
    if field is None:
        return frozenset()
    if not isinstance(field, list) or not set(field) <= QUIRKS:
        raise MockError(400, f"mock_quirks: a list of {sorted(QUIRKS)}", param="mock_quirks")
    return frozenset(field)


async def chat(request: web.Request) -> web.StreamResponse:
    """A chat completion (`chat_answer.plan_chat`: text, tool calls, reasoning); a stream with
    the instance's quirks (`MockOptions.quirks`)."""
    data = await read_json(request)
    model = required(data, "model")
    options, state = request.app[OPTIONS], request.app[STATE]
    call_id = state.new_id("call_")
    quirks = options.quirks | _quirks(data.get("mock_quirks"))
    if data.get("stream"):
        answer = plan_chat(data, stream_chunks(request, data), quirks, options.tool, call_id)
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = chat_stream_events(
            model, answer, name=options.name, include_usage=include_usage, quirks=quirks
        )
        return await send(request, "text/event-stream", events, stream_delay(request, data))
    # Not streamed, the plain answer is one sentence, its usage counted in words.
    data.setdefault("mock_content", "Hello from the mock upstream.")
    answer = plan_chat(data, 1, quirks, options.tool, call_id)
    message = chat_message(answer)
    words = len(
        " ".join(filter(None, (message["content"], message.get("reasoning_content")))).split()
    )
    return json_response(
        {
            "id": f"chatcmpl-{options.name}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": _usage(5, words),
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
