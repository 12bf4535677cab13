"""Routing's cost when nothing in it applies: the proxy's CPU per request with no `routing:`
section and with one that uses every feature, none of whose conditions the traffic meets.

    python -m tests.perf.routing_bench [--quick] [--rounds N] [--duration S] [--out DIR]

One fake upstream (`llm-proxy mock-upstream`, CPU 1 for the whole run) and one
`llm-proxy serve` per scenario (CPU 0), all started afresh every round (two processes of the
same code differ by up to 10-15 % in CPU per request on this machine kind):

    off              the config `bench` writes: one provider, a master key with a
                     never-triggered rate limit, prices, the JSON access line; no routing
    routing          the same, its provider serving the models the section names as well, and
                     `routing_section`: fallback, context-window and content-policy chains for
                     the bench's model and for others; a retry policy; a deadline; strategies
                     (`weighted` for the bench's model, latency, least_busy and cost for
                     others); per-model overrides (a context window for another model); and
                     rules on tags, the key, a header and the model, none of which matches
    routing-latency  `routing` with the bench's model on `strategy: latency` (shown, no bound)

Non-streamed chat completions (`bench.BODY`) at 32 connections (wrk when installed, else the
built-in aiohttp generator), each scenario warmed up and then measured once per round in an
order that rotates round by round. A ratio is the median of the rounds' own ratios
(`protocols_bench.paired_ratio`: the machine's speed drifts between rounds, a pair in one round
shares it), shown with its lowest and highest round.

What the issue holds routing to: CPU per request of `routing` ≤ 1.03x `off` at 32
connections. On a shared 2-vCPU VM the rounds' own ratios spread by ±10-20 %, far wider than
the 3 % in question (said so under the table); `python -m tests.perf.instructions --routing
openai-pass,anthropic-pass` counts the same two configs exactly (callgrind), and, run at both
commits, off against the code before routing. Prints a table and saves JSON into --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from tests.perf import bench, protocols_bench
from tests.perf.protocols_bench import Scenario

MODEL: Final = str(bench.BODY["model"])
PROVIDER: Final = "bench"  # `bench.write_config`'s provider
# The other models the routing section names (served by the bench's provider in `routing`).
OTHERS: Final = ("gpt-4o", "gpt-4.1", "o3-mini", "claude-sonnet")
CONNECTIONS: Final = 32
BOUND: Final = 1.03
# Scenario name -> the strategy of the bench's model (None: no routing section).
VARIANTS: Final[dict[str, str | None]] = {
    "off": None,
    "routing": "weighted",
    "routing-latency": "latency",
}
# (numerator, denominator, bound): None shown only.
TARGETS: Final[tuple[tuple[str, str, float | None], ...]] = (
    ("routing", "off", BOUND),
    ("routing-latency", "off", None),
    ("routing-latency", "routing", None),
)
# The header the rules look at; the bench's requests never carry it.
REGION_HEADER: Final = "x-region"


def _scenario(name: str) -> Scenario:
    return Scenario(name, "openai", MODEL, target=name)


SCENARIOS: Final = tuple(_scenario(name) for name in VARIANTS)


# The configs


def routing_section(
    models: Sequence[str], others: Sequence[str], provider: str, strategy: str = "weighted"
) -> dict[str, Any]:
    """A `routing:` section using every feature, none of whose conditions holds for a
    request of one of `models` (the bench's) made with the key named `bench`, without tags
    or the `x-region` header: chains for `models` and for `others` (four names, all served),
    a retry policy, a deadline, a strategy for each (`strategy` for `models`), overrides,
    and rules. Every model it names must be served by the config it joins."""
    a, b, c, d = others
    chains: dict[str, dict[str, list[str]]] = {
        "fallbacks": {a: [b, c], "claude-*": [a]},
        "context_window_fallbacks": {b: [a]},
        "content_policy_fallbacks": {a: [d]},
    }
    for model in models:
        chains["fallbacks"][model] = [a, b]
        chains["context_window_fallbacks"][model] = [b]
        chains["content_policy_fallbacks"][model] = [d]
    return {
        **chains,
        "retry": {
            "attempts": 3,
            "on": ["connect", "timeout", "429", "5xx", "408"],
            "backoff_ms": 100,
            "max_backoff_ms": 2000,
        },
        "deadline_secs": 60,
        "strategy": {
            "default": "weighted",
            **dict.fromkeys(models, strategy),
            a: "latency",
            b: "least_busy",
            c: "cost",
        },
        "models": {
            **{m: {"retry": {"attempts": 2}, "deadline_secs": 45} for m in models},
            a: {"retry": {"attempts": 5}, "deadline_secs": 30, "context_window": 128000},
            "claude-*": {"deadline_secs": 120, "retry": {"on": ["connect", "5xx"]}},
        },
        "rules": [
            {
                # every condition but the key's holds
                "name": "eu",
                "match": {
                    "key": ["eu-*"],
                    "tags": ["batch"],
                    "header": {REGION_HEADER: "eu"},
                    "model": ["gpt-*", "claude-*", *models],
                },
                "providers": [provider],
            },
            {"name": "batch", "match": {"tags": ["batch", "nightly"]}, "model": a},
            {
                # the key holds, the header is not there
                "name": "region",
                "match": {"key": ["bench"], "header": {REGION_HEADER: ["eu", "us"]}},
                "providers": [provider],
            },
            {"name": "teams", "match": {"key": ["team-*", "ci"]}, "model": b},
            {"name": "others", "match": {"model": [c, "o*-mini"]}, "providers": [provider]},
        ],
    }


def with_routing(text: str, section: dict[str, Any]) -> str:
    """A config's text with `section` as its `routing:` (JSON is YAML's flow style)."""
    return f"{text.rstrip()}\nrouting: {json.dumps(section)}\n"


def write_config(path: Path, upstream: str, port: int, strategy: str | None) -> None:
    """`bench.write_config`'s config; with a `strategy`, its provider also serving `OTHERS`
    and the routing section (the bench's model on `strategy`)."""
    bench.write_config(path, upstream, port)
    if strategy is None:
        return
    text = path.read_text()
    mapping = f'model_mapping: {{"{MODEL}": null}}'
    assert mapping in text, "bench.write_config's model_mapping changed"
    served = ", ".join(f'"{m}": null' for m in (MODEL, *OTHERS))
    text = text.replace(mapping, f"model_mapping: {{{served}}}")
    section = routing_section((MODEL,), OTHERS, PROVIDER, strategy)
    path.write_text(with_routing(text, section))


# The run


@contextlib.contextmanager
def proxies(tmp: Path, mock: bench.Proc, round_index: int) -> Iterator[dict[str, bench.Proc]]:
    """One fresh proxy per scenario (CPU 0), all up."""
    with contextlib.ExitStack() as stack:
        procs = {}
        for scenario in SCENARIOS:
            port = bench.free_port()
            config = tmp / f"{scenario.name}.yaml"
            write_config(config, mock.url, port, VARIANTS[scenario.name])
            cmd = [sys.executable, "-m", "llm_proxy", "serve", "--config", str(config)]
            log = tmp / f"{scenario.name}-{round_index}.log"
            procs[scenario.name] = stack.enter_context(
                bench.spawn(scenario.name, cmd, bench.PROXY_CPU, port, log, "/health")
            )
        yield procs


def measure(
    mock: bench.Proc, tmp: Path, seconds: float, rounds: int
) -> dict[str, list[bench.LoadResult]]:
    scripts = {
        s.name: protocols_bench.write_wrk_script(tmp / f"{s.name}.lua", s) for s in SCENARIOS
    }
    runs: dict[str, list[bench.LoadResult]] = {s.name: [] for s in SCENARIOS}
    for i in range(rounds):
        print(f"== load, {CONNECTIONS} connections, round {i + 1} of {rounds}", flush=True)
        with proxies(tmp, mock, i) as procs:
            for scenario in protocols_bench.rotated(list(SCENARIOS), i):
                result = protocols_bench.load(
                    procs[scenario.name],
                    scenario,
                    scripts[scenario.name],
                    CONNECTIONS,
                    seconds,
                    warm_up=True,
                )
                runs[scenario.name].append(result)
                print(
                    f"   {scenario.name:>16}: {result.rps:8.0f} req/s  "
                    f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  "
                    f"cpu {result.cpu_ms_per_request or 0:.3f} ms/req  errors {result.errors}",
                    flush=True,
                )
    return runs


# Results


def ratios(load: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of `TARGETS`: the paired ratio, its rounds' lowest and highest, and
    whether its bound is met (None: no bound, or a scenario with failed requests)."""
    checked = []
    for numerator, denominator, bound in TARGETS:
        top, bottom = load[numerator], load[denominator]
        value = protocols_bench.paired_ratio(top, bottom)
        per_round = [
            a["cpu_ms_per_request"] / b["cpu_ms_per_request"]
            for a, b in zip(top.get("rounds", ()), bottom.get("rounds", ()), strict=False)
            if a.get("cpu_ms_per_request") and b.get("cpu_ms_per_request")
        ]
        met = None if bound is None else value <= bound
        if top["errors"] or bottom["errors"]:
            met = None
        checked.append(
            {
                "ratio": f"CPU/req @{CONNECTIONS} {numerator} ÷ {denominator}",
                "value": value,
                "min": min(per_round, default=value),
                "max": max(per_round, default=value),
                "rounds": per_round,
                "target": f"≤ {bound}" if bound is not None else "",
                "met": met,
            }
        )
    return checked


def too_spread(check: dict[str, Any]) -> bool:
    """Do the rounds' ratios spread over more than twice the bound's margin (1.03: 0.06)?"""
    return bool(check["max"] - check["min"] > 2 * (BOUND - 1))


def summarise(runs: list[bench.LoadResult]) -> dict[str, Any]:
    return {
        **bench._median_run(runs),
        "errors": sum(r.errors for r in runs),
        "rounds": [asdict(r) for r in runs],
    }


def report(results: dict[str, Any]) -> None:
    print("\n" + "=" * 96)
    print(f"machine: {results['machine']}")
    print(f"settings: {results['settings']}")
    print(
        f"\n{'scenario':<18}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/req':>12}{'errors':>8}"
    )
    for name, f in results["load"].items():
        print(
            f"{name:<18}{CONNECTIONS:>6}{f['rps']:>9.0f}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
            f"{f['cpu_ms_per_request'] or 0:>12.3f}{f['errors']:>8}"
        )
    print()
    for check in results["ratios"]:
        verdict = {True: "met", False: "MISSED", None: "not judged"}[check["met"]]
        target = f"  ({check['target']}: {verdict})" if check["target"] else ""
        print(
            f"{check['ratio']:<44}{check['value']:>7.3f}  rounds {check['min']:.3f}"
            f"-{check['max']:.3f}{target}"
        )
        if check["target"] and too_spread(check):
            print(
                "   (the rounds spread wider than the bound's margin: this machine cannot "
                "resolve it; count it with `python -m tests.perf.instructions --routing`)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=7, help="rounds over all scenarios")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", default="bench-results", help="directory for the JSON results")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.duration
    rounds = 1 if args.quick else max(1, args.rounds)
    results: dict[str, Any] = {
        "machine": bench.machine(),
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "connections": CONNECTIONS,
            "model": MODEL,
            "request_log": False,
        },
        "routing": routing_section((MODEL,), OTHERS, PROVIDER),
    }
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-routing-bench-"))
    mock_port = bench.free_port()
    mock_cmd = [sys.executable, "-m", "llm_proxy", "mock-upstream", "--port", str(mock_port),
                "--tool", "none"]  # fmt: skip
    with bench.spawn(
        "mock", mock_cmd, bench.LOAD_CPU, mock_port, tmp / "mock.log", "/v1/models"
    ) as mock:
        runs = measure(mock, tmp, seconds, rounds)
    results["load"] = {s.name: summarise(runs[s.name]) for s in SCENARIOS}
    results["elapsed_secs"] = time.monotonic() - started
    results["ratios"] = ratios(results["load"])
    failed = any(f["errors"] for f in results["load"].values())
    if not failed:
        shutil.rmtree(tmp, ignore_errors=True)  # kept otherwise: the proxies' logs are there
    report(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"routing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}  ({results['elapsed_secs']:.0f} s)")
    if failed:
        print(f"requests failed: the servers' logs are in {tmp}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
