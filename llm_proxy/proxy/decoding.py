"""Upstream answers compressed despite `Accept-Encoding: identity`.

Some upstreams (or a front end such as nginx with `gzip on`) compress anyway. Relayed as is,
such a stream could not be peeked at, stripped of the injected usage chunk or counted. So a
gzip or deflate body is inflated as it arrives, chunk by chunk, and the client gets identity
(the relay drops Content-Encoding and Content-Length). Other codings pass through unchanged.
"""

from __future__ import annotations

import zlib
from typing import Final

from llm_proxy.proxy.client import ProtocolError, Response

# Output of one inflate step: a few KB of compressed input can stand for gigabytes, so a
# chunk is inflated in bounded steps (the client's pace, through the relay, sets the rest).
STEP_BYTES: Final = 256 * 1024
_GZIP: Final = frozenset(("gzip", "x-gzip"))


def inflater_for(resp: Response) -> Inflater | None:
    """An inflater for `resp`'s body, or None when it needs none (or is a coding we leave)."""
    value = resp.header(b"content-encoding")
    if value is None:
        return None
    coding = value.strip().lower()
    if coding in _GZIP or coding == "deflate":
        return Inflater(coding)
    return None


class Inflater:
    """Reads an upstream body and inflates it incrementally; a corrupt or truncated body is
    a `ProtocolError`, as an invalid HTTP answer is."""

    __slots__ = ("_coding", "_ended", "_inflater", "_input")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._inflater: zlib._Decompress | None = None
        self._input = b""  # compressed bytes not inflated yet
        self._ended = False

    async def read_chunk(self, resp: Response, deadline: float | None = None) -> bytes:
        """Like `Response.read_chunk`, inflated: never b"" before the end of the body."""
        while True:
            data = self._input
            if not self._ended and (not data or self._undecided(data)):
                more = await resp.read_chunk(deadline)
                if more:
                    self._input = data + more
                else:
                    self._ended = True
                continue
            if not data:  # (ended)
                return self._finish()
            if out := self._inflate(data):
                return out

    def _undecided(self, data: bytes) -> bool:
        # Which deflate (zlib-wrapped or raw) shows in the first two bytes.
        return self._inflater is None and self._coding == "deflate" and len(data) < 2

    def _inflate(self, data: bytes) -> bytes:
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(self._wbits(data))
        try:
            out = inflater.decompress(data, STEP_BYTES)
        except zlib.error as exc:
            raise ProtocolError(f"invalid {self._coding} body from upstream: {exc}") from None
        self._input = inflater.unconsumed_tail
        if inflater.eof:
            # gzip allows members one after another; after a deflate stream, nothing counts.
            self._input = inflater.unused_data if self._coding in _GZIP else b""
            self._inflater = None
        return out

    def _finish(self) -> bytes:
        inflater = self._inflater
        if inflater is None:
            return b""
        self._inflater = None
        raise ProtocolError(f"truncated {self._coding} body from upstream")

    def _wbits(self, data: bytes) -> int:
        if self._coding in _GZIP:
            return 16 + zlib.MAX_WBITS
        # "deflate" means zlib-wrapped (RFC 9110), but some servers send raw deflate.
        if len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0:
            return zlib.MAX_WBITS
        return -zlib.MAX_WBITS
