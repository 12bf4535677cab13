"""Helpers for tests that run llm-proxy's commands as real processes on loopback: sync ones
(`subprocess`) and `serve_process`, an async context manager for `llm-proxy serve` with its
log lines collected; and the systemd notify datagrams a served process sends."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import eventually, eventually_blocking, free_port


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers; fail with the process's output if it exits or never does.
    For sync tests; from a coroutine, call it in a thread."""

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()}")
        with urllib.request.urlopen(url, timeout=2):
            return True

    try:
        eventually_blocking(answers, timeout=20, interval=0.05)
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{log.read_text()}")


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
    config: Path  # the config file it serves (rewrite it, then SIGHUP)
    lines: list[bytes] = field(default_factory=list)  # stderr (the JSON log), line by line

    @property
    def log(self) -> bytes:
        return b"".join(self.lines)


async def wait_for_health(served: Served, timeout: float = 10) -> None:
    """Wait until `served` answers /health with 200; fail at once if it exits."""
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            if served.proc.returncode is not None:
                pytest.fail(f"serve exited: {served.log.decode(errors='replace')}")
            async with http.get(served.url + "/health") as resp:
                return resp.status == 200

        await eventually(healthy, timeout=timeout, interval=0.05, what="serve answering /health")


@asynccontextmanager
async def serve_process(
    config_text: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    *,
    read_log: bool = True,
    port: int | None = None,
) -> AsyncIterator[Served]:
    """Start `llm-proxy serve` with `config_text`, wait for /health, stop it with SIGTERM
    (unless the test did). On a free port given by `--host`/`--port` flags; with `port`, the
    config or `env` gives the address and no flags are passed. With `read_log=False` nobody
    reads its stderr until it is stopped (a stuck log reader)."""
    path = tmp_path / f"proxy-{os.getpid()}-{id(config_text)}.yaml"
    path.write_text(config_text)
    flags = [] if port is not None else ["--host", "127.0.0.1", "--port"]
    port = port or free_port()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "llm_proxy", "serve", "--config", str(path)),
        *(flags and [*flags, str(port)]),
        env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "debug", **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}", port, proc, path)

    async def collect() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            served.lines.append(line)

    reader = asyncio.create_task(collect()) if read_log else None
    try:
        await wait_for_health(served)
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


def notify_messages(sock: socket.socket) -> list[dict[str, str]]:
    """The systemd notify datagrams waiting on `sock` (non-blocking), each as {key: value}."""
    out = []
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return out
        out.append(dict(line.split("=", 1) for line in data.decode().splitlines()))


async def wait_notified(
    sock: socket.socket,
    seen: list[dict[str, str]],
    done: Callable[[list[dict[str, str]]], bool],
    timeout: float = 10,
) -> None:
    """Add the datagrams arriving on `sock` to `seen` until `done(seen)`."""

    def probe() -> bool:
        seen.extend(notify_messages(sock))
        return done(seen)

    await eventually(probe, timeout=timeout, interval=0.02, what=f"notify messages {seen}")
