"""Gemini's `streamGenerateContent?alt=sse` stream as an Anthropic Messages stream.

Each Gemini event is a whole `GenerateContentResponse` holding the next parts (text and
thoughts in pieces, a function call whole) and the usage so far. The client gets
`message_start` at the first event (its input usage, output 0), the blocks the parts make
(`gemini.ContentBlocks`: one open at a time, a function call as a `tool_use` block with its
whole arguments in one `input_json_delta`), and when the upstream body ends, one
`message_delta` (the stop reason of the last `finishReason`, the last usage) and
`message_stop`. A stream that ended without a finish reason still ends so if it said
something (end_turn); one that said nothing gets only an error event. A Google error event
(`{"error": {...}}`), or `fail`, closes the open block and ends the stream with `event: error`
(as `messages_stream` does). Every client stream ends exactly once.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import anthropic_error_event
from llm_proxy.protocols.gemini import (
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
from llm_proxy.protocols.sse import Event, EventReader, encode
from llm_proxy.protocols.usage import TokenUsage

EMPTY_STREAM_MESSAGE: Final = "The upstream ended its stream without an answer."
_PING: Final = encode(b'{"type":"ping"}', "ping")


class MessagesFromGemini:
    """Feed it Gemini's stream bytes, split anywhere; it returns the Anthropic events they
    complete. Implements `llm_proxy.protocols.stream.StreamTranslator`."""

    def __init__(self, call: GeminiCall) -> None:
        self._call = call
        self._reader = EventReader()
        self._blocks = ContentBlocks(call.tool_names)
        self._started = False
        self._ended = False  # message_stop or the error event was sent
        self._last: dict[str, Any] = {}  # the last chunk that reported a finish
        self._usage: TokenUsage | None = None
        self._out = bytearray()

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def ping(self) -> bytes:
        return _PING

    def feed(self, chunk: bytes) -> bytes:
        self._handle(self._reader.feed(chunk))
        return self._take()

    def flush(self) -> bytes:
        self._handle(self._reader.close())
        if not self._ended:
            if self._started:
                self._end()
            else:
                self._error(EMPTY_STREAM_MESSAGE, "api_error")
        return self._take()

    def fail(self, message: str, type: str = "api_error") -> bytes:
        if not self._ended:
            self._error(message, type)
        return self._take()

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, name: str, body: dict[str, Any]) -> None:
        self._out += encode(orjson.dumps(body), name)

    def _send_blocks(self) -> None:
        for name, body in self._blocks.take():
            self._send(name, body)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if self._ended:
                return  # the client's stream is over: the rest is not for it
            self._event(event)

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
            self._blocks.part(part)
        self._send_blocks()
        if finish_reason(data) is not None:
            self._last = data

    def _start(self, data: dict[str, Any], usage: TokenUsage | None) -> None:
        self._started = True
        start = TokenUsage(usage.input_tokens, 0, usage.cache_read_tokens) if usage else None
        message: dict[str, Any] = {
            "id": message_id(data.get("responseId")),
            "type": "message",
            "role": "assistant",
            "model": self._call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": (start or TokenUsage(0, 0)).anthropic(),
        }
        self._send("message_start", {"type": "message_start", "message": message})

    def _end(self) -> None:
        self._blocks.close()
        self._send_blocks()
        reason = stop_reason(self._last, first_candidate(self._last), self._blocks.tool_calls > 0)
        usage = self._usage or TokenUsage(0, 0)
        delta = {"stop_reason": reason, "stop_sequence": None}
        body = {"type": "message_delta", "delta": delta, "usage": usage.anthropic()}
        self._send("message_delta", body)
        self._send("message_stop", {"type": "message_stop"})
        self._ended = True

    def _error(self, message: str, type: str) -> None:
        if self._started:
            self._blocks.close()
            self._send_blocks()
        self._out += anthropic_error_event(message, type)
        self._ended = True
