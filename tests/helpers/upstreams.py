"""Fake upstreams on real loopback sockets. For the upstream client: a raw TCP server scripted
per connection (byte-for-byte (mis)behaviour), canned answers, a CONNECT proxy, a fake resolver,
a self-signed certificate, and the `client`, `no_asyncio_errors` and `tls_cert` fixtures
(registered for the whole suite by `tests/conftest.py`). For the proxy: `FaultyUpstream`, an
aiohttp upstream that takes each request's behaviour from a script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from yarl import URL

from llm_proxy.proxy.client import (
    Client,
    Response,
    target,
)
from tests.helpers import refusals

RawHandler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """`handler(server, reader, writer)` runs for every accepted connection (which is closed when
    it returns). Counts connections, keeps what was received, and re-raises handler errors."""

    def __init__(self, handler: RawHandler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body), in arrival order
        self.hangups = 0  # connections the client closed or aborted (seen by `until_eof`)
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context is not None else "http"
        self.url = URL(f"{scheme}://127.0.0.1:{self.port}/v1/chat/completions")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.errors and exc[0] is None:
            raise self.errors[0]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # torn down by __aexit__ (3.11 logs a cancelled callback task as an error)
        except BaseException as exc:  # an assertion in a handler: fail the test with it
            self.errors.append(exc)
        finally:
            writer.transport.abort()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        """One request (head up to the blank line, and the Content-Length body); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            self.hangups += 1
            return None
        except ConnectionResetError:
            self.hangups += 1
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body

    async def until_eof(self, reader: asyncio.StreamReader) -> bytes:
        """Wait for the client to close or abort the connection; what it sent meanwhile."""
        data = b""
        with contextlib.suppress(ConnectionError):
            data = await reader.read()
        self.hangups += 1
        return data


