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
shares it), shown with its lowest and highest round. The run, table, JSON and exit status are
`paired_bench`'s (shared with `teams_bench`); this module holds the configs and the targets.

What the issue holds routing to: CPU per request of `routing` ≤ 1.03x `off` at 32
connections. On a shared 2-vCPU VM the rounds' own ratios spread by ±10-20 %, far wider than
the 3 % in question (said so under the table); `python -m tests.perf.instructions --routing
openai-pass,anthropic-pass` counts the same two configs exactly (callgrind), and, run at both
commits, off against the code before routing. Prints a table and saves JSON into --out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from tests.perf import bench, paired_bench
from tests.perf.paired_bench import PairedBench, Target

MODEL: Final = paired_bench.MODEL
PROVIDER: Final = "bench"  # `bench.write_config`'s provider
# The other models the routing section names (served by the bench's provider in `routing`).
OTHERS: Final = ("gpt-4o", "gpt-4.1", "o3-mini", "claude-sonnet")
BOUND: Final = 1.03
# Scenario name -> the strategy of the bench's model (None: no routing section).
VARIANTS: Final[dict[str, str | None]] = {
    "off": None,
    "routing": "weighted",
    "routing-latency": "latency",
}
# (numerator, denominator, bound): None shown only.
TARGETS: Final[tuple[Target, ...]] = (
    ("routing", "off", BOUND),
    ("routing-latency", "off", None),
    ("routing-latency", "routing", None),
)
# The header the rules look at; the bench's requests never carry it.
REGION_HEADER: Final = "x-region"


SCENARIOS: Final = paired_bench.scenarios(VARIANTS)


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


def write_scenario_config(path: Path, upstream: str, port: int, scenario: str) -> None:
    """`write_config` for the scenario named (its strategy from `VARIANTS`)."""
    write_config(path, upstream, port, VARIANTS[scenario])


# The run: `paired_bench`'s, on these scenarios.
BENCH: Final = PairedBench(
    name="routing",
    doc=__doc__ or "",
    scenarios=SCENARIOS,
    write_config=write_scenario_config,
    targets=TARGETS,
    exact="python -m tests.perf.instructions --routing",
    described={"routing": routing_section((MODEL,), OTHERS, PROVIDER)},
)


def main(argv: list[str] | None = None) -> int:
    return BENCH.main(argv)


if __name__ == "__main__":
    sys.exit(main())
