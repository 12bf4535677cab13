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
from tests.perf import cache_bench, instructions
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


def test_the_cache_variants_run_on_the_cache_proxy_or_on_names() -> None:
    assert instructions.split("openai-pass+cache-hit") == ("openai-pass", "+cache-hit")
    assert instructions.split("openai-pass+cache-miss") == ("openai-pass", "+cache-miss")
    assert instructions.split("anthropic-pass+unique") == ("anthropic-pass", "+unique")
    assert instructions.proxy_of("+cache-hit") == instructions.proxy_of("+cache-miss") == "+cache"
    assert instructions.proxy_of("+unique") == instructions.proxy_of("") == ""
    assert instructions.proxy_of("+routing") == "+routing"


def test_the_cache_proxy_is_the_protocol_bench_config_with_a_memory_cache(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    account = mock_service_account("http://127.0.0.1:9/token", pb.VERTEX_PROJECT)
    pb.write_config(path, "http://127.0.0.1:9", 18999, account)
    plain = load_config_text(path.read_text(), {})
    cached = load_config_text(cache_bench.with_cache(path.read_text()), {})
    assert not plain.cache.enabled
    assert cached.cache.enabled and cached.cache.backend == "memory"
    assert cached.providers == plain.providers and cached.routing == plain.routing


def test_a_miss_is_divided_by_the_unique_bodies_count_when_there_is_one() -> None:
    counts = {
        "openai-pass": 100_000.0,
        "openai-pass+unique": 101_000.0,
        "openai-pass+cache-hit": 40_000.0,
        "openai-pass+cache-miss": 103_020.0,
    }
    rows = {line.split()[0]: line.split()[1:] for line in instructions.table(counts).splitlines()}
    assert rows["openai-pass+unique"][-1] == "1.010"
    assert rows["openai-pass+cache-hit"][-2:] == ["0.400", "0.400"]
    assert rows["openai-pass+cache-miss"][-2:] == ["1.030", "1.020"]
    del counts["openai-pass+unique"]
    rows = {line.split()[0]: line.split()[1:] for line in instructions.table(counts).splitlines()}
    assert rows["openai-pass+cache-miss"][-1] == "1.030"  # NAME's, without a unique count
