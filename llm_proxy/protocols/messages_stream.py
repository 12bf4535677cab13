"""An OpenAI-compatible upstream's chat-completions stream as an Anthropic Messages stream.

Every stream the client gets is valid: `message_start`, content blocks numbered from 0 with
one open at a time (start, deltas of the block's own type, stop), exactly one
`message_delta` (the stop reason and the whole usage), then `message_stop`. Or, when the
upstream fails (an error event, or `fail`), the open block is closed and one `event: error`
ends the stream (Anthropic's own streams end with a bare `event: error`; closing the block
first costs nothing and leaves every block the client saw complete). A stream the upstream
ended without a word gets only the error event.

Upstream quirks absorbed: the usage chunk arrives after the finish_reason chunk (so the end
waits for `[DONE]` or `flush`), `usage: null` chunks, no `[DONE]`, several kinds of delta in
one chunk, empty `choices`, role-only chunks, tool calls without `index`.

Tool calls: each is one `tool_use` block, its arguments forwarded as they arrive. Parallel
calls the upstream interleaves are serialized: a later call waits (its fragments held) until
the open call's arguments form a whole JSON object, or the message ends. Text or reasoning
that arrives once tool calls began is held and sent after them (a block cannot reopen).
Arguments that do not start as a JSON object are held to the block's end and sent as
`tool_input` makes them (`{}` unless they are a twice-encoded object); fragments arriving for
a call already closed (after its object was whole) are dropped. Arguments cut short
(`max_tokens`) are forwarded as they came, as Anthropic's own streams do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from llm_proxy.protocols.errors import ANTHROPIC_STATUSES, anthropic_type
from llm_proxy.protocols.messages_answer import (
    ChatCall,
    final_stop_reason,
    message_id,
    reasoning_of,
    tool_id,
    tool_input,
)
from llm_proxy.protocols.sse import Event, EventReader
from llm_proxy.protocols.stream import EMPTY_STREAM_MESSAGE, MessagesOut
from llm_proxy.protocols.tool_names import client_name
from llm_proxy.protocols.usage import TokenUsage, from_openai

__all__ = ["EMPTY_STREAM_MESSAGE", "MessagesStream"]


@dataclass(slots=True)
class _ToolCall:
    """One of the upstream's tool calls, as its fragments arrive."""

    id: str | None = None
    name: str | None = None
    arguments: str = ""  # every fragment received
    sent: int = 0  # how much of `arguments` the client has
    opened: bool = False  # its block started (it closes when the next block starts)

    def is_object(self) -> bool | None:
        """Whether the arguments start as a JSON object (None: nothing but blanks yet)."""
        start = self.arguments.lstrip()
        return start.startswith("{") if start else None

    def is_whole(self) -> bool:
        """Whether the arguments so far are a whole JSON object (cheap when they are not)."""
        if not self.arguments.rstrip().endswith("}"):
            return False
        try:
            orjson.loads(self.arguments)
        except orjson.JSONDecodeError:
            return False
        return True


