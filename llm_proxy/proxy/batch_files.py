"""The models a batch input file names, read from a `files.create` upload as the proxy spooled
it (a key limited to some models may run a batch only on a file whose every line names one
of them; the proxy never rewrites the file, so it must know before the batch is created)."""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from llm_proxy.proxy.uploads import Upload

_MAX_MODELS: Final = 1_000  # distinct models in one file; past this, "unknown"
_NAME: Final = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


class _Scanner:
    """Reads a multipart body line by line: the `purpose` field, and each line of the `file`
    part as a JSONL request (`{"custom_id": ..., "body": {"model": ...}}`)."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"--" + boundary
        self._rest: list[bytes] = []  # the line begun, in pieces (a line can be megabytes)
        self._in_headers = False
        self._part = b""
        self.purpose = b""
        self.models: set[str] = set()
        self.understood = True
        self.saw_file = False

    def feed(self, chunk: bytes) -> bool:
        """False once the answer is known (not a batch file, or not understood)."""
        if b"\n" not in chunk:
            self._rest.append(chunk)
            return True
        lines = chunk.split(b"\n")
        self._rest.append(lines[0])
        lines[0] = b"".join(self._rest)
        self._rest = [lines.pop()]
        for line in lines:
            self._line(line.removesuffix(b"\r"))
        return self.understood and not (self._part == b"file" and self.purpose_known_other())

    def end(self) -> None:
        rest = b"".join(self._rest)
        if rest:
            self._line(rest.removesuffix(b"\r"))
        self._rest = []

    def purpose_known_other(self) -> bool:
        return bool(self.purpose) and self.purpose.strip() != b"batch"

    def _line(self, line: bytes) -> None:
        if line.startswith(self._delimiter):
            self._in_headers, self._part = True, b""
        elif self._in_headers:
            if not line:
                self._in_headers = False
            elif line[:20].lower().startswith(b"content-disposition"):
                match = _NAME.search(line)
                self._part = match.group(1) if match else b""
        elif self._part == b"purpose":
            self.purpose += line
        elif self._part == b"file":
            self.saw_file = True
            self._request(line)

    def _request(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            data: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.understood = False
            return
        body = data.get("body") if isinstance(data, dict) else None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or len(self.models) >= _MAX_MODELS:
            self.understood = False
            return
        self.models.add(model)


async def batch_models(upload: Upload, boundary: bytes | None) -> frozenset[str] | None:
    """The models the lines of an uploaded batch file name; None when the upload is not a
    batch file or a line is not a request with a `body.model` the proxy can read."""
    if boundary is None:
        return None
    scanner = _Scanner(boundary)
    async for chunk in upload.chunks():
        if not scanner.feed(chunk):
            return None
    scanner.end()
    if not scanner.understood or not scanner.saw_file or scanner.purpose.strip() != b"batch":
        return None
    return frozenset(scanner.models)
