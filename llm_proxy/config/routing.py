"""`routing:` — fallbacks to other models, retry policies, strategies and rules — read into
:class:`llm_proxy.config.model.Routing` (`parse_routing`, one field at a time, every problem
named), checked against the providers and keys of the whole config (`routing_issues`, on the
final Config in both modes), and written back as plain data (`routing_data`: the admin API,
the UI, exports).

```yaml
routing:
  fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}   # after the model's own providers fail
  context_window_fallbacks: {gpt-4o-mini: [gpt-4.1]}
  content_policy_fallbacks: {gpt-4o: [claude-sonnet]}
  retry: {attempts: 3, on: [connect, timeout, "429", 5xx], backoff_ms: 100, max_backoff_ms: 2000}
  deadline_secs: 60
  strategy: weighted                 # or {default: weighted, gpt-4o: latency}
  models:                            # per model or pattern, over the defaults above
    gpt-4o: {strategy: latency, retry: {attempts: 5}, deadline_secs: 30, context_window: 128000}
  rules:                             # first match wins
    - name: eu
      match: {key: [eu-*], tags: [batch], header: {x-region: eu}, model: [gpt-*]}
      providers: [azure-eu]          # and/or model: NAME
```
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, cast

import orjson

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Issue, Locate, Path
from llm_proxy.config.model import (
    NO_ROUTING,
    RETRY_CLASSES,
    STRATEGIES,
    Chains,
    Config,
    FallbackReason,
    ModelRouting,
    RetryPolicy,
    Routing,
    RoutingRule,
    RuleMatch,
    Strategy,
)
from llm_proxy.config.patterns import NameMatcher, compile_pattern

CHAIN_KEYS: Final = {
    "fallbacks": "any",
    "context_window_fallbacks": "context_window",
    "content_policy_fallbacks": "content_policy",
}
ROUTING_KEYS: Final = frozenset(
    {*CHAIN_KEYS, "retry", "deadline_secs", "strategy", "models", "rules"}
)
RETRY_KEYS: Final = frozenset({"attempts", "on", "backoff_ms", "max_backoff_ms"})
MODEL_KEYS: Final = frozenset({"strategy", "retry", "deadline_secs", "context_window"})
RULE_KEYS: Final = frozenset({"name", "match", "providers", "model"})
MATCH_KEYS: Final = frozenset({"tags", "key", "header", "model", "key_metadata"})
MAX_CHAIN: Final = 16  # models in one fallback chain
MAX_RULES: Final = 256
_CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"}
)
# `*` alone is the defaults (routing.retry, deadline_secs, strategy): the database keeps them
# in routing_settings' row `model = '*'`, so no models entry may take that name.
EVERY_MODEL: Final = "*"
_EVERY_MODEL_HINT: Final = (
    "'*' is every model: give its settings as routing.retry, deadline_secs and strategy"
)
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")


def parse_routing(check: Checker, raw: Any) -> Routing:
    """`routing:` into a Routing (NO_ROUTING when absent)."""
    if raw is None:
        return NO_ROUTING
    top = check.mapping(raw, ("routing",), ROUTING_KEYS)
    if top is None:
        return NO_ROUTING
    chains = {key: _chains(check, top.get(key), ("routing", key)) for key in CHAIN_KEYS}
    strategies = _strategies(check, top.get("strategy"))
    default = ModelRouting(
        strategy=strategies.pop("default", "weighted"),
        retry=_retry(check, top.get("retry"), ("routing", "retry"), RetryPolicy()),
        deadline_secs=_deadline(check, top.get("deadline_secs"), ("routing", "deadline_secs")),
    )
    models = _models(check, top.get("models"), default, strategies)
    return Routing(
        fallbacks=chains["fallbacks"],
        context_window_fallbacks=chains["context_window_fallbacks"],
        content_policy_fallbacks=chains["content_policy_fallbacks"],
        default=default,
        models=models,
        rules=_rules(check, top.get("rules")),
    )


def _chains(check: Checker, raw: Any, path: Path) -> Chains:
    if raw is None:
        return ()
    mapping = check.mapping(raw, path, None)
    if mapping is None:
        return ()
    out = []
    for model, chain in mapping.items():
        where = (*path, str(model))
        _pattern(check, str(model), where)
        names = check.sequence(chain, where)
        if not names:
            check.fail(where, "must list at least one model (remove the entry for none)")
        if len(names) > MAX_CHAIN:
            check.fail(where, f"lists {len(names)} models; at most {MAX_CHAIN}")
        models = []
        for i, name in enumerate(names):
            text = check.string(name, (*where, i))
            if not text:
                continue
            if _is_pattern(text):
                check.fail((*where, i), f"must be a model name, not a pattern: {text!r}")
            elif text == model:
                check.fail((*where, i), f"falls back to itself ({text!r})")
            elif text in models:
                check.fail((*where, i), f"names {text!r} twice")
            else:
                models.append(text)
        out.append((str(model), tuple(models)))
    return tuple(out)


def _pattern(check: Checker, text: str, path: Path) -> re.Pattern[str] | None:
    try:
        return compile_pattern(text)
    except re.error as exc:
        check.fail(path, f"invalid regular expression: {exc}")
        return None


def _is_pattern(text: str) -> bool:
    """Is `text` a pattern (a regex that does not compile too), not a model name?"""
    try:
        return compile_pattern(text) is not None
    except re.error:
        return True


def _retry(check: Checker, raw: Any, path: Path, base: RetryPolicy) -> RetryPolicy:
    """A retry policy; the fields it leaves out are `base`'s."""
    if raw is None:
        return base
    fields = check.mapping(raw, path, RETRY_KEYS)
    if fields is None:
        return base
    attempts = base.attempts
    if fields.get("attempts") is not None:
        attempts = check.positive_int(fields["attempts"], (*path, "attempts"))
        if attempts > 100:
            check.fail((*path, "attempts"), f"must be at most 100, got {attempts}")
    on = base.on
    if fields.get("on") is not None:
        on = tuple(sorted(set(_retry_on(check, fields["on"], (*path, "on")))))
    backoff = base.backoff_ms
    if fields.get("backoff_ms") is not None:
        backoff = check.non_negative_number(fields["backoff_ms"], (*path, "backoff_ms"))
    cap = base.max_backoff_ms
    if fields.get("max_backoff_ms") is not None:
        cap = check.non_negative_number(fields["max_backoff_ms"], (*path, "max_backoff_ms"))
    if cap < backoff:
        check.fail(
            (*path, "max_backoff_ms"),
            f"({cap:g}) must be at least backoff_ms ({backoff:g})",
        )
    return RetryPolicy(attempts, on, backoff, cap)


