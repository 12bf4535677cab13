"""The instruction counter's routing variants (`tests.perf.instructions`), without valgrind:
their names, their config and the table that shows them."""

from __future__ import annotations

from pathlib import Path

from multidict import CIMultiDict, CIMultiDictProxy

from llm_proxy.config.routing import routing_issues
from llm_proxy.config.yaml_file import load_config_text
from llm_proxy.proxy.routing import LatencyRoute, Route, RouteTable
from llm_proxy.proxy.rules import Rules
from llm_proxy.testing.mock.vertex import mock_service_account
from tests.perf import instructions
from tests.perf import protocols_bench as pb


def test_a_variant_is_a_suffix_of_a_protocol_bench_scenario() -> None:
    assert instructions.split("openai-pass") == ("openai-pass", "")
    assert instructions.split("openai-pass+routing") == ("openai-pass", "+routing")
    assert instructions.split("anthropic-pass+routing-latency") == (
        "anthropic-pass",
        "+routing-latency",
    )


def test_the_routing_config_routes_the_called_models_and_matches_none_of_their_requests(
    tmp_path: Path,
) -> None:
    path = tmp_path / "proxy.yaml"
    account = mock_service_account("http://127.0.0.1:9/token", pb.VERTEX_PROJECT)
    pb.write_config(path, "http://127.0.0.1:9", 18999, account)
    names = ["openai-pass", "openai-pass+routing-latency", "anthropic-pass+routing-latency"]
    config = load_config_text(instructions.routing_config(path.read_text(), names, "latency"), {})
    assert routing_issues(config) == []
    routes = RouteTable(config.providers, None, config.routing, config.max_attempts, config.pricing)
    rules = Rules(config.routing.rules)
    known = {s.name: s for s in pb.SCENARIOS}
    for name in ("openai-pass", "anthropic-pass"):
        scenario = known[name]
        assert type(routes.resolve(scenario.model)) is LatencyRoute
        headers = CIMultiDictProxy(CIMultiDict(scenario.headers()))
        assert rules.first(headers, "bench", scenario.model, {"model": scenario.model}) is None
    assert type(routes.resolve("gpt-via-bedrock")) is Route  # neither called nor named


def test_the_table_adds_the_ratio_to_off_only_for_variants() -> None:
    plain = instructions.table({"openai-pass": 100_000.0, "anthropic-pass": 110_000.0})
    assert plain.splitlines()[0] == f"{'scenario':24} {'k instr/req':>12} {'ratio':>7}"
    assert plain.splitlines()[2] == f"{'anthropic-pass':24} {110.0:12.1f} {1.1:7.3f}"
    routed = instructions.table({"openai-pass": 100_000.0, "openai-pass+routing": 102_000.0})
    assert routed.splitlines()[0].endswith("÷ off")
    assert routed.splitlines()[2].split()[-2:] == ["1.020", "1.020"]
