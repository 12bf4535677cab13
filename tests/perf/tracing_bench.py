"""Tracing's cost: the proxy's CPU per request with tracing off and on, a client's `traceparent`
sent or not, in one run.

    python -m tests.perf.tracing_bench [--quick] [--rounds N] [--duration S] [--out DIR]

One fake upstream (`llm-proxy mock-upstream`) and one OTLP sink (`tests.perf.sink_collector`),
both on CPU 1 for the whole run, and one `llm-proxy serve` per scenario on CPU 0, measured in
turns; every round starts fresh proxies (two processes of the same code differ by up to
10-15 % in CPU per request on this machine kind, which one process per scenario for the whole
run reported as the scenarios' difference):

    off              no tracing (no OTEL_* variable; the caller's are removed)
    off-traceparent  no tracing, every request carrying the client's `traceparent`
    on               OTEL_EXPORTER_OTLP_ENDPOINT to the sink, OTEL_TRACES_SAMPLER=always_on,
                     OTEL_BSP_SCHEDULE_DELAY=1000: every request traced and exported
    on-traceparent   the same, every request continuing the client's trace

The proxy runs as `bench` runs it without a database (auth, a never-triggered rate limit,
prices, the JSON access line; no request log). The exporter runs inside the proxy, so its
CPU (encoding, compressing, posting) is in the proxy's figure: a measured window ends only when
the sink has heard nothing for longer than the export interval (`QUIET`), so each run's last
spans are exported inside it. Every scenario gets the same wait, whether it exports or not.

Non-streaming chat completions at 32 and 128 connections (wrk when installed, else the
built-in aiohttp generator), every scenario once per round in an order that rotates round by
round; each figure is the median of its rounds. Streams: 1,000 concurrent streams per scenario
(100 with --quick), 30 chunks 25 ms apart, errors counted, as `protocols_bench` does (CPU per
stream also counted until the sink is quiet).

What the issue holds tracing to: CPU per request with tracing on at 100 % sampling ≤ 1.10x
tracing off, at 32 and 128 connections, and 1,000 concurrent streams with 0 errors. Off
against the code before tracing (≤ 1.01x) is `tests.perf.ab`'s job; off-traceparent ÷ off
shows what reading a client's header costs when tracing is off. The sink's counts (export
requests, bytes, spans, spans in the client's trace) are reported per scenario: a tracing
scenario that exported no span makes the run invalid (said so, exit status 1), as does one
whose spans never continue the client's trace.
Prints a table and saves JSON into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from tests.perf import bench, protocols_bench
from tests.perf.sink_collector import SAMPLE_EVERY, SCENARIO_HEADER

# The W3C specification's example ids: any valid header costs the same to read.
TRACE_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT: Final = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
MODEL: Final = str(bench.BODY["model"])
EXPORT_INTERVAL_MS: Final = 1000
# A window closes once the sink has been quiet this long: longer than the export interval, so
# the spans still queued when the load stopped have been sent.
QUIET: Final = EXPORT_INTERVAL_MS / 1000 + 0.25
SETTLE_TIMEOUT: Final = 30.0
CONNECTIONS: Final = (32, 128)


@dataclass(frozen=True)
class Traced(protocols_bench.Scenario):
    """An OpenAI chat completion to the scenario's own proxy (`target`), which traces or not,
    with the client's `traceparent` or without."""

    tracing: bool = False
    traceparent: bool = False

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.traceparent:
            headers["traceparent"] = TRACEPARENT
        return headers


def _scenario(name: str, tracing: bool, traceparent: bool) -> Traced:
    return Traced(name, "openai", MODEL, target=name, tracing=tracing, traceparent=traceparent)


SCENARIOS: Final = (
    _scenario("off", tracing=False, traceparent=False),
    _scenario("off-traceparent", tracing=False, traceparent=True),
    _scenario("on", tracing=True, traceparent=False),
    _scenario("on-traceparent", tracing=True, traceparent=True),
)
# (numerator, denominator, bound, metric): metric "cpu@N" (per request at N connections),
# "stream_cpu" (per stream) or "stream_errors" (the numerator's; bound: at most); None: shown.
TARGETS: Final[tuple[tuple[str, str, float | None, str], ...]] = (
    ("off-traceparent", "off", None, "cpu@32"),
    ("off-traceparent", "off", None, "cpu@128"),
    ("on", "off", 1.10, "cpu@32"),
    ("on", "off", 1.10, "cpu@128"),
    ("on-traceparent", "off", 1.10, "cpu@32"),
    ("on-traceparent", "off", 1.10, "cpu@128"),
    ("on", "off", None, "stream_cpu"),
    ("on-traceparent", "off", None, "stream_cpu"),
    ("on", "", 0, "stream_errors"),
    ("on-traceparent", "", 0, "stream_errors"),
)