def _retry_on(check: Checker, raw: Any, path: Path) -> Iterator[str]:
    for i, item in enumerate(check.sequence(raw, path)):
        text = str(item).strip().lower() if isinstance(item, str | int) else None
        if text is None or isinstance(item, bool):
            check.fail((*path, i), f"must be an outcome or a status, got {item!r}")
        elif text in RETRY_CLASSES or (text.isdigit() and 400 <= int(text) <= 599):
            yield text
        else:
            check.fail(
                (*path, i),
                f"unknown outcome {item!r} (one of {', '.join(sorted(RETRY_CLASSES))}, "
                "or a status 400-599)",
            )


def _deadline(check: Checker, raw: Any, path: Path) -> float | None:
    return None if raw is None else check.positive_number(raw, path)


def _strategy(check: Checker, raw: Any, path: Path) -> Strategy:
    if raw not in STRATEGIES:
        check.fail(path, f"unknown strategy {raw!r} (one of {', '.join(STRATEGIES)})")
        return "weighted"
    return cast(Strategy, raw)


def _strategies(check: Checker, raw: Any) -> dict[str, Strategy]:
    """`strategy: NAME` (the default) or `{default: NAME, model: NAME, ...}`."""
    path: Path = ("routing", "strategy")
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {"default": _strategy(check, raw, path)}
    mapping = check.mapping(raw, path, None)
    if mapping is None:
        return {}
    out = {}
    for model, value in mapping.items():
        if model == EVERY_MODEL:
            check.fail((*path, model), _EVERY_MODEL_HINT)
        if model != "default":
            _pattern(check, str(model), (*path, str(model)))
        out[str(model)] = _strategy(check, value, (*path, str(model)))
    return out


