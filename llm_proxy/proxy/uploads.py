"""`multipart/form-data` uploads (audio transcriptions, image edits, files): spooled, never
held whole in memory, and sent upstream byte for byte.

The body is written to a temporary file as it arrives (the first MB stays in memory), within
`max_request_body_mb` and `body_timeout_secs`, while a streaming multipart scanner looks for
the `model` field. Only then can a provider be chosen; each attempt (failover included) sends
the file again from its start, in chunks, with the provider's model name put in place of the
requested one when `model_mapping` renames it (the only bytes that change).

What uploads hold is bounded across requests: each counts its whole size against
`max_spool_mb` (the temp directory is disk, not memory: a budget of its own) and the part kept
in memory, up to 1 MB, against `max_inflight_body_mb`, which every request body shares. A
sized upload is admitted or refused (503, Retry-After) before a byte is read, so concurrent
uploads cannot each take part of the budget and all fail; an unsized (chunked) one counts as
it arrives. The spool file is unlinked from the start (`TemporaryFile`: nothing is left in the
temp directory even after a crash) and closed, its bytes given back exactly once, however the
request ends.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from typing import IO, Final, TypeVar

from aiohttp import web

from llm_proxy.errors import API_ERROR, ProxyError
from llm_proxy.keys import LIFECYCLE, STATE
from llm_proxy.lifecycle import Lifecycle

T = TypeVar("T")
MB: Final = 1 << 20

CHUNK: Final = 256 * 1024  # read from the spool and written upstream at a time
_IN_MEMORY: Final = 1 << 20  # bytes kept in memory before the spool moves to disk
_MAX_PART_HEAD: Final = 16 * 1024
_MAX_VALUE: Final = 1024
_NAME: Final = re.compile(rb'(?i)content-disposition\s*:[^\r\n]*?\bname\s*=\s*"?([^";\r\n]*)"?')


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a `multipart/form-data` Content-Type; None for any other type."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= 200:
                return value.encode("latin-1", "replace")
    return None


class FieldScanner:
    """Finds one form field's value in a multipart stream fed chunk by chunk, following the
    part structure (a file's bytes are never searched for headers, so an uploaded file that
    contains form-data text cannot fool it). Records the value's offset in the stream."""

    def __init__(self, boundary: bytes, name: bytes) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._name = name
        self._buf = bytearray(b"\r\n")  # the body starts with a delimiter without its CRLF
        self._base = -2  # stream offset of _buf[0]
        self._state = "seek"
        self.value: bytes | None = None
        self.offset = -1  # of the value in the stream
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self._buf += chunk
        while not self.done and self._step():
            pass
        if not self.done and self._state == "seek":
            keep = len(self._delimiter) - 1  # a delimiter may straddle chunks
            if len(self._buf) > keep:
                drop = len(self._buf) - keep
                del self._buf[:drop]
                self._base += drop

    def _consume(self, count: int) -> None:
        del self._buf[:count]
        self._base += count

    def _step(self) -> bool:
        buf = self._buf
        if self._state == "seek":
            at = buf.find(self._delimiter)
            if at < 0:
                return False
            self._consume(at + len(self._delimiter))
            self._state = "delimited"
            return True
        if self._state == "delimited":
            if len(buf) < 2:
                return False
            if buf[:2] == b"--":
                self.done = True  # the closing delimiter: no such field
                return False
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            self._consume(end + 2)
            self._state = "head"
            return True
        if self._state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_PART_HEAD:
                    self.done = True  # not multipart as the header said: give up
                return False
            match = _NAME.search(bytes(buf[:end]))
            self._consume(end + 4)
            if match is not None and match.group(1) == self._name:
                self._state = "value"
            else:
                self._state = "seek"
            return True
        # "value"
        at = buf.find(self._delimiter)
        if at < 0:
            if len(buf) > _MAX_VALUE + len(self._delimiter):
                self.done = True
            return False
        if at <= _MAX_VALUE:
            self.value = bytes(buf[:at])
            self.offset = self._base
        self.done = True
        return False


