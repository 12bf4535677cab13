"""Model resolution and weighted provider selection. Pure: no sockets, no config I/O.

A request's model name resolves to a :class:`Route`: the providers that serve it, each with the
upstream model name to send. Exact `model_mapping` keys win over patterns; among patterns, every
provider whose pattern matches is a candidate (its first matching pattern decides the upstream
name). Routes for exact names are built at compile time; routes for pattern-matched names are
built on first use and cached (bounded, and only names that match: random model names
cannot grow memory).

Each route also carries its model's `routing:` settings, compiled once (`Plan`: retries,
deadline, the statuses read before commit; `Fallbacks`: the chains), and its strategy: the
`Route` itself is weighted round-robin; `LatencyRoute`, `LeastBusyRoute` and `CostRoute`
choose otherwise, from state kept on the route (per process, reset by a reload).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy.config.model import (
    NO_ROUTING,
    Chains,
    ModelRouting,
    Price,
    Pricing,
    Provider,
    Routing,
    price_for,
)
from llm_proxy.config.patterns import compile_pattern


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    model: str | None  # the upstream model name; None: keep the requested name


# Outcomes (`llm_proxy.proxy.outcome.Outcome`'s values) by the retry class that names them.
_RETRY_CLASS: Final = {
    "connect_error": "connect",
    "protocol_error": "connect",
    "disconnected": "connect",
    "pool_full": "connect",
    "timeout": "timeout",
    "http_429": "429",
    "http_5xx": "5xx",
    "sse_error": "stream_error",
}
# The statuses an upstream says "context window" or "content policy" with (read before commit
# when the model has such a chain: `llm_proxy.protocols.refusals`).
CLASSIFIED_STATUSES: Final = frozenset({400, 413, 422})
# With a content-policy chain, a successful non-streamed answer is read before commit too: a
# refusal may come as a 200 (Anthropic's `stop_reason: refusal`, Gemini's blocked prompt).
REFUSAL_STATUSES: Final = frozenset({200})


class Plan:
    """A model's retry policy and deadline, compiled: what `forward` asks per attempt."""

    __slots__ = ("attempts", "backoff", "cap", "context_window", "deadline", "on", "peek")

    def __init__(
        self, settings: ModelRouting, max_attempts: int, classify: bool, refusals: bool = False
    ) -> None:
        retry = settings.retry
        self.attempts = retry.attempts or max_attempts
        self.on = frozenset(retry.on)
        self.backoff = retry.backoff_ms / 1000
        self.cap = retry.max_backoff_ms / 1000
        self.deadline = settings.deadline_secs
        self.context_window = settings.context_window
        # The 4xx statuses read before commit: those retried, and (with a context-window or
        # content-policy chain) those that may say so.
        self.peek = (
            retry.statuses
            | (CLASSIFIED_STATUSES if classify else frozenset())
            | (REFUSAL_STATUSES if refusals else frozenset())
        )

    def retries(self, outcome: str, status: int | None) -> bool:
        """Does a failed attempt with this outcome (and the upstream's status) retry?"""
        if status is not None and str(status) in self.on:
            return True
        return _RETRY_CLASS.get(outcome, "") in self.on

    def backoff_for(self, retry: int) -> float:
        """Seconds to wait before the `retry`th retry of a provider already tried: full
        jitter over a doubling base, capped."""
        if self.backoff <= 0:
            return 0.0
        return random.uniform(0, min(self.cap, self.backoff * 2 ** (retry - 1)))  # noqa: S311


DEFAULT_PLAN: Final = Plan(ModelRouting(), 3, classify=False)


@dataclass(frozen=True, slots=True)
class Fallbacks:
    """A model's fallback chains, by reason (model names, in order)."""

    any: tuple[str, ...] = ()
    context_window: tuple[str, ...] = ()
    content_policy: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """Every model the chains name."""
        return frozenset(self.any + self.context_window + self.content_policy)

    def chain(self, reason: str) -> tuple[str, ...]:
        if reason == "context_window":
            return self.context_window
        if reason == "content_policy":
            return self.content_policy
        return self.any


NO_FALLBACKS: Final = Fallbacks()


class Route:
    """Candidates for one model name, chosen by smooth weighted round-robin (nginx's
    algorithm): over any window of sum-of-weights picks, each provider is chosen exactly
    `weight` times, interleaved rather than in bursts."""

    __slots__ = (
        "_current",
        "_single",
        "_total",
        "_weights",
        "fallbacks",
        "label",
        "name",
        "plan",
        "targets",
    )
    strategy: str = "weighted"
    tracks: bool = False  # does the strategy want `begin`/`end` around each attempt?

    def __init__(
        self,
        targets: Sequence[Target],
        label: str,
        *,
        name: str | None = None,
        plan: Plan = DEFAULT_PLAN,
        fallbacks: Fallbacks = NO_FALLBACKS,
    ) -> None:
        self.targets = tuple(targets)
        # A bounded name for metrics: the exact name, or the first matching pattern's text.
        self.label = label
        self.name = label if name is None else name  # the model name it serves
        self.plan = plan
        self.fallbacks = fallbacks
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

    def begin(self, target: Target) -> None:
        """An attempt at `target` starts (strategies that track it: `tracks`)."""

    def end(self, target: Target, seconds: float | None) -> None:
        """An attempt at `target` ended; `seconds`: its time to the answer's head (None: it
        got no answer, or failed)."""


