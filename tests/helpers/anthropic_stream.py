"""Reading an Anthropic Messages stream as a client does: `stream_events` (the events, each
named as its `type`), and `fold` (the Message the stream adds up to, as the SDK's accumulator
builds it), which fails on a stream that breaks the protocol's order."""

from __future__ import annotations

from typing import Any

import orjson

from llm_proxy.protocols.sse import EventReader


def stream_events(raw: bytes) -> list[dict[str, Any]]:
    """The stream's events' data, each checked to be named (`event:`) as its `type`."""
    reader = EventReader()
    events = [*reader.feed(raw), *reader.close()]
    out = []
    for event in events:
        data = orjson.loads(event.data)
        assert event.event == data["type"], event
        out.append(data)
    return out


def _apply(block: dict[str, Any], delta: dict[str, Any], json_parts: list[str]) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        assert block["type"] == "text"
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        assert block["type"] == "thinking"
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        assert block["type"] == "thinking"
        block["signature"] += delta["signature"]
    elif kind == "input_json_delta":
        assert block["type"] == "tool_use"
        json_parts.append(delta["partial_json"])
    else:
        raise AssertionError(f"unknown delta {delta}")


def fold(raw: bytes) -> dict[str, Any]:
    """The Message a complete stream adds up to: message_start's message, its blocks built from
    their deltas (a tool_use's input parsed from its JSON fragments), message_delta's stop
    reason and usage applied. Fails on an `error` event, a delta outside its block, a missing
    message_stop."""
    events = stream_events(raw)
    assert events[0]["type"] == "message_start", events[0]
    message = dict(events[0]["message"])
    message["content"] = []
    open_block: int | None = None
    json_parts: list[str] = []
    for event in events[1:-1]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_block is None and event["index"] == len(message["content"])
            open_block, json_parts = event["index"], []
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            assert event["index"] == open_block
            _apply(message["content"][open_block], event["delta"], json_parts)
        elif kind == "content_block_stop":
            assert event["index"] == open_block
            block = message["content"][open_block]
            if block["type"] == "tool_use":
                block["input"] = orjson.loads("".join(json_parts) or "{}")
            open_block = None
        elif kind == "message_delta":
            assert open_block is None
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **event["usage"]}
        else:
            assert kind == "ping", event
    assert events[-1]["type"] == "message_stop", events[-1]
    return message
