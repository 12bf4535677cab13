"""Instructions per request: `llm-proxy serve` under valgrind's callgrind, one count per scenario
of `protocols_bench`, each divided by the first scenario's.

    python -m tests.perf.instructions [--requests 300] [--routing] [SCENARIO,SCENARIO,...]

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

Routing's cost (issue 30): a scenario named `NAME+routing` runs on a proxy of its own whose
config adds `routing_bench.routing_section` (every feature, no condition met by the bench's
requests: chains for the models the `+routing` scenarios call, and for others),
`NAME+routing-latency` the same with those models on `strategy: latency`; `--routing` adds
both variants of every scenario named. Each variant's row also shows its ratio to NAME's.
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
from tests.perf import bench, routing_bench
from tests.perf import protocols_bench as pb

DEFAULT = (
    "openai-pass,anthropic-pass,gemini-pass,openai-via-gemini,anthropic-via-gemini,"
    "openai-via-bedrock,anthropic-via-bedrock,anthropic-via-vertex,gemini-via-openai,"
    "anthropic-translated,openai-translated"
)
WARM_UP = 200
CONCURRENCY = 8
# Scenario suffix -> the strategy of the routed models ("": the config without routing).
VARIANTS = {"": None, "+routing": "weighted", "+routing-latency": "latency"}
RULES_PROVIDER = "oai"  # the provider the routing rules name


def split(name: str) -> tuple[str, str]:
    """A scenario name as (the protocol bench's scenario, its variant's suffix)."""
    for suffix in VARIANTS:
        if suffix and name.endswith(suffix):
            return name.removesuffix(suffix), suffix
    return name, ""


def routing_config(text: str, names: list[str], strategy: str) -> str:
    """The protocol bench's config with a routing section: chains, overrides and strategies
    (`strategy`) for the models the routed scenarios of `names` call, and for four others."""
    known = {s.name: s for s in pb.SCENARIOS}
    models = list(dict.fromkeys(known[split(n)[0]].model for n in names if split(n)[1]))
    served = [m for ms in pb.PROVIDER_MODELS.values() for m in ms if m not in models]
    section = routing_bench.routing_section(models, served[:4], RULES_PROVIDER, strategy)
    return routing_bench.with_routing(text, section)


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


def _count(
    config: Path, port: int, scenarios: list[tuple[str, pb.Scenario]], requests: int, log: Path
) -> None:
    """`llm-proxy serve` on `config` under callgrind: a dump per scenario (its name), of
    `requests` requests after the warm-up."""
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    cmd += [f"--callgrind-out-file={log.parent}/callgrind.%p", sys.executable, "-m"]
    cmd += ["llm_proxy", "serve", "--config", str(config)]
    with log.open("wb") as out:
        proxy = subprocess.Popen(cmd, stdout=out, stderr=out)
    try:
        _wait_up(proxy, port, log)
        for name, scenario in scenarios:
            asyncio.run(_fire(port, scenario, WARM_UP))
            _control(proxy.pid, "--zero")
            _control(proxy.pid, "--instr=on")
            failed = asyncio.run(_fire(port, scenario, requests))
            _control(proxy.pid, "--instr=off")
            _control(proxy.pid, f"--dump={name}")
            if failed:
                raise RuntimeError(f"{name}: {failed} of {requests} requests failed")
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(60)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


def measure(names: list[str], requests: int, out: Path) -> dict[str, float]:
    """Instructions per request of each scenario named (one proxy per variant, in turn)."""
    known = {s.name: s for s in pb.SCENARIOS}
    if unknown := [n for n in names if split(n)[0] not in known]:
        raise SystemExit(f"unknown scenarios {unknown}; known: {sorted(known)}")
    py = sys.executable
    mock_port = bench.free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    with (out / "mock.log").open("wb") as log:
        mock = subprocess.Popen(
            [py, "-m", "llm_proxy", "mock-upstream", "--port", str(mock_port), "--tool", "none"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        bench.wait_health(mock_url, "/v1/models")
        account = mock_service_account(mock_url + TOKEN_PATH, pb.VERTEX_PROJECT)
        for suffix in dict.fromkeys(split(n)[1] for n in names):
            port = bench.free_port()
            config = out / f"proxy{suffix}.yaml"
            pb.write_config(config, mock_url, port, account)
            strategy = VARIANTS[suffix]
            if strategy is not None:
                config.write_text(routing_config(config.read_text(), names, strategy))
            ours = [(n, known[split(n)[0]]) for n in names if split(n)[1] == suffix]
            _count(config, port, ours, requests, out / f"proxy{suffix}.log")
    finally:
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
    parser.add_argument(
        "--routing",
        action="store_true",
        help="also NAME+routing and NAME+routing-latency for each scenario NAME",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    names = args.scenarios.split(",")
    if args.routing:
        names = [f"{n}{suffix}" if not split(n)[1] else n for n in names for suffix in VARIANTS]
        names = list(dict.fromkeys(names))
    out = Path(tempfile.mkdtemp(prefix="llm-proxy-instructions-"))
    counts = measure(names, args.requests, out)
    print(table(counts))
    shutil.rmtree(out, ignore_errors=True)
    return 0


def table(counts: dict[str, float]) -> str:
    """Each count, its ratio to the first; with routing variants, also to their scenario's."""
    base = next(iter(counts.values()))
    variants = any(split(name)[1] for name in counts)
    width = max(24, *(len(name) for name in counts)) if variants else 24
    lines = [f"{'scenario':{width}} {'k instr/req':>12} {'ratio':>7}" + (" ÷ off" * variants)]
    for name, count in counts.items():
        line = f"{name:{width}} {count / 1000:12.1f} {count / base:7.3f}"
        plain = counts.get(split(name)[0])
        if split(name)[1] and plain:
            line += f" {count / plain:6.3f}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
