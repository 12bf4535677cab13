"""Model resolution and smooth weighted round-robin, without sockets."""

from __future__ import annotations

from collections import Counter

from llm_proxy.config.patterns import NameMatcher, compile_pattern
from llm_proxy.proxy.routing import RouteTable
from tests.helpers import make_config, provider

BASE = "http://127.0.0.1:9/v1"


def table(*providers: dict[str, object], suffix: str | None = None) -> RouteTable:
    return RouteTable(make_config(*providers).providers, suffix)


def test_weighted_round_robin_every_window_is_exact_and_interleaved() -> None:
    routes = table(
        provider("a", BASE, {"m": None}, weight=5),
        provider("b", BASE, {"m": None}, weight=3),
        provider("c", BASE, {"m": None}, weight=1),
    )
    route = routes.resolve("m")
    assert route is not None
    picks = [route.pick().provider.name for _ in range(9 * 20)]
    for start in range(len(picks) - 9 + 1):  # every sliding window, not just aligned ones
        assert Counter(picks[start : start + 9]) == {"a": 5, "b": 3, "c": 1}
    # Smooth: the heavy provider never takes more than two in a row at 5/3/1.
    assert "a,a,a" not in ",".join(picks)


def test_single_candidate_and_unknown_model() -> None:
    routes = table(provider("a", BASE, {"only": "upstream-name"}))
    route = routes.resolve("only")
    assert route is not None
    assert {route.pick().model for _ in range(3)} == {"upstream-name"}
    assert routes.resolve("missing") is None


def test_exact_names_win_over_patterns() -> None:
    routes = table(
        provider("pattern", BASE, {"gpt-*": "from-pattern"}),
        provider("exact", BASE, {"gpt-4o": "from-exact"}),
    )
    route = routes.resolve("gpt-4o")
    assert route is not None
    assert [t.provider.name for t in route.targets] == ["exact"]
    other = routes.resolve("gpt-5")
    assert other is not None and other.pick().model == "from-pattern"
    assert other.label == "gpt-*"  # bounded metrics label: the pattern text


def test_wildcard_vs_regex() -> None:
    # Wildcard: `*` is anything, every other character literal (the dot too).
    wildcard = compile_pattern("gpt-4.1*")
    assert wildcard is not None
    assert wildcard.fullmatch("gpt-4.1-mini")
    assert not wildcard.fullmatch("gpt-4x1-mini")
    # The seed's `.*` form is the same wildcard.
    seed_form = compile_pattern("claude-opus-4-5-.*")
    assert seed_form is not None and seed_form.fullmatch("claude-opus-4-5-20251101")
    # Regex metacharacters make a regex, matched against the whole name.
    regex = compile_pattern("claude-(opus|sonnet)-4")
    assert regex is not None
    assert regex.fullmatch("claude-sonnet-4")
    assert not regex.fullmatch("claude-sonnet-4-extra")
    assert not regex.fullmatch("xclaude-opus-4")
    # Names with only dots are exact names.
    assert compile_pattern("gpt-3.5-turbo") is None


def test_pattern_candidates_first_matching_rule_per_provider() -> None:
    routes = table(
        provider("a", BASE, {"x-*": "a-wild", "x-[0-9]+": "a-regex"}),
        provider("b", BASE, {"x-[0-9]+": "b-regex"}),
    )
    route = routes.resolve("x-42")
    assert route is not None
    assert [(t.provider.name, t.model) for t in route.targets] == [
        ("a", "a-wild"),
        ("b", "b-regex"),
    ]
    assert routes.resolve("x-42") is route  # cached


def test_pattern_cache_is_bounded() -> None:
    routes = table(provider("a", BASE, {"m-*": None}))
    for i in range(RouteTable._CACHE_MAX * 2 + 10):
        routes.resolve(f"m-{i}")
        routes.resolve(f"unknown-{i}")
    assert len(routes._cache) <= RouteTable._CACHE_MAX


def test_provider_suffix_strips_only_its_own_prefix() -> None:
    routes = table(provider("a", BASE, {"gpt-4": None}), suffix="Proxy")
    assert routes.normalize("Proxy/gpt-4") == "gpt-4"
    assert routes.normalize("gpt-4") == "gpt-4"
    assert routes.normalize("Other/gpt-4") == "Other/gpt-4"
    assert table(provider("a", BASE, {})).normalize("Proxy/gpt-4") == "Proxy/gpt-4"


def test_models_list_has_exact_names_only() -> None:
    routes = table(
        provider("a", BASE, {"b-model": None, "a-model": None, "c-*": None}),
        provider("b", BASE, {"a-model": None, "^re$": None}),
    )
    assert routes.model_names == ["a-model", "b-model"]


def test_name_matcher() -> None:
    matcher = NameMatcher(("gpt-4o", "claude-*", "o[0-9]+"))
    assert "gpt-4o" in matcher
    assert "claude-x" in matcher
    assert "o3" in matcher
    assert "gpt-4" not in matcher
    assert "o3-mini" not in matcher