class _Tracked(Route):
    """A strategy that keeps state per target, told of each attempt (`begin`, `end`)."""

    __slots__ = ("_index",)
    tracks = True

    def __init__(
        self,
        targets: Sequence[Target],
        label: str,
        *,
        name: str | None = None,
        plan: Plan = DEFAULT_PLAN,
        fallbacks: Fallbacks = NO_FALLBACKS,
    ) -> None:
        super().__init__(targets, label, name=name, plan=plan, fallbacks=fallbacks)
        self._index = {id(t): i for i, t in enumerate(self.targets)}
        self._start()

    def _start(self) -> None:
        """The strategy's own state, fresh."""


class LatencyRoute(_Tracked):
    """`latency`: the target with the lowest recent time to the answer's head (an
    exponentially weighted average; a failed attempt counts as slow), except one pick in
    EXPLORE that goes by weight, so a provider that recovered is seen again."""

    __slots__ = ("_latency", "_picks")
    strategy = "latency"
    EXPLORE: Final = 20
    ALPHA: Final = 0.5  # the newest sample's share of the average
    FAILED_SECS: Final = 60.0  # what a failed attempt counts as

    def _start(self) -> None:
        self._latency: list[float | None] = [None] * len(self.targets)
        self._picks = 0

    def pick(self, usable: Callable[[Target], bool] | None = None) -> Target | None:
        self._picks += 1
        if self._single is not None or self._picks % self.EXPLORE == 0:
            return super().pick(usable)
        best, best_secs = None, 0.0
        for target, secs in zip(self.targets, self._latency, strict=True):
            if usable is not None and not usable(target):
                continue
            if secs is None:
                return target  # never measured: measure it
            if best is None or secs < best_secs:
                best, best_secs = target, secs
        return best

    def end(self, target: Target, seconds: float | None) -> None:
        i = self._index.get(id(target))
        if i is None:
            return
        sample = self.FAILED_SECS if seconds is None else seconds
        old = self._latency[i]
        self._latency[i] = sample if old is None else old + self.ALPHA * (sample - old)

    def latencies(self) -> dict[str, float | None]:
        """Each provider's average, for /health/detailed and tests."""
        return {t.provider.name: s for t, s in zip(self.targets, self._latency, strict=True)}


class LeastBusyRoute(_Tracked):
    """`least_busy`: the target with the fewest attempts in flight from this process (ties:
    the next in turn, so equal targets share the load)."""

    __slots__ = ("_busy", "_turn")
    strategy = "least_busy"

    def _start(self) -> None:
        self._busy = [0] * len(self.targets)
        self._turn = 0

    def pick(self, usable: Callable[[Target], bool] | None = None) -> Target | None:
        n = len(self.targets)
        self._turn = (self._turn + 1) % n
        best, fewest = None, 0
        for k in range(n):
            i = (self._turn + k) % n
            target = self.targets[i]
            if usable is not None and not usable(target):
                continue
            if best is None or self._busy[i] < fewest:
                best, fewest = target, self._busy[i]
        return best

    def begin(self, target: Target) -> None:
        i = self._index.get(id(target))
        if i is not None:
            self._busy[i] += 1

    def end(self, target: Target, seconds: float | None) -> None:
        i = self._index.get(id(target))
        if i is not None and self._busy[i] > 0:
            self._busy[i] -= 1

    def in_flight(self) -> dict[str, int]:
        return {t.provider.name: b for t, b in zip(self.targets, self._busy, strict=True)}


class CostRoute(Route):
    """`cost`: the cheapest target (its provider's price for the model, else the global
    price; unpriced ones last) that is usable; equal prices share by weight."""

    __slots__ = ("_tiers",)
    strategy = "cost"

    def __init__(
        self,
        targets: Sequence[Target],
        label: str,
        pricing: Pricing = (),
        *,
        name: str | None = None,
        plan: Plan = DEFAULT_PLAN,
        fallbacks: Fallbacks = NO_FALLBACKS,
    ) -> None:
        super().__init__(targets, label, name=name, plan=plan, fallbacks=fallbacks)
        tiers: dict[float, list[Target]] = {}
        for target in self.targets:
            tiers.setdefault(_cost_of(target, self.name, pricing), []).append(target)
        self._tiers = tuple(Route(tiers[cost], label) for cost in sorted(tiers))

    def pick(self, usable: Callable[[Target], bool] | None = None) -> Target | None:
        for tier in self._tiers:
            target = tier.pick(usable)
            if target is not None:
                return target
        return None

    def order(self) -> list[list[str]]:
        """The providers by price tier, cheapest first (for tests and /health/detailed)."""
        return [[t.provider.name for t in tier.targets] for tier in self._tiers]


