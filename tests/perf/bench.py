"""The benchmark: direct (no proxy), a bare aiohttp forwarder, nginx and llm-proxy, in one run.

The peers are the strongest honest baselines: `bare.py`, a featureless aiohttp forwarder written
as well as aiohttp allows (sized answers sent with one `web.Response`), and nginx as the C
reference when it is installed (one process, upstream keep-alive pool, no buffering, no access
log). Everything runs on 127.0.0.1. The proxy under test is pinned to CPU 0; the fake upstream
and the load generators share CPU 1 (when `taskset` exists). llm-proxy runs with auth, a (never
triggered) rate limit, metrics, prices (cost per request), JSON access logging and the request
log to PostgreSQL on, as production runs it (a scratch database, dropped at the end;
`--without-request-log` measures the same without it).

    python -m tests.perf.bench [--duration 5] [--rounds 3] [--quick] [--out bench-results]

The non-streaming load runs with every peer started at once and measured in turns, round
after round (each figure is the median of its rounds): on a shared machine a slow spell then
hits all peers alike, not just the one measured at the time. The soak is `tests.perf.soak`.

Reports requests/s and latency at 1/32/128 connections (wrk, else a built-in generator),
proxy CPU ms per request (/proc), 100 and 1,000 concurrent streams (chunks/s, time to first
chunk, errors), RSS idle / under 1,000 streams / after, and startup time to /health; prints a
table with llm-proxy ÷ bare and llm-proxy ÷ nginx ratios and saves JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
KEY = "sk-bench-0123456789"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *cmd]
    return cmd


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    startup_secs: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_secs(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def wait_health(url: str, path: str, timeout: float = 20.0) -> float:
    """Seconds until GET url+path answers (polled tightly, from the start of the call)."""
    import urllib.request

    started = time.perf_counter()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.perf_counter() - started < timeout:
        try:
            with opener.open(url + path, timeout=1):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"{url}{path} did not answer within {timeout}s")


@contextlib.contextmanager
def spawn(
    name: str,
    cmd: list[str],
    cpu: str,
    port: int,
    log: Path,
    health: str,
    env: dict[str, str] | None = None,
) -> Iterator[Proc]:
    """`cmd` pinned to `cpu`, its output into `log`, up (GET `health` answers); stopped on exit.
    `env`: its whole environment (default: ours)."""
    started = time.perf_counter()
    with log.open("wb") as out:
        popen = subprocess.Popen(pinned(cpu, cmd), stdout=out, stderr=subprocess.STDOUT, env=env)
    proc = Proc(name, popen, f"http://127.0.0.1:{port}")
    try:
        wait_health(proc.url, health)
        proc.startup_secs = time.perf_counter() - started
        yield proc
    finally:
        proc.stop()


# Non-streaming load


@dataclass
class LoadResult:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms_per_request: float | None = None


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text)[0]), re.sub(r"[\d.]+", "", text)  # type: ignore[index]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, connections: int, seconds: float) -> LoadResult:
    cmd = pinned(
        LOAD_CPU,
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(HERE / "post.lua"), url + "/v1/chat/completions"],
    )  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))  # "1.01s " ends in a space
    if set(lat) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return LoadResult(
        connections,
        float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        _ms(lat["50"]),
        _ms(lat["99"]),
        int(re.search(r"(\d+) requests in", out)[1]),  # type: ignore[index]
        errors + (int(non2xx[1]) if non2xx else 0),
    )


async def _builtin_load(url: str, connections: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    body = json.dumps(BODY).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                async with session.post(
                    url + "/v1/chat/completions", data=body, headers=headers
                ) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        connections,
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        len(latencies),
        errors,
    )


def load(
    target: Proc, connections: int, seconds: float, measure_cpu: bool, warm_up: bool = True
) -> LoadResult:
    runner = run_wrk if shutil.which("wrk") else (
        lambda u, c, s: asyncio.run(_builtin_load(u, c, s))
    )  # fmt: skip
    if warm_up:
        runner(target.url, connections, min(2.0, seconds))  # pools, caches
    before = target.cpu_secs()
    result = runner(target.url, connections, seconds)
    if measure_cpu and result.requests:
        result.cpu_ms_per_request = (target.cpu_secs() - before) * 1000 / result.requests
    return result


# Streaming load


@dataclass
class StreamResult:
    streams: int
    chunks: int
    chunks_per_sec: float
    ttfc_p50_ms: float
    ttfc_p99_ms: float
    errors: int
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None  # just before the streams opened: peak - this = their cost
    cpu_ms_per_stream: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def _streams(
    url: str, count: int, chunks: int, delay_ms: float, proc: Proc | None
) -> StreamResult:
    body = json.dumps(
        {**BODY, "stream": True, "mock_chunks": chunks, "mock_delay_ms": delay_ms}
    ).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    ttfc: list[float] = []
    received = errors = 0
    peak = 0.0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal received, errors
        t = time.perf_counter()
        try:
            async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
                if r.status != 200:
                    errors += 1
                    return
                first = True
                buffer = b""
                async for data in r.content.iter_any():
                    if first:
                        ttfc.append(time.perf_counter() - t)
                        first = False
                    buffer += data
                events = buffer.count(b"\n\ndata: {") + buffer.startswith(b"data: {")
                received += events
                if not buffer.endswith(b"data: [DONE]\n\n") or events < chunks:
                    errors += 1
        except (aiohttp.ClientError, TimeoutError):
            errors += 1

    async def sample_rss(stop: asyncio.Event) -> None:
        nonlocal peak
        while proc is not None and not stop.is_set():
            peak = max(peak, proc.rss_mb())
            await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop = asyncio.Event()
        rss_before = proc.rss_mb() if proc else None
        sampler = asyncio.create_task(sample_rss(stop))
        cpu_before = proc.cpu_secs() if proc else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(count)))
        elapsed = time.perf_counter() - started
        stop.set()
        await sampler
    ttfc.sort()
    if not ttfc:
        ttfc.append(0.0)
    return StreamResult(
        count,
        received,
        received / elapsed,
        ttfc[len(ttfc) // 2] * 1000,
        ttfc[min(len(ttfc) - 1, int(len(ttfc) * 0.99))] * 1000,
        errors,
        peak if proc else None,
        rss_before,
        (proc.cpu_secs() - cpu_before) * 1000 / count if proc else None,
    )


def streams(url: str, count: int, chunks: int, delay_ms: float, proc: Proc | None) -> StreamResult:
    return asyncio.run(_streams(url, count, chunks, delay_ms, proc))


# Orchestration


def write_config(path: Path, upstream: str, port: int, log_dsn: str | None = None) -> None:
    request_log = (
        f"request_log: {{database_url: {log_dsn!r}}}"
        if log_dsn
        else "request_log: {enabled: false}"
    )
    path.write_text(
        f"""
