"""A chat completion's answer beyond plain text (`plan_chat`): reasoning (`reasoning_content`, as
DeepSeek and vLLM send it), tool calls when the request offers tools, text quoting a tool's
result; and its stream with the quirks of OpenAI-compatible servers (`chat_stream_events`, the
exact bytes). Pure and deterministic.

Quirks (`state.QUIRKS`; for an instance `MockOptions.quirks`, `--quirks`; for one request the
body field `mock_quirks`, a list, added to the instance's):

* `usage-null`: `"usage": null` on every chunk, even without `include_usage`
* `usage-after-finish`: a usage chunk after the finish chunk even without `include_usage` (with
  it, that is what OpenAI itself sends)
* `usage-in-finish`: the usage inside the finish chunk, not in a chunk of its own
* `no-done`: no `data: [DONE]` at the end
* `merged-chunks`: several kinds of delta in one chunk (the role, reasoning, content and a tool
  call's fragment side by side)
* `reasoning`: `reasoning_content` deltas before the content
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy.testing.mock.tools import THINKING, chosen_tools, pieces, schema_value
from llm_proxy.testing.mock.wire import CREATED

ARGUMENT_FRAGMENTS: Final = 3  # a streamed tool call's arguments arrive in this many pieces
PROMPT_TOKENS: Final = 5


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON

    def fragments(self) -> tuple[str, ...]:
        return pieces(self.arguments, ARGUMENT_FRAGMENTS)


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    content: tuple[str, ...]  # the content deltas (a message holds their concatenation)
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> dict[str, int]:
        """Completion tokens: one per delta (reasoning, content, argument fragment)."""
        arguments = sum(len(call.fragments()) for call in self.tool_calls)
        completion = len(self.content) + len(self.reasoning) + arguments
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
        }


def _tool_result(messages: Any) -> str | None:
    """The content of the trailing `tool` messages (the results of the last calls), or None."""
    results: list[str] = []
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "tool":
            break
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        results.insert(0, str(content or "").strip())
    return " ".join(results) if results else None


def _functions(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The offered function tools, as `{"name", "parameters"}`."""
    return [
        tool["function"]
        for tool in data.get("tools") or []
        if isinstance(tool, dict)
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    ]


def _calls(data: dict[str, Any], tool: str, call_id: str) -> tuple[ToolCall, ...]:
    choice = data.get("tool_choice")
    if choice == "none":
        return ()
    forced = None
    if isinstance(choice, dict):
        forced = (choice.get("function") or {}).get("name")
    if choice == "required" and tool == "none":
        tool = "first"
    count = 1 if data.get("parallel_tool_calls") is False or forced else 2
    chosen = chosen_tools(_functions(data), tool, forced, count)
    return tuple(
        ToolCall(
            f"{call_id}_{index}",
            function["name"],
            orjson.dumps(schema_value(function.get("parameters") or {"type": "object"})).decode(),
        )
        for index, function in enumerate(chosen)
    )


def plan_chat(
    data: dict[str, Any],
    chunks: int,
    quirks: frozenset[str] = frozenset(),
    tool: str = "first",
    call_id: str = "call_mock",
) -> ChatAnswer:
    """The answer to a chat request `data`: after a tool's result, text quoting it; else
    `mock_content` or `tok0 tok1 ...` in `chunks` pieces, and calls of the offered tools (two
    in parallel unless `parallel_tool_calls` is false; which ones: `tool`, as
    `MockOptions.tool`), ids `<call_id>_0`, `_1`. With the `reasoning` quirk, reasoning first."""
    reasoning = pieces(THINKING, 2) if "reasoning" in quirks else ()
    result = _tool_result(data.get("messages"))
    if result is not None:
        return ChatAnswer(pieces(f'The tool said: "{result}"', chunks), reasoning)
    if isinstance(data.get("mock_content"), str):
        content = pieces(data["mock_content"], chunks)
    else:
        content = tuple(f"tok{i} " for i in range(chunks))
    return ChatAnswer(content, reasoning, _calls(data, tool, call_id))


def chat_message(answer: ChatAnswer) -> dict[str, Any]:
    """The answer as a (non-streamed) chat completion's `message`."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(answer.content) or None}
    if answer.reasoning:
        message["reasoning_content"] = "".join(answer.reasoning)
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in answer.tool_calls
        ]
    return message


def _tool_steps(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """The `tool_calls` entries of the stream, one per delta: each call's head (id, name,
    empty arguments), then the calls' argument fragments interleaved by index."""
    steps: list[dict[str, Any]] = [
        {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        for index, call in enumerate(calls)
    ]
    fragments = [call.fragments() for call in calls]
    for position in range(max((len(f) for f in fragments), default=0)):
        for index, pieces_of_call in enumerate(fragments):
            if position < len(pieces_of_call):
                steps.append({"index": index, "function": {"arguments": pieces_of_call[position]}})
    return steps


def _deltas(answer: ChatAnswer, merged: bool) -> list[dict[str, Any]]:
    """Every delta after the role's, in order; `merged`: the kinds side by side, one chunk per
    position (the role in the first)."""
    reasoning = [{"reasoning_content": piece} for piece in answer.reasoning]
    content = [{"content": piece} for piece in answer.content]
    tools = [{"tool_calls": [step]} for step in _tool_steps(answer.tool_calls)]
    if not merged:
        return [{"role": "assistant", "content": ""}, *reasoning, *content, *tools]
    deltas: list[dict[str, Any]] = []
    for position in range(max(len(reasoning), len(content), len(tools), 1)):
        delta: dict[str, Any] = {"role": "assistant"} if position == 0 else {}
        for kind in (reasoning, content, tools):
            if position < len(kind):
                delta.update(kind[position])
        deltas.append(delta)
    return deltas


def chat_stream_events(
    model: str,
    answer: ChatAnswer,
    *,
    name: str = "mock",
    include_usage: bool = False,
    quirks: frozenset[str] = frozenset(),
) -> list[bytes]:
    """The exact SSE bytes of the answer's stream from the mock named `name`, with `quirks`.
    A plain answer without quirks is what `stream_events("chat", ...)` gives."""
    base = {"id": f"chatcmpl-{name}", "object": "chat.completion.chunk", "created": CREATED}
    base["model"] = model
    deltas = _deltas(answer, "merged-chunks" in quirks)
    events: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": deltas[0]}]},
        *(
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in deltas[1:]
        ),
    ]
    finish: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": answer.finish_reason}
    events.append({**base, "choices": [finish]})
    if include_usage or "usage-null" in quirks:
        events = [{**event, "usage": None} for event in events]
    if "usage-in-finish" in quirks:
        events[-1]["usage"] = answer.usage()
    elif include_usage or "usage-after-finish" in quirks:
        events.append({**base, "choices": [], "usage": answer.usage()})
    done = [] if "no-done" in quirks else [b"data: [DONE]\n\n"]
    return [b"data: " + orjson.dumps(event) + b"\n\n" for event in events] + done
