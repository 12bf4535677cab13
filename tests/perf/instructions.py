"""Instructions per request: `llm-proxy serve` under valgrind's callgrind, one count per scenario
of `protocols_bench`, each divided by the first scenario's.

    python -m tests.perf.instructions [--requests 300] [--routing] [--cache] [SCENARIO,...]

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
with instrumentation off and `PYTHONHASHSEED=0` unless the environment sets it (a random
seed lays out every str-keyed dict and set afresh, and so moves the counts between runs); for
each scenario, 200 warm-up requests, then counting on for `--requests` requests (8 at a
time), then a dump. All eleven in under a minute. Needs valgrind. Only 127.0.0.1; everything
started here is stopped here, by PID.

Routing's cost (issue 30): a scenario named `NAME+routing` runs on a proxy of its own whose
config adds `routing_bench.routing_section` (every feature, no condition met by the bench's
requests: chains for the models the `+routing` scenarios call, and for others),
`NAME+routing-latency` the same with those models on `strategy: latency`; `--routing` adds
both variants of every scenario named. Each variant's row also shows its ratio to NAME's.

The response cache's cost (issue 31): `NAME+cache-hit` and `NAME+cache-miss` run on one proxy
of their own whose config adds `cache_bench.CACHE_SECTION` (`cache: {backend: memory}`), and
send NAME's call at temperature 0 (`cache_bench.cacheable`: the cache keeps nothing sampled
above 0 unless told): every request of the hit scenario the same body (after the first, a
hit), every request of the miss scenario a new one (`cache_bench.unique_bodies`: a counter in
the message text; a miss is looked up, forwarded, recorded and stored); `NAME+unique`, on
NAME's proxy (no cache), sends the miss scenario's bodies: the miss's exact baseline, its
ratio shown against it.
`--cache` adds the three for every scenario named.

What a team costs (issue 32): `NAME+key-limits` runs on a proxy whose key has every limit on,
`NAME+team-limits` on one where that key is also in a team with every limit on
(`teams_bench`); the latter's ratio to the former's is its last column. `--teams` adds both.

Every counted answer must say `x-llm-proxy-cache: hit` (miss) on the cache's scenarios, and
nothing on the others (else the run says which, and exits 1).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp

from llm_proxy.testing.mock.vertex import TOKEN_PATH, mock_service_account
from tests.perf import bench, cache_bench, routing_bench, teams_bench
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
# The cache's variants: suffix -> (the proxy it runs on, every body new (else the same
# `cache_bench.cacheable` call), what every counted answer says in `x-llm-proxy-cache`).
# "+cache" is NAME's config with the `cache:` section.
CACHE_VARIANTS: dict[str, tuple[str, bool, str | None]] = {
    "+unique": ("", True, None),
    "+cache-hit": ("+cache", False, "hit"),
    "+cache-miss": ("+cache", True, "miss"),
}
# Teams' cost (issue 32, `teams_bench`): suffix -> the key in a team (else: alone), every
# limit on either way; each its own proxy.
TEAM_VARIANTS: dict[str, bool] = {"+key-limits": False, "+team-limits": True}
# Each variant's row is divided by this variant's count of the same scenario ("": NAME's).
BASELINES = {"+cache-miss": "+unique", "+team-limits": "+key-limits"}


def split(name: str) -> tuple[str, str]:
    """A scenario name as (the protocol bench's scenario, its variant's suffix)."""
    for suffix in (*VARIANTS, *CACHE_VARIANTS, *TEAM_VARIANTS):
        if suffix and name.endswith(suffix):
            return name.removesuffix(suffix), suffix
    return name, ""


def proxy_of(suffix: str) -> str:
    """The proxy (its config) a variant runs on: its suffix, NAME's (""), or "+cache"."""
    return CACHE_VARIANTS[suffix][0] if suffix in CACHE_VARIANTS else suffix


def routing_config(text: str, names: list[str], strategy: str) -> str:
    """The protocol bench's config with a routing section: chains, overrides and strategies
    (`strategy`) for the models the routed scenarios of `names` call, and for four others."""
    known = {s.name: s for s in pb.SCENARIOS}
    routed = [n for n in names if split(n)[1] in VARIANTS and split(n)[1]]
    models = list(dict.fromkeys(known[split(n)[0]].model for n in routed))
    served = [m for ms in pb.PROVIDER_MODELS.values() for m in ms if m not in models]
    section = routing_bench.routing_section(models, served[:4], RULES_PROVIDER, strategy)
    return routing_bench.with_routing(text, section)


