"""multipart/form-data uploads: routed by their `model` field, spooled (never whole in
memory), relayed byte for byte (only a mapped model name changes), re-sent whole on failover,
bounded by max_request_body_mb; a 200 MB upload leaves `llm-proxy serve`'s memory flat."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llm_proxy.app import create_app
from llm_proxy.keys import LIFECYCLE
from llm_proxy.proxy.uploads import FieldScanner, boundary_of
from tests.helpers import ProxyFactory, eventually, make_config, provider, sdk, serve
from tests.helpers.processes import serve_process

BOUNDARY = b"xyzzy-boundary"


def form(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        out += b"--" + BOUNDARY + b"\r\n"
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def scan(body: bytes, chunk: int) -> FieldScanner:
    scanner = FieldScanner(BOUNDARY, b"model")
    for i in range(0, len(body), chunk):
        scanner.feed(body[i : i + chunk])
    return scanner


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
def test_the_model_field_is_found_wherever_chunks_split(chunk: int) -> None:
    trap = b'--xyzzy-boundary\r\nContent-Disposition: form-data; name="model"\r\n\r\nevil\r\n'
    body = form(("file", b"\x00\x01" + trap + b"tail", "a.wav"), ("model", b"whisper-1", None))
    scanner = scan(body, chunk)
    # The file's bytes hold a fake part (without the CRLF a real delimiter has): not read.
    assert scanner.value == b"whisper-1"
    assert body[scanner.offset : scanner.offset + 9] == b"whisper-1"


def test_no_model_field_and_odd_headers() -> None:
    assert scan(form(("file", b"abc", "a.wav")), 5).value is None
    body = form(("MODEL", b"x", None)).replace(b"Content-Disposition", b"content-disposition")
    assert scan(body, 4).value is None  # field names are case-sensitive
    quoted = form(("model", b"m", None)).replace(b'name="model"', b"name=model")
    assert scan(quoted, 2).value == b"m"
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    assert boundary_of("multipart/form-data") is None
    assert boundary_of("application/json; boundary=x") is None


class Hasher:
    """An upstream that reads uploads as they stream in and answers their size, SHA-256 and
    model field (and, with `fail`, a 500 first)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 31)
        app.router.add_post("/v1/audio/transcriptions", self.handle)
        app.router.add_post("/v1/files", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        if self.fail:
            self.fail -= 1
            return web.json_response({"error": {"message": "busy", "type": "server_error"}}, 500)
        return web.json_response(
            {"text": "ok", "size": size, "sha256": digest.hexdigest(), "id": "file-hashed"}
        )


@pytest.fixture
async def hasher() -> AsyncIterator[tuple[Hasher, str]]:
    h = Hasher()
    async with serve(h.app()) as url:
        yield h, url


async def post(url: str, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    data = io.BytesIO(body)
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as r:
        return r.status, await r.json()


async def test_bytes_arrive_unchanged_and_a_mapped_model_is_the_only_change(
    hasher: tuple[Hasher, str], start_proxy: ProxyFactory
) -> None:
    _, upstream = hasher
    url = await start_proxy(
        make_config(
            provider("same", upstream + "/v1", {"whisper-1": None}),
            provider("mapped", upstream + "/v1", {"gpt-4o-transcribe": "whisper-large"}),
        )
    )
    audio = os.urandom(300_000)
    body = form(("file", audio, "a.wav"), ("model", b"whisper-1", None))
    status, answer = await post(url + "/v1/audio/transcriptions", body)
    assert status == 200
    assert (answer["size"], answer["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())

    body = form(("model", b"gpt-4o-transcribe", None), ("file", audio, "a.wav"))
    status, answer = await post(url + "/audio/transcriptions", body)  # (no /v1 works too)
    expected = body.replace(b"gpt-4o-transcribe", b"whisper-large")
    assert status == 200
    assert (answer["size"], answer["sha256"]) == (
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    )


async def test_failover_sends_the_whole_upload_again(start_proxy: ProxyFactory) -> None:
    h = Hasher(fail=1)
    async with serve(h.app()) as upstream:
        url = await start_proxy(
            make_config(
                provider("a", upstream + "/v1", {"whisper-1": None}),
                provider("b", upstream + "/v1", {"whisper-1": None}),
            )
        )
        body = form(("model", b"whisper-1", None), ("file", os.urandom(2_000_000), "a.wav"))
        status, answer = await post(url + "/v1/audio/transcriptions", body)
    assert status == 200 and h.calls == 2
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()


async def test_the_openai_sdk_uploads_through_the_proxy(
    hasher: tuple[Hasher, str], start_proxy: ProxyFactory
) -> None:
    _, upstream = hasher
    url = await start_proxy(make_config(provider("a", upstream + "/v1", {"whisper-1": None})))
    async with sdk(url, "x") as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", io.BytesIO(b"RIFF" + os.urandom(5000)))
        )
        assert result.text == "ok"
        created = await client.files.create(file=("d.jsonl", b"{}\n"), purpose="batch")
        assert created.id == "file-hashed"


async def test_bad_uploads_are_refused(
    hasher: tuple[Hasher, str], start_proxy: ProxyFactory
) -> None:
    _, upstream = hasher
    url = await start_proxy(
        make_config(provider("a", upstream + "/v1", {"whisper-1": None}), max_request_body_mb=1)
    )
    big = form(("model", b"whisper-1", None), ("file", b"x" * 1_100_000, "a.wav"))
    status, answer = await post(url + "/v1/audio/transcriptions", big)
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    status, answer = await post(url + "/v1/audio/transcriptions", form(("file", b"a", "a.wav")))
    assert status == 400 and answer["error"]["param"] == "model"
    status, answer = await post(
        url + "/v1/audio/transcriptions", form(("model", b"nope", None), ("file", b"a", "a"))
    )
    assert status == 404 and answer["error"]["code"] == "model_not_found"


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_a_200_mb_upload_leaves_the_proxy_memory_flat(
    hasher: tuple[Hasher, str], tmp_path: Path
) -> None:
    _, upstream = hasher
    config = f"""
providers:
  - name: a
    api_base: {upstream}/v1
    api_key: sk-a
    model_mapping: {{whisper-1: null}}
require_auth: false
max_request_body_mb: 256
"""
    size = 200 * 1024 * 1024
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()

    async def stream() -> AsyncIterator[bytes]:
        head = form(("model", b"whisper-1", None)).rsplit(b"--" + BOUNDARY + b"--", 1)[0]
        head += b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
        head += b'filename="big.wav"\r\n\r\n'
        digest.update(head)
        yield head
        for _ in range(size // len(block)):
            digest.update(block)
            yield block
        tail = b"\r\n--" + BOUNDARY + b"--\r\n"
        digest.update(tail)
        yield tail

    async with serve_process(config, tmp_path) as served:
        # Real time: the process settles after /health answers, before its baseline is taken.
        await asyncio.sleep(0.3)
        before = _peak_rss_kb(served.proc.pid)
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                served.url + "/v1/audio/transcriptions", data=stream(), headers=headers
            ) as resp,
        ):
            answer = await resp.json()
        after = _peak_rss_kb(served.proc.pid)
    assert resp.status == 200, answer
    assert answer["sha256"] == digest.hexdigest() and answer["size"] > size
    # 200 MB went through; the proxy's peak memory grew by a few chunks' worth.
    print(f"peak RSS grew {(after - before) / 1024:.1f} MB")
    assert after - before < 40 * 1024, f"peak RSS grew {(after - before) / 1024:.0f} MB"


MB = 1 << 20


def open_in(directory: Path) -> list[str]:
    """Files this process holds open under `directory` (a spool is unlinked at once, so
    its open descriptor is what shows it is still there)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


class Gate:
    """An upstream that holds every upload until `opened` is set (so uploads stay spooled
    at the proxy), then answers its size."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.arrived = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 31)
        app.router.add_post("/v1/audio/transcriptions", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        await self.opened.wait()
        size = sum([len(chunk) async for chunk in request.content.iter_any()])
        return web.json_response({"text": "ok", "size": size})


@asynccontextmanager
async def _opened_at_the_end(gate: Gate) -> AsyncIterator[None]:
    try:
        yield
    finally:
        gate.opened.set()  # (a failed test must not leave requests held forever)


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))  # where spools go (TMPDIR)
    return directory


async def test_uploads_count_against_a_spool_budget_and_leave_nothing_behind(
    spool_dir: Path,
) -> None:
    """40 uploads of 30 MB once held 1.26 GB of the temp directory under an 8 MB budget."""
    gate = Gate()
    async with serve(gate.app()) as upstream:
        app = create_app(
            make_config(
                provider("a", upstream + "/v1", {"whisper-1": None}),
                max_request_body_mb=4,
                max_spool_mb=10,
                max_inflight_body_mb=8,
            )
        )
        lifecycle = app[LIFECYCLE]
        async with serve(app) as url, _opened_at_the_end(gate):
            body = form(("model", b"whisper-1", None), ("file", os.urandom(3 * MB), "a.wav"))
            held = [
                asyncio.create_task(post(url + "/v1/audio/transcriptions", body)) for _ in range(3)
            ]
            await eventually(lambda: gate.arrived == 3, timeout=10)
            assert lifecycle.spooled_bytes == 3 * len(body)
            assert open_in(spool_dir), "3 MB uploads are spooled to disk"
            # The budget is spent: a sized upload is refused before a byte is read, an
            # unsized one as soon as it passes what is left; both 503 with Retry-After.
            answers = await asyncio.gather(
                *(post_raw(url, body, chunked=chunked) for chunked in (False, True, False))
            )
            for status, headers, answer in answers:
                assert status == 503, answer
                assert headers["Retry-After"] == "1"
                assert answer["error"]["code"] == "over_capacity"
                assert "max_spool_mb" in answer["error"]["message"]
            assert lifecycle.spooled_bytes == 3 * len(body)
            gate.opened.set()
            for status, answer in await asyncio.gather(*held):
                assert (status, answer["size"]) == (200, len(body))
            # Given back exactly once, and every spool is gone.
            await eventually(
                lambda: lifecycle.spooled_bytes == 0 and not open_in(spool_dir), timeout=5
            )
            assert lifecycle.inflight_body_bytes == 0
            # One upload larger than the whole spool budget can never fit: 413, not 503.
            small = create_app(
                make_config(
                    provider("a", upstream + "/v1", {"whisper-1": None}),
                    max_request_body_mb=8,
                    max_spool_mb=2,
                )
            )
            async with serve(small) as small_url:
                for chunked in (False, True):
                    status, _, answer = await post_raw(small_url, body, chunked=chunked)
                    assert status == 413, answer
                    assert "max_spool_mb" in answer["error"]["message"]
                assert small[LIFECYCLE].spooled_bytes == 0
    assert not os.listdir(spool_dir) and not open_in(spool_dir)


async def test_a_client_hanging_up_mid_upload_leaves_nothing_behind(spool_dir: Path) -> None:
    gate = Gate()
    async with serve(gate.app()) as upstream:
        app = create_app(
            make_config(provider("a", upstream + "/v1", {"whisper-1": None}), max_spool_mb=64)
        )
        lifecycle = app[LIFECYCLE]
        async with serve(app) as url:
            for chunked in (False, True):
                host, port = url.removeprefix("http://").split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                head = form(("model", b"whisper-1", None)).rsplit(b"--" + BOUNDARY + b"--", 1)[0]
                head += b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
                head += b'filename="a.wav"\r\n\r\n' + os.urandom(2 * MB)
                framing = (
                    b"Transfer-Encoding: chunked\r\n"
                    if chunked
                    else f"Content-Length: {20 * MB}\r\n".encode()
                )
                writer.write(
                    b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
                    + framing + b"\r\n"
                    + (b"%x\r\n" % len(head) + head + b"\r\n" if chunked else head)
                )  # fmt: skip
                await writer.drain()
                # Half an upload is spooled (and counted)...
                await eventually(
                    lambda: lifecycle.spooled_bytes > 0 and bool(open_in(spool_dir)), timeout=5
                )
                writer.close()  # ...and the client goes away.
                await eventually(
                    lambda: lifecycle.spooled_bytes == 0 and not open_in(spool_dir), timeout=5
                )
                assert lifecycle.inflight_body_bytes == 0
                del reader
            # An upstream that fails: the same.
            gate.opened.set()
            dead = create_app(
                make_config(provider("a", "http://127.0.0.1:9/v1", {"whisper-1": None}))
            )
            async with serve(dead) as dead_url:
                body = form(("model", b"whisper-1", None), ("file", os.urandom(2 * MB), "a"))
                status, _, _ = await post_raw(dead_url, body, chunked=False)
                assert status == 502
                await eventually(lambda: dead[LIFECYCLE].spooled_bytes == 0, timeout=5)
    assert gate.arrived == 0
    assert not os.listdir(spool_dir) and not open_in(spool_dir)


async def post_raw(url: str, body: bytes, *, chunked: bool) -> tuple[int, Any, Any]:
    """POST a multipart body, with a Content-Length or chunked (no length known ahead)."""
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    data: Any = pieces() if chunked else io.BytesIO(body)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/v1/audio/transcriptions", data=data, headers=headers) as r,
    ):
        return r.status, r.headers, await r.json()
