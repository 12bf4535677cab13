"""systemd's notify protocol, played by the test: `llm-proxy serve` as a real process with
`$NOTIFY_SOCKET` and `$WATCHDOG_USEC` says READY once it serves, RELOADING/READY around a
SIGHUP, WATCHDOG while its loop runs, STOPPING when SIGTERM starts the drain."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import aiohttp

from llm_proxy.systemd import Notifier
from tests.conftest import Upstream
from tests.processes import serve_process


def messages(sock: socket.socket) -> list[dict[str, str]]:
    out = []
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return out
        out.append(dict(line.split("=", 1) for line in data.decode().splitlines()))


async def until(sock: socket.socket, seen: list[dict[str, str]], key: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while sum(key in m for m in seen) < count:
        assert time.monotonic() < deadline, (key, seen)
        await asyncio.sleep(0.02)
        seen += messages(sock)


async def test_serve_speaks_the_notify_protocol(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    config = f"""
providers:
  - name: a
    api_base: {upstream.api_base}
    api_key: sk-a
    model_mapping: {{m: null}}
require_auth: false
"""
    seen: list[dict[str, str]] = []
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
    try:
        async with serve_process(config, tmp_path, env) as served:
            await until(sock, seen, "READY")
            ready = next(m for m in seen if "READY" in m)
            assert ready["MAINPID"] == str(served.proc.pid)
            assert "serving on" in ready["STATUS"]
            await until(sock, seen, "WATCHDOG", 3)  # every 0.1 s while the loop runs
            served.proc.send_signal(signal.SIGHUP)
            await until(sock, seen, "RELOADING")
            await until(sock, seen, "READY", 2)
            reload_at = next(i for i, m in enumerate(seen) if "RELOADING" in m)
            assert int(seen[reload_at]["MONOTONIC_USEC"]) > 0
            assert any("READY" in m for m in seen[reload_at + 1 :])
            async with aiohttp.ClientSession() as http, http.get(served.url + "/health") as r:
                assert r.status == 200
        await until(sock, seen, "STOPPING")
        assert served.proc.returncode == 0
    finally:
        sock.close()


async def test_without_a_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_secs is None
    notifier.send("READY=1")  # no socket: nothing, no error
    other = Notifier(
        {"NOTIFY_SOCKET": "/nonexistent/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert other.enabled and other.watchdog_secs is None  # the watchdog is another process's
    other.send("READY=1")  # a socket that is gone: logged, never raised
    await other.close()
