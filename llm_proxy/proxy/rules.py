"""Conditional routing: `routing.rules`, compiled once per snapshot, evaluated per request
after authentication and before the route is resolved. The first rule whose every condition
holds decides: the request goes only to the rule's providers (for its model and for every
fallback model) and/or to the rule's model instead. No rule: no cost beyond one check per
rule of what it names (a header, the key's name, the model, the tags; the key's metadata
and name are decided once per key and model).

Tags come from the `x-llm-proxy-tags` header (comma-separated) or the body's
`metadata.tags` (a list of strings; taken out of the body before it is sent on, since
upstreams refuse a list there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from multidict import CIMultiDictProxy, istr

from llm_proxy.config.model import RoutingRule
from llm_proxy.config.patterns import NameMatcher

TAGS_HEADER: Final = istr("x-llm-proxy-tags")
MAX_TAGS: Final = 32
_NO_TAGS: Final[frozenset[str]] = frozenset()


class Rule:
    """One rule, its conditions compiled (names and patterns matched the keyring's way)."""

    __slots__ = ("headers", "keys", "metadata", "model", "models", "name", "providers", "tags")

    def __init__(self, rule: RoutingRule) -> None:
        self.name = rule.name
        match = rule.match
        self.tags = frozenset(match.tags)
        self.keys = NameMatcher(match.keys) if match.keys else None
        self.models = NameMatcher(match.models) if match.models else None
        self.headers = tuple((istr(name), frozenset(values)) for name, values in match.headers)
        self.providers = frozenset(rule.providers) if rule.providers is not None else None
        self.model = rule.model
        self.metadata = tuple((name, frozenset(values)) for name, values in match.key_metadata)

    def matches_caller(
        self, key_name: str | None, model: str, metadata: Mapping[str, Any] | None = None
    ) -> bool:
        """The conditions a (key, model) pair decides (the key's name and metadata)."""
        if self.models is not None and model not in self.models:
            return False
        if self.keys is not None and (key_name is None or key_name not in self.keys):
            return False
        for name, values in self.metadata:
            if metadata is None or name not in metadata:
                return False
            value = metadata[name]
            if isinstance(value, dict | list) or orjson.dumps(value).decode() not in values:
                return False
        return True


class Rules:
    """A snapshot's rules, in order. Which rules a (key, model) pair can match at all is
    worked out once per pair and kept (both are finite: the keyring's names, the routes'
    names; bounded all the same), so a request checks only the header and tag conditions of
    those, and reads its tags only when one of them names tags."""

    __slots__ = ("_cache", "rules", "wants_tags")
    _CACHE_MAX: Final = 4096

    def __init__(self, rules: tuple[RoutingRule, ...]) -> None:
        self.rules = tuple(Rule(r) for r in rules)
        self.wants_tags = any(r.tags for r in self.rules)
        # (key name, model) -> the rules still to check for each request of theirs
        self._cache: dict[tuple[str | None, str], tuple[Rule, ...]] = {}

    def first(
        self,
        headers: CIMultiDictProxy[str],
        key_name: str | None,
        model: str,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Rule | None:
        """The first rule matching the request (`metadata`: its key's)."""
        candidates = self._cache.get((key_name, model))
        if candidates is None:
            candidates = self._candidates(key_name, model, metadata)
        if not candidates:
            return None
        tags = None  # read only when a rule's other conditions hold and it names tags
        get = headers.get
        for rule in candidates:
            for name, values in rule.headers:
                if get(name) not in values:
                    break
            else:
                if not rule.tags:
                    return rule
                if tags is None:
                    header, metadata = get(TAGS_HEADER), data.get("metadata")
                    tags = _NO_TAGS if not header and metadata is None else tags_of(header, data)
                if not rule.tags.isdisjoint(tags):
                    return rule
        return None

    def _candidates(
        self, key_name: str | None, model: str, metadata: Mapping[str, Any] | None
    ) -> tuple[Rule, ...]:
        """The rules whose key and model conditions hold for this pair, up to the first
        with no other condition (it always matches: those after it never decide). (A key's
        metadata is its name's within a snapshot, which is what these rules are.)"""
        out: list[Rule] = []
        for rule in self.rules:
            if rule.matches_caller(key_name, model, metadata):
                out.append(rule)
                if not rule.headers and not rule.tags:
                    break
        found = tuple(out)
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[(key_name, model)] = found
        return found


def tags_of(header: str | None, data: Mapping[str, Any]) -> frozenset[str]:
    """The request's tags: the `x-llm-proxy-tags` header's (`header`) and the body's
    `metadata.tags` (bounded)."""
    found: list[str] = []
    if header:
        found.extend(t.strip() for t in header.split(",", MAX_TAGS) if t.strip())
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        listed = metadata.get("tags")
        if isinstance(listed, list):
            found.extend(t for t in listed[:MAX_TAGS] if isinstance(t, str))
    return frozenset(found[:MAX_TAGS])