# The sink


def proxy_env(scenario: Traced, sink: bench.Proc) -> dict[str, str]:
    """The scenario's proxy environment: ours without any OTEL_* variable, and the tracing
    ones when it traces (its name in a header: the sink counts each proxy's exports apart)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    if scenario.tracing:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": str(EXPORT_INTERVAL_MS),
            "OTEL_EXPORTER_OTLP_HEADERS": f"{SCENARIO_HEADER}={scenario.name}",
        }
    return env


def sink_stats(sink: bench.Proc) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(sink.url + "/stats", timeout=5) as answer:
        stats: dict[str, Any] = json.load(answer)
    return stats


def exported(stats: dict[str, Any], scenario: str) -> dict[str, int]:
    """What the scenario's proxy has exported so far (zeros before its first export); the
    spans scaled from the sink's sample of exports (`sink_collector.SAMPLE_EVERY`)."""
    tally: dict[str, int] = stats["tallies"].get(scenario, {})
    out = {key: tally.get(key, 0) for key in ("requests", "bytes", "undecodable")}
    scale = out["requests"] / tally["decoded"] if tally.get("decoded") else 0.0
    out["spans"] = round(tally.get("spans", 0) * scale)
    out["spans_in_trace"] = round(tally.get("spans_in_trace", 0) * scale)
    return out


