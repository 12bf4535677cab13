"""Model resolution and weighted provider selection. Pure: no sockets, no config I/O.

A request's model name resolves to a :class:`Route`: the providers that serve it, each with the
upstream model name to send. Exact `model_mapping` keys win over patterns; among patterns, every
provider whose pattern matches is a candidate (its first matching pattern decides the upstream
name). Routes for exact names are built at compile time; routes for pattern-matched names are
built on first use and cached (bounded, and only names that match: random model names
cannot grow memory).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from llm_proxy.config.model import Provider


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    model: str | None  # the upstream model name; None: keep the requested name


class Route:
    """Candidates for one model name, chosen by smooth weighted round-robin (nginx's
    algorithm): over any window of sum-of-weights picks, each provider is chosen exactly
    `weight` times, interleaved rather than in bursts."""

    __slots__ = ("_current", "_single", "_total", "_weights", "label", "targets")

    def __init__(self, targets: Sequence[Target], label: str) -> None:
        self.targets = tuple(targets)
        # A bounded name for metrics: the exact name, or the first matching pattern's text.
        self.label = label
        self._weights = [t.provider.weight for t in self.targets]
        self._current = [0] * len(self.targets)
        self._total = sum(self._weights)
        self._single = self.targets[0] if len(self.targets) == 1 else None

    def pick(self, usable: Callable[[Target], bool] | None = None) -> Target | None:
        """The next target; with `usable`, only among targets it accepts (the others sit out
        without accumulating weight, so the rest keep their proportions). None when no target
        is usable."""
        if self._single is not None:
            return self._single if usable is None or usable(self._single) else None
        current, weights, targets = self._current, self._weights, self.targets
        if usable is None:
            best = 0
            for i in range(len(current)):
                current[i] += weights[i]
                if current[i] > current[best]:
                    best = i
            current[best] -= self._total
            return targets[best]
        chosen, total = -1, 0
        for i in range(len(current)):
            if not usable(targets[i]):
                continue
            current[i] += weights[i]
            total += weights[i]
            if chosen < 0 or current[i] > current[chosen]:
                chosen = i
        if chosen < 0:
            return None
        current[chosen] -= total
        return targets[chosen]


class RouteTable:
    """Resolves requested model names to routes: a dict lookup for exact names."""

    _CACHE_MAX: Final = 4096

    def __init__(self, providers: Sequence[Provider], provider_suffix: str | None = None) -> None:
        exact: dict[str, list[Target]] = {}
        patterns: list[tuple[re.Pattern[str], str, Target]] = []
        for provider in providers:
            for rule in provider.model_mapping:
                target = Target(provider, rule.target)
                if rule.pattern is None:
                    # The first entry wins if one provider lists a name twice.
                    if all(t.provider is not provider for t in exact.get(rule.key, ())):
                        exact.setdefault(rule.key, []).append(target)
                else:
                    patterns.append((rule.pattern, rule.key, target))
        self.exact: dict[str, Route] = {name: Route(ts, name) for name, ts in exact.items()}
        self._patterns = tuple(patterns)
        self._cache: dict[str, Route] = {}
        self._prefix = f"{provider_suffix}/" if provider_suffix else None

    @property
    def model_names(self) -> list[str]:
        """Exact names only: patterns are never listed."""
        return sorted(self.exact)

    def normalize(self, requested: str) -> str:
        """Strip a leading `<PROVIDER_SUFFIX>/`; other prefixes are left alone."""
        if self._prefix is not None and requested.startswith(self._prefix):
            return requested[len(self._prefix) :]
        return requested

    def resolve(self, name: str) -> Route | None:
        route = self.exact.get(name)
        if route is not None:
            return route
        route = self._cache.get(name)
        if route is not None:
            return route
        targets: list[Target] = []
        label = ""
        for pattern, key, target in self._patterns:
            if any(t.provider is target.provider for t in targets):
                continue  # this provider's first matching pattern already decided
            if pattern.fullmatch(name):
                targets.append(target)
                label = label or key
        if not targets:
            return None  # misses are not cached: random names cost no memory
        route = Route(targets, label)
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[name] = route
        return route


def render_models(names: Sequence[str]) -> bytes:
    """The `/v1/models` answer for `names`, in OpenAI's list format."""
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "llm-proxy"} for n in names
            ],
        }
    )
