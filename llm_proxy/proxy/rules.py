"""Conditional routing: `routing.rules`, compiled once per snapshot, evaluated per request
after authentication and before the route is resolved. The first rule whose every condition
holds decides: the request goes only to the rule's providers (for its model and for every
fallback model) and/or to the rule's model instead. No rule: no cost beyond one check per
rule of what it names (a header, the key's name, the model, the tags).

Tags come from the `x-llm-proxy-tags` header (comma-separated) or the body's
`metadata.tags` (a list of strings; taken out of the body before it is sent on, since
upstreams refuse a list there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from multidict import CIMultiDictProxy

from llm_proxy.config.model import RoutingRule
from llm_proxy.config.patterns import NameMatcher

TAGS_HEADER: Final = "x-llm-proxy-tags"
MAX_TAGS: Final = 32


class Rule:
    """One rule, its conditions compiled (names and patterns matched the keyring's way)."""

    __slots__ = ("headers", "keys", "model", "models", "name", "providers", "tags")

    def __init__(self, rule: RoutingRule) -> None:
        self.name = rule.name
        match = rule.match
        self.tags = frozenset(match.tags)
        self.keys = NameMatcher(match.keys) if match.keys else None
        self.models = NameMatcher(match.models) if match.models else None
        self.headers = tuple((name, frozenset(values)) for name, values in match.headers)
        self.providers = frozenset(rule.providers) if rule.providers is not None else None
        self.model = rule.model

    def matches(
        self,
        headers: CIMultiDictProxy[str],
        key_name: str | None,
        model: str,
        tags: frozenset[str],
    ) -> bool:
        if self.models is not None and model not in self.models:
            return False
        if self.keys is not None and (key_name is None or key_name not in self.keys):
            return False
        for name, values in self.headers:
            if headers.get(name) not in values:
                return False
        return not self.tags or not self.tags.isdisjoint(tags)


class Rules:
    """A snapshot's rules, in order."""

    __slots__ = ("rules", "wants_tags")

    def __init__(self, rules: tuple[RoutingRule, ...]) -> None:
        self.rules = tuple(Rule(r) for r in rules)
        self.wants_tags = any(r.tags for r in self.rules)

    def first(
        self,
        headers: CIMultiDictProxy[str],
        key_name: str | None,
        model: str,
        data: Mapping[str, Any],
    ) -> Rule | None:
        tags = tags_of(headers, data) if self.wants_tags else frozenset()
        for rule in self.rules:
            if rule.matches(headers, key_name, model, tags):
                return rule
        return None


def tags_of(headers: CIMultiDictProxy[str], data: Mapping[str, Any]) -> frozenset[str]:
    """The request's tags: the header's and the body's `metadata.tags` (bounded)."""
    found: list[str] = []
    header = headers.get(TAGS_HEADER)
    if header:
        found.extend(t.strip() for t in header.split(",", MAX_TAGS) if t.strip())
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        listed = metadata.get("tags")
        if isinstance(listed, list):
            found.extend(t for t in listed[:MAX_TAGS] if isinstance(t, str))
    return frozenset(found[:MAX_TAGS])
