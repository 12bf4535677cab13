"""A fake OpenAI API for loopback use: offline demos (`llm-proxy mock-upstream`), the tests and
the benchmark. Deterministic output; streams for chat, legacy completions and the Responses API
(its named events, as the openai SDK's `responses.stream()` reads them). Behaviour can be set
per request through extra body fields (which also proves the proxy forwards unknown fields):

* `mock_chunks`: number of content chunks in a stream (default: the server's `--chunks`)
* `mock_delay_ms`: delay between stream chunks (default: `--delay-ms`)
* `mock_status`: answer with this HTTP status and an OpenAI-shaped error instead
* `mock_content`: the reply text for non-streaming calls
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp_sse import sse_response
from multidict import CIMultiDict


@dataclass(frozen=True, slots=True)
class MockOptions:
    chunks: int = 20
    delay_ms: float = 0.0
    record: bool = False


@dataclass(frozen=True, slots=True)
class Recorded:
    path: str
    headers: CIMultiDict[str]
    body: bytes


OPTIONS: Final = web.AppKey("mock_options", MockOptions)
RECORDED: Final = web.AppKey("mock_recorded", deque[Recorded])
_CREATED: Final = 1_700_000_000


def stream_events(kind: str, model: str, chunks: int, include_usage: bool) -> list[bytes]:
    """The exact SSE bytes the mock sends for a stream (tests compare against these)."""
    rid = "chatcmpl-mock" if kind == "chat" else "cmpl-mock"
    events: list[dict[str, Any]] = []
    if kind == "chat":
        base = {"id": rid, "object": "chat.completion.chunk", "created": _CREATED, "model": model}
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
        base = {"id": rid, "object": "text_completion", "created": _CREATED, "model": model}
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


def _error(status: int) -> web.Response:
    body = {
        "error": {
            "message": f"mock upstream error {status}",
            "type": "server_error" if status >= 500 else "invalid_request_error",
            "param": None,
            "code": f"mock_{status}",
        }
    }
    return web.json_response(body, status=status, dumps=lambda o: orjson.dumps(o).decode())


async def _read(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    if request.app[OPTIONS].record:
        request.app[RECORDED].append(Recorded(request.path, CIMultiDict(request.headers), body))
    data = orjson.loads(body)
    assert isinstance(data, dict)
    return data


def _json(obj: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj),
        content_type="application/json",
        headers={"x-request-id": "req_mock"},
    )


async def _stream(request: web.Request, data: dict[str, Any], kind: str) -> web.StreamResponse:
    options = request.app[OPTIONS]
    chunks = int(data.get("mock_chunks", options.chunks))
    delay = float(data.get("mock_delay_ms", options.delay_ms)) / 1000
    include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        for event in stream_events(kind, data["model"], chunks, include_usage):
            await resp.write(event)
            if delay:
                await asyncio.sleep(delay)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client hung up (a proxy does when its own client does): not an error
    return resp


async def chat(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    if "mock_status" in data:
        return _error(int(data["mock_status"]))
    if data.get("stream"):
        return await _stream(request, data, "chat")
    content = data.get("mock_content", "Hello from the mock upstream.")
    return _json(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": _CREATED,
            "model": data["model"],
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
    data = await _read(request)
    if "mock_status" in data:
        return _error(int(data["mock_status"]))
    if data.get("stream"):
        return await _stream(request, data, "text")
    text = data.get("mock_content", " a mock completion")
    return _json(
        {
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": _CREATED,
            "model": data["model"],
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": _usage(3, len(text.split())),
        }
    )


async def embeddings(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    if "mock_status" in data:
        return _error(int(data["mock_status"]))
    inputs = data.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    out = []
    for i, _ in enumerate(items):
        vector = [round(0.1 * (i + 1) + 0.01 * j, 4) for j in range(8)]
        embedding: Any = vector
        if data.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        out.append({"object": "embedding", "index": i, "embedding": embedding})
    return _json(
        {
            "object": "list",
            "data": out,
            "model": data["model"],
            "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
        }
    )


def _response(
    model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    """A Responses API `response` object (usage last, where OpenAI puts it near the end)."""
    return {
        "id": "resp_mock",
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _message(text: str | None) -> dict[str, Any]:
    """The assistant message item: in progress and empty while `text` is None."""
    return {
        "type": "message",
        "id": "msg_mock",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _response_usage(text: str) -> dict[str, Any]:
    output = len(text.split())
    return {
        "input_tokens": 4,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 4 + output,
    }


def response_stream_events(model: str, chunks: int) -> list[tuple[str, dict[str, Any]]]:
    """The (event type, data) pairs of a streamed Responses API call, in the order OpenAI sends
    them: the openai SDK's `responses.stream()` rebuilds the response from exactly these."""
    deltas = [f"tok{i} " for i in range(chunks)]
    text = "".join(deltas)
    item = {"item_id": "msg_mock", "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": _response(model, "in_progress", [], None)}),
        ("response.in_progress", {"response": _response(model, "in_progress", [], None)}),
        ("response.output_item.added", {"output_index": 0, "item": _message(None)}),
        ("response.content_part.added", {**item, "part": _text_part("")}),
    ]
    events += [("response.output_text.delta", {**item, "delta": d, "logprobs": []}) for d in deltas]
    events += [
        ("response.output_text.done", {**item, "text": text, "logprobs": []}),
        ("response.content_part.done", {**item, "part": _text_part(text)}),
        ("response.output_item.done", {"output_index": 0, "item": _message(text)}),
        (
            "response.completed",
            {"response": _response(model, "completed", [_message(text)], _response_usage(text))},
        ),
    ]
    return [
        (kind, {"type": kind, "sequence_number": n, **data})
        for n, (kind, data) in enumerate(events)
    ]


async def _stream_response(request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
    # Named events, so aiohttp-sse writes them (`event:` and `data:` lines); chat and legacy
    # completions keep their pre-encoded `data:` bytes, which the tests and the benchmark need
    # byte for byte. OpenAI ends lines with a bare LF; so does the mock.
    options = request.app[OPTIONS]
    chunks = int(data.get("mock_chunks", options.chunks))
    delay = float(data.get("mock_delay_ms", options.delay_ms)) / 1000
    async with sse_response(request, sep="\n", allow_all_methods=True) as resp:
        try:
            for kind, event in response_stream_events(data["model"], chunks):
                await resp.send(orjson.dumps(event).decode(), event=kind)
                if delay and kind == "response.output_text.delta":
                    await asyncio.sleep(delay)
        except ConnectionResetError:
            pass  # the client hung up: not an error
    return resp


async def responses(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    if "mock_status" in data:
        return _error(int(data["mock_status"]))
    if data.get("stream"):
        return await _stream_response(request, data)
    text = data.get("mock_content", "Hello from the mock upstream.")
    return _json(_response(data["model"], "completed", [_message(text)], _response_usage(text)))


async def models(request: web.Request) -> web.Response:
    return _json(
        {
            "object": "list",
            "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}],
        }
    )


def create_mock_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    app[OPTIONS] = options or MockOptions()
    app[RECORDED] = deque(maxlen=1000)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)
    return app


def run_mock(host: str, port: int, options: MockOptions) -> None:
    print(f"mock upstream on http://{host}:{port}/v1 ({time.strftime('%H:%M:%S')})", flush=True)
    # A large accept queue, like a real provider's: the fake upstream must not be what a burst
    # of new connections waits on (the benchmark opens 1,000 streams at once).
    web.run_app(
        create_mock_app(options),
        host=host,
        port=port,
        access_log=None,
        print=None,
        backlog=4096,
    )
