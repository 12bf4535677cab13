"""An Anthropic Messages stream as a Gemini streamGenerateContent stream (`?alt=sse`), for
Gemini-native clients served by an Anthropic upstream (the request: `gemini_client`; the
whole answer: `gemini_client_answer`).

Each event is `data: <GenerateContentResponse>` and a blank line, lines ending in CRLF as
Google's. Every chunk has one candidate whose content holds one part: a text delta is a text
part; a thinking delta (when the client asked for thoughts) a thought part, and the block's
signature, at its end, a thought part of empty text carrying the thoughtSignature; a
`tool_use` block is one functionCall part, said whole at its `content_block_stop` (its
`input_json_delta` fragments assembled: Gemini streams a call whole); JSON mode's tool
streams its input's fragments as text parts. `message_stop` ends the stream with a chunk
holding an empty text part (the SDK's chat keeps a turn only when every chunk has a part),
the finishReason and the usageMetadata. Every chunk carries modelVersion and responseId. An
upstream `error` event, a tool input that is not JSON, or `fail()` ends the stream with
Google's error object (`data: {"error": {"code", "message", "status"}}`), which the SDK
raises as ClientError or ServerError from its iterator. An upstream that ends without
`message_stop` still gets the final chunk, unless it said nothing or stopped inside a tool
call or the JSON answer: then an error. Pings say nothing: the SDK reads a line that is not
`data: ` as JSON, and would fail on an SSE comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import ANTHROPIC_STATUSES
from llm_proxy.protocols.gemini_client_answer import (
    GeminiClientCall,
    error_object,
    finish_reason,
    function_call_part,
    response_id,
    thought_part,
    usage_metadata,
)
from llm_proxy.protocols.ids import random_hex
from llm_proxy.protocols.stream import MessagesIn
from llm_proxy.protocols.usage import TokenUsage, from_anthropic

END: Final = b"\r\n\r\n"


@dataclass(slots=True)
class _Block:
    """An Anthropic content block being streamed."""

    kind: str  # text, thinking, tool, json (JSON mode's answer), or ignored
    id: Any = None  # a tool_use's
    name: Any = None
    initial_input: Any = None  # a tool_use block's input at its start (normally {})
    fragments: list[str] = field(default_factory=list)  # its input_json_delta fragments
    signature: str = ""  # a thinking block's
    stopped: bool = False


class GeminiFromMessages(MessagesIn):
    """Anthropic stream bytes in, Gemini stream bytes out (a `StreamTranslator`). Every client
    stream ends exactly once: with the chunk carrying the finishReason, or an error object."""

    __slots__ = ("_blocks", "_call", "_id", "_suffix")

    def __init__(self, call: GeminiClientCall) -> None:
        super().__init__()
        self._call = call
        self._id: str | None = None
        self._suffix = b""  # every chunk's bytes after its candidate (see `_chunk`)
        self._blocks: dict[int, _Block] = {}

    def fail(self, message: str, type: str = "api_error") -> bytes:
        if self._ended:
            return b""
        return self._error(ANTHROPIC_STATUSES.get(type, 500), message)

    def ping(self) -> bytes:
        """Nothing: the SDK would read an SSE comment as a broken JSON chunk."""
        return b""

    def _cut(self) -> str | None:
        if any(
            block.kind in ("tool", "json") and not block.stopped for block in self._blocks.values()
        ):
            return "The upstream ended its stream inside a function call."
        return None

    def _upstream_error(self, data: dict[str, Any], body: bytes) -> bytes:
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        kind = error.get("type")
        message = error.get("message")
        return self._error(
            ANTHROPIC_STATUSES.get(kind, 500) if isinstance(kind, str) else 500,
            message if isinstance(message, str) else "The upstream failed.",
        )

    def _message_start(self, message: Any) -> bytes:
        self._started = True
        if isinstance(message, dict):
            if self._id is None and isinstance(message.get("id"), str):
                self._id = response_id(message["id"])
                self._suffix = b""
            self._usage = from_anthropic(message.get("usage"), self._usage)
        return b""  # the first chunk is the first part's

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(index, int) or not isinstance(block, dict):
            return b""
        self._started = True
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = _Block("text")
            return self._text(block.get("text"))
        if kind == "thinking" and self._call.include_thoughts:
            self._blocks[index] = _Block("thinking", signature=block.get("signature") or "")
            return self._thought(block.get("thinking"))
        if kind == "tool_use" and block.get("name") == self._call.json_tool:
            self._blocks[index] = _Block("json", initial_input=block.get("input"))
            return b""
        if kind == "tool_use":
            self._blocks[index] = _Block(
                "tool", id=block.get("id"), name=block.get("name"), initial_input=block.get("input")
            )
            return b""
        self._blocks[index] = _Block("ignored")
        return b""

    def _block_delta(self, index: Any, delta: Any) -> bytes:
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta" and block.kind == "text":
            return self._text(delta.get("text"))
        if kind == "thinking_delta" and block.kind == "thinking":
            return self._thought(delta.get("thinking"))
        if kind == "signature_delta" and block.kind == "thinking":
            signature = delta.get("signature")
            if isinstance(signature, str):
                block.signature += signature
        elif kind == "input_json_delta" and block.kind == "json":
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                block.fragments.append(fragment)
                return self._text(fragment)
        elif kind == "input_json_delta" and block.kind == "tool":
            fragment = delta.get("partial_json")
            if isinstance(fragment, str):
                block.fragments.append(fragment)
        return b""  # citations, and delta types added later

    def _block_stop(self, index: Any) -> bytes:
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or block.stopped:
            return b""
        block.stopped = True
        if block.kind == "thinking" and block.signature:
            return self._chunk(thought_part("", block.signature))
        if block.kind == "json" and not block.fragments:
            # No input_json_delta came: the answer is the block's input at its start.
            initial = block.initial_input if isinstance(block.initial_input, dict) else {}
            return self._text(orjson.dumps(initial).decode())
        if block.kind != "tool":
            return b""
        text = "".join(block.fragments)
        if not text.strip():
            args = block.initial_input if isinstance(block.initial_input, dict) else {}
        else:
            try:
                args = orjson.loads(text)
            except orjson.JSONDecodeError:
                args = None
            if not isinstance(args, dict):
                return self._error(
                    502, f"The upstream's call of {block.name!r} has arguments that are not JSON."
                )
        return self._chunk(function_call_part(block.id, block.name, args))

    def _text(self, text: Any) -> bytes:
        return self._chunk({"text": text}) if isinstance(text, str) and text else b""

    def _thought(self, text: Any) -> bytes:
        return (
            self._chunk({"text": text, "thought": True}) if isinstance(text, str) and text else b""
        )

    def _finish(self) -> bytes:
        self._ended = True
        usage = orjson.dumps(usage_metadata(self._usage or TokenUsage(0, 0)))
        reason = orjson.dumps(finish_reason(self._stop_reason))
        return (
            b'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},'
            b'"finishReason":' + reason + b',"index":0}],"usageMetadata":' + usage + b","
        ) + self._tail()

    def _error(self, status: int, message: str) -> bytes:
        self._ended = True
        return b"data: " + orjson.dumps(error_object(status, message)) + END

    def _tail(self) -> bytes:
        """What ends every chunk: modelVersion and responseId (encoded once)."""
        if not self._suffix:
            if self._id is None:  # content before message_start: a broken upstream, served
                self._id = random_hex(32)
            fields = orjson.dumps({"modelVersion": self._call.model, "responseId": self._id})
            self._suffix = fields[1:] + END
        return self._suffix

    def _chunk(self, part: dict[str, Any]) -> bytes:
        """One chunk of one part: the bytes of `orjson.dumps` of the whole response."""
        return (
            b'data: {"candidates":[{"content":{"parts":['
            + orjson.dumps(part)
            + b'],"role":"model"},"index":0}],'
            + self._tail()
        )
