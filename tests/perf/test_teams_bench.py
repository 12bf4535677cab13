"""The teams benchmark (`tests.perf.teams_bench`): its configs, on both bench configs it
rewrites, load with every limit of the key (and of its team) on; the ratio is held to its
bound; and a `--quick` run answers every request (no limit refuses one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config, MasterKey, RateLimit, Team
from llm_proxy.config.yaml_file import load_config_text
from llm_proxy.testing.mock.vertex import mock_service_account
from tests.perf import bench, paired_bench, teams_bench
from tests.perf import protocols_bench as pb

UPSTREAM, PORT = "http://127.0.0.1:9", 18999


def _bench_config(tmp_path: Path) -> str:
    path = tmp_path / "bench.yaml"
    bench.write_config(path, UPSTREAM, PORT)
    return path.read_text()


def _protocols_config(tmp_path: Path) -> str:
    path = tmp_path / "protocols.yaml"
    account = mock_service_account(f"{UPSTREAM}/token", pb.VERTEX_PROJECT)
    pb.write_config(path, UPSTREAM, PORT, account)
    return path.read_text()


CONFIGS = {"bench": _bench_config, "protocols": _protocols_config}


def _every_limit(limited: MasterKey | Team) -> None:
    """Every limit on, at the values of `teams_bench.LIMITS`."""
    assert limited.rate_limit == RateLimit(requests_per_second=1000000, burst_size=1000000)
    assert limited.tokens_per_minute == teams_bench.LIMITS["tokens_per_minute"]
    assert limited.max_budget_usd == teams_bench.LIMITS["max_budget_usd"]
    assert limited.budget_period == "monthly"
    assert limited.max_parallel_requests == teams_bench.LIMITS["max_parallel_requests"]


def _key(config: Config) -> MasterKey:
    (key,) = config.master_keys
    assert key.name == "bench" and key.key == bench.KEY
    return key


@pytest.mark.parametrize("which", CONFIGS)
def test_the_key_alone_has_every_limit_and_no_team(tmp_path: Path, which: str) -> None:
    text = CONFIGS[which](tmp_path)
    plain = load_config_text(text, {})
    limited = load_config_text(teams_bench.with_limits(text, team=False), {})
    _every_limit(_key(limited))
    assert _key(limited).team is None and limited.teams == ()
    assert _key(plain).tokens_per_minute is None  # the limits are with_limits' own
    assert limited.providers == plain.providers and limited.pricing == plain.pricing


@pytest.mark.parametrize("which", CONFIGS)
def test_the_key_in_the_team_both_with_every_limit(tmp_path: Path, which: str) -> None:
    text = CONFIGS[which](tmp_path)
    plain = load_config_text(text, {})
    teamed = load_config_text(teams_bench.with_limits(text, team=True), {})
    (team,) = teamed.teams
    assert team.name == teams_bench.TEAM
    _every_limit(team)
    key = _key(teamed)
    assert key.team == teams_bench.TEAM
    _every_limit(key)
    # The team restricts no model: the bench's calls are all allowed.
    assert team.allowed_models is None and key.allowed_models is None
    assert teamed.providers == plain.providers and teamed.pricing == plain.pricing


def test_a_changed_key_block_is_an_error_not_a_config_without_limits(tmp_path: Path) -> None:
    text = _bench_config(tmp_path).replace("burst_size: 1000000", "burst_size: 10")
    with pytest.raises(ValueError, match="master_keys block changed"):
        teams_bench.with_limits(text, team=True)


def test_the_limits_are_within_the_config_bounds(tmp_path: Path) -> None:
    text = teams_bench.with_limits(_bench_config(tmp_path), team=True)
    over = text.replace(
        f'"max_budget_usd": {teams_bench.LIMITS["max_budget_usd"]}', '"max_budget_usd": 1e10'
    )
    assert over != text
    with pytest.raises(ConfigError):  # the bound the comment on LIMITS names
        load_config_text(over, {})


def test_the_scenarios_configs_are_the_bench_config_with_the_limits(tmp_path: Path) -> None:
    plain = _bench_config(tmp_path)
    for name, team in teams_bench.VARIANTS.items():
        path = tmp_path / f"{name}.yaml"
        teams_bench.write_config(path, UPSTREAM, PORT, name)
        assert path.read_text() == teams_bench.with_limits(plain, team)
    assert [s.name for s in teams_bench.BENCH.scenarios] == ["key-limits", "team-limits"]
    assert {s.model for s in teams_bench.BENCH.scenarios} == {paired_bench.MODEL}


def _load(*cpus: float, errors: int = 0) -> dict[str, Any]:
    rounds = [{"cpu_ms_per_request": cpu} for cpu in cpus]
    return {"cpu_ms_per_request": sorted(cpus)[len(cpus) // 2], "rounds": rounds, "errors": errors}


def test_a_team_is_held_to_three_percent_more_cpu_per_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    load = {
        "key-limits": _load(0.20, 0.26, 0.20),
        "team-limits": _load(0.204, 0.2678, 0.21),  # 1.02, 1.03, 1.05
    }
    (check,) = teams_bench.BENCH.ratios(load)
    assert check["ratio"] == "CPU/req @32 team-limits ÷ key-limits"
    assert check["value"] == pytest.approx(1.03) and check["met"] is True
    load["team-limits"] = _load(0.21, 0.28, 0.21)
    assert teams_bench.BENCH.ratios(load)[0]["met"] is False
    load["team-limits"] = _load(0.20, 0.26, 0.20, errors=1)
    assert teams_bench.BENCH.ratios(load)[0]["met"] is None  # failed requests: not judged
    # Rounds from 0.9 to 1.1: wider than the margin, so the report names the exact count.
    load["team-limits"] = _load(0.18, 0.26, 0.22)
    for scenario in load.values():
        scenario.update(rps=1000.0, p50_ms=1.0, p99_ms=2.0)
    ratios = teams_bench.BENCH.ratios(load)
    teams_bench.BENCH.report({"machine": {}, "settings": {}, "load": load, "ratios": ratios})
    out = capsys.readouterr().out
    assert "count it with `python -m tests.perf.instructions --teams openai-pass`" in out


def test_a_quick_run_answers_every_request(tmp_path: Path) -> None:
    """The whole bench, briefly: both proxies start on their configs, and no limit refuses a
    request (wrk counts a non-2xx answer as an error, and the run then exits 1)."""
    assert teams_bench.main(["--quick", "--out", str(tmp_path)]) == 0
    (saved,) = tmp_path.glob("teams-*.json")
    results = json.loads(saved.read_text())
    assert set(results["load"]) == {"key-limits", "team-limits"}
    for scenario in results["load"].values():
        assert scenario["errors"] == 0 and scenario["requests"] > 100
        assert scenario["cpu_ms_per_request"] > 0
    (check,) = results["ratios"]
    assert check["target"] == "≤ 1.03" and check["met"] in (True, False)
    assert results["teams"]["team"] == teams_bench.TEAM