def response(body: bytes = b"ok", status: str = "200 OK", headers: tuple[bytes, ...] = ()) -> bytes:
    head = b"HTTP/1.1 %s\r\n" % status.encode()
    head += b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def keep_alive(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
    """A well-behaved keep-alive server answering `echo:<body>`."""
    while (request := await server.read_request(reader)) is not None:
        writer.write(response(b"echo:" + request[1]))


async def slow_body(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
    """Keep-alive; the body follows the head 0.2 s later (so the connection stays busy)."""
    while await server.read_request(reader) is not None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        await asyncio.sleep(0.2)
        writer.write(b"ok")


async def held(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
    """Keep-alive; each answer comes 0.1 s after its request."""
    while (request := await server.read_request(reader)) is not None:
        await asyncio.sleep(0.1)
        writer.write(response(b"echo:" + request[1]))


async def answer_with(
    answer: bytes, server: RawServer, reader: Any, writer: asyncio.StreamWriter
) -> None:
    while await server.read_request(reader) is not None:
        writer.write(answer)


async def read_all(resp: Response) -> bytes:
    parts = []
    while chunk := await resp.read_chunk():
        parts.append(chunk)
    return b"".join(parts)


async def post(
    client: Client, url: URL, body: bytes = b"{}", headers: bytes = b"", **kw: Any
) -> Response:
    kw.setdefault("total_secs", 5.0)
    async with asyncio.timeout(5):  # a hang fails the test quickly, not after 120 s
        return await client.request(target(url), headers, body, **kw)


@pytest.fixture
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing may escape into the event loop's error log (an exception out of a protocol
    callback, an unretrieved task exception...): every failure is to reach the caller."""
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    errors = [r for r in records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = Client()
    yield c
    await c.close()


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port that takes no more connections: its accept queue is full, so Linux drops
    further SYNs and a connect hangs (a local stand-in for a blackholed address)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.3).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) files."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _make_cert_with_cryptography(cert, key)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
    return cert, key


def _make_cert_with_cryptography(cert: Path, key: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def server_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    return context


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def connect_proxy(refuse: bytes = b"") -> RawHandler:
    """A CONNECT proxy: the tunnel goes to 127.0.0.1 on the requested port (whatever the host
    name). With `refuse`, that answer instead (and the connection closed)."""

    async def handler(server: RawServer, reader: Any, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(reader)
        assert request is not None
        if refuse:
            writer.write(refuse)
            await writer.drain()
            return
        port = int(request[0].split(b" ")[1].rsplit(b":", 1)[1])
        origin_reader, origin_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(pipe(reader, origin_writer), pipe(origin_reader, writer))
        finally:
            origin_writer.transport.abort()

    return handler


def addr(host: str, port: int) -> Any:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))


class FakeResolver:
    """Resolves every name to `answers` (address infos; each carries its own port)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[Any]:
        self.lookups += 1
        await asyncio.sleep(0.01)  # a real lookup takes a while: concurrent callers share it
        return self.answers


# The proxy's fault tests: a programmable fake upstream. Each request takes the next behaviour
# from a script (or the default), so a test says exactly what the provider does, request by
# request.

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
USAGE_EVENT = (
    b'data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22,'
    b'"total_tokens":33}}\n\n'
)


class FaultyUpstream:
    """Behaviours: "ok", "slow_headers", "status:<code>", "status:429:<retry_after>",
    "sse_error_first", "die_mid_stream", "stall_mid_stream", "trickle_body", "reset",
    "blame_request" (a 500 `invalid_request_error`), "linger_after_done" (a stream with a
    usage chunk whose body ends `delay` after [DONE], as real front ends do), "context_window"
    and "content_policy" (OpenAI's 400 for a prompt too long, Azure's for its content filter:
    `tests.helpers.refusals`), "content_filter" (a 200 whose choice was filtered: no content,
    finish_reason content_filter; streamed, the one chunk that says so)."""

    def __init__(self, default: str = "ok", *, delay: float = 2.0, events: int = 5) -> None:
        self.script: deque[str] = deque()
        self.default = default
        self.delay = delay
        self.events = events
        self.seen: list[str] = []  # behaviour used, per request
        self.peers: list[int] = []  # the client port of each request (connection reuse)
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._handle)
        self.app.router.add_get("/v1/models", self._models)

    def then(self, *behaviours: str) -> FaultyUpstream:
        self.script.extend(behaviours)
        return self

    async def _models(self, request: web.Request) -> web.Response:
        behaviour = self.script.popleft() if self.script else self.default
        self.seen.append(f"models:{behaviour}")
        if behaviour.startswith("status:"):
            return web.json_response({}, status=int(behaviour.split(":")[1]))
        return web.json_response({"object": "list", "data": []})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        data: dict[str, Any] = orjson.loads(await request.read())
        behaviour = self.script.popleft() if self.script else self.default
        self.seen.append(behaviour)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if peer else 0)
        stream = bool(data.get("stream"))
        if behaviour == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if behaviour == "slow_headers":
            await asyncio.sleep(self.delay)
            behaviour = "ok"
        if behaviour == "blame_request":  # a 500 that says the request is at fault
            error = {"message": "prompt too large", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=500)
        if behaviour in ("context_window", "content_policy"):
            return refusals.response(*refusals.error("openai", behaviour))
        if behaviour == "content_filter" and not stream:
            return refusals.response(200, refusals.refused("openai"))
        if behaviour.startswith("status:"):
            parts = behaviour.split(":", 2)
            headers = {"Retry-After": parts[2]} if len(parts) > 2 else {}
            body = {"error": {"message": "upstream says no", "type": "x", "code": parts[1]}}
            return web.json_response(body, status=int(parts[1]), headers=headers)
        if not stream:
            if behaviour == "trickle_body":
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                resp.content_length = 1000
                await resp.prepare(request)
                for _ in range(1000):
                    await resp.write(b" ")
                    await asyncio.sleep(0.1)
                return resp
            return web.json_response(
                {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if behaviour == "content_filter":
            choice = {"index": 0, "delta": {}, "finish_reason": "content_filter"}
            await resp.write(b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n" + DONE)
            return resp
        if behaviour == "sse_error_first":
            await resp.write(b'data: {"error": {"message": "overloaded", "type": "server"}}\n\n')
            return resp
        for i in range(self.events):
            await resp.write(EVENT)
            if i == 1 and behaviour == "die_mid_stream":
                assert request.transport is not None
                request.transport.abort()
                return resp
            if i == 0 and behaviour == "stall_mid_stream":
                await asyncio.sleep(60)
            await asyncio.sleep(0.001)
        if behaviour == "linger_after_done":
            await resp.write(USAGE_EVENT + DONE)
            await asyncio.sleep(self.delay)
            return resp
        await resp.write(DONE)
        return resp
