"""Instructions per request: `llm-proxy serve` under valgrind's callgrind, one count per scenario
of `protocols_bench`, each divided by the first scenario's.

    python -m tests.perf.instructions [--requests 300] [SCENARIO,SCENARIO,...]

Callgrind counts the instructions the proxy's process runs in user space, not seconds: the same
code, config and requests give the same count whatever else the machine does (measured: within
0.6 % run to run on a shared 2-vCPU VM, where CPU time per request varies by 20-30 %). So a
change to the request path shows its cost exactly, even a few percent, where `make bench`
needs many interleaved rounds on a quiet machine. It does not count the kernel's work
(syscalls are the same per request on every route) nor cache misses: `make bench` stays the
measure of record; this one says where to look and whether a change helped. On this VM the
counts' ratios matched the bench's CPU ratios (openai-via-bedrock: 1.49 by both, before the
work that brought it down).

The proxy runs as in `protocols_bench` (the same config and mock upstream, uvloop), started
with instrumentation off; for each scenario, 200 warm-up requests, then counting on for
`--requests` requests (8 at a time), then a dump. All eleven in under a minute. Needs
valgrind. Only 127.0.0.1; everything started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from llm_proxy.testing.mock.vertex import TOKEN_PATH, mock_service_account
from tests.perf import bench
from tests.perf import protocols_bench as pb

DEFAULT = (
    "openai-pass,anthropic-pass,gemini-pass,openai-via-gemini,anthropic-via-gemini,"
    "openai-via-bedrock,anthropic-via-bedrock,anthropic-via-vertex,gemini-via-openai,"
    "anthropic-translated,openai-translated"
)
WARM_UP = 200
CONCURRENCY = 8


async def _fire(port: int, scenario: pb.Scenario, count: int) -> int:
    """`count` requests of `scenario`, CONCURRENCY at a time; the number that failed."""
    url = f"http://127.0.0.1:{port}{scenario.path()}"
    body, headers = scenario.body(), scenario.headers()
    left, failed = count, 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left, failed
        while left > 0:
            left -= 1
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                failed += response.status != 200

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return failed


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def _wait_up(proxy: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 300  # (the imports run under valgrind, uninstrumented)
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            raise RuntimeError(f"llm-proxy exited under valgrind:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("llm-proxy did not answer /health under valgrind")


def measure(names: list[str], requests: int, out: Path) -> dict[str, float]:
    """Instructions per request of each scenario named."""
    known = {s.name: s for s in pb.SCENARIOS}
    scenarios = [known[name] for name in names]
    py = sys.executable
    mock_port, proxy_port = bench.free_port(), bench.free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    with (out / "mock.log").open("wb") as log:
        mock = subprocess.Popen(
            [py, "-m", "llm_proxy", "mock-upstream", "--port", str(mock_port), "--tool", "none"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy: subprocess.Popen[bytes] | None = None
    try:
        bench.wait_health(mock_url, "/v1/models")
        config = out / "proxy.yaml"
        account = mock_service_account(mock_url + TOKEN_PATH, pb.VERTEX_PROJECT)
        pb.write_config(config, mock_url, proxy_port, account)
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        cmd += [f"--callgrind-out-file={out}/callgrind.%p", py, "-m", "llm_proxy", "serve"]
        with (out / "proxy.log").open("wb") as log:
            proxy = subprocess.Popen([*cmd, "--config", str(config)], stdout=log, stderr=log)
        _wait_up(proxy, proxy_port, out / "proxy.log")
        for scenario in scenarios:
            asyncio.run(_fire(proxy_port, scenario, WARM_UP))
            _control(proxy.pid, "--zero")
            _control(proxy.pid, "--instr=on")
            failed = asyncio.run(_fire(proxy_port, scenario, requests))
            _control(proxy.pid, "--instr=off")
            _control(proxy.pid, f"--dump={scenario.name}")
            if failed:
                raise RuntimeError(f"{scenario.name}: {failed} of {requests} requests failed")
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(60)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        mock.terminate()
        mock.wait()
    counts: dict[str, float] = {}
    for dump in out.glob("callgrind.*"):
        text = dump.read_text(errors="replace")
        name = re.search(r"^desc: Trigger: dump (\S+)", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if name and total:
            counts[name[1]] = int(total[1]) / requests
    return {name: counts[name] for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("scenarios", nargs="?", default=DEFAULT, help="the first is the base")
    parser.add_argument("--requests", type=int, default=300, help="counted per scenario")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    out = Path(tempfile.mkdtemp(prefix="llm-proxy-instructions-"))
    counts = measure(args.scenarios.split(","), args.requests, out)
    base = next(iter(counts.values()))
    print(f"{'scenario':24} {'k instr/req':>12} {'ratio':>7}")
    for name, count in counts.items():
        print(f"{name:24} {count / 1000:12.1f} {count / base:7.3f}")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
