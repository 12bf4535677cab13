"""The routing benchmark's configs and judgement (`tests.perf.routing_bench`), without running
it: the routing configs load and pass `routing_issues`, use every feature, and no rule of
theirs matches the bench's request; the ratio is held to its bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from llm_proxy.config.model import Config
from llm_proxy.config.routing import routing_issues
from llm_proxy.config.yaml_file import load_config_text
from llm_proxy.proxy.routing import (
    NO_FALLBACKS,
    CostRoute,
    LatencyRoute,
    LeastBusyRoute,
    Route,
    RouteTable,
)
from llm_proxy.proxy.rules import Rules
from llm_proxy.testing.mock.vertex import mock_service_account
from tests.perf import bench, paired_bench, routing_bench
from tests.perf.protocols_bench import PROVIDER_MODELS
from tests.perf.protocols_bench import write_config as write_protocols_config


def _config(tmp_path: Path, variant: str) -> Config:
    path = tmp_path / f"{variant}.yaml"
    routing_bench.write_config(path, "http://127.0.0.1:9", 18999, routing_bench.VARIANTS[variant])
    return load_config_text(path.read_text(), {})


def _routes(config: Config) -> RouteTable:
    return RouteTable(
        config.providers,
        config.provider_suffix,
        config.routing,
        config.max_attempts,
        config.pricing,
    )


def _bench_request(scenario_name: str = "routing") -> tuple[CIMultiDictProxy[str], Any]:
    scenario = next(s for s in routing_bench.SCENARIOS if s.name == scenario_name)
    headers = CIMultiDictProxy(CIMultiDict(scenario.headers()))
    return headers, orjson.loads(scenario.body())


def test_off_is_the_bench_config_without_routing(tmp_path: Path) -> None:
    off = tmp_path / "off.yaml"
    routing_bench.write_config(off, "http://127.0.0.1:9", 18999, None)
    plain = tmp_path / "plain.yaml"
    bench.write_config(plain, "http://127.0.0.1:9", 18999)
    assert off.read_text() == plain.read_text()
    assert not load_config_text(off.read_text(), {}).routing.configured


@pytest.mark.parametrize("variant", ["routing", "routing-latency"])
def test_the_routing_configs_load_and_use_every_feature(tmp_path: Path, variant: str) -> None:
    config = _config(tmp_path, variant)
    assert routing_issues(config) == []
    routing = config.routing
    for reason in ("any", "context_window", "content_policy"):
        chains = dict(routing.chains(reason))  # type: ignore[arg-type]
        assert routing_bench.MODEL in chains and len(chains) >= 2
    assert routing.default.deadline_secs == 60 and routing.default.retry.attempts == 3
    assert any(m.context_window for name, m in routing.models if name != routing_bench.MODEL)
    matches = [rule.match for rule in routing.rules]
    assert any(m.tags for m in matches) and any(m.keys for m in matches)
    assert any(m.headers for m in matches) and any(m.models for m in matches)
    routes = _routes(config)
    a, b, c, _ = routing_bench.OTHERS
    assert type(routes.resolve(a)) is LatencyRoute
    assert type(routes.resolve(b)) is LeastBusyRoute
    assert type(routes.resolve(c)) is CostRoute
    route = routes.resolve(routing_bench.MODEL)
    assert route is not None and route.fallbacks is not NO_FALLBACKS
    assert route.plan.deadline == 45 and route.plan.context_window is None
    expected = LatencyRoute if variant == "routing-latency" else Route
    assert type(route) is expected


def test_no_rule_matches_the_bench_request(tmp_path: Path) -> None:
    rules = Rules(_config(tmp_path, "routing").routing.rules)
    headers, data = _bench_request()
    assert "Authorization" in headers and data["model"] == routing_bench.MODEL
    assert rules.wants_tags
    assert rules.first(headers, "bench", routing_bench.MODEL, data) is None
    # Not for want of matching anything: the header, a tag or another key would.
    region = CIMultiDictProxy(CIMultiDict({**headers, routing_bench.REGION_HEADER: "eu"}))
    assert rules.first(region, "bench", routing_bench.MODEL, data) is not None
    tagged = {**data, "metadata": {"tags": ["batch"]}}
    assert rules.first(headers, "bench", routing_bench.MODEL, tagged) is not None
    assert rules.first(headers, "team-a", routing_bench.MODEL, data) is not None


def test_the_section_fits_the_protocol_bench_config_too(tmp_path: Path) -> None:
    path = tmp_path / "protocols.yaml"
    account = mock_service_account("http://127.0.0.1:9/token", "mock-project")
    write_protocols_config(path, "http://127.0.0.1:9", 18999, account)
    models = ("gpt-pass", "claude-pass")
    others = ("gemini-pass", "gpt-via-gemini", "claude-via-chat", "gpt-via-messages")
    assert set(models + others) <= {m for ms in PROVIDER_MODELS.values() for m in ms}
    section = routing_bench.routing_section(models, others, "oai")
    text = routing_bench.with_routing(path.read_text(), section)
    config = load_config_text(text, {})
    assert routing_issues(config) == []
    rules = Rules(config.routing.rules)
    headers, data = _bench_request()
    for model in models:
        assert rules.first(headers, "bench", model, {**data, "model": model}) is None


def _load(*cpus: float, errors: int = 0) -> dict[str, Any]:
    rounds = [{"cpu_ms_per_request": cpu} for cpu in cpus]
    return {"cpu_ms_per_request": sorted(cpus)[len(cpus) // 2], "rounds": rounds, "errors": errors}


def test_routing_is_held_to_three_percent_more_cpu_per_request() -> None:
    load = {
        "off": _load(0.20, 0.26, 0.20),
        "routing": _load(0.204, 0.2678, 0.21),  # 1.02, 1.03, 1.05
        "routing-latency": _load(0.22, 0.29, 0.22),
    }
    checked = {c["ratio"]: c for c in routing_bench.BENCH.ratios(load)}
    main = checked["CPU/req @32 routing ÷ off"]
    assert main["value"] == pytest.approx(1.03) and main["met"] is True
    assert main["min"] == pytest.approx(1.02) and main["max"] == pytest.approx(1.05)
    assert checked["CPU/req @32 routing-latency ÷ off"]["met"] is None  # shown, not judged
    assert not paired_bench.too_spread(main, routing_bench.BOUND)  # 1.02-1.05: within 0.06
    assert paired_bench.too_spread({**main, "min": 0.91, "max": 1.2}, routing_bench.BOUND)
    load["routing"] = _load(0.21, 0.28, 0.21)
    assert routing_bench.BENCH.ratios(load)[0]["met"] is False
    load["routing"] = _load(0.20, 0.26, 0.20, errors=3)
    assert routing_bench.BENCH.ratios(load)[0]["met"] is None  # failed requests: not judged
