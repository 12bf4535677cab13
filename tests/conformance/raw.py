"""A scripted HTTP/1.x upstream on a raw socket, for framings real servers rarely choose:
chunk extensions and trailers, bodies delimited by the end of the connection, HTTP/1.0, 1xx
interim answers. It answers the same OpenAI-like bodies as `backend.py` and counts requests
the same way (`seen`)."""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tests.conformance.backend import EVENTS, USAGE

Framing = Callable[[bytes, str], bytes]  # (body, content type) -> the whole answer


def answer_body(data: dict[str, Any]) -> tuple[bytes, str]:
    """What backend.py answers to the chat request `data`: (body, content type)."""
    request_id = str(data["messages"][0]["content"])
    if not data.get("stream"):
        message = {"role": "assistant", "content": request_id}
        body = {"id": request_id, "choices": [{"index": 0, "message": message}], "usage": USAGE}
        return json.dumps(body).encode(), "application/json"
    events = []
    for i in range(EVENTS):
        delta = {"choices": [{"index": 0, "delta": {"content": f"{request_id}:{i};"}}]}
        events.append(b"data: " + _json({**delta, "usage": None}) + b"\n\n")
    if (data.get("stream_options") or {}).get("include_usage"):
        events.append(b"data: " + _json({"choices": [], "usage": USAGE}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return b"".join(events), "text/event-stream"


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()  # compact, as OpenAI sends it


class RawUpstream:
    """Answers every request with `framing`; closes the connection after an answer that is
    delimited by it (`closes`); or resets it (RST) after the first `reset_after` bytes."""

    def __init__(
        self, framing: Framing, *, closes: bool = False, reset_after: int | None = None
    ) -> None:
        self.framing = framing
        self.closes = closes
        self.reset_after = reset_after
        self.seen: collections.Counter[str] = collections.Counter()
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                data = json.loads(await reader.readexactly(length))
                self.seen[str(data["messages"][0]["content"])] += 1
                answer = self.framing(*answer_body(data))
                if self.reset_after is not None:
                    writer.write(answer[: self.reset_after])
                    await writer.drain()
                    await asyncio.sleep(0.05)  # the partial answer is relayed first
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(answer)
                await writer.drain()
                if self.closes:
                    return
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1; yields the api base."""
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            server.close()
            await server.wait_closed()


def _head(status: str, content_type: str, *lines: str) -> bytes:
    return "\r\n".join([status, f"Content-Type: {content_type}", *lines, "", ""]).encode()


def chunked_with_extensions_and_trailers(body: bytes, content_type: str) -> bytes:
    head = _head("HTTP/1.1 200 OK", content_type, "Transfer-Encoding: chunked", "Trailer: X-Sum")
    chunks = [body[i : i + 37] for i in range(0, len(body), 37)]
    framed = b"".join(b'%x;ext=1;name="v a"\r\n%s\r\n' % (len(c), c) for c in chunks)
    return head + framed + b"0;last\r\nX-Sum: 42\r\nX-Other: yes\r\n\r\n"


def close_delimited(body: bytes, content_type: str) -> bytes:
    return _head("HTTP/1.1 200 OK", content_type, "Connection: close") + body


def http10(body: bytes, content_type: str) -> bytes:
    return _head("HTTP/1.0 200 OK", content_type) + body


def http10_sized(body: bytes, content_type: str) -> bytes:
    return _head("HTTP/1.0 200 OK", content_type, f"Content-Length: {len(body)}") + body


def chunked(body: bytes, content_type: str) -> bytes:
    head = _head("HTTP/1.1 200 OK", content_type, "Transfer-Encoding: chunked")
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def sized(body: bytes, content_type: str) -> bytes:
    return _head("HTTP/1.1 200 OK", content_type, f"Content-Length: {len(body)}") + body


def after_interim_answers(body: bytes, content_type: str) -> bytes:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    interim += b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    head = _head("HTTP/1.1 200 OK", content_type, f"Content-Length: {len(body)}")
    return interim + head + body
