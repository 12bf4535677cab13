"""The protocol bench's ratios (the bench itself runs in `make bench`, not here)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.perf.protocols_bench import paired_ratio


def _scenario(*cpus: float) -> dict[str, Any]:
    rounds = [{"cpu_ms_per_request": cpu} for cpu in cpus]
    return {"cpu_ms_per_request": sorted(cpus)[len(cpus) // 2], "rounds": rounds}


def test_a_cpu_ratio_pairs_the_rounds_so_a_slow_round_slows_both_sides() -> None:
    # The machine ran 30 % slower in the last two rounds: within each round the translated
    # route costs 1.2x, which the ratio of the two medians (0.26 / 0.2 = 1.3) does not show.
    translated = _scenario(0.24, 0.24, 0.24, 0.312, 0.312)
    passed = _scenario(0.20, 0.20, 0.20, 0.26, 0.26)
    passed["cpu_ms_per_request"] = 0.20
    translated["cpu_ms_per_request"] = 0.26
    assert paired_ratio(translated, passed) == pytest.approx(1.2)


def test_without_rounds_the_ratio_is_of_the_medians() -> None:
    ratio = paired_ratio({"cpu_ms_per_request": 0.3}, {"cpu_ms_per_request": 0.2})
    assert ratio == pytest.approx(1.5)
