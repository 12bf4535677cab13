"""Multipart bodies (image edits, audio, file uploads), read part by part: text fields whole
(bounded), file parts in chunks, so an upload of any size costs the mock one chunk of memory."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import BodyPartReader, web

from llm_proxy.testing.mock.errors import MockError, forced, missing
from llm_proxy.testing.mock.wire import record

_CHUNK: Final = 1 << 16  # bytes read from (or written to) an upload at a time
_MAX_FIELD: Final = 1 << 20  # a multipart text field larger than this is refused


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart body, as read: never held whole in memory."""

    field: str
    filename: str
    size: int
    sha256: str
    lines: int


@dataclass(frozen=True, slots=True)
class Form:
    fields: dict[str, str]  # a repeated name keeps its last value
    uploads: list[Upload]

    def field(self, name: str) -> str:
        if name not in self.fields:
            raise missing(name)
        return self.fields[name]

    def upload(self, prefix: str) -> Upload:
        """The first file part whose name starts with `prefix` (`image` finds `image[]`)."""
        for upload in self.uploads:
            if upload.field.startswith(prefix):
                return upload
        raise missing(prefix)


async def read_form(request: web.Request, save: Path | None = None, saved: str = "file") -> Form:
    """A multipart body, part by part: text fields whole (bounded), file parts in chunks, hashed
    (and the part named `saved` written to `save`) as they arrive, so an upload of any size costs
    the mock one chunk of memory. Recorded as its size and a summary, never its bytes."""
    if request.content_type != "multipart/form-data":
        raise MockError(400, "Expected a multipart/form-data body.")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    size = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise MockError(400, "Every part of the form needs a name and no nested parts.")
        if part.filename is None:
            raw = await _read_field(part)
            size += len(raw)
            fields[part.name] = raw.decode(part.get_charset("utf-8"), errors="replace")
        else:
            upload = await _read_upload(part, part.filename, save if part.name == saved else None)
            size += upload.size
            uploads.append(upload)
    summary = {
        "fields": fields,
        "files": [
            {"field": u.field, "filename": u.filename, "bytes": u.size, "sha256": u.sha256}
            for u in uploads
        ],
    }
    record(request, b"", size, summary)
    if "mock_status" in fields:
        raise forced(int(fields["mock_status"]))
    return Form(fields, uploads)


async def _read_field(part: BodyPartReader) -> bytes:
    raw = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        raw += chunk
        if len(raw) > _MAX_FIELD:
            raise MockError(400, f"Form field '{part.name}' is too long.", param=part.name)
    return bytes(raw)


async def _read_upload(part: BodyPartReader, filename: str, save: Path | None) -> Upload:
    digest = hashlib.sha256()
    size = lines = 0
    last = b""
    out = await asyncio.to_thread(save.open, "wb") if save is not None else None
    try:
        while chunk := await part.read_chunk(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            if out is not None:
                await asyncio.to_thread(out.write, chunk)
    finally:
        if out is not None:
            out.close()
    if last not in (b"", b"\n"):
        lines += 1  # a last line without its newline
    return Upload(part.name or "", filename, size, digest.hexdigest(), lines)