providers:
  - name: bench
    api_base: {upstream}/v1
    api_key: sk-upstream-bench
    model_mapping: {{"gpt-4o-mini": null}}
master_keys:
  - name: bench
    key: {KEY}
    rate_limit: {{requests_per_second: 1000000, burst_size: 1000000}}
server: {{host: 127.0.0.1, port: {port}}}
pricing: {{"gpt-4o-mini": {{input_per_mtok: 0.15, output_per_mtok: 0.6}}}}
{request_log}
"""
    )


LOG_DB = "llm_proxy_bench_request_log"


@contextlib.contextmanager
def request_log_database() -> Iterator[str | None]:
    """A scratch database with the schema, for the request log; None without PostgreSQL."""

    async def run(sql: str, dsn: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        from tests.helpers.db import server_dsn, with_database

        server = server_dsn()
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{LOG_DB}" WITH (FORCE)', server))
        asyncio.run(run(f'CREATE DATABASE "{LOG_DB}"', server))
    except Exception as exc:  # no PostgreSQL here: measure without the request log
        print(f"no PostgreSQL ({type(exc).__name__}): the request log is off", flush=True)
        yield None
        return
    dsn = with_database(server, LOG_DB)
    subprocess.run(
        [sys.executable, "-m", "llm_proxy", "migrate", "up", "--db-url", dsn],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield dsn
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{LOG_DB}" WITH (FORCE)', server))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds over all peers")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", default="bench-results", help="directory for the JSON results")
    parser.add_argument("--streams-only", action="store_true", help="skip the non-streaming runs")
    parser.add_argument("--load-only", action="store_true", help="skip the streaming runs")
    parser.add_argument(
        "--without-request-log", action="store_true", help="llm-proxy without its request log"
    )
    parser.add_argument(
        "--connections", type=int, nargs="+", help="connection counts (default 1 32 128)"
    )
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.duration
    rounds = 1 if args.quick else max(1, args.rounds)
    connections: tuple[int, ...] = (1, 32) if args.quick else (1, 32, 128)
    if args.connections:
        connections = tuple(args.connections)
    if args.streams_only:
        connections = ()
    stream_counts: tuple[int, ...] = (20, 100) if args.quick else (100, 1000)
    if args.load_only:
        stream_counts = ()
    chunks, delay_ms = (20, 10.0) if args.quick else (30, 25.0)

    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-bench-"))
    ports = {name: free_port() for name in ("mock", "bare", "nginx", "proxy")}
    py = sys.executable
    results: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "stream_chunks": chunks,
            "chunk_delay_ms": delay_ms,
        },
        "targets": {},
    }
    config = tmp / "bench.yaml"
    with contextlib.ExitStack() as stack:
        log_dsn = None
        if not args.without_request_log:
            log_dsn = stack.enter_context(request_log_database())
        results["settings"]["request_log"] = log_dsn is not None
        write_config(config, f"http://127.0.0.1:{ports['mock']}", ports["proxy"], log_dsn)
        return _run(args, tmp, ports, py, results, config, seconds, rounds, connections,
                    stream_counts, chunks, delay_ms)  # fmt: skip


def _run(
    args: argparse.Namespace,
    tmp: Path,
    ports: dict[str, int],
    py: str,
    results: dict[str, Any],
    config: Path,
    seconds: float,
    rounds: int,
    connections: tuple[int, ...],
    stream_counts: tuple[int, ...],
    chunks: int,
    delay_ms: float,
) -> int:
    with spawn(
        "mock",
        [py, "-m", "llm_proxy", "mock-upstream", "--port", str(ports["mock"]), "--chunks", "20"],
        LOAD_CPU, ports["mock"], tmp / "mock.log", "/v1/models",
    ) as mock:  # fmt: skip
        commands: dict[str, list[str] | None] = {
            "direct": None,
            "bare": [py, str(HERE / "bare.py"), mock.url, str(ports["bare"])],
        }
        nginx = _nginx_binary()
        if nginx is not None:
            conf = write_nginx_config(tmp, ports["mock"], ports["nginx"])
            commands["nginx"] = [nginx, "-p", str(tmp), "-c", str(conf)]
        else:
            print("nginx not installed: no C reference in this run", flush=True)
        commands["llm-proxy"] = [py, "-m", "llm_proxy", "serve", "--config", str(config)]

        def start(name: str) -> contextlib.AbstractContextManager[Proc]:
            cmd = commands[name]
            if cmd is None:
                return contextlib.nullcontext(mock)
            port = ports[name if name in ("bare", "nginx") else "proxy"]
            health = "/health" if name == "llm-proxy" else "/v1/models"
            return spawn(name, cmd, PROXY_CPU, port, tmp / f"{name}.log", health)

        entries: dict[str, dict[str, Any]] = {name: {} for name in commands}
        if connections:
            # All peers run at once (idle but for the one under load) and are measured in
            # turns, round after round: a slow spell of this shared machine then hits every
            # peer alike instead of one, and each figure is the median of its rounds.
            with contextlib.ExitStack() as stack:
                procs = {name: stack.enter_context(start(name)) for name in commands}
                time.sleep(0.5)
                for name, target in procs.items():
                    if commands[name] is not None:
                        entries[name]["startup_secs"] = target.startup_secs
                        entries[name]["rss_idle_mb"] = target.rss_mb()
                runs: dict[tuple[str, int], list[LoadResult]] = {}
                order = list(procs)
                for i in range(rounds):
                    print(f"== load, round {i + 1} of {rounds}", flush=True)
                    for c in connections:
                        for name in order[i % len(order) :] + order[: i % len(order)]:
                            r = load(procs[name], c, seconds, commands[name] is not None, i == 0)
                            runs.setdefault((name, c), []).append(r)
                            cpu = r.cpu_ms_per_request
                            print(
                                f"   {name:>9} {c:>4} conns: {r.rps:9.0f} req/s  "
                                f"p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms"
                                + (f"  cpu {cpu:.3f} ms/req" if cpu else ""),
                                flush=True,
                            )
            for name in commands:
                entries[name]["load"] = [
                    {
                        **_median_run(runs[(name, c)]),
                        "rounds": [r.__dict__ for r in runs[(name, c)]],
                    }
                    for c in connections
                ]
        for name in commands:
            entry = entries[name]
            entry.setdefault("load", [])
            entry["streams"] = []
            if not stream_counts:
                continue
            print(f"== streams: {name}", flush=True)
            with start(name) as target:  # a fresh process: its memory is the streams' own
                proc = None if commands[name] is None else target
                if proc is not None:
                    entry["startup_secs"] = target.startup_secs
                    time.sleep(0.5)
                    entry["rss_idle_mb"] = proc.rss_mb()
                for n in stream_counts:
                    st = streams(target.url, n, chunks, delay_ms, proc)
                    entry["streams"].append(st.__dict__)
                    rss = st.peak_rss_mb
                    print(
                        f"   {n:>4} streams: {st.chunks_per_sec:9.0f} chunks/s  "
                        f"ttfc p50 {st.ttfc_p50_ms:.1f} ms  p99 {st.ttfc_p99_ms:.1f} ms  "
                        f"errors {st.errors}"
                        + (f"  rss {st.rss_before_mb:.1f} -> peak {rss:.1f} MB" if rss else ""),
                        flush=True,
                    )
                if proc is not None:
                    time.sleep(1.0)
                    entry["rss_after_mb"] = proc.rss_mb()
        results["targets"] = entries
    report(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _median_run(runs: list[LoadResult]) -> dict[str, Any]:
    """One figure per metric: the median over the rounds."""
    cpus = [r.cpu_ms_per_request for r in runs if r.cpu_ms_per_request is not None]
    return {
        "connections": runs[0].connections,
        "rps": statistics.median(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "requests": sum(r.requests for r in runs),
        "errors": sum(r.errors for r in runs),
        "cpu_ms_per_request": statistics.median(cpus) if cpus else None,
    }


def _nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def write_nginx_config(tmp: Path, upstream_port: int, port: int) -> Path:
    """nginx as the C reference: one process (no master), a keep-alive upstream pool, no
    buffering (streams pass through as they come), no access log."""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""
    )
    return conf


def machine() -> dict[str, Any]:
    """What a result was measured on (every benchmark's JSON has it)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "pinning": bool(shutil.which("taskset")),
        "load_generator": "wrk" if shutil.which("wrk") else "builtin-aiohttp",
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def report(results: dict[str, Any]) -> None:
    """A table of every peer, with ours ÷ the strong bare forwarder and ours ÷ nginx."""
    t = results["targets"]
    names = [n for n in ("direct", "bare", "nginx", "llm-proxy") if n in t]
    proxy, nginx = t["llm-proxy"], t.get("nginx")
    print("\n" + "=" * 100)
    print(f"machine: {results['machine']}")
    header = f"{'metric':<36}" + "".join(f"{n:>11}" for n in names)
    print(header + f"{'÷bare':>8}" + (f"{'÷nginx':>8}" if nginx else ""))

    def ratio(ours: Any, theirs: Any) -> str:
        ok = isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs
        return f"{ours / theirs:.2f}x" if ok else ""

    def row(label: str, values: dict[str, Any], fmt: str = "{:.0f}", ratios: bool = False) -> None:
        cells = "".join(
            f"{fmt.format(v) if isinstance(v := values.get(n), int | float) else '-':>11}"
            for n in names
        )
        extra = ""
        if ratios:
            extra = f"{ratio(values['llm-proxy'], values['bare']):>8}"
            if nginx:
                extra += f"{ratio(values['llm-proxy'], values.get('nginx')):>8}"
        print(f"{label:<36}{cells}{extra}")

    for i, load_d in enumerate(t["direct"]["load"]):
        c = load_d["connections"]
        at = {n: t[n]["load"][i] for n in names}
        row(f"req/s @{c} conns", {n: at[n]["rps"] for n in names}, ratios=True)
        row(f"p50 ms @{c}", {n: at[n]["p50_ms"] for n in names}, "{:.3f}")
        row(f"p99 ms @{c}", {n: at[n]["p99_ms"] for n in names}, "{:.3f}", ratios=True)
        cpu = {n: at[n]["cpu_ms_per_request"] for n in names if n != "direct"}
        row(f"proxy CPU ms/req @{c}", cpu, "{:.3f}", ratios=True)
    if t["direct"]["load"]:
        added = proxy["load"][0]["p50_ms"] - t["direct"]["load"][0]["p50_ms"]
        print(f"{'added p50 latency @1 conn vs direct':<36}{added:>11.3f} ms")
    for i, sd in enumerate(t["direct"]["streams"]):
        n_streams = sd["streams"]
        at = {n: t[n]["streams"][i] for n in names}
        row(f"chunks/s, {n_streams} streams", {n: at[n]["chunks_per_sec"] for n in names},
            ratios=True)  # fmt: skip
        row(f"ttfc p50 ms, {n_streams} streams", {n: at[n]["ttfc_p50_ms"] for n in names}, "{:.1f}")
        row(f"ttfc p99 ms, {n_streams} streams", {n: at[n]["ttfc_p99_ms"] for n in names},
            "{:.1f}", ratios=True)  # fmt: skip
        row(f"stream errors, {n_streams} streams", {n: at[n]["errors"] for n in names})
        peers = [n for n in names if n != "direct"]
        row(f"peak RSS MB, {n_streams} streams", {n: at[n]["peak_rss_mb"] for n in peers},
            "{:.1f}", ratios=True)  # fmt: skip
        added = {n: at[n]["peak_rss_mb"] - at[n]["rss_before_mb"] for n in peers}
        row(f"RSS MB added by {n_streams} streams", added, "{:.1f}")
    peers = [n for n in names if n != "direct"]
    row("RSS MB idle", {n: t[n].get("rss_idle_mb") for n in peers}, "{:.1f}", ratios=True)
    row("RSS MB after streams", {n: t[n].get("rss_after_mb") for n in peers}, "{:.1f}")
    row("startup to health, s", {n: t[n].get("startup_secs") for n in peers}, "{:.3f}")


if __name__ == "__main__":
    sys.exit(main())
