"""systemd's notify protocol, played by the test: `llm-proxy serve` as a real process with
`$NOTIFY_SOCKET` and `$WATCHDOG_USEC` says READY once it serves, RELOADING/READY around a
SIGHUP, WATCHDOG while its loop runs, STOPPING when SIGTERM starts the drain."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp

from llm_proxy.systemd import Notifier
from tests.helpers import Upstream, yaml_config
from tests.helpers.processes import serve_process, wait_notified


def count(key: str, n: int = 1) -> Callable[[list[dict[str, str]]], bool]:
    """Done once `n` of the messages carry `key`."""
    return lambda seen: sum(key in m for m in seen) >= n


async def test_serve_speaks_the_notify_protocol(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    config = yaml_config(upstream)
    seen: list[dict[str, str]] = []
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
    try:
        async with serve_process(config, tmp_path, env) as served:
            await wait_notified(sock, seen, count("READY"))
            ready = next(m for m in seen if "READY" in m)
            assert ready["MAINPID"] == str(served.proc.pid)
            assert "serving on" in ready["STATUS"]
            await wait_notified(sock, seen, count("WATCHDOG", 3))  # every 0.1 s while the loop runs
            served.proc.send_signal(signal.SIGHUP)
            await wait_notified(sock, seen, count("RELOADING"))
            await wait_notified(sock, seen, count("READY", 2))
            reload_at = next(i for i, m in enumerate(seen) if "RELOADING" in m)
            assert int(seen[reload_at]["MONOTONIC_USEC"]) > 0
            assert any("READY" in m for m in seen[reload_at + 1 :])
            async with aiohttp.ClientSession() as http, http.get(served.url + "/health") as r:
                assert r.status == 200
        await wait_notified(sock, seen, count("STOPPING"))
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