class Upload:
    """A spooled request body: its size, and its bytes again for each attempt. Until `close`
    it holds its bytes against the spool and memory budgets (see the module docstring)."""

    def __init__(
        self, spool: IO[bytes], lifecycle: Lifecycle, spool_budget: int, memory_budget: int
    ) -> None:
        self._spool = spool
        self._lifecycle = lifecycle
        self._spool_budget = spool_budget  # bytes
        self._memory_budget = memory_budget
        self.size = 0
        self.model: str | None = None  # the `model` field, when the form has one
        self.model_at = -1  # offset of its value in the body (-1: none)
        self.model_len = 0
        self.held = 0  # bytes counted in lifecycle.spooled_bytes
        self._in_memory = 0  # bytes counted in lifecycle.inflight_body_bytes
        # A read or write runs in a worker thread; a close meanwhile waits for it to end
        # there (closing under it could leave a rolled-over file open).
        self._lock = threading.Lock()
        self._busy = False
        self._close_pending = False
        self._closed = False

    def hold(self, total: int) -> None:
        """Count this upload as `total` bytes: 413 if it can never fit, 503 if not now."""
        more = total - self.held
        if more <= 0:
            return
        if total > self._spool_budget:
            raise ProxyError(
                413,
                f"The upload is larger than the limit of {self._spool_budget / MB:g} MB "
                "for uploads held at once (max_spool_mb).",
                code="request_too_large",
            )
        lifecycle = self._lifecycle
        if lifecycle.spooled_bytes + more > self._spool_budget:
            raise _over_capacity("max_spool_mb")
        memory = min(total, _IN_MEMORY) - self._in_memory
        if memory > 0:
            if lifecycle.inflight_body_bytes + memory > self._memory_budget:
                raise _over_capacity("max_inflight_body_mb")
            lifecycle.inflight_body_bytes += memory
            self._in_memory += memory
        lifecycle.spooled_bytes += more
        self.held = total

    def replaced(self, model: bytes | None) -> tuple[int, bytes | None]:
        """The body's size with the model value replaced by `model`, and the replacement."""
        if model is None or self.model_at < 0:
            return self.size, None
        return self.size - self.model_len + len(model), model

    async def chunks(self, model: bytes | None = None) -> AsyncIterator[bytes]:
        """The body from its start, in chunks, the model value replaced when `model` is set."""
        if model is None or self.model_at < 0:
            async for chunk in self._range(0, self.size):
                yield chunk
            return
        async for chunk in self._range(0, self.model_at):
            yield chunk
        yield model
        async for chunk in self._range(self.model_at + self.model_len, self.size):
            yield chunk

    async def _range(self, start: int, end: int) -> AsyncIterator[bytes]:
        spool = self._spool
        on_disk = self.size > _IN_MEMORY  # (a disk read runs in a thread, memory inline)
        if on_disk:
            await self._in_thread(spool.seek, start)
        else:
            spool.seek(start)
        position = start
        while position < end:
            want = min(CHUNK, end - position)
            data = await self._in_thread(spool.read, want) if on_disk else spool.read(want)
            if not data:
                return
            position += len(data)
            yield data

    async def write(self, data: bytes) -> None:
        await self._in_thread(self._spool.write, data)

    async def _in_thread(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(self._run, call, *args)

    def _run(self, call: Callable[..., T], *args: object) -> T:
        # (In a worker thread. A call cancelled before it started never gets here.)
        with self._lock:
            if self._close_pending:
                raise ConnectionResetError("the upload was closed")
            self._busy = True
        try:
            return call(*args)
        finally:
            if self._returned():
                self._spool.close()

    def _returned(self) -> bool:
        """A worker's call has returned: must that worker close the spool?"""
        with self._lock:
            self._busy = False
            return self._close_pending

    def close(self) -> None:
        """Give the budgets back and remove the spool (at once, or as soon as a read or
        write under way in a worker thread ends). Idempotent."""
        if self._closed:
            return
        self._closed = True
        lifecycle = self._lifecycle
        lifecycle.spooled_bytes -= self.held
        lifecycle.inflight_body_bytes -= self._in_memory
        self.held = self._in_memory = 0
        with self._lock:
            self._close_pending = True  # no read or write starts from now on
            if self._busy:
                return  # the worker closes it when its call returns
        self._spool.close()


async def spool(request: web.Request, limit: int, timeout_secs: float, field: bytes) -> Upload:
    """Read the body into a spool (413 past `limit`, 408 past `timeout_secs`, 503 past the
    spool or memory budget), scanning for the form field `field` (`b"model"`). The caller
    closes the upload; on any error here it is closed already."""
    boundary = _boundary(request)
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    config = request[STATE].snapshot.config
    file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)  # noqa: SIM115
    upload = Upload(
        file,
        request.app[LIFECYCLE],
        int(config.max_spool_mb * MB),
        int(config.max_inflight_body_mb * MB),
    )
    scanner = FieldScanner(boundary, field)
    try:
        if length is not None:
            upload.hold(length)  # all of it, before a byte is read
        async with asyncio.timeout(timeout_secs):
            size = await _receive(request, upload, scanner, limit)
    except TimeoutError:
        upload.close()
        raise ProxyError(
            408,
            f"The request body did not arrive within {timeout_secs:g}s (body_timeout_secs).",
            code="request_timeout",
        ) from None
    except BaseException:
        upload.close()
        raise
    upload.size = size
    if scanner.value is not None:
        upload.model_at, upload.model_len = scanner.offset, len(scanner.value)
        upload.model = scanner.value.decode("utf-8", "replace")
    return upload


def _boundary(request: web.Request) -> bytes:
    """The multipart boundary; a 400 without one, a 415 for a compressed upload."""
    boundary = boundary_of(request.headers.get("Content-Type", ""))
    if boundary is None:
        raise ProxyError(
            400,
            "A multipart/form-data body needs a boundary in its Content-Type.",
            code="invalid_multipart",
        )
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise ProxyError(
            415, "A multipart upload cannot be compressed.", code="unsupported_media_type"
        )
    return boundary


async def _receive(request: web.Request, upload: Upload, scanner: FieldScanner, limit: int) -> int:
    """Copy the body into `upload` in CHUNK-sized writes, feeding `scanner`; its size."""
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        upload.hold(size)  # (a no-op within a Content-Length held already)
        scanner.feed(chunk)
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= CHUNK:
            await upload.write(b"".join(pending))
            pending, pending_size = [], 0
    if pending:
        await upload.write(b"".join(pending))
    return size


def _over_capacity(setting: str) -> ProxyError:
    return ProxyError(
        503,
        f"The proxy is holding as many uploads as it may ({setting}); retry shortly.",
        type=API_ERROR,
        code="over_capacity",
        headers={"Retry-After": "1"},
    )


def _too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"Request body is larger than the limit of {limit / MB:g} MB (max_request_body_mb).",
        code="request_too_large",
    )
