"""Helpers for tests that run llm-proxy's commands as real processes on loopback: sync ones
(`subprocess`) and `serve_process`, an async context manager for `llm-proxy serve` with its
log lines collected."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers; fail with the process's output if it exits or never does."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    pytest.fail(f"{url} never answered:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """SIGTERM (to the process group it leads, for `make`), then SIGKILL after 10 s."""
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()


@dataclass
class Served:
    url: str
    port: int
    proc: asyncio.subprocess.Process
    lines: list[bytes] = field(default_factory=list)  # stderr (the JSON log), line by line

    @property
    def log(self) -> bytes:
        return b"".join(self.lines)


@asynccontextmanager
async def serve_process(
    config_text: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    *,
    read_log: bool = True,
) -> AsyncIterator[Served]:
    """Start `llm-proxy serve` on a free port with `config_text`; stop it with SIGTERM.
    With `read_log=False` nobody reads its stderr until it is stopped (a stuck log reader)."""
    path = tmp_path / f"proxy-{os.getpid()}-{id(config_text)}.yaml"
    path.write_text(config_text)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llm_proxy",
        "serve",
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "debug", **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}", port, proc)

    async def collect() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            served.lines.append(line)

    reader = asyncio.create_task(collect()) if read_log else None
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                if proc.returncode is not None:
                    raise RuntimeError(f"serve exited: {served.log.decode(errors='replace')}")
                try:
                    async with http.get(served.url + "/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("serve did not answer /health in 10 s")
        yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            # Reading from now on lets a log writer blocked on the pipe finish at shutdown.
            reader = reader or asyncio.create_task(collect())
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if reader is not None:
            await asyncio.wait_for(reader, 5)
