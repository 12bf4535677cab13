"""What the mock answers a Messages request with (`plan_answer`), and that answer written as
Anthropic writes it: a Message (`message`) or the exact bytes of its stream (`answer_events`;
`anthropic_stream_events` for the plain text answer, which tests compare byte for byte). Pure:
no I/O, deterministic.

The answer: a thinking block (with its signature) first when the request turns thinking on; then
a `tool_use` when the request offers tools and its last turn holds no `tool_result`, else text:
the `tool_result`'s text quoted when there is one, `mock_content` when given, else
`tok0 tok1 ...` in `chunks` pieces (as the OpenAI stream)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy.testing.mock.tools import THINKING, chosen_tools, pieces, schema_value

# Fragments of a streamed tool_use input, besides the empty first one Anthropic sends.
TOOL_FRAGMENTS: Final = 3


@dataclass(frozen=True, slots=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """An assistant message, before it is written: each block's stream deltas (a Message holds
    their concatenation), usage, and the stop reason that follows from the blocks."""

    message_id: str
    model: str
    text: tuple[str, ...] = ()  # the text block's deltas; none: no text block
    thinking: tuple[str, ...] = ()  # the thinking block's deltas; none: no thinking block
    tool_use: ToolUse | None = None
    input_tokens: int = 1
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool_use is not None else "end_turn"

    @property
    def signature(self) -> str:
        return f"sig_{self.message_id}"

    @property
    def output_tokens(self) -> int:
        """One per delta of every block (a tool_use's fragments included)."""
        tool = len(tool_fragments(self.tool_use)) if self.tool_use is not None else 0
        return len(self.text) + len(self.thinking) + tool

    def usage(self, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
        }


def tool_fragments(tool_use: ToolUse) -> tuple[str, ...]:
    """The `partial_json` deltas of a streamed tool_use: an empty one first, as Anthropic
    sends, then its input's JSON in several pieces."""
    return ("", *pieces(orjson.dumps(tool_use.input).decode(), TOOL_FRAGMENTS))


def count_input_tokens(data: dict[str, Any]) -> int:
    """The mock's token count of a request: the bytes of the JSON of its system, messages and
    tools, over 4, at least 1 (what `count_tokens` answers and a Message's `input_tokens`)."""
    counted = [data.get("system"), data.get("messages"), data.get("tools")]
    return max(1, len(orjson.dumps(counted)) // 4)


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return ""


def _tool_results(messages: list[Any]) -> list[str] | None:
    """The texts of the `tool_result` blocks of the last message, or None when it holds none."""
    last = messages[-1] if messages else None
    content = last.get("content") if isinstance(last, dict) else None
    if not isinstance(content, list):
        return None
    results = [
        _block_text(block.get("content"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return results or None


def _chosen_tool(data: dict[str, Any], preferred: str) -> dict[str, Any] | None:
    """The tool to call: the one `tool_choice` names, none for `{"type": "none"}`, else as
    `preferred` (`MockOptions.tool`) says (a forced `{"type": "any"}` calls the first)."""
    tools = [t for t in data.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = data.get("tool_choice") or {}
    if choice.get("type") == "none":
        return None
    forced = choice.get("name") if choice.get("type") == "tool" else None
    if choice.get("type") == "any" and preferred == "none":
        preferred = "first"
    chosen = chosen_tools(tools, preferred, forced)
    return chosen[0] if chosen else None


def thinking_on(data: dict[str, Any]) -> bool:
    thinking = data.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def plan_answer(data: dict[str, Any], message_id: str, chunks: int, tool: str = "first") -> Answer:
    """The answer to a valid Messages request `data` (see the module's docstring), whose
    tool_use (if any) has the id `toolu_` + the message id's suffix; `tool` picks the tool to
    call as `MockOptions.tool` does."""
    messages = data.get("messages") or []
    results = _tool_results(messages)
    chosen = None if results is not None else _chosen_tool(data, tool)
    tool_use = None
    text: tuple[str, ...] = ()
    if chosen is not None:
        tool_id = "toolu_" + message_id.removeprefix("msg_")
        tool_use = ToolUse(tool_id, chosen["name"], schema_value(chosen.get("input_schema")))
    elif results is not None:
        text = pieces(f'The tool said: "{" ".join(r.strip() for r in results)}"', chunks)
    elif isinstance(data.get("mock_content"), str):
        text = pieces(data["mock_content"], chunks)
    else:
        text = tuple(f"tok{i} " for i in range(chunks))
    return Answer(
        message_id=message_id,
        model=data["model"],
        text=text,
        thinking=pieces(THINKING, 2) if thinking_on(data) else (),
        tool_use=tool_use,
        input_tokens=count_input_tokens(data),
        cache_read_tokens=int(data.get("mock_cache_read_tokens", 0)),
        cache_write_tokens=int(data.get("mock_cache_write_tokens", 0)),
    )


def _content(answer: Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.thinking:
        thinking = "".join(answer.thinking)
        blocks.append({"type": "thinking", "thinking": thinking, "signature": answer.signature})
    if answer.text:
        blocks.append({"type": "text", "text": "".join(answer.text)})
    if answer.tool_use is not None:
        use = answer.tool_use
        blocks.append({"type": "tool_use", "id": use.id, "name": use.name, "input": use.input})
    return blocks


def message(answer: Answer) -> dict[str, Any]:
    """The answer as a (non-streamed) Message."""
    return {
        "id": answer.message_id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": _content(answer),
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": answer.usage(),
    }


def _event(data: dict[str, Any]) -> bytes:
    name: str = data["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _block_events(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
    events = [_event({"type": "content_block_start", "index": index, "content_block": start})]
    for delta in deltas:
        events.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
    events.append(_event({"type": "content_block_stop", "index": index}))
    return events


def _blocks(answer: Answer) -> list[list[bytes]]:
    """Each content block's events, in order."""
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.thinking:
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in answer.thinking]
        deltas.append({"type": "signature_delta", "signature": answer.signature})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if answer.text:
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.text]
        blocks.append(({"type": "text", "text": ""}, deltas))
    if answer.tool_use is not None:
        use = answer.tool_use
        start: dict[str, Any] = {"type": "tool_use", "id": use.id, "name": use.name, "input": {}}
        fragments = tool_fragments(use)
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in fragments]
        blocks.append((start, deltas))
    return [_block_events(index, start, deltas) for index, (start, deltas) in enumerate(blocks)]


def error_message(error_type: str) -> str:
    return "Overloaded" if error_type == "overloaded_error" else f"mock {error_type}"


def error_event(error_type: str) -> bytes:
    """The `event: error` that ends a stream which already started."""
    error = {"type": error_type, "message": error_message(error_type)}
    return _event({"type": "error", "error": error})


def answer_events(
    answer: Answer, error_after: int | None = None, error_type: str = "overloaded_error"
) -> list[bytes]:
    """The exact SSE bytes of the answer's stream: message_start, ping, each block (start,
    deltas, stop), message_delta (stop reason, cumulative usage), message_stop. With
    `error_after`, the stream ends after that many content deltas with an `event: error` of
    `error_type` instead."""
    start = message(answer)
    start.update(content=[], stop_reason=None, usage=answer.usage(output_tokens=1))
    events = [_event({"type": "message_start", "message": start}), _event({"type": "ping"})]
    deltas_sent = 0
    for block in _blocks(answer):
        for event in block:
            is_delta = event.startswith(b"event: content_block_delta\n")
            if is_delta and deltas_sent == error_after:
                return [*events, error_event(error_type)]
            deltas_sent += is_delta
            events.append(event)
    if error_after is not None:  # after every delta, before the message's end
        return [*events, error_event(error_type)]
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": None}
    events.append(_event({"type": "message_delta", "delta": delta, "usage": answer.usage()}))
    events.append(_event({"type": "message_stop"}))
    return events


def anthropic_stream_events(
    model: str,
    chunks: int,
    *,
    name: str = "mock",
    input_tokens: int = 1,
    thinking: bool = False,
    error_after: int | None = None,
) -> list[bytes]:
    """The exact SSE bytes of the first plain text answer of the mock named `name` (its id
    `msg_<name>`): `chunks` text deltas `tok0 `, `tok1 `, ...; `input_tokens` is the request's
    (`count_input_tokens`)."""
    answer = Answer(
        message_id=f"msg_{name}",
        model=model,
        text=tuple(f"tok{i} " for i in range(chunks)),
        thinking=pieces(THINKING, 2) if thinking else (),
        input_tokens=input_tokens,
    )
    return answer_events(answer, error_after)
