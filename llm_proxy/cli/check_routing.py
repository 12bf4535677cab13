"""check-config's view of `routing:`: a short summary (chains, strategies, retries, rules) and
the warnings a valid section can still deserve — a choice with nothing to choose between, a
`cost` strategy with no price to compare, a rule whose providers serve none of its models.

Errors are not found here: `config.routing.routing_issues` refused those before. Pure: every
function takes the final Config and returns lines; the caller prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from llm_proxy.config.model import (
    Config,
    FallbackReason,
    ModelRouting,
    Provider,
    RetryPolicy,
    Routing,
    RuleMatch,
    price_for,
)
from llm_proxy.config.patterns import compile_pattern

CHAIN_TITLES: Final[tuple[tuple[FallbackReason, str], ...]] = (
    ("any", "fallbacks"),
    ("context_window", "context window fallbacks"),
    ("content_policy", "content policy fallbacks"),
)
CHOOSING: Final = frozenset({"latency", "least_busy", "cost"})  # strategies that pick by data


def routing_summary(config: Config) -> list[str]:
    """The `routing:` section in a few lines (none when there is no section), with the notes
    that are worth knowing but not warnings."""
    routing = config.routing
    if not routing.configured:
        return []
    lines = ["routing:"]
    for reason, title in CHAIN_TITLES:
        for model, chain in routing.chains(reason):
            lines.append(f"  {title}: {' -> '.join((model, *chain))}")
    default = routing.default
    lines.append(f"  default: strategy {default.strategy}; {_policy(default)}")
    for name, settings in routing.models:
        lines.append(f"  {name}: {_differences(settings, default)}")
    if routing.rules:
        names = ", ".join(rule.name for rule in routing.rules)
        lines.append(f"  rules ({len(routing.rules)}, first match wins): {names}")
    lines += [f"  note: {text}" for text in _notes(routing)]
    return lines


def _policy(settings: ModelRouting) -> str:
    parts = [_retry(settings.retry)]
    if settings.deadline_secs is not None:
        parts.append(f"deadline {settings.deadline_secs:g} s")
    if settings.context_window is not None:
        parts.append(f"context window {settings.context_window} tokens")
    return "; ".join(parts)


def _differences(settings: ModelRouting, default: ModelRouting) -> str:
    """A model's settings where they differ from the defaults (the rest is the default's)."""
    parts = []
    if settings.strategy != default.strategy:
        parts.append(f"strategy {settings.strategy}")
    if settings.retry != default.retry:
        parts.append(_retry(settings.retry))
    if settings.deadline_secs != default.deadline_secs:
        deadline = settings.deadline_secs
        parts.append("no deadline" if deadline is None else f"deadline {deadline:g} s")
    if settings.context_window is not None:
        parts.append(f"context window {settings.context_window} tokens")
    return "; ".join(parts) or "as the default"


def _retry(policy: RetryPolicy) -> str:
    attempts = "max_attempts" if policy.attempts is None else str(policy.attempts)
    on = ", ".join(sorted(policy.on, key=lambda s: (s.isdigit(), s)))
    return (
        f"{attempts} attempts on {on}; backoff {policy.backoff_ms:g}-{policy.max_backoff_ms:g} ms"
    )


def _notes(routing: Routing) -> Iterable[str]:
    for model, _ in routing.context_window_fallbacks:
        if settings_for(routing, model).context_window is None:
            yield (
                f"context_window_fallbacks for {model}: no context_window set in routing.models, "
                "so only the upstream's error starts the chain (one failed call first)"
            )


def settings_for(routing: Routing, model: str) -> ModelRouting:
    """The settings a model gets: its exact entry, else the first pattern that matches it
    (an entry keyed by the same pattern text counts as exact), else the defaults."""
    for name, settings in routing.models:
        if name == model:
            return settings
    for name, settings in routing.models:
        pattern = compile_pattern(name)
        if pattern is not None and pattern.fullmatch(model):
            return settings
    return routing.default


def serves(provider: Provider, model: str) -> bool:
    """Does `provider` serve the exact name `model` (by name or by one of its patterns)?"""
    return any(
        rule.key == model if rule.pattern is None else bool(rule.pattern.fullmatch(model))
        for rule in provider.model_mapping
    )


def routing_warnings(config: Config) -> list[str]:
    """What a valid `routing:` section does that is probably not meant (never an error)."""
    routing = config.routing
    if not routing.configured or not config.providers:
        return []  # database mode without --connect: the providers are not known
    return [*_strategy_warnings(config), *_rule_warnings(config)]


def _models(config: Config) -> list[str]:
    """The exact model names the config knows: served by a provider or named by routing."""
    names: dict[str, None] = {}
    for provider in config.providers:
        for rule in provider.model_mapping:
            if rule.pattern is None:
                names[rule.key] = None
    routing = config.routing
    for name, _ in routing.models:
        if compile_pattern(name) is None:
            names[name] = None
    for reason, _title in CHAIN_TITLES:
        for model, chain in routing.chains(reason):
            for name in (model, *chain):
                if compile_pattern(name) is None:
                    names[name] = None
    return list(names)


def _strategy_warnings(config: Config) -> Iterable[str]:
    routing = config.routing
    single: list[str] = []
    unpriced: list[str] = []
    for model in _models(config):
        strategy = settings_for(routing, model).strategy
        if strategy not in CHOOSING:
            continue
        providers = [p for p in config.providers if serves(p, model)]
        if len(providers) == 1:
            single.append(f"{model} ({strategy}: only {providers[0].name})")
        if (
            strategy == "cost"
            and providers
            and not any(_priced(config, p, model) for p in providers)
        ):
            unpriced.append(model)
    if single:
        yield (
            f"routing: a choosing strategy for a model with one provider, nothing to choose "
            f"between: {', '.join(single)}"
        )
    if unpriced:
        yield (
            f"routing: strategy cost with no price to compare (pricing, or a provider's "
            f"pricing) for {', '.join(unpriced)}: every provider looks free, cost cannot choose"
        )


def _priced(config: Config, provider: Provider, model: str) -> bool:
    return price_for(provider.pricing, model) is not None or (
        price_for(config.pricing, model) is not None
    )


def _rule_warnings(config: Config) -> Iterable[str]:
    """A rule that narrows to providers serving none of the models it can send there."""
    known = {p.name: p for p in config.providers}
    for i, rule in enumerate(config.routing.rules):
        if rule.providers is None:
            continue
        providers = [known[name] for name in rule.providers if name in known]
        if not providers:
            continue  # names no provider: an error routing_issues reported
        if rule.model is not None:
            wanted: tuple[str, ...] = (rule.model,)
        elif rule.match.models:
            wanted = rule.match.models
        else:
            continue  # any model: what it routes is the request's business
        if not any(_may_serve(p, model) for p in providers for model in wanted):
            yield (
                f"routing.rules[{i}] ({rule.name}): providers {', '.join(rule.providers)} serve "
                f"none of {_described(rule.match, rule.model)}: every request it matches "
                "would be refused (404)"
            )


def _may_serve(provider: Provider, model: str) -> bool:
    """Could `provider` serve a request for `model` (an exact name or a pattern)? For a
    pattern, a provider with any pattern of its own may: not judged, never warned about."""
    pattern = compile_pattern(model)
    if pattern is None:
        return serves(provider, model)
    return any(
        rule.pattern is not None or bool(pattern.fullmatch(rule.key))
        for rule in provider.model_mapping
    )


def _described(match: RuleMatch, model: str | None) -> str:
    if model is not None:
        return f"the model it sends ({model})"
    return "the models it matches (" + ", ".join(match.models) + ")"
