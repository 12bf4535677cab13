"""What a bench of a few configs of the proxy needs to compare their CPU per request: a fresh
proxy per config every round, rounds in rotating order, ratios paired within rounds, a table,
JSON and an exit status. `routing_bench` and `teams_bench` are its users: each is a
`PairedBench` (its scenarios, the config writer, its targets and bound, its name); `summarise`
also serves `cache_bench`.

One fake upstream (`llm-proxy mock-upstream`, CPU 1 for the whole run) and one
`llm-proxy serve` per scenario (CPU 0), all started afresh every round (two processes of the
same code differ by up to 10-15 % in CPU per request on this machine kind). Every scenario
sends the same non-streamed chat completion (`bench.BODY`, OpenAI's protocol, the bench's key)
at 32 connections (wrk when installed, else the built-in aiohttp generator), warmed up and
then measured once per round in an order that rotates round by round. A ratio is the median of
the rounds' own ratios (`protocols_bench.paired_ratio`: the machine's speed drifts between
rounds, a pair in one round shares it), shown with its lowest and highest round; a bounded
ratio whose rounds spread over more than twice the bound's margin gets a note naming the
exact count (callgrind) to use instead. A scenario with failed requests leaves its ratios
unjudged and the run exits 1, its proxies' logs kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from tests.perf import bench, protocols_bench
from tests.perf.protocols_bench import Scenario

MODEL: Final = str(bench.BODY["model"])
CONNECTIONS: Final = 32
# (numerator, denominator, bound): a ratio of two scenarios' CPU per request; None: shown only.
Target = tuple[str, str, float | None]
# Writes the config of one scenario (its name) for a proxy on `port` whose provider is the
# fake upstream at the URL given.
WriteConfig = Callable[[Path, str, int, str], None]


def scenarios(names: Iterable[str]) -> tuple[Scenario, ...]:
    """One scenario per name: the bench's chat completion, each to a proxy of its own."""
    return tuple(Scenario(name, "openai", MODEL, target=name) for name in names)


def summarise(runs: list[bench.LoadResult]) -> dict[str, Any]:
    """A scenario's rounds as one figure per metric (the median), the failed requests of all
    rounds, and the rounds themselves (what the paired ratios are made of)."""
    return {
        **bench._median_run(runs),
        "errors": sum(r.errors for r in runs),
        "rounds": [asdict(r) for r in runs],
    }


def run_header(seconds: float, rounds: int) -> dict[str, Any]:
    """What a run's JSON starts with: the machine, and the settings of its load."""
    return {
        "machine": bench.machine(),
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "connections": CONNECTIONS,
            "model": MODEL,
            "request_log": False,
        },
    }


@contextlib.contextmanager
def mock_upstream(tmp: Path) -> Iterator[bench.Proc]:
    """The fake upstream (`llm-proxy mock-upstream`, on the load generator's CPU), up, for
    the whole run; its log in `tmp`."""
    port = bench.free_port()
    cmd = [sys.executable, "-m", "llm_proxy", "mock-upstream", "--port", str(port),
           "--tool", "none"]  # fmt: skip
    with bench.spawn("mock", cmd, bench.LOAD_CPU, port, tmp / "mock.log", "/v1/models") as mock:
        yield mock


def load_round(
    procs: Mapping[str, bench.Proc],
    scenarios: Iterable[Scenario],
    scripts: Mapping[str, Path],
    seconds: float,
    round_index: int,
    runs: dict[str, list[bench.LoadResult]],
    width: int = 16,
) -> None:
    """One round's load: each scenario warmed up, then run for `seconds` at `CONNECTIONS`
    on its proxy, in the round's order (`protocols_bench.rotated`); each result added to
    `runs` and printed (`width`: the names' column)."""
    for scenario in protocols_bench.rotated(list(scenarios), round_index):
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
            f"   {scenario.name:>{width}}: {result.rps:8.0f} req/s  "
            f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  "
            f"cpu {result.cpu_ms_per_request or 0:.3f} ms/req  errors {result.errors}",
            flush=True,
        )


def too_spread(check: dict[str, Any], bound: float) -> bool:
    """Do the rounds' ratios spread over more than twice the bound's margin (1.03: 0.06)?"""
    return bool(check["max"] - check["min"] > 2 * (bound - 1))