def _models(
    check: Checker, raw: Any, default: ModelRouting, strategies: Mapping[str, Strategy]
) -> tuple[tuple[str, ModelRouting], ...]:
    """`models: {name: {...}}`, each over the defaults; `strategy: {name: ...}` entries too."""
    path: Path = ("routing", "models")
    entries: dict[str, ModelRouting] = {}
    mapping = check.mapping(raw, path, None) if raw is not None else {}
    for model, value in (mapping or {}).items():
        where = (*path, str(model))
        if model == EVERY_MODEL:
            check.fail(where, _EVERY_MODEL_HINT)
        _pattern(check, str(model), where)
        fields = check.mapping(value, where, MODEL_KEYS)
        if fields is None:
            continue
        window = fields.get("context_window")
        entries[str(model)] = ModelRouting(
            strategy=(
                _strategy(check, fields["strategy"], (*where, "strategy"))
                if fields.get("strategy") is not None
                else strategies.get(str(model), default.strategy)
            ),
            retry=_retry(check, fields.get("retry"), (*where, "retry"), default.retry),
            deadline_secs=(
                _deadline(check, fields["deadline_secs"], (*where, "deadline_secs"))
                if fields.get("deadline_secs") is not None
                else default.deadline_secs
            ),
            context_window=(
                check.positive_int(window, (*where, "context_window"))
                if window is not None
                else None
            ),
        )
    for model, strategy in strategies.items():
        if model not in entries:
            entries[model] = ModelRouting(strategy, default.retry, default.deadline_secs)
        elif mapping and model in mapping and mapping[model].get("strategy") is not None:
            check.fail(
                ("routing", "strategy", model),
                "is also set in routing.models; give it in one place",
            )
    return tuple(entries.items())


def _rules(check: Checker, raw: Any) -> tuple[RoutingRule, ...]:
    path: Path = ("routing", "rules")
    if raw is None:
        return ()
    items = check.sequence(raw, path)
    if len(items) > MAX_RULES:
        check.fail(path, f"has {len(items)} rules; at most {MAX_RULES}")
    out = []
    names: set[str] = set()
    for i, item in enumerate(items):
        where = (*path, i)
        fields = check.mapping(item, where, RULE_KEYS)
        if fields is None:
            continue
        name = f"rules[{i}]"
        if fields.get("name") is not None:
            name = check.name(fields["name"], (*where, "name"))
        if name in names:
            check.fail((*where, "name"), f"duplicate rule name {name!r}")
        names.add(name)
        if fields.get("match") is None:
            check.fail((*where, "match"), "is required (`match: {}` matches every request)")
        match = _match(check, fields.get("match") or {}, (*where, "match"))
        providers = None
        if fields.get("providers") is not None:
            listed = check.sequence(fields["providers"], (*where, "providers"))
            if not listed:
                check.fail((*where, "providers"), "must name at least one provider")
            providers = tuple(check.name(p, (*where, "providers", j)) for j, p in enumerate(listed))
        model = None
        if fields.get("model") is not None:
            model = check.string(fields["model"], (*where, "model"))
            if model and _is_pattern(model):
                check.fail((*where, "model"), f"must be a model name, not a pattern: {model!r}")
        if providers is None and model is None:
            check.fail(where, "must give `providers` and/or `model`: where matching requests go")
        out.append(RoutingRule(name, match, providers, model))
    return tuple(out)


