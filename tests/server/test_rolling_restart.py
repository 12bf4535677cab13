"""An upgrade with no failed request: two instances on one port (server.reuse_port), each
restarted in turn (SIGTERM: drain, exit; then a new process) while the openai SDK keeps
calling, with its default retries of connection errors.

A process is told to stop only once it said READY on the notify socket (sent after its SIGTERM
handler is installed): `/health` on the shared port may be answered by the other instance, and a
fixed wait lost the race under a loaded machine (SIGTERM before the handler: exit status -15)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.helpers import Upstream, eventually, free_port, yaml_config
from tests.helpers.processes import wait_notified


def start(config: Path, port: int, log: Path, notify: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "llm_proxy", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "LOG_FORMAT": "json", "NOTIFY_SOCKET": str(notify)},
            stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


async def ready(
    sock: socket.socket, seen: list[dict[str, str]], proc: subprocess.Popen[bytes]
) -> None:
    """Until `proc` sent READY=1 (its MAINPID names it), or fail if it exits first."""

    def done(seen: list[dict[str, str]]) -> bool:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before READY")
        return any("READY" in m and m.get("MAINPID") == str(proc.pid) for m in seen)

    await wait_notified(sock, seen, done, timeout=30)


async def test_instances_restarted_one_at_a_time_fail_no_request(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml_config(upstream, server={"reuse_port": True}, shutdown_grace_secs=5))
    port = free_port()
    log = tmp_path / "serve.log"
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    seen: list[dict[str, str]] = []
    procs = [start(config, port, log, notify), start(config, port, log, notify)]
    url = f"http://127.0.0.1:{port}/v1"
    ok, failed = 0, []
    stop = asyncio.Event()

    async def traffic() -> None:
        nonlocal ok
        async with openai.AsyncOpenAI(api_key="x", base_url=url, max_retries=2) as client:
            while not stop.is_set():
                try:
                    await client.chat.completions.create(model="m", messages=[])
                    ok += 1
                except openai.OpenAIError as exc:
                    failed.append(repr(exc))

    def flowed(count: int) -> Callable[[], bool]:
        def probe() -> bool:
            if failed:
                pytest.fail(f"failed requests: {failed[:3]}")
            return ok >= count

        return probe

    try:
        for p in procs:
            await ready(sock, seen, p)
        clients = [asyncio.create_task(traffic()) for _ in range(4)]
        await eventually(flowed(20), timeout=30)  # through both before the first restart
        for i in range(2):  # the upgrade: one instance at a time
            procs[i].send_signal(signal.SIGTERM)
            old = procs[i]
            await eventually(lambda p=old: p.poll() is not None, timeout=15, interval=0.05)
            assert old.returncode == 0
            procs[i] = start(config, port, log, notify)
            await ready(sock, seen, procs[i])  # the new one serves before the next goes
        await eventually(flowed(ok + 20), timeout=30)  # and still serves with both replaced
        stop.set()
        print(f"{ok} requests, {len(failed)} failed")
        await asyncio.gather(*clients)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
        sock.close()
    assert failed == [] and ok > 50, (ok, failed[:3])