def settle(sink: bench.Proc) -> None:
    """Wait (from now) until `QUIET` has passed and the sink has heard nothing for as long."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT:
        idle = sink_stats(sink)["idle_secs"]
        if time.monotonic() - started >= QUIET and (idle is None or idle >= QUIET):
            return
        time.sleep(0.05)
    print(f"   the sink was still receiving after {SETTLE_TIMEOUT:.0f}s", flush=True)


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


# Measurements


def load(
    target: bench.Proc,
    sink: bench.Proc,
    scenario: Traced,
    script: Path,
    connections: int,
    seconds: float,
    warm_up: bool,
) -> tuple[bench.LoadResult, dict[str, int]]:
    """One load run with the target's CPU ms per request from /proc, its window closed by
    `settle`; and what the target exported in that window."""
    url = target.url + scenario.path

    def run(duration: float) -> bench.LoadResult:
        if shutil.which("wrk"):
            return protocols_bench.run_wrk(url, script, connections, duration)
        return asyncio.run(protocols_bench.builtin_load(url, scenario, connections, duration))

    if warm_up:
        run(min(2.0, seconds))  # pools, caches, the exporter's first connection
        settle(sink)
    cpu_before, sent_before = target.cpu_secs(), exported(sink_stats(sink), scenario.name)
    result = run(seconds)
    settle(sink)
    sent = _delta(exported(sink_stats(sink), scenario.name), sent_before)
    if result.requests:
        result.cpu_ms_per_request = (target.cpu_secs() - cpu_before) * 1000 / result.requests
    return result, sent


def measure_load(
    backend: dict[str, bench.Proc], sink: bench.Proc, tmp: Path, seconds: float, rounds: int
) -> dict[tuple[str, int], list[tuple[bench.LoadResult, dict[str, int]]]]:
    scripts = {
        s.name: protocols_bench.write_wrk_script(tmp / f"{s.name}.lua", s) for s in SCENARIOS
    }
    runs: dict[tuple[str, int], list[tuple[bench.LoadResult, dict[str, int]]]] = {}
    for i in range(rounds):
        with proxies(tmp, backend) as procs:
            _load_round(procs, sink, scripts, seconds, i, rounds, runs)
    return runs


def _load_round(
    procs: dict[str, bench.Proc],
    sink: bench.Proc,
    scripts: dict[str, Path],
    seconds: float,
    i: int,
    rounds: int,
    runs: dict[tuple[str, int], list[tuple[bench.LoadResult, dict[str, int]]]],
) -> None:
    """One round on fresh processes: each warmed up, then measured at each concurrency."""
    for n, connections in enumerate(CONNECTIONS):
        print(f"== load, {connections} connections, round {i + 1} of {rounds}", flush=True)
        for scenario in protocols_bench.rotated(list(SCENARIOS), i):
            assert isinstance(scenario, Traced)
            result, sent = load(
                procs[scenario.name],
                sink,
                scenario,
                scripts[scenario.name],
                connections,
                seconds,
                warm_up=n == 0,
            )
            runs.setdefault((scenario.name, connections), []).append((result, sent))
            print(
                f"   {scenario.name:>16}: {result.rps:8.0f} req/s  "
                f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  "
                f"cpu {result.cpu_ms_per_request or 0:.3f} ms/req  errors {result.errors}  "
                f"exported {sent['spans']} spans in {sent['requests']} requests",
                flush=True,
            )


def measure_streams(
    backend: dict[str, bench.Proc],
    sink: bench.Proc,
    tmp: Path,
    count: int,
    chunks: int,
    rounds: int,
) -> dict[str, list[tuple[bench.StreamResult, dict[str, int]]]]:
    runs: dict[str, list[tuple[bench.StreamResult, dict[str, int]]]] = {}
    for i in range(rounds):
        print(f"== {count} streams, round {i + 1} of {rounds}", flush=True)
        with proxies(tmp, backend) as procs:
            _stream_round(procs, sink, count, chunks, i, runs)
    return runs


def _stream_round(
    procs: dict[str, bench.Proc],
    sink: bench.Proc,
    count: int,
    chunks: int,
    i: int,
    runs: dict[str, list[tuple[bench.StreamResult, dict[str, int]]]],
) -> None:
    for scenario in protocols_bench.rotated(list(SCENARIOS), i):
        target = procs[scenario.name]
        cpu_before, before = target.cpu_secs(), exported(sink_stats(sink), scenario.name)
        result = protocols_bench.streams(target, scenario, count, chunks, procs["mock"])
        time.sleep(0.5)  # the closed streams' sockets leave before the next scenario opens
        settle(sink)
        sent = _delta(exported(sink_stats(sink), scenario.name), before)
        # Per stream with the export of its spans (`streams` stops counting at the last
        # stream's end, before the exporter has sent them).
        result.cpu_ms_per_stream = (target.cpu_secs() - cpu_before) * 1000 / count
        runs.setdefault(scenario.name, []).append((result, sent))
        print(
            f"   {scenario.name:>16}: {result.chunks_per_sec:8.0f} chunks/s  "
            f"ttfc p50 {result.ttfc_p50_ms:.1f} ms  p99 {result.ttfc_p99_ms:.1f} ms  "
            f"cpu {result.cpu_ms_per_stream or 0:.2f} ms/stream  errors {result.errors}  "
            f"exported {sent['spans']} spans",
            flush=True,
        )


@contextlib.contextmanager
def backends(tmp: Path, chunks: int, delay_ms: float) -> Iterator[dict[str, bench.Proc]]:
    """The mock and the sink (CPU 1), up for the whole run."""
    py = sys.executable
    ports = {name: bench.free_port() for name in ("mock", "sink")}
    mock_cmd = [py, "-m", "llm_proxy", "mock-upstream", "--port", str(ports["mock"]),
                "--tool", "none", "--chunks", str(chunks), "--delay-ms", str(delay_ms)]  # fmt: skip
    sink_cmd = [py, "-m", "tests.perf.sink_collector", "--port", str(ports["sink"]),
                "--trace-id", TRACE_ID, "--sample-every", str(SAMPLE_EVERY)]  # fmt: skip
    with contextlib.ExitStack() as stack:
        mock = bench.spawn(
            "mock", mock_cmd, bench.LOAD_CPU, ports["mock"], tmp / "mock.log", "/v1/models"
        )
        sink = bench.spawn(
            "sink", sink_cmd, bench.LOAD_CPU, ports["sink"], tmp / "sink.log", "/stats"
        )
        yield {"mock": stack.enter_context(mock), "sink": stack.enter_context(sink)}


@contextlib.contextmanager
def proxies(tmp: Path, backend: dict[str, bench.Proc]) -> Iterator[dict[str, bench.Proc]]:
    """One fresh proxy per scenario (CPU 0), all up; with the backends among them. Each round
    has its own processes: two processes of the same code differ by up to 10-15 % in CPU per
    request here (memory layout, hash seeds), which a run with one process per scenario
    would have reported as the scenarios' difference."""
    py = sys.executable
    with contextlib.ExitStack() as stack:
        procs = dict(backend)
        for scenario in SCENARIOS:
            port = bench.free_port()
            config = tmp / f"{scenario.name}.yaml"
            bench.write_config(config, procs["mock"].url, port)
            procs[scenario.name] = stack.enter_context(
                bench.spawn(
                    scenario.name,
                    [py, "-m", "llm_proxy", "serve", "--config", str(config)],
                    bench.PROXY_CPU,
                    port,
                    tmp / f"{scenario.name}.log",
                    "/health",
                    env=proxy_env(scenario, procs["sink"]),
                )
            )
        yield procs


