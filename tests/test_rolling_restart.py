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
import time
from pathlib import Path

import openai

from tests.conftest import Upstream
from tests.processes import free_port
from tests.test_systemd import messages


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
    deadline = time.monotonic() + 30
    while not any("READY" in m and m.get("MAINPID") == str(proc.pid) for m in seen):
        assert proc.poll() is None, f"exited with {proc.returncode} before READY"
        assert time.monotonic() < deadline, ("no READY", proc.pid, seen)
        await asyncio.sleep(0.02)
        seen += messages(sock)


async def test_instances_restarted_one_at_a_time_fail_no_request(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"""
providers:
  - name: a
    api_base: {upstream.api_base}
    api_key: sk-a
    model_mapping: {{m: null}}
require_auth: false
server: {{reuse_port: true}}
shutdown_grace_secs: 5
"""
    )
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

    try:
        for p in procs:
            await ready(sock, seen, p)
        clients = [asyncio.create_task(traffic()) for _ in range(4)]
        while ok < 20:  # traffic flows through both before the first restart
            assert not failed, failed[:3]
            await asyncio.sleep(0.02)
        for i in range(2):  # the upgrade: one instance at a time
            procs[i].send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while procs[i].poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert procs[i].returncode == 0
            procs[i] = start(config, port, log, notify)
            await ready(sock, seen, procs[i])  # the new one serves before the next goes
        served = ok
        while ok < served + 20:  # and still serves with both replaced
            assert not failed, failed[:3]
            await asyncio.sleep(0.02)
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