def _cost_of(target: Target, name: str, pricing: Pricing) -> float:
    """What one typical call costs at `target`: a million tokens in and a million out
    (input and output prices summed); unpriced: infinity."""
    model = target.model or name
    price: Price | None = None
    if target.provider.pricing:
        price = price_for(target.provider.pricing, model) or price_for(
            target.provider.pricing, name
        )
    if price is None and pricing:
        price = price_for(pricing, model) or price_for(pricing, name)
    return float("inf") if price is None else price.input_per_mtok + price.output_per_mtok


ROUTES: Final[dict[str, type[Route]]] = {
    "weighted": Route,
    "latency": LatencyRoute,
    "least_busy": LeastBusyRoute,
    "cost": CostRoute,
}


class Policies:
    """The `routing:` settings a route gets, looked up by model name once per route built
    (exact names first, then patterns in order)."""

    def __init__(self, routing: Routing, max_attempts: int) -> None:
        self._routing = routing
        self._max_attempts = max_attempts
        self._models = _lookup(routing.models)
        self._chains = {
            reason: _lookup(routing.chains(reason))
            for reason in ("any", "context_window", "content_policy")
        }
        self._default = Plan(routing.default, max_attempts, classify=False)

    def for_model(self, name: str) -> tuple[str, Plan, Fallbacks]:
        """(strategy, plan, fallbacks) for model `name`."""
        fallbacks = Fallbacks(
            *(
                _find(self._chains[r], name) or ()
                for r in ("any", "context_window", "content_policy")
            )
        )
        if fallbacks == NO_FALLBACKS:
            fallbacks = NO_FALLBACKS  # (`forward` tells "none" by identity)
        settings = _find(self._models, name)
        classify = bool(fallbacks.context_window or fallbacks.content_policy)
        refusals = bool(fallbacks.content_policy)
        if settings is None:
            plan = (
                self._default
                if not classify
                else Plan(self._routing.default, self._max_attempts, True, refusals)
            )
            return self._routing.default.strategy, plan, fallbacks
        return (
            settings.strategy,
            Plan(settings, self._max_attempts, classify, refusals),
            fallbacks,
        )


def _lookup(
    entries: Chains | tuple[tuple[str, ModelRouting], ...],
) -> tuple[dict[str, object], tuple[tuple[re.Pattern[str], object], ...]]:
    exact: dict[str, object] = {}
    patterns = []
    for key, value in entries:
        pattern = compile_pattern(key)
        if pattern is None:
            exact.setdefault(key, value)
        else:
            patterns.append((pattern, value))
    return exact, tuple(patterns)


def _find(
    lookup: tuple[dict[str, object], tuple[tuple[re.Pattern[str], object], ...]], name: str
) -> Any:
    exact, patterns = lookup
    found = exact.get(name)
    if found is not None:
        return found
    for pattern, value in patterns:
        if pattern.fullmatch(name):
            return value
    return None


class RouteTable:
    """Resolves requested model names to routes: a dict lookup for exact names."""

    _CACHE_MAX: Final = 4096

    def __init__(
        self,
        providers: Sequence[Provider],
        provider_suffix: str | None = None,
        routing: Routing = NO_ROUTING,
        max_attempts: int = 3,
        pricing: Pricing = (),
    ) -> None:
        self._policies = Policies(routing, max_attempts)
        self._pricing = pricing
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
        self.exact: dict[str, Route] = {
            name: self._route(ts, name, name) for name, ts in exact.items()
        }
        self._patterns = tuple(patterns)
        self._cache: dict[str, Route] = {}
        self._narrowed: dict[tuple[str, frozenset[str]], Route | None] = {}
        self._prefix = f"{provider_suffix}/" if provider_suffix else None

    def _route(self, targets: Sequence[Target], label: str, name: str) -> Route:
        strategy, plan, fallbacks = self._policies.for_model(name)
        cls = ROUTES[strategy]
        if cls is CostRoute:
            return CostRoute(
                targets, label, self._pricing, name=name, plan=plan, fallbacks=fallbacks
            )
        return cls(targets, label, name=name, plan=plan, fallbacks=fallbacks)

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
        route = self._route(targets, label, name)
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[name] = route
        return route

    def narrowed(self, name: str, providers: frozenset[str]) -> Route | None:
        """The route of `name` over only `providers` (a routing rule's), with its strategy
        and policies; None when none of them serves it. Built once per name and set, then
        cached (bounded)."""
        key = (name, providers)
        if key in self._narrowed:
            return self._narrowed[key]
        route = self.resolve(name)
        narrowed = None
        if route is not None:
            targets = [t for t in route.targets if t.provider.name in providers]
            if len(targets) == len(route.targets):
                narrowed = route
            elif targets:
                narrowed = self._route(targets, route.label, name)
        if len(self._narrowed) >= self._CACHE_MAX:
            self._narrowed.clear()
        self._narrowed[key] = narrowed
        return narrowed


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