# Results


def _per(count: int, of: int) -> float | None:
    return count / of if of else None


def summarise_load(runs: list[tuple[bench.LoadResult, dict[str, int]]]) -> dict[str, Any]:
    results = [result for result, _ in runs]
    per_request = [_per(sent["spans"], r.requests) for r, sent in runs]
    return {
        **bench._median_run(results),
        "spans_per_request": statistics.median(p for p in per_request if p is not None)
        if any(p is not None for p in per_request)
        else None,
        "export_bytes_per_request": statistics.median(
            _per(sent["bytes"], r.requests) or 0.0 for r, sent in runs
        ),
        "rounds": [{**asdict(r), "exported": sent} for r, sent in runs],
    }


def summarise_streams(runs: list[tuple[bench.StreamResult, dict[str, int]]]) -> dict[str, Any]:
    figures = protocols_bench.median_stream([result for result, _ in runs])
    figures["spans_per_stream"] = statistics.median(sent["spans"] / r.streams for r, sent in runs)
    for figure, (_, sent) in zip(figures["rounds"], runs, strict=True):
        figure["exported"] = sent
    return figures


def problems(exports: dict[str, dict[str, int]]) -> dict[str, str]:
    """Why the run does not measure tracing, by scenario, if it does not: a tracing proxy that
    exported no span, or whose spans never continued the client's trace."""
    found = {}
    for scenario in SCENARIOS:
        sent = exports[scenario.name]
        if not scenario.tracing:
            continue
        if sent["spans"] == 0:
            detail = (
                f"{sent['requests']} export requests, {sent['undecodable']} undecodable"
                if sent["requests"]
                else "the sink received nothing"
            )
            found[scenario.name] = f"no spans exported ({detail})"
        elif scenario.traceparent and sent["spans_in_trace"] == 0:
            found[scenario.name] = "no exported span continues the client's trace"
    return found


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of `TARGETS`: its measured ratio and whether it is met (not judged when the
    numerator's scenario did not trace: `problems`)."""
    checked = []
    invalid = results["problems"]
    for numerator, denominator, bound, metric in TARGETS:
        if metric == "stream_errors":
            if numerator not in results["streams"]:
                continue
            errors = results["streams"][numerator]["errors"]
            count = results["streams"][numerator]["streams"]
            checked.append(
                {
                    "ratio": f"stream errors {numerator}, {count} streams",
                    "value": errors,
                    "target": f"≤ {bound}",
                    "met": errors <= (bound or 0) if numerator not in invalid else None,
                }
            )
            continue
        if metric == "stream_cpu":
            if numerator not in results["streams"]:
                continue
            figures = {
                n: results["streams"][n]["cpu_ms_per_stream"] for n in (numerator, denominator)
            }
            label = f"CPU/stream {numerator} ÷ {denominator}"
        else:
            connections = metric.removeprefix("cpu@")
            figures = {
                n: results["load"][n][connections]["cpu_ms_per_request"]
                for n in (numerator, denominator)
            }
            label = f"CPU/req @{connections} {numerator} ÷ {denominator}"
        if not figures[numerator] or not figures[denominator]:
            continue
        value = figures[numerator] / figures[denominator]
        wanted, met = (f"≤ {bound}", value <= bound) if bound else ("", None)
        if numerator in invalid:
            met = None
        checked.append({"ratio": label, "value": value, "target": wanted, "met": met})
    return checked


def report(results: dict[str, Any]) -> None:
    print("\n" + "=" * 100)
    print(f"machine: {results['machine']}")
    print(f"settings: {results['settings']}")
    print(
        f"\n{'non-streaming':<18}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/req':>12}{'errors':>8}{'spans/req':>11}{'export B/req':>14}"
    )
    for name, by_connections in results["load"].items():
        for connections, f in by_connections.items():
            spans = "-" if f["spans_per_request"] is None else f"{f['spans_per_request']:.2f}"
            print(
                f"{name:<18}{connections:>6}{f['rps']:>9.0f}{f['p50_ms']:>9.2f}"
                f"{f['p99_ms']:>9.2f}{f['cpu_ms_per_request'] or 0:>12.3f}{f['errors']:>8}"
                f"{spans:>11}{f['export_bytes_per_request']:>14.0f}"
            )
    if results["streams"]:
        count = next(iter(results["streams"].values()))["streams"]
        print(
            f"\n{str(count) + ' streams':<18}{'chunks/s':>10}{'ttfc p50':>10}{'ttfc p99':>10}"
            f"{'CPU ms/stream':>15}{'errors':>8}{'spans/stream':>14}"
        )
        for name, f in results["streams"].items():
            print(
                f"{name:<18}{f['chunks_per_sec']:>10.0f}{f['ttfc_p50_ms']:>10.1f}"
                f"{f['ttfc_p99_ms']:>10.1f}{f['cpu_ms_per_stream'] or 0:>15.2f}"
                f"{f['errors']:>8}{f['spans_per_stream']:>14.2f}"
            )
    print(f"\n{'exported (whole run)':<18}{'requests':>10}{'bytes':>14}{'spans':>10}"
          f"{'in trace':>10}{'undecodable':>13}")  # fmt: skip
    for name, sent in results["exported"].items():
        print(
            f"{name:<18}{sent['requests']:>10}{sent['bytes']:>14}{sent['spans']:>10}"
            f"{sent['spans_in_trace']:>10}{sent['undecodable']:>13}"
        )
    print()
    for check in results["ratios"]:
        verdict = {True: "met", False: "MISSED", None: "not judged: INVALID RUN"}[check["met"]]
        target = f"  ({check['target']}: {verdict})" if check["target"] else ""
        value = check["value"]
        shown = f"{value:>8}" if isinstance(value, int) else f"{value:>8.3f}"
        print(f"{check['ratio']:<48}{shown}{target}")
    for name, problem in results["problems"].items():
        print(f"INVALID RUN: {name}: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all scenarios")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", default="bench-results", help="directory for the JSON results")
    parser.add_argument("--streams", type=int, help="concurrent streams (default 1000; 0: none)")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.duration
    rounds = 1 if args.quick else max(1, args.rounds)
    count = args.streams if args.streams is not None else (100 if args.quick else 1000)
    chunks, delay_ms = 30, 25.0
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(bench.LOAD_CPU)})  # the stream clients stay off CPU 0
    results: dict[str, Any] = {
        "machine": bench.machine(),
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "connections": list(CONNECTIONS),
            "streams": count,
            "stream_chunks": chunks,
            "chunk_delay_ms": delay_ms,
            "export_interval_ms": EXPORT_INTERVAL_MS,
            "quiet_secs": QUIET,
            "traceparent": TRACEPARENT,
            "request_log": False,
        },
    }
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-tracing-bench-"))
    with backends(tmp, chunks, delay_ms) as procs:
        sink = procs["sink"]
        time.sleep(0.5)
        load_runs = measure_load(procs, sink, tmp, seconds, rounds)
        results["load"] = {
            s.name: {str(c): summarise_load(load_runs[(s.name, c)]) for c in CONNECTIONS}
            for s in SCENARIOS
        }
        stream_runs = measure_streams(procs, sink, tmp, count, chunks, rounds) if count else {}
        results["streams"] = {name: summarise_streams(r) for name, r in stream_runs.items()}
        stats = sink_stats(sink)
        results["exported"] = {s.name: exported(stats, s.name) for s in SCENARIOS}
    results["problems"] = problems(results["exported"])
    if not results["problems"]:
        shutil.rmtree(tmp, ignore_errors=True)  # kept otherwise: the proxies' logs are there
    results["elapsed_secs"] = time.monotonic() - started
    results["ratios"] = ratios(results)
    report(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tracing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}  ({results['elapsed_secs']:.0f} s)")
    if results["problems"]:
        print(f"the servers' logs: {tmp}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
