"""An upgrade with no failed request: two instances on one port (server.reuse_port), each
restarted in turn (SIGTERM: drain, exit; then a new process) while the openai SDK keeps
calling, with its default retries of connection errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai

from tests.conftest import Upstream
from tests.processes import free_port


def start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "llm_proxy", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "LOG_FORMAT": "json"}, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


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
    procs = [start(config, port, log), start(config, port, log)]
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
        await asyncio.sleep(1.0)  # both bound
        assert all(p.poll() is None for p in procs)
        clients = [asyncio.create_task(traffic()) for _ in range(4)]
        await asyncio.sleep(0.5)
        for i in range(2):  # the upgrade: one instance at a time
            procs[i].send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while procs[i].poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert procs[i].returncode == 0
            procs[i] = start(config, port, log)
            await asyncio.sleep(1.0)  # the new one serves before the next goes
        await asyncio.sleep(0.5)
        stop.set()
        print(f"{ok} requests, {len(failed)} failed")
        await asyncio.gather(*clients)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    assert failed == [] and ok > 50, (ok, failed[:3])
