"""The grammar of an Anthropic Messages event stream, checked on raw bytes: for every streamed
Anthropic answer of the suite (translated or relayed).

A stream is `message_start`, then content blocks numbered from 0, one open at a time
(`content_block_start`, deltas of the block's own type, `content_block_stop`), then exactly
one `message_delta` and `message_stop`, last. Or a prefix of that ending in one `event: error`.
`ping` events may come anywhere (a relay keeps an idle stream alive with them). The parser is
written here, independent of `llm_proxy.protocols.sse`, so the writer is not checked by its
own reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

STOP_REASONS: Final = {
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
}
# Which delta each block type takes.
DELTAS: Final = {
    "text": {"text_delta": "text", "citations_delta": "citation"},
    "thinking": {"thinking_delta": "thinking", "signature_delta": "signature"},
    "tool_use": {"input_json_delta": "partial_json"},
    "server_tool_use": {"input_json_delta": "partial_json"},
}


def parse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """The (event name, data) pairs of a stream; every event must end with a blank line."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    assert text.endswith("\n\n") or not text, (
        f"the stream does not end with a blank line: {text[-80:]!r}"
    )
    events: list[tuple[str | None, str]] = []
    for chunk in text.split("\n\n")[:-1]:
        name: str | None = None
        data: list[str] = []
        for line in chunk.split("\n"):
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
            else:
                raise AssertionError(f"an unexpected line in the stream: {line!r}")
        if data:
            events.append((name, "\n".join(data)))
    return events


@dataclass
class _State:
    started: bool = False
    open_type: str | None = None
    blocks: int = 0
    arguments: dict[int, str] = field(default_factory=dict)  # tool block index -> JSON so far
    stop_reason: str | None = None
    stopped: bool = False
    unknown_events: bool = False  # event types this checker does not know are allowed


def check_anthropic_stream(raw: bytes, unknown_events: bool = False) -> list[dict[str, Any]]:
    """The data of every event of `raw` (pings included), once the stream is checked; an
    AssertionError naming the first rule broken, and where, otherwise. `unknown_events`: a
    stream passed through from Anthropic may carry event types newer than this checker (its
    API's versioning policy allows new ones); the proxy's own translations never do."""
    events = parse_events(raw)
    assert events, "the stream has no event"
    datas: list[dict[str, Any]] = []
    state = _State(unknown_events=unknown_events)
    for position, (name, text) in enumerate(events):
        where = f"event {position} ({name})"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise AssertionError(f"{where}: data is not JSON: {text!r}") from error
        assert isinstance(data, dict), f"{where}: data is not an object"
        assert name is not None, f"{where}: no `event:` line"
        assert data.get("type") == name, (
            f"{where}: the event is {name!r}, its data's type {data.get('type')!r}"
        )
        datas.append(data)
        if name == "ping":
            continue
        assert not state.stopped, f"{where}: an event after message_stop"
        if name == "error":
            _check_error(data, where)
            assert position == len(events) - 1, f"{where}: events after the error event"
            return datas
        _check_event(name, data, state, where)
    assert state.stopped, "the stream ends without message_stop or an error event"
    return datas


def _check_error(data: dict[str, Any], where: str) -> None:
    error = data.get("error")
    assert isinstance(error, dict), f"{where}: no error object"
    assert isinstance(error.get("type"), str), f"{where}: error.type is not a string"
    assert isinstance(error.get("message"), str), f"{where}: error.message is not a string"


def _check_event(name: str, data: dict[str, Any], state: _State, where: str) -> None:
    if name == "message_start":
        assert not state.started, f"{where}: a second message_start"
        _check_message(data.get("message"), where)
        state.started = True
        return
    assert state.started, f"{where}: before message_start"
    assert state.stop_reason is None or name == "message_stop", f"{where}: after message_delta"
    if name == "content_block_start":
        _block_start(data, state, where)
    elif name == "content_block_delta":
        _block_delta(data, state, where)
    elif name == "content_block_stop":
        assert state.open_type is not None, f"{where}: no block is open"
        assert data.get("index") == state.blocks - 1, (
            f"{where}: index {data.get('index')}, open {state.blocks - 1}"
        )
        state.open_type = None
    elif name == "message_delta":
        _message_delta(data, state, where)
    elif name == "message_stop":
        assert state.stop_reason is not None, f"{where}: message_stop without message_delta"
        state.stopped = True
    else:
        assert state.unknown_events, f"{where}: unknown event {name!r}"
        assert data.get("type") == name, f"{where}: data.type is not the event's name"


