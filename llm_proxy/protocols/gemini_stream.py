"""Gemini's `streamGenerateContent?alt=sse` stream as an Anthropic Messages stream.

Each Gemini event is a whole `GenerateContentResponse` holding the next parts (text and
thoughts in pieces, a function call whole) and the usage so far. The client gets
`message_start` at the first event (its input usage, output 0), the blocks the parts make
(`gemini_response.ContentBlocks`: one open at a time, a function call as a `tool_use` block
with its whole arguments in one `input_json_delta`), and when the upstream body ends, one
`message_delta` (the stop reason of the last `finishReason`, the last usage) and
`message_stop`. A stream that ended without a finish reason still ends so if it said
something (end_turn); one that said nothing gets only an error event. A Google error event
(`{"error": {...}}`), or `fail`, closes the open block and ends the stream with `event: error`
(as `messages_stream` does). Every client stream ends exactly once.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_proxy.protocols.gemini_response import (
    ContentBlocks,
    GeminiCall,
    candidate_parts,
    finish_reason,
    first_candidate,
    gemini_usage,
    google_error,
    message_id,
    stop_reason,
)
from llm_proxy.protocols.sse import Event, EventReader
from llm_proxy.protocols.stream import EMPTY_STREAM_MESSAGE, MessagesOut
from llm_proxy.protocols.usage import TokenUsage

__all__ = ["EMPTY_STREAM_MESSAGE", "MessagesFromGemini"]


class MessagesFromGemini(MessagesOut[Event]):
    """Feed it Gemini's stream bytes, split anywhere; it returns the Anthropic events they
    complete. Implements `llm_proxy.protocols.stream.StreamTranslator`."""

    __slots__ = ("_call", "_last", "_parts", "_reader")

    def __init__(self, call: GeminiCall) -> None:
        super().__init__()
        self._call = call
        self._reader = EventReader()
        self._parts = ContentBlocks(call.tool_names)
        self._last: dict[str, Any] = {}  # the last chunk that reported a finish

    def feed(self, chunk: bytes) -> bytes:
        self._handle(self._reader.feed(chunk))
        return self._take()

    def _drain(self) -> None:
        self._handle(self._reader.close())

    def _send_blocks(self) -> None:
        for name, body in self._parts.take():
            self._send(name, body)

    def _event(self, event: Event) -> None:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return  # not an event of the Gemini API: nothing the client could use
        error = google_error(data)
        if error is not None:
            self._error(*error)
            return
        if not isinstance(data, dict):
            return
        usage = gemini_usage(data)
        if usage is not None:
            self._usage = usage
        if not self._started:
            self._start(data, usage)
        for part in candidate_parts(first_candidate(data)):
            self._parts.part(part)
        self._send_blocks()
        if finish_reason(data) is not None:
            self._last = data

    def _start(self, data: dict[str, Any], usage: TokenUsage | None) -> None:
        """`message_start`, its usage the input so far (output 0)."""
        start = TokenUsage(usage.input_tokens, 0, usage.cache_read_tokens) if usage else None
        model = self._call.model
        self._message_start(message_id(data.get("responseId")), model, start or TokenUsage(0, 0))

    def _end(self) -> None:
        self._close_block()
        tools = self._parts.tool_calls > 0
        self._message_end(stop_reason(self._last, first_candidate(self._last), tools), None)

    def _close_block(self) -> None:
        self._parts.close()
        self._send_blocks()