async def _fire(
    port: int, scenario: pb.Scenario, count: int, bodies: Callable[[], bytes] | None = None
) -> tuple[int, collections.Counter[str | None]]:
    """`count` requests of `scenario` (each body from `bodies` when given), CONCURRENCY at a
    time; the number that failed, and what their answers said in `x-llm-proxy-cache`."""
    url = f"http://127.0.0.1:{port}{scenario.path()}"
    body, headers = scenario.body(), scenario.headers()
    left, failed = count, 0
    said: collections.Counter[str | None] = collections.Counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left, failed
        while left > 0:
            left -= 1
            data = body if bodies is None else bodies()
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                failed += response.status != 200
                said[response.headers.get(cache_bench.CACHE_HEADER)] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return failed, said


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
) -> list[str]:
    """`llm-proxy serve` on `config` under callgrind: a dump per scenario (its name), of
    `requests` requests after the warm-up. Returns what went wrong with the answers'
    `x-llm-proxy-cache` (a count that is not the one named)."""
    wrong = []
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    cmd += [f"--callgrind-out-file={log.parent}/callgrind.%p", sys.executable, "-m"]
    cmd += ["llm_proxy", "serve", "--config", str(config)]
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    with log.open("wb") as out:
        proxy = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    try:
        _wait_up(proxy, port, log)
        for name, scenario in scenarios:
            bodies: Callable[[], bytes] | None = None
            expected = None
            if (suffix := split(name)[1]) in CACHE_VARIANTS:
                _, unique, expected = CACHE_VARIANTS[suffix]
                same = functools.partial(cache_bench.cacheable, scenario)
                bodies = cache_bench.unique_bodies(scenario) if unique else same
            asyncio.run(_fire(port, scenario, WARM_UP, bodies))
            _control(proxy.pid, "--zero")
            _control(proxy.pid, "--instr=on")
            failed, said = asyncio.run(_fire(port, scenario, requests, bodies))
            _control(proxy.pid, "--instr=off")
            _control(proxy.pid, f"--dump={name}")
            if failed:
                raise RuntimeError(f"{name}: {failed} of {requests} requests failed")
            if said != {expected: requests}:
                wrong.append(f"{name}: x-llm-proxy-cache said {dict(said)}, not {expected}")
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(60)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
    return wrong


def measure(names: list[str], requests: int, out: Path) -> tuple[dict[str, float], list[str]]:
    """Instructions per request of each scenario named (one proxy per config, in turn), and
    what was wrong with their answers' `x-llm-proxy-cache`."""
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
        wrong: list[str] = []
        for proxy in dict.fromkeys(proxy_of(split(n)[1]) for n in names):
            port = bench.free_port()
            config = out / f"proxy{proxy}.yaml"
            pb.write_config(config, mock_url, port, account)
            if proxy == "+cache":
                config.write_text(cache_bench.with_cache(config.read_text()))
            elif proxy in TEAM_VARIANTS:
                config.write_text(teams_bench.with_limits(config.read_text(), TEAM_VARIANTS[proxy]))
            elif (strategy := VARIANTS[proxy]) is not None:
                config.write_text(routing_config(config.read_text(), names, strategy))
            ours = [(n, known[split(n)[0]]) for n in names if proxy_of(split(n)[1]) == proxy]
            wrong += _count(config, port, ours, requests, out / f"proxy{proxy}.log")
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
    return {name: counts[name] for name in names}, wrong


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
    parser.add_argument(
        "--cache",
        action="store_true",
        help="also NAME+unique, NAME+cache-hit and NAME+cache-miss for each scenario NAME",
    )
    parser.add_argument(
        "--teams",
        action="store_true",
        help="also NAME+key-limits and NAME+team-limits (teams_bench) for each scenario NAME",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    names = args.scenarios.split(",")
    suffixes = [""]
    if args.routing:
        suffixes += [s for s in VARIANTS if s]
    if args.cache:
        suffixes += list(CACHE_VARIANTS)
    if args.teams:
        suffixes += list(TEAM_VARIANTS)
    names = [f"{n}{suffix}" if not split(n)[1] else n for n in names for suffix in suffixes]
    names = list(dict.fromkeys(names))
    out = Path(tempfile.mkdtemp(prefix="llm-proxy-instructions-"))
    counts, wrong = measure(names, args.requests, out)
    print(table(counts))
    for line in wrong:
        print(f"not as the scenario needs: {line}")
    shutil.rmtree(out, ignore_errors=True)
    return 1 if wrong else 0


def table(counts: dict[str, float]) -> str:
    """Each count, its ratio to the first; a variant's also to its scenario's (NAME's, or
    for a miss NAME+unique's when counted: `BASELINES`)."""
    base = next(iter(counts.values()))
    variants = any(split(name)[1] for name in counts)
    width = max(24, *(len(name) for name in counts)) if variants else 24
    lines = [f"{'scenario':{width}} {'k instr/req':>12} {'ratio':>7}" + (" ÷ off" * variants)]
    for name, count in counts.items():
        line = f"{name:{width}} {count / 1000:12.1f} {count / base:7.3f}"
        scenario, suffix = split(name)
        plain = counts.get(scenario + BASELINES.get(suffix, "")) or counts.get(scenario)
        if suffix and plain:
            line += f" {count / plain:6.3f}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
