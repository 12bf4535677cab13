"""AWS's binary event stream (`llm_proxy.protocols.eventstream`): frames made by the module's
encoder and by this file's own typed-header writer, decoded whole and split at every byte,
compared with botocore's decoder (the AWS SDK's own) as the reference, and corrupted."""

from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.protocols.eventstream import (
    MAX_HEADERS_BYTES,
    MAX_MESSAGE_BYTES,
    EventStreamDecoder,
    EventStreamError,
    Message,
    encode_message,
)

EVENT = {":event-type": "contentBlockDelta", ":content-type": "application/json"}
UUID = uuid.UUID("0123456789abcdef0123456789abcdef")


def frame(headers: bytes, payload: bytes) -> bytes:
    """A frame around already encoded headers, written here independently of the module."""
    total = 16 + len(headers) + len(payload)
    prelude = struct.pack(">II", total, len(headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def header(name: str, kind: int, value: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([kind]) + value


TYPED_HEADERS = b"".join(
    [
        header("yes", 0, b""),
        header("no", 1, b""),
        header("byte", 2, struct.pack(">b", -7)),
        header("short", 3, struct.pack(">h", -300)),
        header("int", 4, struct.pack(">i", 70000)),
        header("long", 5, struct.pack(">q", -(2**40))),
        header("bytes", 6, struct.pack(">H", 3) + b"\x00\xff\x10"),
        header("string", 7, struct.pack(">H", 5) + "héllo".encode()[:5]),
        header("time", 8, struct.pack(">q", 1_700_000_000_123)),
        header("id", 9, UUID.bytes),
    ]
)


def decode(data: bytes, step: int = 0) -> list[Message]:
    decoder = EventStreamDecoder()
    if not step:
        messages = decoder.feed(data)
    else:
        messages = []
        for start in range(0, len(data), step):
            messages += decoder.feed(data[start : start + step])
    decoder.close()
    return messages


def botocore_decode(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def as_botocore(message: Message) -> tuple[dict[str, Any], bytes]:
    """Our message with header values as botocore gives them (a timestamp as its
    milliseconds, a UUID as its bytes)."""
    headers: dict[str, Any] = {}
    for name, value in message.headers.items():
        if isinstance(value, datetime):
            value = round((value - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
        elif isinstance(value, uuid.UUID):
            value = value.bytes
        headers[name] = value
    return headers, message.payload


def test_every_header_type() -> None:
    (message,) = decode(frame(TYPED_HEADERS, b"{}"))
    assert message.headers == {
        "yes": True,
        "no": False,
        "byte": -7,
        "short": -300,
        "int": 70000,
        "long": -(2**40),
        "bytes": b"\x00\xff\x10",
        "string": "héll",
        "time": datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        "id": UUID,
    }
    assert message.payload == b"{}"


def test_a_stream_split_at_every_byte_decodes_as_botocore_does() -> None:
    stream = b"".join(
        [
            encode_message(EVENT, b'{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abc"}'),
            frame(TYPED_HEADERS, b""),
            encode_message({}, b""),
            encode_message({":message-type": "event", "ünïcode": "välue"}, bytes(range(256))),
        ]
    )
    reference = botocore_decode(stream)
    assert len(reference) == 4
    for step in range(1, len(stream) + 1):
        assert [as_botocore(message) for message in decode(stream, step)] == reference


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(
                st.text(min_size=1, max_size=20).filter(lambda name: len(name.encode()) < 256),
                st.text(max_size=40),
                max_size=4,
            ),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_round_trips_split_anywhere(
    messages: list[tuple[dict[str, str], bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_message(headers, payload) for headers, payload in messages)
    points = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    decoder = EventStreamDecoder()
    decoded: list[Message] = []
    for start, end in itertools.pairwise(points):
        decoded += decoder.feed(stream[start:end])
    decoder.close()
    assert [(m.headers, m.payload) for m in decoded] == messages
    assert botocore_decode(stream) == messages


def corrupted(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def fails(data: bytes) -> EventStreamError:
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError) as caught:
        decoder.feed(data)
    with pytest.raises(EventStreamError):
        decoder.feed(b"")  # a failed decoder stays failed
    return caught.value


def test_a_corrupted_prelude_is_found_before_its_length_is_trusted() -> None:
    good = encode_message(EVENT, b'{"a":1}')
    for position in range(12):
        error = fails(good + corrupted(good, position))
        assert "prelude CRC mismatch" in str(error)
        assert [m.payload for m in error.messages] == [b'{"a":1}']  # the whole one before
        with pytest.raises(Exception, match=r"[Cc]hecksum"):
            botocore_decode(corrupted(good, position) + good)


def test_a_corrupted_header_payload_or_crc_is_a_message_crc_mismatch() -> None:
    good = encode_message(EVENT, b'{"a":1}')
    for position in range(12, len(good)):
        assert "message CRC mismatch" in str(fails(corrupted(good, position)))
        with pytest.raises(Exception, match=r"[Cc]hecksum"):
            botocore_decode(corrupted(good, position))


def prelude(total: int, headers_length: int) -> bytes:
    raw = struct.pack(">II", total, headers_length)
    return raw + struct.pack(">I", zlib.crc32(raw))


def test_lengths_out_of_bounds_fail_at_the_prelude() -> None:
    assert "message length 15 out of bounds" in str(fails(prelude(15, 0)))
    too_long = MAX_MESSAGE_BYTES + 1
    assert f"message length {too_long} out of bounds" in str(fails(prelude(too_long, 0)))
    assert "headers length 20 out of bounds" in str(fails(prelude(32, 20)))
    too_many = MAX_HEADERS_BYTES + 1
    assert "headers length" in str(fails(prelude(too_many + 100, too_many)))
    assert "payload longer than" in str(fails(prelude(MAX_MESSAGE_BYTES, 0)))


def test_a_stream_cut_inside_a_message_fails_at_close() -> None:
    good = encode_message(EVENT, b"{}")
    for cut in (1, 11, 12, len(good) - 1):
        decoder = EventStreamDecoder()
        assert [(m.headers, m.payload) for m in decoder.feed(good + good[:cut])] == [(EVENT, b"{}")]
        with pytest.raises(EventStreamError, match=f"ends inside a message \\({cut} bytes"):
            decoder.close()
    EventStreamDecoder().close()  # nothing left: fine


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        (header("a", 7, struct.pack(">H", 1) + b"x") * 2, "appears twice"),
        (header("a", 10, b""), "unknown value type 10"),
        (header("a", 7, struct.pack(">H", 9) + b"x"), "runs past the headers"),
        (header("a", 4, b"\x00\x01"), "runs past the headers"),
        (header("a", 9, b"\x00" * 15), "runs past the headers"),
        (b"\x05ab", "runs past the headers"),
        (b"\x00", "an empty name"),
        (b"\x01a", "runs past the headers"),
        (b"\x01a\x07\x00", "runs past the headers"),
        (header("a", 7, struct.pack(">H", 1) + b"\xff"), "is not UTF-8"),
    ],
)
def test_malformed_headers(headers: bytes, problem: str) -> None:
    assert problem in str(fails(frame(headers, b"")))


def test_the_encoder_writes_string_headers() -> None:
    data = encode_message({":event-type": "messageStop"}, b'{"stopReason":"end_turn"}')
    assert data[:4] == struct.pack(">I", len(data))
    assert data[12:].startswith(b"\x0b:event-type\x07\x00\x0bmessageStop")
    assert botocore_decode(data) == [({":event-type": "messageStop"}, b'{"stopReason":"end_turn"}')]
