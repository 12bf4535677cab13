"""The Responses API: create (streamed as its named events: `response_stream_events`), retrieve,
delete, cancel and input items. A `previous_response_id` must name a response this instance
stored."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.state import STATE, StoredResponse
from llm_proxy.testing.mock.wire import (
    CREATED,
    json_response,
    page,
    read_json,
    required,
    seen,
    stream_chunks,
    stream_delay,
)


def _response(
    rid: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    previous: str | None,
    store: bool,
) -> dict[str, Any]:
    """A Responses API `response` object (usage last, where OpenAI puts it near the end)."""
    return {
        "id": rid,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": previous,
        "store": store,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _message(item_id: str, text: str | None) -> dict[str, Any]:
    """The assistant message item: in progress and empty while `text` is None."""
    return {
        "type": "message",
        "id": item_id,
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


def _message_id(response_id: str) -> str:
    return "msg_" + response_id.removeprefix("resp_")


def response_stream_events(
    model: str,
    chunks: int,
    response_id: str = "resp_mock",
    previous_response_id: str | None = None,
    store: bool = True,
) -> list[tuple[str, dict[str, Any]]]:
    """The (event type, data) pairs of a streamed Responses API call, in the order OpenAI sends
    them: the openai SDK's `responses.stream()` rebuilds the response from exactly these. The
    default id is that of the first response a mock named "mock" makes."""
    deltas = [f"tok{i} " for i in range(chunks)]
    text = "".join(deltas)
    msg = _message_id(response_id)

    def response(status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        return _response(response_id, model, status, output, usage, previous_response_id, store)

    item = {"item_id": msg, "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response("in_progress", [], None)}),
        ("response.in_progress", {"response": response("in_progress", [], None)}),
        ("response.output_item.added", {"output_index": 0, "item": _message(msg, None)}),
        ("response.content_part.added", {**item, "part": _text_part("")}),
    ]
    events += [("response.output_text.delta", {**item, "delta": d, "logprobs": []}) for d in deltas]
    events += [
        ("response.output_text.done", {**item, "text": text, "logprobs": []}),
        ("response.content_part.done", {**item, "part": _text_part(text)}),
        ("response.output_item.done", {"output_index": 0, "item": _message(msg, text)}),
        (
            "response.completed",
            {"response": response("completed", [_message(msg, text)], _response_usage(text))},
        ),
    ]
    return [
        (kind, {"type": kind, "sequence_number": n, **data})
        for n, (kind, data) in enumerate(events)
    ]


def _input_items(value: Any, response_id: str) -> list[dict[str, Any]]:
    """A request's `input` as the items `input_items.list` answers with (each with an id)."""
    raw = [{"role": "user", "content": value}] if isinstance(value, str) else value
    items = []
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, dict):
            continue
        item = {"type": "message", **entry}
        if item["type"] == "message":
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            item.setdefault("status", "completed")
        item.setdefault("id", f"{_message_id(response_id)}_in{i}")
        items.append(item)
    return items


async def _stream_response(
    request: web.Request, events: list[tuple[str, dict[str, Any]]], delay: float
) -> web.StreamResponse:
    # Named events, so aiohttp-sse writes them (`event:` and `data:` lines); chat and legacy
    # completions keep their pre-encoded `data:` bytes, which the tests and the benchmark need
    # byte for byte. OpenAI ends lines with a bare LF; so does the mock.
    async with sse_response(request, sep="\n", allow_all_methods=True) as resp:
        try:
            for kind, event in events:
                await resp.send(orjson.dumps(event).decode(), event=kind)
                if delay and kind == "response.output_text.delta":
                    await asyncio.sleep(delay)
        except ConnectionResetError:
            pass  # the client hung up: not an error
    return resp


async def responses(request: web.Request) -> web.StreamResponse:
    """Create a response. A `previous_response_id` this instance did not store (never made,
    deleted, forgotten, or made with `store: false`) is OpenAI's 400
    `previous_response_not_found`: a follow-up that lands on the wrong instance fails."""
    state = request.app[STATE]
    data = await read_json(request)
    model = required(data, "model")
    previous = data.get("previous_response_id")
    if previous is not None and previous not in state.responses:
        raise MockError(
            400,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    rid = state.new_id("resp_")
    store = data.get("store") is not False
    events: list[tuple[str, dict[str, Any]]] = []
    if data.get("stream"):
        events = response_stream_events(model, stream_chunks(request, data), rid, previous, store)
        final = events[-1][1]["response"]
    else:
        text = data.get("mock_content", "Hello from the mock upstream.")
        output = [_message(_message_id(rid), text)]
        final = _response(rid, model, "completed", output, _response_usage(text), previous, store)
    if store:
        state.responses.add(rid, StoredResponse(final, _input_items(data.get("input"), rid)))
    if events:
        return await _stream_response(request, events, stream_delay(request, data))
    return json_response(final)


async def response_retrieve(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].responses.get(seen(request)).response)


async def response_delete(request: web.Request) -> web.Response:
    rid = seen(request)
    request.app[STATE].responses.delete(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})


async def response_cancel(request: web.Request) -> web.Response:
    request.app[STATE].responses.get(seen(request))
    raise MockError(400, "Only responses created with background=true can be cancelled.")


async def response_input_items(request: web.Request) -> web.Response:
    stored = request.app[STATE].responses.get(seen(request))
    return json_response(page(request, stored.input_items))
