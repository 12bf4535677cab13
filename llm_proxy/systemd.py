"""systemd's notify protocol (`Type=notify` / `Type=notify-reload`), without a dependency:
datagrams of `KEY=value` lines to the socket named by `$NOTIFY_SOCKET`.

* `READY=1` once the proxy serves (the port is bound, the config loaded);
* `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a SIGHUP reload;
* `STOPPING=1` when it starts draining;
* `WATCHDOG=1` every half `WatchdogSec` while the event loop runs, so a stuck loop gets the
  service restarted;
* `STATUS=...` a line `systemctl status` shows.

Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

import structlog

from llm_proxy.tasks import stop_task

log = structlog.get_logger()


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self._address = address if address.startswith(("/", "\0")) else ""
        self._socket: socket.socket | None = None
        self.watchdog_secs: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_secs = int(usec) / 1e6
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        """One datagram; a failure is logged, never raised (systemd may be gone)."""
        if not self._address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            log.warning("systemd_notify_failed", error=type(exc).__name__, detail=str(exc)[:100])

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        if self.watchdog_secs is not None and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._ping())

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")

    def reloaded(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    async def _ping(self) -> None:
        assert self.watchdog_secs is not None
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_secs / 2)

    async def close(self) -> None:
        await stop_task(self._watchdog)
        self._watchdog = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