def _match(check: Checker, raw: Any, path: Path) -> RuleMatch:
    fields = check.mapping(raw, path, MATCH_KEYS)
    if fields is None:
        return RuleMatch()
    tags = tuple(sorted(set(_strings(check, fields.get("tags"), (*path, "tags")))))
    keys = tuple(_strings(check, fields.get("key"), (*path, "key"), patterns=True))
    models = tuple(_strings(check, fields.get("model"), (*path, "model"), patterns=True))
    headers = []
    if fields.get("header") is not None:
        mapping = check.mapping(fields["header"], (*path, "header"), None)
        for name, value in (mapping or {}).items():
            where = (*path, "header", str(name))
            if not _HEADER_NAME.match(str(name)):
                check.fail(where, "must be an HTTP header name")
            if str(name).lower() in _CREDENTIAL_HEADERS:
                check.fail(where, "must not be a credential header (a rule would echo it)")
            values = tuple(sorted(set(_strings(check, value, where))))
            if not values:
                check.fail(where, "must give at least one value")
            headers.append((str(name).lower(), values))
    metadata = []
    if fields.get("key_metadata") is not None:
        mapping = check.mapping(fields["key_metadata"], (*path, "key_metadata"), None)
        for name, value in (mapping or {}).items():
            where = (*path, "key_metadata", str(name))
            items = value if isinstance(value, list | tuple) else [value]
            written = []
            for i, item in enumerate(items):
                if item is None or isinstance(item, dict | list | tuple):
                    check.fail(
                        (*where, i) if items is value else where,
                        "must be a string, number or boolean (or a list of them)",
                    )
                    continue
                written.append(orjson.dumps(item).decode())
            if not items:
                check.fail(where, "must give at least one value")
            metadata.append((str(name), tuple(sorted(set(written)))))
    return RuleMatch(tags, keys, tuple(headers), models, tuple(metadata))


def _strings(check: Checker, raw: Any, path: Path, *, patterns: bool = False) -> Iterator[str]:
    """A string or a list of strings (none when absent)."""
    if raw is None:
        return
    items = [raw] if isinstance(raw, str) else check.sequence(raw, path)
    for i, item in enumerate(items):
        where = path if isinstance(raw, str) else (*path, i)
        text = check.string(item, where)
        if text and patterns:
            _pattern(check, text, where)
        if text:
            yield text


# --- across the whole config ---


def routing_issues(
    config: Config, locate: Locate | None = None, where: str | None = None
) -> list[Issue]:
    """The checks that need the providers and keys: every model a chain or rule names is
    served by some provider; rules name providers that exist and that serve something they
    could route; no chain loops back on itself; and no chain takes a key beyond its
    `allowed_models`. Each issue is placed by `locate` (a YAML file's lines), else `where`."""
    routing = config.routing
    if not routing.configured:
        return []
    issues: list[Issue] = []

    def fail(path: Path, message: str) -> None:
        issues.append(Issue(path, message, locate(path) if locate is not None else where))

    served = _Served(config)
    for key, reason in CHAIN_KEYS.items():
        chains = routing.chains(cast(FallbackReason, reason))
        for model, chain in chains:
            for i, name in enumerate(chain):
                if not served(name):
                    fail(("routing", key, model, i), f"names {name!r}, which no provider serves")
        cycle = _cycle(chains)
        if cycle is not None:
            fail(("routing", key, cycle[0]), f"loops back: {' -> '.join(cycle)}")
    providers = {p.name for p in config.providers}
    for i, rule in enumerate(routing.rules):
        for j, name in enumerate(rule.providers or ()):
            if name not in providers:
                fail(("routing", "rules", i, "providers", j), f"names no provider: {name!r}")
        if rule.model is not None and not served(rule.model):
            fail(("routing", "rules", i, "model"), f"names {rule.model!r}, no provider serves it")
    for k in config.master_keys:
        if k.allowed_models is None:
            continue
        allowed = NameMatcher(k.allowed_models)
        for key, reason in CHAIN_KEYS.items():
            for model, chain in routing.chains(cast(FallbackReason, reason)):
                if not _may_reach(allowed, model, k.allowed_models):
                    continue
                for i, name in enumerate(chain):
                    if name not in allowed:
                        fail(
                            ("routing", key, model, i),
                            f"takes key {k.name!r} to {name!r}, beyond its allowed_models: "
                            f"allow it there, or give that key's models another chain",
                        )
    return issues


