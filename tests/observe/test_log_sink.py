"""The batched log writer (`llm_proxy.observe.log_sink`) on real pipes: in order, in batches,
flushed on time and at close, and never blocking its caller when the reader is stuck."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from llm_proxy.observe.log_sink import BatchedWriter
from tests.helpers import eventually_blocking
from tests.helpers.processes import serve_process


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    try:
        yield read, write
    finally:
        for fd in (read, write):
            with contextlib.suppress(OSError):
                os.close(fd)


def read_until(fd: int, size: int, timeout: float = 5.0) -> bytes:
    """`size` bytes (at least) read from the pipe `fd`, for sync tests (the writer is a thread)."""
    os.set_blocking(fd, False)
    data = bytearray()

    def enough() -> bool:
        with contextlib.suppress(BlockingIOError):
            data.extend(os.read(fd, 1 << 20))
        return len(data) >= size

    eventually_blocking(enough, timeout=timeout, what=f"{size} bytes read")
    return bytes(data)


def test_lines_arrive_in_order_in_few_writes(pipe: tuple[int, int]) -> None:
    read, write = pipe
    writer = BatchedWriter(write, flush_secs=0.05)
    lines = [b'{"n":%d}\n' % i for i in range(2000)]
    for line in lines:
        assert writer.write(line) == len(line)
    writer.close()
    assert read_until(read, sum(map(len, lines))) == b"".join(lines)
    assert writer.dropped == 0


def test_a_lone_line_is_flushed_by_the_timer(pipe: tuple[int, int]) -> None:
    read, write = pipe
    writer = BatchedWriter(write, flush_secs=0.05)
    writer.write(b"one line\n")
    assert read_until(read, 9, timeout=2.0) == b"one line\n"  # without close()
    writer.close()


def test_a_stuck_reader_never_blocks_the_caller_and_drops_are_counted(
    pipe: tuple[int, int],
) -> None:
    read, write = pipe
    fcntl.fcntl(write, 1031, 4096)  # F_SETPIPE_SZ: a small pipe nobody reads
    writer = BatchedWriter(write, flush_bytes=1024, flush_secs=0.01, max_buffer_bytes=64 * 1024)
    line = b"x" * 99 + b"\n"
    done = threading.Event()

    def produce() -> None:
        for _ in range(10_000):  # 1 MB: far more than the pipe and the buffer hold
            writer.write(line)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(5), "write() blocked on a full pipe"
    assert writer.dropped > 5_000
    # The reader catches up: what was kept arrives whole and in order, and every line is
    # either delivered or counted as dropped.
    received = bytearray()
    os.set_blocking(read, False)

    def drain() -> None:
        try:
            while chunk := os.read(read, 1 << 20):
                received.extend(chunk)
        except BlockingIOError:
            pass

    closer = threading.Thread(target=writer.close)
    closer.start()

    def closed() -> bool:
        drain()  # (a full pipe would block the close)
        return not closer.is_alive()

    eventually_blocking(closed, timeout=10)
    drain()
    assert bytes(received) == line * (len(received) // len(line))
    assert len(received) // len(line) + writer.dropped == 10_000


def test_a_closed_reader_drops_lines_instead_of_failing(pipe: tuple[int, int]) -> None:
    read, write = pipe
    os.close(read)
    writer = BatchedWriter(write, flush_secs=0.01)
    for _ in range(10):
        writer.write(b"lost\n")
    writer.close()
    assert writer.dropped == 10


CONFIG = """\
providers:
  - name: a
    api_base: http://127.0.0.1:9/v1
    api_key: sk-a
    model_mapping: {"m": null}
require_auth: false
"""


async def test_serve_keeps_answering_with_a_stuck_log_reader(tmp_path: Path) -> None:
    """`llm-proxy serve` whose stderr nobody reads (a stuck journald or `| less`): with one
    blocking write per line the event loop would stop after about a pipe's worth of lines."""
    config = CONFIG + "max_connections: 100\n"
    async with (
        serve_process(config, tmp_path, {"LOG_LEVEL": "info"}, read_log=False) as served,
        aiohttp.ClientSession() as http,
    ):

        async def burst() -> None:
            for _ in range(3000):  # about 750 KB of log lines: ten pipes' worth
                async with http.get(served.url + "/v1/models") as resp:
                    assert resp.status == 200

        await asyncio.wait_for(burst(), 60)
        async with http.get(served.url + "/metrics") as resp:
            assert "llm_proxy_log_lines_dropped_total 0" in await resp.text()
    # Nothing was lost: every request's line (4 MB of buffer holds them) and the shutdown's.
    assert served.log.count(b'"path":"/v1/models"') == 3000
    assert b'"event":"stopped"' in served.log


@pytest.mark.parametrize("level", ["debug", "info", "warning"])
async def test_serve_writes_one_access_line_per_request(tmp_path: Path, level: str) -> None:
    """The access line, rendered without structlog's processor chain, is the same JSON line
    (fields, event, level, timestamp) and honours LOG_LEVEL: /health and /metrics only at
    debug, nothing below warning."""
    async with (
        serve_process(CONFIG, tmp_path, {"LOG_LEVEL": level}) as served,
        aiohttp.ClientSession() as http,
    ):
        for path in ("/v1/models", "/health"):
            async with http.get(served.url + path, headers={"x-request-id": "rid-1"}) as resp:
                assert resp.status == 200
    lines = [orjson.loads(line) for line in served.log.splitlines() if line.startswith(b"{")]
    # (serve_process polls /health until the proxy is up: those lines have other ids)
    requests = [
        line for line in lines if line["event"] == "request" and line["request_id"] == "rid-1"
    ]
    expected = {"warning": [], "info": ["/v1/models"], "debug": ["/v1/models", "/health"]}
    assert [line["path"] for line in requests] == expected[level]
    for line in requests:
        assert set(line) == {
            "request_id",
            "method",
            "path",
            "model",
            "provider",
            "status",
            "duration_ms",
            "streamed",
            "key",
            "client",
            "attempts",
            "ttft_ms",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "trace_id",
            "cache",
            "event",
            "level",
            "timestamp",
        }
        assert (line["key"], line["client"]) == ("anonymous", "other")  # aiohttp's agent
        assert line["cache"] is None  # no `cache:` section
        assert (line["request_id"], line["method"], line["status"]) == ("rid-1", "GET", 200)
        assert line["level"] == ("debug" if line["path"] == "/health" else "info")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
        assert isinstance(line["duration_ms"], float)
