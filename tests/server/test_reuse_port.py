"""All cores, one port: two `llm-proxy serve` processes with `server.reuse_port` share one
port, both serve, and a Redis-backed request limit holds across them; systemd units verify."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import REDIS_URL, Upstream, eventually, free_port, scrape, yaml_config

ROOT = Path(__file__).resolve().parents[2]


async def test_two_instances_share_one_port_and_one_limit(
    upstream: Upstream, tmp_path: Path
) -> None:
    import redis.asyncio as redis

    name = f"reuse-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "c.yaml"
    keys = [
        {
            "name": name,
            "key": f"sk-{name}-0123456789",
            "rate_limit": {"requests_per_second": 0.001, "burst_size": 6},
        },
        # The mock's answers use 10 tokens: 3 answers a minute.
        {"name": f"{name}-tokens", "key": f"sk-{name}-tokens-0123456789", "tokens_per_minute": 30},
    ]
    config.write_text(
        yaml_config(
            upstream,
            master_keys=keys,
            rate_limit_backend=REDIS_URL,
            server={"reuse_port": True},
        )
    )
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    command = [sys.executable, "-m", "llm_proxy", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    procs = []
    metrics_ports = [free_port(), free_port()]
    for i in range(2):
        with open(tmp_path / f"p{i}.log", "wb") as log:
            own = {**env, "METRICS_PORT": str(metrics_ports[i])}
            procs.append(subprocess.Popen(command, env=own, stdout=subprocess.DEVNULL, stderr=log))
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            # Both bound: each one's own metrics port answers (opened after the shared one).
            for metrics_port in metrics_ports:

                async def up(port: int = metrics_port) -> bool:
                    if not all(p.poll() is None for p in procs):
                        pytest.fail("an instance did not start")
                    async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                        return resp.status == 200

                await eventually(up, timeout=10, interval=0.025)
            statuses = []
            headers = {"Authorization": f"Bearer sk-{name}-0123456789", "Connection": "close"}
            for _ in range(30):  # a new connection each: the kernel spreads them
                async with (
                    aiohttp.ClientSession() as fresh,
                    fresh.post(
                        url + "/v1/chat/completions", json={"model": "m"}, headers=headers
                    ) as resp,
                ):
                    statuses.append(resp.status)
        assert statuses.count(200) == 6 and statuses.count(429) == 24  # one limit, shared
        token_statuses = []
        headers = {"Authorization": f"Bearer sk-{name}-tokens-0123456789", "Connection": "close"}
        for _ in range(10):
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.post(
                    # max_tokens: each call reserves 5 tokens at admission (else 4096, capped
                    # at the whole minute's 30), and is settled to the 10 it used.
                    url + "/v1/chat/completions",
                    json={"model": "m", "max_tokens": 5},
                    headers=headers,
                ) as resp,
            ):
                token_statuses.append(resp.status)
            # Real time: the charge reaches Redis in the background, and nothing outside the
            # process shows when (the next call must see it to be refused).
            await asyncio.sleep(0.1)
        # Each instance's own metrics port: together they saw every request.
        seen = 0.0
        for metrics_port in metrics_ports:
            async with aiohttp.ClientSession() as fresh:
                families = await scrape(fresh, f"http://127.0.0.1:{metrics_port}")
            for family in families.values():
                for sample in family.samples:
                    if sample.name == "llm_proxy_requests_total" and "chat" in str(
                        sample.labels.get("endpoint")
                    ):
                        seen += sample.value
        assert seen == 40  # the 30 and the 10 above, between the two instances
        # One budget for both. Alone, an instance admits 4 here (3 spend the minute's 30
        # tokens, and the budget refills continuously: a 4th fits a moment later), so two
        # separate budgets would admit up to 8; shared, an instance may admit one more before
        # it hears of the other's last charge.
        assert 3 <= token_statuses.count(200) <= 5, token_statuses
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(15)
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = [k async for k in client.scan_iter(f"llm_proxy:ratelimit:{name}:*")]
        keys += [k async for k in client.scan_iter(f"llm_proxy:tpm:{name}-tokens:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    served = [log.count('"event":"request"') for log in logs]
    assert all(n > 0 for n in served) and sum(served) == 40, served
    assert all('"event":"limits_per_instance"' not in log for log in logs)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the units as installed (the venv's llm-proxy standing in
    for /opt/llm-proxy/venv/bin/llm-proxy); any warning fails."""
    binary = str(Path(sys.executable).parent / "llm-proxy")
    names = ["llm-proxy.service", "llm-proxy@.service", "llm-proxy.target"]
    for unit in names:
        text = (ROOT / "deploy" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/llm-proxy/venv/bin/llm-proxy", binary))
    shutil.copy(tmp_path / "llm-proxy@.service", tmp_path / "llm-proxy@1.service")
    units = [
        str(tmp_path / u) for u in ("llm-proxy.service", "llm-proxy@1.service", "llm-proxy.target")
    ]
    done = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    for unit in ("llm-proxy.service", "llm-proxy@.service"):
        text = (ROOT / "deploy" / unit).read_text()
        assert "Type=notify" in text and "WatchdogSec=" in text and "NotifyAccess=main" in text
