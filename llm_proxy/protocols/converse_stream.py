"""A Bedrock ConverseStream answer (AWS event-stream bytes) as an Anthropic Messages stream.

Each event message carries `:message-type` (`event`, `exception`, `error`), `:event-type`
and a JSON payload (with a `p` padding field, ignored like every unknown field):

* `messageStart`: `message_start` (usage zeros: Converse counts tokens only at the end).
* `contentBlockStart` with `toolUse`: a `tool_use` block starts; `contentBlockDelta`
  `toolUse.input`: its `input_json_delta`.
* `contentBlockDelta` `text`: a `text` block (opened by its first delta: Converse starts only
  tool blocks), `text_delta`.
* `contentBlockDelta` `reasoningContent`: `text` and `signature` a `thinking` block's
  `thinking_delta` and `signature_delta`; `redactedContent` a `redacted_thinking` block,
  whole at its start.
* `contentBlockStop`: `content_block_stop`.
* `messageStop` (`stopReason`), then `metadata` (`usage`): `message_delta` (the stop reason
  and the whole usage, input tokens included: Anthropic's `message_delta` may carry them)
  and `message_stop`, once `metadata` came (or at `flush`).
* an `exception` message (`:exception-type`, `converse_response.EXCEPTIONS` names the
  Anthropic type) or an `error` message: the `error` event, and nothing after.

Deltas of other kinds (citations, images, tool results) are dropped, as a tool input delta
with no tool block open. A stream the decoder finds corrupt (a CRC mismatch, a length out of
bounds, cut inside a message) ends with an `api_error` error event after the whole messages
before the fault.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from llm_proxy.protocols.converse_response import (
    ConverseCall,
    converse_usage,
    message_id,
    stop_reason,
    stream_error,
)
from llm_proxy.protocols.eventstream import EventStreamDecoder, EventStreamError, Message
from llm_proxy.protocols.messages_answer import tool_id
from llm_proxy.protocols.stream import EMPTY_STREAM_MESSAGE, MessagesOut
from llm_proxy.protocols.tool_names import client_name
from llm_proxy.protocols.usage import TokenUsage

CORRUPT_STREAM_MESSAGE: Final = "The upstream's event stream is corrupted ({})."

__all__ = ["CORRUPT_STREAM_MESSAGE", "EMPTY_STREAM_MESSAGE", "MessagesFromConverse"]


class MessagesFromConverse(MessagesOut[Message]):
    """Feed it ConverseStream's body, split anywhere; it returns the Anthropic events the
    bytes complete. Implements `llm_proxy.protocols.stream.StreamTranslator`."""

    __slots__ = ("_call", "_decoder", "_id", "_open", "_open_index", "_stop")

    def __init__(self, call: ConverseCall, message_id: str | None = None) -> None:
        super().__init__()
        self._call = call
        self._decoder = EventStreamDecoder()
        self._id = message_id
        self._stop: dict[str, Any] | None = None  # the messageStop event
        self._open: str | None = None  # the open block's type
        self._open_index: Any = None  # the upstream's contentBlockIndex of the open block

    def feed(self, chunk: bytes) -> bytes:
        if self._ended:
            return b""
        try:
            messages = self._decoder.feed(chunk)
        except EventStreamError as error:
            self._handle(error.messages)
            self._corrupt(error)
        else:
            self._handle(messages)
        return self._take()

    def _drain(self) -> None:
        if not self._ended:
            try:
                self._decoder.close()
            except EventStreamError as error:
                self._corrupt(error)

    def _corrupt(self, error: EventStreamError) -> None:
        if not self._ended:
            self._error(CORRUPT_STREAM_MESSAGE.format(error), "api_error")

    # --- upstream messages -----------------------------------------------------------

    def _event(self, message: Message) -> None:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "exception":
            name = headers.get(":exception-type")
            self._error(*stream_error(name if isinstance(name, str) else "", message.payload))
            return
        if kind == "error":
            text = headers.get(":error-message") or headers.get(":error-code")
            self._error(text if isinstance(text, str) else "The upstream failed.", "api_error")
            return
        try:
            data = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return  # not an event of Converse: nothing the client could use
        if not isinstance(data, dict):
            return
        event = headers.get(":event-type")
        if event == "metadata":
            self._metadata(data)
            return
        if not self._started:
            self._start()
        if event == "contentBlockStart":
            self._block_start(data)
        elif event == "contentBlockDelta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, data.get("contentBlockIndex"))
        elif event == "contentBlockStop":
            self._close_block()
        elif event == "messageStop":
            self._close_block()
            self._stop = data
            if self._usage is not None:
                self._end()

    def _start(self) -> None:
        if self._id is None:
            self._id = message_id()
        self._message_start(self._id, self._call.model, TokenUsage(0, 0))

    def _metadata(self, data: dict[str, Any]) -> None:
        self._usage = converse_usage(data.get("usage")) or self._usage
        if self._stop is not None:
            self._end()

    # --- blocks ----------------------------------------------------------------------

    def _block_start(self, data: dict[str, Any]) -> None:
        start = data.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return  # the start of a block Anthropic has no counterpart for
        name = use.get("name")
        block = {
            "type": "tool_use",
            "id": tool_id(use.get("toolUseId"), f"{self._id}_{self._blocks}"),
            "name": client_name(name if isinstance(name, str) else "", self._call.tool_names),
            "input": {},
        }
        self._open_block("tool_use", block, data.get("contentBlockIndex"))

    def _delta(self, delta: dict[str, Any], index: Any) -> None:
        text = delta.get("text")
        if isinstance(text, str):
            if text:
                self._in_block("text", index, {"type": "text", "text": ""})
                self._block_delta({"type": "text_delta", "text": text})
            return
        use = delta.get("toolUse")
        if isinstance(use, dict):
            fragment = use.get("input")
            if self._open == "tool_use" and isinstance(fragment, str) and fragment:
                self._block_delta({"type": "input_json_delta", "partial_json": fragment})
            return
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            self._reasoning(reasoning, index)

    def _reasoning(self, reasoning: dict[str, Any], index: Any) -> None:
        redacted = reasoning.get("redactedContent")
        if isinstance(redacted, str) and redacted:
            self._close_block()
            self._open_block(
                "redacted_thinking", {"type": "redacted_thinking", "data": redacted}, index
            )
            return
        empty = {"type": "thinking", "thinking": "", "signature": ""}
        text, signature = reasoning.get("text"), reasoning.get("signature")
        if isinstance(text, str) and text:
            self._in_block("thinking", index, empty)
            self._block_delta({"type": "thinking_delta", "thinking": text})
        if isinstance(signature, str) and signature:
            self._in_block("thinking", index, empty)
            self._block_delta({"type": "signature_delta", "signature": signature})

    def _in_block(self, kind: str, index: Any, block: dict[str, Any]) -> None:
        """Opens a block of `kind` for the upstream's block `index`, unless it is open."""
        if self._open != kind or self._open_index != index:
            self._open_block(kind, block, index)

    def _open_block(self, kind: str, block: dict[str, Any], index: Any) -> None:
        self._close_block()
        self._start_block(block)
        self._open, self._open_index = kind, index

    def _close_block(self) -> None:
        if self._open is None:
            return
        self._stop_block()
        self._open = self._open_index = None

    # --- the end ---------------------------------------------------------------------

    def _end(self) -> None:
        self._close_block()
        stop = self._stop or {}
        fields = stop.get("additionalModelResponseFields")
        self._message_end(*stop_reason(stop.get("stopReason"), fields, self._call))
