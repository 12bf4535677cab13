"""What the request path expects of a stream translator (`llm_proxy.proxy.relay` drives it),
and what the translators to an Anthropic Messages stream (`MessagesOut`) and from one
(`MessagesIn`) share."""

from __future__ import annotations

from typing import Any, Final, Generic, Protocol, TypeVar

import orjson

from llm_proxy.protocols.errors import anthropic_error_event
from llm_proxy.protocols.sse import Event, EventReader, encode
from llm_proxy.protocols.usage import TokenUsage, from_anthropic

EMPTY_STREAM_MESSAGE: Final = "The upstream ended its stream without an answer."
PING_EVENT: Final = encode(b'{"type":"ping"}', "ping")
E = TypeVar("E")  # an upstream event, as the translator's decoder gives it


class StreamTranslator(Protocol):
    """Upstream stream bytes in, the client protocol's stream bytes out, as whole events.

    `feed` takes chunks split anywhere and returns what the client may be sent now (b"" when
    nothing is complete yet). `flush` is called once when the upstream body has ended: it
    returns what closes the client's stream validly (an upstream that ended without its
    final events still gets a well-formed end, or an error event when nothing was said).
    `fail` is called instead of `flush` when the upstream failed mid-stream: it closes what
    is open and ends with the protocol's error event. `usage` is the usage the upstream
    reported, once it has (None before, or if it never does). `ping` is sent on an idle
    stream, between events.
    """

    @property
    def usage(self) -> TokenUsage | None: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def fail(self, message: str, type: str = "api_error") -> bytes: ...

    def ping(self) -> bytes:
        """What keeps an idle stream alive (Anthropic's `event: ping`, an SSE comment for
        OpenAI clients): the relay sends it when the upstream has said nothing for a while."""
        ...


class MessagesOut(Generic[E]):
    """What the translators to an Anthropic Messages stream share (`messages_stream`,
    `gemini_stream`, `converse_stream`): the output buffer, `message_start`, content
    blocks numbered from 0 (`_start_block`, `_block_delta`, `_stop_block`, for a translator
    that numbers its own), the end (`message_delta` with the usage, `message_stop`), the
    error event and the
    `StreamTranslator` contract of `flush`, `fail` and `ping`.

    A subclass feeds the upstream's events of type `E` to `_handle` and translates each in
    `_event`; `_drain` hands over what the body's end completes, `_end` ends a message that
    started, `_close_block` closes the open block. The client's stream ends exactly once:
    after `_message_end` or `_error`, nothing more is translated.
    """

    __slots__ = ("_blocks", "_ended", "_out", "_started", "_usage")

    def __init__(self) -> None:
        self._blocks = 0  # blocks started by `_start_block` so far: the next one's index
        self._started = False  # message_start was sent
        self._ended = False  # message_stop or the error event was sent
        self._usage: TokenUsage | None = None
        self._out = bytearray()

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def ping(self) -> bytes:
        """An `event: ping`, which the client ignores: for a relay keeping an idle stream
        alive (allowed anywhere, before `message_start` too)."""
        return PING_EVENT

    def flush(self) -> bytes:
        self._drain()
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

    def _drain(self) -> None:
        raise NotImplementedError

    def _event(self, event: E) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError

    def _close_block(self) -> None:
        raise NotImplementedError

    def _handle(self, events: list[E]) -> None:
        for event in events:
            if self._ended:
                return  # the client's stream is over: the rest is not for it
            self._event(event)

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, name: str, body: dict[str, Any]) -> None:
        self._out += encode(orjson.dumps(body), name)

    def _message_start(self, message_id: str | None, model: str, usage: TokenUsage) -> None:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage.anthropic(),
        }
        self._send("message_start", {"type": "message_start", "message": message})

    def _start_block(self, block: dict[str, Any]) -> None:
        """`content_block_start` of the next block (the open one closed first)."""
        start = {"type": "content_block_start", "index": self._blocks, "content_block": block}
        self._send("content_block_start", start)
        self._blocks += 1

    def _block_delta(self, delta: dict[str, Any]) -> None:
        body = {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        self._send("content_block_delta", body)

    def _stop_block(self) -> None:
        self._send("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})

    def _message_end(self, reason: str, sequence: str | None) -> None:
        """`message_delta` (the stop reason, the whole usage) and `message_stop`."""
        usage = self._usage or TokenUsage(0, 0)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        self._send(
            "message_delta", {"type": "message_delta", "delta": delta, "usage": usage.anthropic()}
        )
        self._send("message_stop", {"type": "message_stop"})
        self._ended = True

    def _error(self, message: str, type: str) -> None:
        """Closes the open block (every block the client saw is complete) and ends the stream
        with `event: error`."""
        self._close_block()
        self._out += anthropic_error_event(message, type)
        self._ended = True


class MessagesIn:
    """What the translators from an Anthropic Messages stream share (`chat_stream`,
    `gemini_client_stream`): its events read (chunks split anywhere), each kind handed to its
    method, the stop reason and usage of `message_delta` kept, and `flush`'s rule: a stream
    that said nothing, or stopped inside a block the client cannot take cut (`_cut`), ends
    with an error; else with `_finish`. Once the client's stream ended (`_ended`), nothing
    more is translated."""

    __slots__ = ("_ended", "_reader", "_started", "_stop_reason", "_usage")

    def __init__(self) -> None:
        self._reader = EventReader()
        self._stop_reason: Any = None
        self._usage: TokenUsage | None = None
        self._started = False  # the upstream's message started
        self._ended = False  # the client's stream ended

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def feed(self, chunk: bytes) -> bytes:
        return self._events(self._reader.feed(chunk)) if not self._ended else b""

    def flush(self) -> bytes:
        said = self._events(self._reader.close()) if not self._ended else b""
        if self._ended:
            return said
        if not self._started:
            return said + self.fail(EMPTY_STREAM_MESSAGE)
        cut = self._cut()
        if cut is not None:
            return said + self.fail(cut)
        return said + self._finish()

    def fail(self, message: str, type: str = "api_error") -> bytes:
        raise NotImplementedError

    def _cut(self) -> str | None:
        """Why the stream cannot end well where it stopped (inside a tool call), or None."""
        raise NotImplementedError

    def _message_start(self, message: Any) -> bytes:
        raise NotImplementedError

    def _block_start(self, index: Any, block: Any) -> bytes:
        raise NotImplementedError

    def _block_delta(self, index: Any, delta: Any) -> bytes:
        raise NotImplementedError

    def _block_stop(self, index: Any) -> bytes:
        raise NotImplementedError

    def _finish(self) -> bytes:
        raise NotImplementedError

    def _upstream_error(self, data: dict[str, Any], body: bytes) -> bytes:
        raise NotImplementedError

    def _events(self, events: list[Event]) -> bytes:
        said = []
        for event in events:
            if self._ended:
                break
            said.append(self._event(event))
        return b"".join(said)

    def _event(self, event: Event) -> bytes:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(data, dict):
            return b""
        kind = data.get("type", event.event)
        if kind == "message_start":
            return self._message_start(data.get("message"))
        if kind == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(data.get("index"), data.get("delta"))
        if kind == "content_block_stop":
            return self._block_stop(data.get("index"))
        if kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            self._usage = from_anthropic(data.get("usage"), self._usage)
            return b""
        if kind == "message_stop":
            return self._finish()
        if kind == "error":
            return self._upstream_error(data, event.data)
        return b""  # ping, and event types added after this was written
