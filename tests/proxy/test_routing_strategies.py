"""Routing policies compiled onto routes, without sockets: the strategies' choices, the retry
plan's answers, chains and settings found by exact name or pattern, rules' conditions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from llm_proxy.proxy.routing import (
    NO_FALLBACKS,
    CostRoute,
    LatencyRoute,
    LeastBusyRoute,
    Route,
    RouteTable,
)
from llm_proxy.proxy.rules import Rules
from tests.helpers import make_config, provider

BASE = "http://127.0.0.1:9/v1"


def table(*providers: dict[str, Any], **top: Any) -> RouteTable:
    config = make_config(*providers, **top)
    return RouteTable(config.providers, None, config.routing, config.max_attempts, config.pricing)


def two(**top: Any) -> RouteTable:
    return table(
        provider("a", BASE, {"m": None, "gpt-x": None}, weight=3),
        provider("b", BASE, {"m": None, "gpt-x": None}, weight=1),
        **top,
    )


def test_no_routing_keeps_plain_weighted_routes_without_chains() -> None:
    route = two().resolve("m")
    assert type(route) is Route
    assert route is not None and route.fallbacks is NO_FALLBACKS
    assert route.plan.attempts == 3 and route.plan.deadline is None
    assert route.plan.peek == frozenset()


def test_settings_and_chains_are_found_by_exact_name_then_pattern() -> None:
    routes = two(
        routing={
            "fallbacks": {"gpt-*": ["m"]},
            "content_policy_fallbacks": {"m": ["gpt-x"]},
            "strategy": {"default": "least_busy", "gpt-*": "latency"},
            "models": {"m": {"retry": {"attempts": 7}, "deadline_secs": 2}},
            "retry": {"on": ["connect"], "backoff_ms": 10},
        }
    )
    m, x = routes.resolve("m"), routes.resolve("gpt-x")
    assert isinstance(m, LeastBusyRoute) and isinstance(x, LatencyRoute)
    assert x.fallbacks.any == ("m",) and m.fallbacks.any == ()
    assert m.fallbacks.content_policy == ("gpt-x",)
    assert m.plan.attempts == 7 and m.plan.deadline == 2
    assert m.plan.on == {"connect"}  # the default's fields it did not override
    assert 200 in m.plan.peek and 400 in m.plan.peek  # a content-policy chain reads both
    assert x.plan.peek == frozenset()


def test_the_plan_says_what_retries_and_how_long_to_wait() -> None:
    routes = two(
        routing={"retry": {"on": ["5xx", "408"], "backoff_ms": 100, "max_backoff_ms": 300}}
    )
    plan = routes.resolve("m").plan  # type: ignore[union-attr]
    assert plan.retries("http_5xx", 503)
    assert plan.retries("http_4xx", 408)
    assert not plan.retries("http_429", 429)
    assert not plan.retries("timeout", None)
    assert 408 in plan.peek
    for retry in (1, 2, 3, 4, 10):
        waits = [plan.backoff_for(retry) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= min(0.3, 0.1 * 2 ** (retry - 1))
    assert max(plan.backoff_for(5) for _ in range(200)) > 0.15  # jittered, not fixed


def test_latency_picks_the_fastest_and_explores_one_in_twenty() -> None:
    route = two(routing={"strategy": "latency"}).resolve("m")
    assert isinstance(route, LatencyRoute)
    a, b = route.targets
    first = {route.pick(), route.pick()}
    assert first == {a}  # never measured: measured first (a, then a again until it has one)
    route.end(a, 0.5)
    assert route.pick() is b  # b is not measured yet
    route.end(b, 0.01)
    picks = Counter(route.pick().provider.name for _ in range(100))  # type: ignore[union-attr]
    assert picks["b"] >= 90 and picks["a"] >= 1  # a few by weight: `a` is seen again
    for _ in range(6):
        route.end(a, 0.001)  # a recovered: its average falls below b's
    assert Counter(route.pick().provider.name for _ in range(20))["a"] >= 19  # type: ignore[union-attr]
    route.end(a, None)  # a failure counts as slow
    assert route.latencies()["a"] > 1


def test_least_busy_counts_attempts_in_flight() -> None:
    route = two(routing={"strategy": "least_busy"}).resolve("m")
    assert isinstance(route, LeastBusyRoute)
    a, b = route.targets
    route.begin(a)
    route.begin(a)
    assert {route.pick() for _ in range(5)} == {b}
    route.begin(b)
    route.begin(b)
    route.begin(b)
    assert route.pick() is a
    route.end(b, 0.1)
    route.end(b, None)
    assert route.in_flight() == {"a": 2, "b": 1}
    assert route.pick(lambda t: t is not b) is a  # ejected ones are skipped


def test_cost_orders_by_price_and_unpriced_last() -> None:
    routes = table(
        provider("dear", BASE, {"m": None}),
        provider("free", BASE, {"m": None}),
        provider("cheap", BASE, {"m": "m-up"}, pricing={"m-up": {"input_per_mtok": 0.1}}),
        provider("cheap2", BASE, {"m": None}, pricing={"m": {"output_per_mtok": 0.1}}),
        pricing={"m": {"input_per_mtok": 5, "output_per_mtok": 5}},
        routing={"strategy": "cost"},
    )
    route = routes.resolve("m")
    assert isinstance(route, CostRoute)
    assert route.order() == [["cheap", "cheap2"], ["dear", "free"]]
    assert Counter(route.pick().provider.name for _ in range(4)) == {"cheap": 2, "cheap2": 2}  # type: ignore[union-attr]
    survivors = {"dear", "free"}
    assert route.pick(lambda t: t.provider.name in survivors).provider.name in survivors  # type: ignore[union-attr]


def test_a_narrowed_route_keeps_its_strategy_and_plan() -> None:
    routes = two(routing={"strategy": "latency", "retry": {"attempts": 4}})
    narrowed = routes.narrowed("m", frozenset({"b"}))
    assert isinstance(narrowed, LatencyRoute)
    assert [t.provider.name for t in narrowed.targets] == ["b"]
    assert narrowed.plan.attempts == 4
    assert routes.narrowed("m", frozenset({"a", "b"})) is routes.resolve("m")
    assert routes.narrowed("m", frozenset({"c"})) is None
    assert routes.narrowed("m", frozenset({"b"})) is narrowed  # cached


def rules(*entries: dict[str, Any]) -> Rules:
    config = make_config(provider("a", BASE, {"m": None}), routing={"rules": list(entries)})
    return Rules(config.routing.rules)


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_rules_match_on_every_condition_given_and_the_first_wins() -> None:
    compiled = rules(
        {"name": "eu", "match": {"key": ["eu-*"], "model": ["m"]}, "providers": ["a"]},
        {"name": "batch", "match": {"tags": ["batch", "bulk"]}, "providers": ["a"]},
        {"name": "tier", "match": {"header": {"X-Tier": ["low", "lower"]}}, "model": "m"},
        {"name": "all", "match": {}, "providers": ["a"]},
    )
    none = headers()

    def first(h: CIMultiDictProxy[str], key: str | None, model: str, data: Any) -> str:
        rule = compiled.first(h, key, model, data)
        return rule.name if rule is not None else ""

    assert first(none, "eu-app", "m", {}) == "eu"
    assert first(none, "eu-app", "other", {}) == "all"  # the model condition fails
    assert first(none, None, "m", {"metadata": {"tags": ["bulk"]}}) == "batch"
    assert first(headers(x_llm_proxy_tags="a, batch"), None, "m", {}) == "batch"
    assert first(headers(x_tier="lower"), "us", "m", {}) == "tier"
    assert first(headers(x_tier="high"), "us", "m", {"metadata": {"tags": "batch"}}) == "all"