def _check_message(message: Any, where: str) -> None:
    assert isinstance(message, dict), f"{where}: no message object"
    assert isinstance(message.get("id"), str) and message["id"], f"{where}: message.id"
    assert message.get("type") == "message", f"{where}: message.type"
    assert message.get("role") == "assistant", f"{where}: message.role"
    assert isinstance(message.get("model"), str), f"{where}: message.model"
    assert message.get("content") == [], f"{where}: message.content is not empty"
    usage = message.get("usage")
    assert isinstance(usage, dict), f"{where}: message.usage"
    assert isinstance(usage.get("input_tokens"), int), f"{where}: usage.input_tokens"
    assert isinstance(usage.get("output_tokens"), int), f"{where}: usage.output_tokens"


def _block_start(data: dict[str, Any], state: _State, where: str) -> None:
    assert state.open_type is None, f"{where}: block {state.blocks - 1} is still open"
    assert data.get("index") == state.blocks, (
        f"{where}: index {data.get('index')}, expected {state.blocks}"
    )
    block = data.get("content_block")
    assert isinstance(block, dict), f"{where}: no content_block"
    kind = block.get("type")
    if kind == "text":
        assert block.get("text") == "", f"{where}: a text block starts with text"
    elif kind == "thinking":
        assert block.get("thinking") == "", f"{where}: a thinking block starts with thinking"
        assert isinstance(block.get("signature"), str), f"{where}: thinking.signature"
    elif kind in ("tool_use", "server_tool_use"):
        assert isinstance(block.get("id"), str) and block["id"], f"{where}: tool_use.id"
        assert isinstance(block.get("name"), str), f"{where}: tool_use.name"
        assert block.get("input") == {}, f"{where}: tool_use.input is not {{}}"
        state.arguments[state.blocks] = ""
    else:
        # redacted_thinking, server tool results (web_search_tool_result, ...): whole at their
        # start, they take no delta (DELTAS has none for them).
        assert isinstance(kind, str) and kind, f"{where}: content_block.type {kind!r}"
    state.open_type = kind
    state.blocks += 1


def _block_delta(data: dict[str, Any], state: _State, where: str) -> None:
    assert state.open_type is not None, f"{where}: no block is open"
    index = state.blocks - 1
    assert data.get("index") == index, f"{where}: index {data.get('index')}, open {index}"
    delta = data.get("delta")
    assert isinstance(delta, dict), f"{where}: no delta"
    allowed = DELTAS.get(state.open_type, {})
    kind = delta.get("type")
    assert kind in allowed, f"{where}: a {kind!r} in a {state.open_type} block"
    assert isinstance(delta.get(allowed[kind]), str | dict), f"{where}: delta.{allowed[kind]}"
    if kind == "input_json_delta":
        state.arguments[index] += delta["partial_json"]


def _message_delta(data: dict[str, Any], state: _State, where: str) -> None:
    assert state.open_type is None, f"{where}: block {state.blocks - 1} is still open"
    delta = data.get("delta")
    assert isinstance(delta, dict), f"{where}: no delta"
    reason = delta.get("stop_reason")
    assert reason in STOP_REASONS, f"{where}: stop_reason {reason!r}"
    sequence = delta.get("stop_sequence")
    assert sequence is None or isinstance(sequence, str), f"{where}: stop_sequence"
    assert (sequence is not None) == (reason == "stop_sequence"), (
        f"{where}: stop_sequence {sequence!r} with {reason}"
    )
    usage = data.get("usage")
    assert isinstance(usage, dict), f"{where}: no usage"
    assert isinstance(usage.get("output_tokens"), int), f"{where}: usage.output_tokens"
    state.stop_reason = reason
    if reason == "max_tokens":
        return  # arguments cut short are what the model wrote
    for index, arguments in state.arguments.items():
        if not arguments:
            continue  # no fragment: the input stays {}
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise AssertionError(
                f"block {index}: the input_json_delta fragments are not JSON: {arguments!r}"
            ) from error
        assert isinstance(value, dict), f"block {index}: the tool input is not an object"


def assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Message a client builds from a checked stream's events (as the SDKs accumulate
    them): content with the deltas applied, tool inputs parsed, stop reason and usage."""
    message: dict[str, Any] = {}
    arguments: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = json.loads(json.dumps(event["message"]))
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "input_json_delta":
                arguments[event["index"]] = (
                    arguments.get(event["index"], "") + delta["partial_json"]
                )
            else:
                field_name = DELTAS[block["type"]][delta["type"]]
                block[field_name] = block.get(field_name, "") + delta[field_name]
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"].update(event["usage"])
    for index, text in arguments.items():
        message["content"][index]["input"] = json.loads(text) if text else {}
    return message
