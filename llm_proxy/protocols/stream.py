"""What the request path expects of a stream translator (`llm_proxy.proxy.relay` drives it)."""

from __future__ import annotations

from typing import Protocol

from llm_proxy.protocols.usage import TokenUsage


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
