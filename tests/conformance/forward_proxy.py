"""A minimal HTTP forward proxy for the conformance suite: CONNECT tunnels (for https
upstreams) and absolute-form requests (for http ones), with optional Basic proxy auth. It
records every request line it was sent (`requests`), so a test can tell that traffic really
went through it, and resolves the names in `hosts` itself, as a corporate proxy resolves names
the proxied machine cannot."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from yarl import URL


class ForwardProxy:
    def __init__(
        self,
        user: str | None = None,
        password: str | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        self.credentials = (
            b"Basic " + base64.b64encode(f"{user}:{password}".encode()) if user else None
        )
        self.hosts = hosts or {}
        self.requests: list[str] = []  # "CONNECT host:port", "POST http://..."
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            while head := await _read_head(reader):
                line, *fields = head[:-4].split(b"\r\n")
                method, target, version = line.decode().split(" ")
                self.requests.append(f"{method} {target}")
                headers = [f for f in fields if not f.lower().startswith(b"proxy-authorization:")]
                given = [f.split(b":", 1)[1].strip() for f in fields if f not in headers]
                if self.credentials is not None and given != [self.credentials]:
                    self.refused += 1
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
                    writer.write(
                        b'Proxy-Authenticate: Basic realm="t"\r\nContent-Length: 0\r\n\r\n'
                    )
                    return
                if method == "CONNECT":  # a tunnel: the bytes both ways, as they come
                    host, port = target.rsplit(":", 1)
                    up_reader, upstream = await self._open(host.strip("[]"), int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
                    return
                # Absolute form: each request goes on in origin form (answers flow back as
                # they come); one origin per connection is all the suite needs.
                url = URL(target)
                assert url.host is not None and url.port is not None
                if upstream is None:
                    up_reader, upstream = await self._open(url.host, url.port)
                    asyncio.get_running_loop().create_task(_pipe(up_reader, writer))
                length = next(
                    (
                        int(f.split(b":", 1)[1])
                        for f in headers
                        if f.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                first = f"{method} {url.raw_path_qs} {version}".encode()
                upstream.write(b"\r\n".join([first, *headers]) + b"\r\n\r\n" + body)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.hosts.get(host, host), port)
        self._writers.add(writer)
        return reader, writer

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1; yields the proxy's address (host:port)."""
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.close()
            for writer in self._writers:
                writer.transport.abort()
            await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()
