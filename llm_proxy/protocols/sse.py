"""Server-Sent Events over bytes (the WHATWG event-stream format): an incremental reader that
takes chunks split anywhere and yields whole events, and the writer of one event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# An event larger than this is a broken upstream: the reader drops it rather than grow.
MAX_EVENT_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None  # the `event:` field; None when absent (OpenAI's streams)
    data: bytes  # the `data:` lines, joined with "\n"


class EventReader:
    """Feed it bytes as they arrive; it returns the events completed by them. Lines end in
    LF, CRLF or CR; comments (`: ping`) and `id:`/`retry:` fields are skipped; an event with
    no `data:` line is not dispatched (as the standard says)."""

    __slots__ = ("_buffer", "_cr", "_data", "_event", "_has_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._has_data = False
        self._cr = False  # the last chunk ended in CR: a LF starting the next one belongs to it

    def feed(self, chunk: bytes) -> list[Event]:
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_EVENT_BYTES:
            self._buffer = b""
        events: list[Event] = []
        for line in lines:
            if not line:
                if self._has_data:
                    events.append(Event(self._event, b"\n".join(self._data)))
                self._data, self._event, self._has_data = [], None, False
                continue
            name, colon, value = line.partition(b":")
            if not name:
                continue  # a comment
            if colon and value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
                self._has_data = True
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        return events

    def close(self) -> list[Event]:
        """At the end of the body: an event whose blank line never came (a stream without the
        final blank line) is dispatched."""
        events = self.feed(b"\n\n") if (self._buffer or self._has_data) else []
        self._buffer = b""
        return events


def encode(data: bytes, event: str | None = None) -> bytes:
    """One event: `event: NAME` (when named) and one `data:` line (`data` has no newline:
    compact JSON)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
