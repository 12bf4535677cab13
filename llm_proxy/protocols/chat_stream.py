"""An Anthropic Messages stream as an OpenAI chat-completions stream, for OpenAI clients served
by an Anthropic upstream (the request and the whole answer: `chat_via_messages`).

Anthropic's events become `chat.completion.chunk` events: the first one (with `message_start`)
carries `role: assistant`; text deltas are `content`; thinking deltas `reasoning_content`
(signatures dropped: an OpenAI client cannot send them back); each client `tool_use` block is a
tool call, its id, name and empty arguments first, then each `input_json_delta` as an argument
fragment, its `index` counted among the tool calls; the json response_format's tool streams its
input as `content`. `message_stop` ends the stream: the chunk with the finish_reason, a usage
chunk (`choices: []`) when `stream_options.include_usage` was set, then `data: [DONE]`. Pings,
other block types (server tools) and unknown events say nothing. An upstream `error` event, or
`fail()`, ends it with an OpenAI error event (`data: {"error": {...}}`, no `[DONE]`). An
upstream that ends without `message_stop` still gets a finish (its `message_delta`'s stop
reason, else `stop`) and `[DONE]`, unless it said nothing or stopped inside a tool call (its
arguments cut): then an error event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy.protocols.chat_via_messages import (
    MessagesCall,
    chat_id,
    finish_reason,
    openai_usage,
)
from llm_proxy.protocols.errors import ANTHROPIC_STATUSES, anthropic_to_openai, openai_error
from llm_proxy.protocols.ids import random_hex
from llm_proxy.protocols.sse import encode
from llm_proxy.protocols.stream import MessagesIn
from llm_proxy.protocols.usage import TokenUsage, from_anthropic

DONE: Final = b"data: [DONE]\n\n"
PING: Final = b": ping\n\n"


@dataclass(slots=True)
class _Block:
    """An Anthropic content block being streamed, and what it is on the OpenAI side."""

    kind: str  # text, thinking, tool (a client tool call), json (the answer), or ignored
    tool_index: int = -1  # its index among the tool calls (kind tool)
    initial_input: Any = None  # a tool_use block's input at its start (normally {})
    said: bool = False  # a tool's arguments (or the json answer) have been sent
    stopped: bool = False  # its content_block_stop came


class ChatStream(MessagesIn):
    """Anthropic stream bytes in, OpenAI chat-completions stream bytes out (a
    `StreamTranslator`). Every client stream ends exactly once: `[DONE]` after the finish
    (and usage) chunk, or one error event."""

    __slots__ = (
        "_blocks",
        "_call",
        "_called_tools",
        "_created",
        "_id",
        "_model",
        "_prefix",
        "_tool_calls",
    )

    def __init__(self, call: MessagesCall, *, created: int) -> None:
        super().__init__()
        self._call = call
        self._created = created
        self._id: str | None = None
        self._model = call.model
        self._prefix = b""  # every chunk's bytes up to its delta (see `_chunk`)
        self._blocks: dict[int, _Block] = {}
        self._tool_calls = 0  # OpenAI tool call indexes handed out
        self._called_tools = False

    def fail(self, message: str, type: str = "api_error") -> bytes:
        if self._ended:
            return b""
        self._ended = True
        return encode(openai_error(message, type))

    def ping(self) -> bytes:
        """An SSE comment that keeps the client's connection alive (nothing once ended)."""
        return PING if not self._ended else b""

    def _cut(self) -> str | None:
        if any(block.kind == "tool" and not block.stopped for block in self._blocks.values()):
            # A tool call's arguments were cut: the client must not run it on a part of them.
            return "The upstream ended its stream inside a tool call."
        return None

    def _message_start(self, message: Any) -> bytes:
        if isinstance(message, dict):
            if self._id is None:
                self._id = chat_id(message.get("id"))
            if isinstance(message.get("model"), str):
                self._model = message["model"]
            self._prefix = b""  # (the id or the model may have changed)
            self._usage = from_anthropic(message.get("usage"), self._usage)
        return self._start()

    def _start(self) -> bytes:
        """The first chunk, once: the role (content and refusal empty, as OpenAI's)."""
        if self._started:
            return b""
        self._started = True
        if self._id is None:  # content before message_start: a broken upstream, still served
            self._id = "chatcmpl-" + random_hex(32)
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(index, int) or not isinstance(block, dict):
            return b""
        kind = block.get("type")
        said = self._start()
        if kind == "text":
            self._blocks[index] = _Block("text")
            return said + self._say("content", block.get("text"))
        if kind == "thinking":
            self._blocks[index] = _Block("thinking")
            return said + self._say("reasoning_content", block.get("thinking"))
        if kind != "tool_use":
            self._blocks[index] = _Block("ignored")
            return said
        initial = block.get("input")
        if self._call.json_tool is not None and block.get("name") == self._call.json_tool:
            self._blocks[index] = _Block("json", initial_input=initial)
            return said
        tool = _Block("tool", tool_index=self._tool_calls, initial_input=initial)
        self._blocks[index] = tool
        self._tool_calls += 1
        self._called_tools = True
        call = {
            "index": tool.tool_index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return said + self._chunk({"tool_calls": [call]})

    def _block_delta(self, index: Any, delta: Any) -> bytes:
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta" and block.kind == "text":
            return self._say("content", delta.get("text"))
        if kind == "thinking_delta" and block.kind == "thinking":
            return self._say("reasoning_content", delta.get("thinking"))
        if kind == "input_json_delta" and block.kind in ("tool", "json"):
            return self._arguments(block, delta.get("partial_json"))
        return b""  # signatures, citations, and delta types added later

    def _block_stop(self, index: Any) -> bytes:
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None:
            return b""
        block.stopped = True
        if block.kind not in ("tool", "json") or block.said:
            return b""
        # No input_json_delta came (a call without arguments): the arguments must still be
        # JSON, so the block's input at its start is said.
        initial = block.initial_input if isinstance(block.initial_input, dict) else {}
        return self._arguments(block, orjson.dumps(initial).decode())

    def _arguments(self, block: _Block, fragment: Any) -> bytes:
        if not isinstance(fragment, str) or not fragment:
            return b""
        block.said = True
        if block.kind == "json":
            return self._chunk({"content": fragment})
        call = {"index": block.tool_index, "function": {"arguments": fragment}}
        return self._chunk({"tool_calls": [call]})

    def _say(self, field: str, text: Any) -> bytes:
        return self._chunk({field: text}) if isinstance(text, str) and text else b""

    def _finish(self) -> bytes:
        said = self._start()
        reason = finish_reason(self._stop_reason, self._called_tools, self._call)
        said += self._chunk({}, reason)
        if self._call.include_usage:
            usage = openai_usage(self._usage or TokenUsage(0, 0))
            said += encode(orjson.dumps({**self._base(), "choices": [], "usage": usage}))
        self._ended = True
        return said + DONE

    def _upstream_error(self, data: dict[str, Any], body: bytes) -> bytes:
        error = data.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        status = ANTHROPIC_STATUSES.get(kind, 500) if isinstance(kind, str) else 500
        self._ended = True
        return encode(anthropic_to_openai(status, body))

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """One chunk: what every chunk of this stream shares (its id, created, model) encoded
        once, only the delta and the finish reason each time. The bytes are those of
        `orjson.dumps` of the whole chunk (compact, keys in this order)."""
        prefix = self._prefix
        if not prefix:
            base = orjson.dumps(self._base())
            prefix = self._prefix = b"data: " + base[:-1] + b',"choices":[{"index":0,"delta":'
        # As OpenAI's: with include_usage, every chunk but the last has a null usage.
        end = b',"usage":null}\n\n' if self._call.include_usage else b"}\n\n"
        finished = b"null" if finish is None else orjson.dumps(finish)
        return (
            prefix
            + orjson.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + finished
            + b"}]"
            + end
        )
