"""`llm-proxy serve` as a real subprocess (uvloop, the shipped runner, real signals), with its
log lines collected, for tests about sockets, the event loop and what reaches the log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    config_text: str, tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[Served]:
    """Start `llm-proxy serve` on a free port with `config_text`; stop it with SIGTERM."""
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

    reader = asyncio.create_task(collect())
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
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(reader, 5)
