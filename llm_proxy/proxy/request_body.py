"""Reading a request body, bounded in every way a client could abuse:

* size: `max_request_body_mb`, on the bytes received and again on the inflated bytes (a 1 MB
  gzip bomb stops at the limit, it never reaches 2 GB);
* time: the whole body must arrive within `body_timeout_secs` (a body trickled one byte at a
  time is a 408, not a request held forever);
* memory across requests: bodies held by all requests together stay under
  `max_inflight_body_mb` (503 with Retry-After beyond it).

Bodies are inflated here (gzip, deflate) and nowhere else: aiohttp's own decompression is off
(see `server.handler_args`), handlers run after authentication, and the inflated bytes are
what goes upstream (without the Content-Encoding header).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Coroutine
from typing import Any, Final

from aiohttp import web

from llm_proxy.errors import API_ERROR, ProxyError
from llm_proxy.lifecycle import Lifecycle
from llm_proxy.proxy.state import RequestState

MB: Final = 1024 * 1024
# Compressed bodies larger than this are inflated on a worker thread (zlib releases the GIL),
# so one large upload does not stall every other request.
_INLINE_INFLATE_BYTES: Final = 64 * 1024
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})


async def read_body(request: web.Request, state: RequestState, lifecycle: Lifecycle) -> bytes:
    """The request body, inflated when it says it is compressed. Raises 413 (too large), 408
    (too slow), 503 (too many bodies in flight), 400 (bad compression), 415 (unknown
    encoding). Bytes reserved against the in-flight budget are in `state.body_bytes`; the
    caller gives them back with `release`."""
    snapshot = state.snapshot
    limit = snapshot.max_body_bytes
    encoding = _encoding(request.headers.get("Content-Encoding"))
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if length is not None:
        _reserve(lifecycle, state, length)
        content = request.content
        if content.is_eof():  # the common case: the body came with the head
            raw = await request.read()
        else:
            raw = await _in_time(request.read(), snapshot.config.body_timeout_secs)
    else:
        unsized = _read_unsized(request, state, lifecycle, limit)
        raw = await _in_time(unsized, snapshot.config.body_timeout_secs)
    if encoding is None:
        return raw
    if len(raw) > _INLINE_INFLATE_BYTES:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, _inflate, raw, encoding, limit)
    else:
        body = _inflate(raw, encoding, limit)
    _reserve(lifecycle, state, len(body))
    _give_back(lifecycle, state, len(raw))
    return body


def release(lifecycle: Lifecycle, state: RequestState) -> None:
    """The request is over: its body no longer counts against the in-flight budget."""
    _give_back(lifecycle, state, state.body_bytes)


async def _read_unsized(
    request: web.Request, state: RequestState, lifecycle: Lifecycle, limit: int
) -> bytes:
    body = bytearray()
    async for chunk in request.content.iter_any():
        _reserve(lifecycle, state, len(chunk))
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def _in_time(read: Coroutine[Any, Any, bytes], seconds: float) -> bytes:
    try:
        async with asyncio.timeout(seconds):
            return await read
    except TimeoutError:
        raise ProxyError(
            408,
            f"The request body did not arrive within {seconds:g}s (body_timeout_secs).",
            code="request_timeout",
        ) from None


def _reserve(lifecycle: Lifecycle, state: RequestState, size: int) -> None:
    budget = int(state.snapshot.config.max_inflight_body_mb * MB)
    if lifecycle.inflight_body_bytes + size > budget:
        raise ProxyError(
            503,
            "The proxy is holding as much request data as it may (max_inflight_body_mb); "
            "retry shortly.",
            type=API_ERROR,
            code="over_capacity",
            headers={"Retry-After": "1"},
        )
    lifecycle.inflight_body_bytes += size
    state.body_bytes += size


def _give_back(lifecycle: Lifecycle, state: RequestState, size: int) -> None:
    lifecycle.inflight_body_bytes -= size
    state.body_bytes -= size


def _encoding(header: str | None) -> str | None:
    """The one compression applied to the body; None for none."""
    if header is None:
        return None
    value = header.strip().lower()
    if value in _IDENTITY:
        return None
    if value in _GZIP or value == "deflate":
        return value
    shown = value if len(value) <= 40 and value.isprintable() else value[:40].encode()
    raise ProxyError(
        415,
        f"Unsupported Content-Encoding {shown!r}: send the body as is, or gzip or deflate it.",
        code="unsupported_content_encoding",
    )


def _inflate(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` inflated, stopping (413) as soon as the output passes `limit`."""
    parts: list[bytes] = []
    size = 0
    data = raw
    while data:
        wbits = 16 + zlib.MAX_WBITS if encoding in _GZIP else _deflate_wbits(data)
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise _bad_encoding(encoding, str(exc)) from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
        if not inflater.eof:
            raise _bad_encoding(encoding, "the compressed data is truncated")
        parts.append(part)
        # gzip allows several members one after another; anything else after the end is junk.
        data = inflater.unused_data
        if data and encoding not in _GZIP:
            raise _bad_encoding(encoding, "data follows the end of the compressed stream")
    return b"".join(parts)


def _deflate_wbits(data: bytes) -> int:
    # "deflate" is meant to be zlib-wrapped (RFC 9110), but some clients send raw deflate.
    if len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


def _bad_encoding(encoding: str, detail: str) -> ProxyError:
    return ProxyError(
        400, f"The request body is not valid {encoding}: {detail}.", code="invalid_encoding"
    )


def _too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"Request body is larger than the limit of {limit / MB:g} MB (max_request_body_mb).",
        code="request_too_large",
    )