@dataclass(frozen=True)
class PairedBench:
    """One benchmark: `scenarios` (each its own proxy, its config from `write_config`),
    judged by `targets`. `name` names its JSON (`NAME-<timestamp>.json`) and temporary
    directory; `doc` is its --help; `exact` the command that counts its bounded ratios
    exactly, named when the rounds cannot resolve a bound; `described` what the JSON says
    of the configs besides the settings; `rounds` the default of --rounds."""

    name: str
    doc: str
    scenarios: tuple[Scenario, ...]
    write_config: WriteConfig
    targets: tuple[Target, ...]
    exact: str
    described: Mapping[str, Any]
    rounds: int = 7

    @contextlib.contextmanager
    def proxies(
        self, tmp: Path, mock: bench.Proc, round_index: int
    ) -> Iterator[dict[str, bench.Proc]]:
        """One fresh proxy per scenario (CPU 0), all up."""
        with contextlib.ExitStack() as stack:
            procs = {}
            for scenario in self.scenarios:
                port = bench.free_port()
                config = tmp / f"{scenario.name}.yaml"
                self.write_config(config, mock.url, port, scenario.name)
                cmd = [sys.executable, "-m", "llm_proxy", "serve", "--config", str(config)]
                log = tmp / f"{scenario.name}-{round_index}.log"
                procs[scenario.name] = stack.enter_context(
                    bench.spawn(scenario.name, cmd, bench.PROXY_CPU, port, log, "/health")
                )
            yield procs

    def measure(
        self, mock: bench.Proc, tmp: Path, seconds: float, rounds: int
    ) -> dict[str, list[bench.LoadResult]]:
        """Each scenario's load runs, one a round, on that round's fresh proxies."""
        scripts = {
            s.name: protocols_bench.write_wrk_script(tmp / f"{s.name}.lua", s)
            for s in self.scenarios
        }
        runs: dict[str, list[bench.LoadResult]] = {s.name: [] for s in self.scenarios}
        for i in range(rounds):
            print(f"== load, {CONNECTIONS} connections, round {i + 1} of {rounds}", flush=True)
            with self.proxies(tmp, mock, i) as procs:
                load_round(procs, self.scenarios, scripts, seconds, i, runs)
        return runs

    def ratios(self, load: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Each target: the paired ratio, its rounds' lowest and highest, and whether its
        bound is met (None: no bound, or a scenario with failed requests)."""
        checked = []
        for numerator, denominator, bound in self.targets:
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

    def report(self, results: dict[str, Any]) -> None:
        print("\n" + "=" * 96)
        print(f"machine: {results['machine']}")
        print(f"settings: {results['settings']}")
        print(
            f"\n{'scenario':<18}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'CPU ms/req':>12}{'errors':>8}"
        )
        for name, f in results["load"].items():
            print(
                f"{name:<18}{CONNECTIONS:>6}{f['rps']:>9.0f}{f['p50_ms']:>9.2f}"
                f"{f['p99_ms']:>9.2f}{f['cpu_ms_per_request'] or 0:>12.3f}{f['errors']:>8}"
            )
        print()
        # The checks are in the targets' order (`ratios`): each one's bound is its target's.
        for (_, _, bound), check in zip(self.targets, results["ratios"], strict=True):
            verdict = {True: "met", False: "MISSED", None: "not judged"}[check["met"]]
            target = f"  ({check['target']}: {verdict})" if check["target"] else ""
            print(
                f"{check['ratio']:<44}{check['value']:>7.3f}  rounds {check['min']:.3f}"
                f"-{check['max']:.3f}{target}"
            )
            if bound is not None and too_spread(check, bound):
                print(
                    "   (the rounds spread wider than the bound's margin: this machine cannot "
                    f"resolve it; count it with `{self.exact}`)"
                )

    def main(self, argv: list[str] | None = None) -> int:
        """The command: run, print the table, save the JSON; 1 if any request failed."""
        parser = argparse.ArgumentParser(
            description=self.doc, formatter_class=argparse.RawTextHelpFormatter
        )
        parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
        parser.add_argument(
            "--rounds", type=int, default=self.rounds, help="rounds over all scenarios"
        )
        parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
        parser.add_argument("--out", default="bench-results", help="directory for the JSON results")
        args = parser.parse_args(argv)
        seconds = 1.0 if args.quick else args.duration
        rounds = 1 if args.quick else max(1, args.rounds)
        results: dict[str, Any] = {**run_header(seconds, rounds), **self.described}
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f"llm-proxy-{self.name}-bench-"))
        with mock_upstream(tmp) as mock:
            runs = self.measure(mock, tmp, seconds, rounds)
        results["load"] = {s.name: summarise(runs[s.name]) for s in self.scenarios}
        results["elapsed_secs"] = time.monotonic() - started
        results["ratios"] = self.ratios(results["load"])
        failed = any(f["errors"] for f in results["load"].values())
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)  # kept otherwise: the proxies' logs are there
        self.report(results)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2))
        print(f"\nresults: {path}  ({results['elapsed_secs']:.0f} s)")
        if failed:
            print(f"requests failed: the servers' logs are in {tmp}")
            return 1
        return 0
