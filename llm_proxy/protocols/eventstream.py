"""AWS's binary event-stream encoding (`application/vnd.amazon.eventstream`), as Amazon
Bedrock's ConverseStream answers: an incremental decoder that takes chunks split anywhere and
returns whole, checked messages, and an encoder of string-headed messages (for tests and fakes).

A message: the prelude (total length, headers length, both 32-bit big-endian, then the CRC32
of those 8 bytes), the headers (each a 1-byte name length, the UTF-8 name, a 1-byte value type
and the value), the payload, then the CRC32 of everything before it. The prelude's CRC is
checked before its lengths are trusted, so a corrupted length is reported as corruption, never
waited on; the lengths are bounded as botocore bounds them (headers 128 KiB, payload 24 MiB:
the format's documents say 16 MiB, botocore raised its limit for services that send more).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias

PRELUDE_BYTES: Final = 12
CRC_BYTES: Final = 4
MIN_MESSAGE_BYTES: Final = PRELUDE_BYTES + CRC_BYTES
MAX_HEADERS_BYTES: Final = 128 * 1024
MAX_PAYLOAD_BYTES: Final = 24 * 1024 * 1024
MAX_MESSAGE_BYTES: Final = MIN_MESSAGE_BYTES + MAX_HEADERS_BYTES + MAX_PAYLOAD_BYTES

_PRELUDE: Final = struct.Struct("!III")
_UINT8: Final = struct.Struct("!B")
_UINT16: Final = struct.Struct("!H")
_UINT32: Final = struct.Struct("!I")
# Fixed-size header values by type: 2 byte, 3 short, 4 int, 5 long, 8 timestamp (ms).
_INTEGERS: Final = {2: struct.Struct("!b"), 3: struct.Struct("!h"), 4: struct.Struct("!i")}
_INT64: Final = struct.Struct("!q")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_STRING_TYPE: Final = 7

HeaderValue: TypeAlias = str | bytes | int | bool | datetime | uuid.UUID


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. Header values by wire type: bool (0, 1), int (byte, short, int,
    long), bytes (6), str (7), datetime in UTC (8, a timestamp in milliseconds), UUID (9)."""

    headers: dict[str, HeaderValue]
    payload: bytes


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (the message says what is wrong): the stream
    cannot be resynchronised after it, so the decoder stays failed. `messages`: the whole
    messages the same chunk held before the fault (they are valid)."""

    def __init__(self, message: str, messages: list[Message] | None = None) -> None:
        super().__init__(message)
        self.messages = messages or []


class EventStreamDecoder:
    """Feed it the body's chunks as they arrive; it returns the messages they complete. One
    growing buffer, consumed bytes dropped once per chunk: a message split into many chunks
    costs its length, not its length times the chunks."""

    __slots__ = ("_buffer", "_error", "_pending")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: tuple[int, int, int] | None = None  # the checked prelude at offset 0
        self._error: EventStreamError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """The messages `data` completes; an EventStreamError at the first fault (then at
        every later call)."""
        if self._error is not None:
            raise EventStreamError(str(self._error))
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        start = 0
        try:
            with memoryview(buffer) as view:
                while len(buffer) - start >= PRELUDE_BYTES:
                    prelude = self._pending if start == 0 and self._pending else None
                    total, headers_length, prelude_crc = prelude or _prelude(view, start)
                    if len(buffer) - start < total:
                        self._pending = (total, headers_length, prelude_crc)
                        break
                    self._pending = None
                    end = start + total
                    messages.append(_message(view[start:end], headers_length, prelude_crc))
                    start = end
        except EventStreamError as error:
            self._error = error
            self._buffer = bytearray()  # (the error's traceback may still hold views of it)
            raise EventStreamError(str(error), messages) from None
        if start:
            del buffer[:start]
        return messages

    def close(self) -> None:
        """At the end of the body: an EventStreamError when a message was cut short."""
        if self._error is None and self._buffer:
            self._error = EventStreamError(
                f"the event stream ends inside a message ({len(self._buffer)} bytes left over)"
            )
        if self._error is not None:
            raise EventStreamError(str(self._error))


def _prelude(view: memoryview, start: int) -> tuple[int, int, int]:
    total, headers_length, expected = _PRELUDE.unpack_from(view, start)
    computed = zlib.crc32(view[start : start + 8])
    if computed != expected:
        raise EventStreamError(
            f"prelude CRC mismatch (expected 0x{expected:08x}, computed 0x{computed:08x})"
        )
    if not MIN_MESSAGE_BYTES <= total <= MAX_MESSAGE_BYTES:
        raise EventStreamError(
            f"message length {total} out of bounds ({MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES})"
        )
    if headers_length > MAX_HEADERS_BYTES or headers_length > total - MIN_MESSAGE_BYTES:
        raise EventStreamError(
            f"headers length {headers_length} out of bounds (at most {MAX_HEADERS_BYTES}, "
            f"and within the message length {total})"
        )
    if total - MIN_MESSAGE_BYTES - headers_length > MAX_PAYLOAD_BYTES:
        raise EventStreamError(f"payload longer than {MAX_PAYLOAD_BYTES} bytes")
    return total, headers_length, expected


def _message(frame: memoryview, headers_length: int, prelude_crc: int) -> Message:
    """A whole frame (its prelude checked) as a Message, once its CRC matches."""
    crc_at = len(frame) - CRC_BYTES
    (expected,) = _UINT32.unpack_from(frame, crc_at)
    # CRC32 continues: the prelude's CRC is the CRC of the first 8 bytes.
    computed = zlib.crc32(frame[8:crc_at], prelude_crc)
    if computed != expected:
        raise EventStreamError(
            f"message CRC mismatch (expected 0x{expected:08x}, computed 0x{computed:08x})"
        )
    headers_end = PRELUDE_BYTES + headers_length
    headers = _headers(bytes(frame[PRELUDE_BYTES:headers_end]))
    return Message(headers, bytes(frame[headers_end:crc_at]))


def _headers(data: bytes) -> dict[str, HeaderValue]:
    """The headers section (a copy: small, and bytes index and slice faster than a view)."""
    headers: dict[str, HeaderValue] = {}
    position, end = 0, len(data)
    try:
        while position < end:
            size = data[position]
            at = position + 1 + size  # the value type's position
            if not size:
                raise EventStreamError("a header has an empty name")
            if at >= end:
                raise EventStreamError("a header name runs past the headers")
            name = data[position + 1 : at].decode()
            kind = data[at]
            if kind == _STRING_TYPE:  # nearly every header: read here, without a call
                position = at + 3 + ((data[at + 1] << 8) | data[at + 2])
                if position > end:
                    raise EventStreamError(
                        f"the value of the header {name!r} runs past the headers"
                    )
                value: HeaderValue = data[at + 3 : position].decode()
            else:
                value, position = _value(data, kind, at + 1, name)
            if name in headers:
                raise EventStreamError(f"the header {name!r} appears twice")
            headers[name] = value
    except (IndexError, struct.error):
        raise EventStreamError("a header runs past the headers") from None
    except UnicodeDecodeError:
        raise EventStreamError("a header's name or string value is not UTF-8") from None
    return headers


def _value(data: bytes, kind: int, at: int, name: str) -> tuple[HeaderValue, int]:
    """The value of type `kind` (not a string) at `at`, and the position after it."""
    if kind in (0, 1):
        return kind == 0, at
    integer = _INTEGERS.get(kind)
    if integer is not None:
        return integer.unpack_from(data, at)[0], at + integer.size
    if kind in (5, 8):
        (number,) = _INT64.unpack_from(data, at)
        if kind == 5:
            return number, at + 8
        return _EPOCH + timedelta(milliseconds=number), at + 8
    if kind == 6:
        (size,) = _UINT16.unpack_from(data, at)
        if at + 2 + size > len(data):
            raise EventStreamError(f"the value of the header {name!r} runs past the headers")
        return data[at + 2 : at + 2 + size], at + 2 + size
    if kind == 9:
        if at + 16 > len(data):
            raise EventStreamError(f"the value of the header {name!r} runs past the headers")
        return uuid.UUID(bytes=data[at : at + 16]), at + 16
    raise EventStreamError(f"the header {name!r} has the unknown value type {kind}")


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers (type 7), as AWS sends ConverseStream events."""
    encoded = bytearray()
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        encoded += _UINT8.pack(len(name_bytes)) + name_bytes
        encoded += _UINT8.pack(_STRING_TYPE) + _UINT16.pack(len(value_bytes)) + value_bytes
    total = MIN_MESSAGE_BYTES + len(encoded) + len(payload)
    prelude = struct.pack("!II", total, len(encoded))
    frame = prelude + _UINT32.pack(zlib.crc32(prelude)) + encoded + payload
    return frame + _UINT32.pack(zlib.crc32(frame))
