"""What a team costs a request (issue 32: "a key in a team with every limit on costs at most
1.03x the CPU per request of a key alone"): the protocol bench's config (`protocols_bench`)
with its key given every limit (`key-limits`), and the same with that key in a team that has
every limit too (`team-limits`). Every limit is set so high that nothing is ever refused: the
requests pay the checks, the reservations and the charges, and are all answered.

Counted exactly by `python -m tests.perf.instructions --teams openai-pass` (`NAME+key-limits`,
`NAME+team-limits`, the latter's ratio to the former's shown as its last column)."""

from __future__ import annotations

from typing import Final

from tests.perf import bench

TEAM: Final = "bench-team"
# Every limit, never reached: a request rate, tokens per minute, a monthly budget (at the
# config's bound of 1e9) and requests in flight.
LIMITS: Final = (
    "rate_limit: {requests_per_second: 1000000, burst_size: 1000000}, "
    "tokens_per_minute: 1000000000, max_budget_usd: 1000000000, max_parallel_requests: 100000"
)
_KEY_BLOCK: Final = f"""master_keys:
  - name: bench
    key: {bench.KEY}
    rate_limit: {{requests_per_second: 1000000, burst_size: 1000000}}
"""


def with_limits(text: str, team: bool) -> str:
    """The protocol bench's config (`text`) with its key's every limit on; with `team`, the
    key in a team whose every limit is on too."""
    if _KEY_BLOCK not in text:
        raise ValueError("the protocol bench's master_keys block changed: update teams_bench")
    key = f"master_keys:\n  - {{name: bench, key: {bench.KEY}, {LIMITS}"
    key += f", team: {TEAM}}}\n" if team else "}\n"
    teams = f"teams:\n  - {{name: {TEAM}, {LIMITS}}}\n" if team else ""
    return text.replace(_KEY_BLOCK, teams + key)