class MessagesStream(MessagesOut[Event]):
    """Feed it the upstream's stream bytes, split anywhere; it returns the Anthropic events
    they complete (see the module's docstring for the guarantees). Implements
    `llm_proxy.protocols.stream.StreamTranslator`."""

    __slots__ = (
        "_call",
        "_finish",
        "_held",
        "_id",
        "_open",
        "_open_tool",
        "_reader",
        "_tools",
    )

    def __init__(self, call: ChatCall, message_id: str | None = None) -> None:
        super().__init__()
        self._call = call
        self._reader = EventReader()
        self._id = message_id
        self._finish: dict[str, Any] | None = None  # the choice that had the finish_reason
        self._open: str | None = None  # the open block's type
        self._tools: dict[int, _ToolCall] = {}  # by the upstream's index, in arrival order
        self._open_tool: _ToolCall | None = None
        self._held: list[tuple[str, str]] = []  # (block type, text) after tool calls began

    def feed(self, chunk: bytes) -> bytes:
        self._handle(self._reader.feed(chunk))
        return self._take()

    def _drain(self) -> None:
        self._handle(self._reader.close())

    # --- upstream events -------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if event.data.strip() == b"[DONE]":
            if self._started:
                self._end()
            else:
                self._error(EMPTY_STREAM_MESSAGE, "api_error")
            return
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return  # not an event of the chat API: nothing the client could use
        if not isinstance(data, dict):
            return
        if data.get("error") is not None:
            self._error(*_upstream_error(data["error"]))
            return
        usage = from_openai(data.get("usage"))
        if usage is not None:
            self._usage = usage
        if not self._started:
            self._start(data, usage)
        choice = _first_choice(data.get("choices"))
        if choice is None:
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(delta)
        if isinstance(choice.get("finish_reason"), str):
            self._finish = choice

    def _start(self, data: dict[str, Any], usage: TokenUsage | None) -> None:
        if self._id is None:
            self._id = message_id(data.get("id"))
        model = data.get("model")
        model = model if isinstance(model, str) and model else self._call.model
        self._message_start(self._id, model, usage or TokenUsage(0, 0))

    def _delta(self, delta: dict[str, Any]) -> None:
        reasoning = reasoning_of(delta)
        if reasoning:
            self._text("thinking", reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text("text", content)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for fragment in calls:
                if isinstance(fragment, dict):
                    self._tool_fragment(fragment)
            self._advance_tools()

    # --- blocks ----------------------------------------------------------------------

    def _text(self, kind: str, text: str) -> None:
        if self._tools:
            if self._held and self._held[-1][0] == kind:
                self._held[-1] = (kind, self._held[-1][1] + text)
            else:
                self._held.append((kind, text))
            return
        if self._open != kind:
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            self._open_block(kind, empty if kind == "thinking" else {"type": "text", "text": ""})
        field = "thinking" if kind == "thinking" else "text"
        self._block_delta({"type": f"{field}_delta", field: text})

    def _open_block(self, kind: str, block: dict[str, Any]) -> None:
        self._close_block()
        self._start_block(block)
        self._open = kind

    def _close_block(self) -> None:
        if self._open is None:
            return
        tool = self._open_tool
        if tool is not None:
            self._send_arguments(tool, final=True)
            self._open_tool = None
        self._stop_block()
        self._open = None

    # --- tool calls ------------------------------------------------------------------

    def _tool_fragment(self, fragment: dict[str, Any]) -> None:
        tool = self._tools.setdefault(self._tool_index(fragment), _ToolCall())
        if isinstance(fragment.get("id"), str) and fragment["id"] and tool.id is None:
            tool.id = fragment["id"]
        function = fragment.get("function")
        if not isinstance(function, dict):
            return
        if isinstance(function.get("name"), str) and function["name"] and tool.name is None:
            tool.name = function["name"]
        if isinstance(function.get("arguments"), str):
            tool.arguments += function["arguments"]

    def _tool_index(self, fragment: dict[str, Any]) -> int:
        """The upstream's index of the call; a server that sends none (Gemini's) gives each
        call an id: a new id is a new call, no id the latest call."""
        index = fragment.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        identifier = fragment.get("id")
        for known, tool in self._tools.items():
            if identifier is not None and tool.id == identifier:
                return known
        if identifier is None and self._tools:
            return next(reversed(self._tools))
        return max(self._tools, default=-1) + 1

    def _advance_tools(self, final: bool = False) -> None:
        """Forwards what the tool calls may send now: the open call's new arguments; when a
        later call is waiting and the open one is whole (or the message ends), the next call's
        block. Calls open in the order they appeared."""
        while True:
            tool = self._open_tool
            if tool is not None:
                self._send_arguments(tool, final=False)
                waiting = self._next_tool(final)
                if waiting is None or not (final or tool.is_whole()):
                    return
                self._close_block()
            waiting = self._next_tool(final)
            if waiting is None:
                return
            self._open_tool_block(waiting)

    def _next_tool(self, final: bool) -> _ToolCall | None:
        """The first call not yet opened, when it can be (its name known, or the end)."""
        for tool in self._tools.values():
            if not tool.opened:
                return tool if tool.name is not None or final else None
        return None

    def _open_tool_block(self, tool: _ToolCall) -> None:
        position = list(self._tools.values()).index(tool)
        identifier = tool_id(tool.id, f"{self._id}_{position}")
        name = client_name(tool.name or "", self._call.tool_names)
        self._open_block("tool", {"type": "tool_use", "id": identifier, "name": name, "input": {}})
        self._open_tool = tool
        tool.opened = True

    def _send_arguments(self, tool: _ToolCall, final: bool) -> None:
        is_object = tool.is_object()
        if is_object is False or (is_object is None and final):
            if final and tool.arguments.strip():
                # Not an object: the block gets what tool_input makes of it, whole, at its end.
                repaired = orjson.dumps(tool_input(tool.arguments)).decode()
                self._block_delta({"type": "input_json_delta", "partial_json": repaired})
            return
        if is_object and tool.sent < len(tool.arguments):
            fragment = tool.arguments[tool.sent :]
            tool.sent = len(tool.arguments)
            self._block_delta({"type": "input_json_delta", "partial_json": fragment})

    # --- the end ---------------------------------------------------------------------

    def _end(self) -> None:
        self._advance_tools(final=True)
        self._close_block()
        held, self._held = self._held, []
        tools, self._tools = self._tools, {}  # held text goes into blocks of its own now
        for kind, text in held:
            self._text(kind, text)
        self._close_block()
        self._message_end(*final_stop_reason(self._finish or {}, self._call, bool(tools)))


def _first_choice(choices: Any) -> dict[str, Any] | None:
    """The choice the client gets (Anthropic has one answer; the request asked for one)."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def _upstream_error(error: Any) -> tuple[str, str]:
    """An upstream's mid-stream error (`{"error": ...}`) as the message and Anthropic type
    of the client's error event: the type from its numeric code (a status), or its type when
    it is already an Anthropic one, else api_error."""
    if not isinstance(error, dict):
        return (error if isinstance(error, str) else "The upstream failed."), "api_error"
    message = error.get("message")
    text = message if isinstance(message, str) and message else "The upstream failed."
    code = error.get("code")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return text, anthropic_type(code)
    kind = error.get("type")
    if isinstance(kind, str) and kind in ANTHROPIC_STATUSES:
        return text, kind
    return text, "api_error"
