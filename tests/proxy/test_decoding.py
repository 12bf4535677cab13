"""Inflating upstream answers compressed despite `Accept-Encoding: identity`."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from llm_proxy.proxy.client import ProtocolError
from llm_proxy.proxy.decoding import STEP_BYTES, Inflater, inflater_for

TEXT = b"".join(b'data: {"choices":[{"delta":{"content":"%d"}}]}\n\n' % i for i in range(500))


class Body:
    """The part of `Response` an inflater reads: the body, in the given pieces."""

    def __init__(self, *pieces: bytes, encoding: str | None = None) -> None:
        self.pieces = list(pieces)
        self.encoding = encoding

    async def read_chunk(self, deadline: float | None = None) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def header(self, name: bytes) -> str | None:
        return self.encoding if name == b"content-encoding" else None


async def inflate_all(inflater: Inflater, body: Any) -> list[bytes]:
    out = []
    while chunk := await inflater.read_chunk(body):
        out.append(chunk)
    return out


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


@pytest.mark.parametrize(
    ("coding", "compressed"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", raw_deflate(TEXT)),  # raw deflate, as some servers send it
        ("gzip", gzip.compress(TEXT[:100]) + gzip.compress(TEXT[100:])),  # two members
    ],
)
@pytest.mark.parametrize("piece", [1, 7, 1 << 20])
async def test_inflates_in_any_pieces(coding: str, compressed: bytes, piece: int) -> None:
    body = Body(*split(compressed, piece), encoding=coding)
    inflater = inflater_for(body)  # type: ignore[arg-type]
    assert inflater is not None
    chunks = await inflate_all(inflater, body)
    assert b"".join(chunks) == TEXT
    assert all(chunks)  # b"" only at the end: a gzip header alone is no end of body


async def test_flushed_events_come_out_as_they_arrive() -> None:
    """What nginx does for a stream: a sync flush per event, each readable on arrival."""
    deflater = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    pieces = [
        deflater.compress(b"data: %d\n\n" % i) + deflater.flush(zlib.Z_SYNC_FLUSH) for i in range(3)
    ]
    body = Body(*pieces, deflater.flush())
    inflater = Inflater("gzip")
    assert [await inflater.read_chunk(body) for _ in range(4)] == [
        b"data: 0\n\n",
        b"data: 1\n\n",
        b"data: 2\n\n",
        b"",
    ]


@pytest.mark.parametrize("encoding", [None, "identity", "br", "zstd"])
def test_identity_and_other_codings_are_left_alone(encoding: str | None) -> None:
    assert inflater_for(Body(encoding=encoding)) is None  # type: ignore[arg-type]


async def test_a_bomb_is_inflated_in_bounded_steps() -> None:
    big = gzip.compress(bytes(20 * STEP_BYTES))  # ~5 MB of zeros in ~5 KB
    inflater = Inflater("gzip")
    chunks = await inflate_all(inflater, Body(big))
    assert max(len(c) for c in chunks) <= STEP_BYTES
    assert sum(len(c) for c in chunks) == 20 * STEP_BYTES


async def test_corrupt_body_is_an_upstream_error() -> None:
    with pytest.raises(ProtocolError, match="invalid gzip body"):
        await inflate_all(Inflater("gzip"), Body(b"not gzip at all"))


async def test_truncated_body_is_an_upstream_error() -> None:
    with pytest.raises(ProtocolError, match="truncated gzip body"):
        await inflate_all(Inflater("gzip"), Body(gzip.compress(TEXT)[:-20]))


async def test_empty_body() -> None:
    assert await inflate_all(Inflater("gzip"), Body()) == []