def _may_reach(allowed: NameMatcher, model: str, entries: tuple[str, ...]) -> bool:
    """Can a key with these allowed models ask for a model that `model` (a chain's name or
    pattern) covers?"""
    pattern = compile_pattern(model)
    if pattern is None:
        return model in allowed
    return any(e == model or pattern.fullmatch(e) for e in entries) or "*" in entries


class _Served:
    """Is a model name served by some provider's model_mapping (exact or pattern)?"""

    def __init__(self, config: Config) -> None:
        self._exact = set()
        self._patterns = []
        for provider in config.providers:
            for rule in provider.model_mapping:
                if rule.pattern is None:
                    self._exact.add(rule.key)
                else:
                    self._patterns.append(rule.pattern)
        self._any = not config.providers  # database mode before providers: not judged

    def __call__(self, name: str) -> bool:
        return self._any or name in self._exact or any(p.fullmatch(name) for p in self._patterns)


def _cycle(chains: Chains) -> list[str] | None:
    """A loop through exact-name chains (a -> b -> a), as its path; None when there is none."""
    graph = {model: chain for model, chain in chains if compile_pattern(model) is None}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path, node, nxt][path.index(nxt) if nxt in path else 0 :]
            if nxt not in state:
                found = visit(nxt, [*path, node])
                if found is not None:
                    return found
        state[node] = 2
        return None

    for model in graph:
        if model not in state:
            found = visit(model, [])
            if found is not None:
                return found
    return None


# --- back to plain data ---


def routing_data(routing: Routing) -> dict[str, Any]:
    """`routing` as the YAML section that would give it (every default written out): what
    the admin API answers, the UI shows and exports write."""
    out: dict[str, Any] = {}
    for key, reason in CHAIN_KEYS.items():
        out[key] = {m: list(c) for m, c in routing.chains(cast(FallbackReason, reason))}
    default = routing.default
    out["retry"] = _retry_data(default.retry)
    out["deadline_secs"] = default.deadline_secs
    out["strategy"] = default.strategy
    out["models"] = {
        name: {
            "strategy": m.strategy,
            "retry": _retry_data(m.retry),
            "deadline_secs": m.deadline_secs,
            "context_window": m.context_window,
        }
        for name, m in routing.models
    }
    out["rules"] = [
        {
            "name": r.name,
            "match": _match_data(r.match),
            "providers": list(r.providers) if r.providers is not None else None,
            "model": r.model,
        }
        for r in routing.rules
    ]
    return out


def _retry_data(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "attempts": policy.attempts,
        "on": sorted(policy.on, key=lambda s: (s.isdigit(), s)),
        "backoff_ms": policy.backoff_ms,
        "max_backoff_ms": policy.max_backoff_ms,
    }


def _match_data(match: RuleMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if match.tags:
        out["tags"] = sorted(match.tags)
    if match.keys:
        out["key"] = list(match.keys)
    if match.headers:
        out["header"] = {name: sorted(values) for name, values in match.headers}
    if match.models:
        out["model"] = list(match.models)
    if match.key_metadata:
        out["key_metadata"] = {
            name: [orjson.loads(v) for v in values] for name, values in match.key_metadata
        }
    return out
