"""What a team costs a request (issue 32: "a key in a team with every limit on costs at most
1.03x the CPU per request of a key alone"): a config's bench key given every limit
(`key-limits`), and the same with that key in a team that has every limit too
(`team-limits`). Every limit is set so high that nothing is ever refused: the requests pay the
checks, the reservations and the charges, and are all answered.

    python -m tests.perf.teams_bench [--quick] [--rounds N] [--duration S] [--out DIR]

Two uses of `with_limits`, which rewrites the `master_keys` block that `bench.write_config`
and `protocols_bench.write_config` both write:

* counted exactly by `python -m tests.perf.instructions --teams openai-pass` (callgrind, on
  the protocol bench's config: `NAME+key-limits`, `NAME+team-limits`, the latter's ratio to
  the former's shown as its last column);
* timed here, on the config `bench` writes (one provider, prices, the JSON access line; no
  request log): `paired_bench`'s run, a fresh `llm-proxy serve` per scenario every round
  (CPU 0; the fake upstream on CPU 1), non-streamed chat completions at 32 connections in an
  order that rotates round by round, and the CPU per request of `team-limits` ÷ `key-limits`
  paired within rounds, held to 1.03. On a shared 2-vCPU VM the rounds' own ratios spread by
  ±10-20 %, wider than the 3 % in question (said so under the table): the exact count is the
  figure of record. Prints a table, saves JSON into --out (`teams-<timestamp>.json`) and
  exits 1 if any request failed (a refusal by a limit would be one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from tests.perf import bench, paired_bench
from tests.perf.paired_bench import PairedBench

TEAM: Final = "bench-team"
BOUND: Final = 1.03
# Every limit, never reached: a request rate, tokens per minute, a monthly budget (at the
# config's bound of 1e9) and requests in flight. The bench sends a few thousand requests a
# second at 32 connections, a few tens of tokens each, at a fraction of a cent.
LIMITS: Final[dict[str, Any]] = {
    "rate_limit": {"requests_per_second": 1000000, "burst_size": 1000000},
    "tokens_per_minute": 1000000000,
    "max_budget_usd": 1000000000,
    "max_parallel_requests": 100000,
}
# The block both bench configs write: their key with a never-reached request rate only.
_KEY_BLOCK: Final = f"""master_keys:
  - name: bench
    key: {bench.KEY}
    rate_limit: {{requests_per_second: 1000000, burst_size: 1000000}}
"""
# Scenario name -> the key is in the team (each has every limit on either way).
VARIANTS: Final[dict[str, bool]] = {"key-limits": False, "team-limits": True}


def with_limits(text: str, team: bool) -> str:
    """A bench config's text (`bench.write_config`'s or `protocols_bench.write_config`'s)
    with its key's every limit on; with `team`, the key in a team whose every limit is on
    too. JSON is YAML's flow style."""
    if _KEY_BLOCK not in text:
        raise ValueError("the bench config's master_keys block changed: update teams_bench")
    key = {"name": "bench", "key": bench.KEY, **LIMITS, **({"team": TEAM} if team else {})}
    block = f"master_keys:\n  - {json.dumps(key)}\n"
    if team:
        block = f"teams:\n  - {json.dumps({'name': TEAM, **LIMITS})}\n{block}"
    return text.replace(_KEY_BLOCK, block)


def write_config(path: Path, upstream: str, port: int, scenario: str) -> None:
    """`bench.write_config`'s config with the scenario's limits (`VARIANTS`)."""
    bench.write_config(path, upstream, port)
    path.write_text(with_limits(path.read_text(), VARIANTS[scenario]))


BENCH: Final = PairedBench(
    name="teams",
    doc=__doc__ or "",
    scenarios=paired_bench.scenarios(VARIANTS),
    write_config=write_config,
    targets=(("team-limits", "key-limits", BOUND),),
    exact="python -m tests.perf.instructions --teams openai-pass",
    described={"teams": {"team": TEAM, "limits": LIMITS}},
)


def main(argv: list[str] | None = None) -> int:
    return BENCH.main(argv)


if __name__ == "__main__":
    sys.exit(main())
