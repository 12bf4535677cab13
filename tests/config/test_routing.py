"""`routing:` read from a YAML file: every problem named by its field and line (cycles, unknown
models, chains escaping a key's allowed_models, negative backoffs, unknown strategies, rules
naming unknown providers), and a good section read into the Routing the proxy serves."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import ModelRouting, RetryPolicy, RoutingRule, RuleMatch
from llm_proxy.config.routing import routing_data
from llm_proxy.config.validate import parse_config
from llm_proxy.config.yaml_file import load_config_text

PROVIDERS = """\
providers:
  - name: openai
    api_base: http://127.0.0.1:9/v1
    model_mapping: {gpt-4o: null, gpt-4o-mini: null, "gpt-4.1*": null}
  - name: anthropic
    api_base: http://127.0.0.1:9/v1
    model_mapping: {claude-sonnet: null}
"""
TEAM_KEY = hashlib.sha256(b"sk-team-secret-key").hexdigest()


def load(routing: str, extra: str = "") -> object:
    text = PROVIDERS + extra + "routing:\n" + textwrap.indent(textwrap.dedent(routing), "  ")
    return load_config_text(text, {})


def problems(routing: str, extra: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(routing, extra)
    return [str(issue) for issue in caught.value.issues]


def test_a_full_section_is_read_into_the_routing_served() -> None:
    config = load_config_text(
        PROVIDERS
        + textwrap.dedent(
            """\
            routing:
              fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}
              context_window_fallbacks: {gpt-4o-mini: [gpt-4.1]}
              retry: {attempts: 3, on: [connect, "429"], backoff_ms: 100, max_backoff_ms: 800}
              deadline_secs: 60
              strategy: {default: weighted, claude-sonnet: cost}
              models:
                gpt-4o: {strategy: latency, deadline_secs: 30, context_window: 128000}
              rules:
                - name: eu
                  match: {key: [eu-*], header: {X-Region: eu}}
                  providers: [anthropic]
            """
        ),
        {},
    )
    routing = config.routing
    assert routing.fallbacks == (("gpt-4o", ("gpt-4o-mini", "claude-sonnet")),)
    assert routing.context_window_fallbacks == (("gpt-4o-mini", ("gpt-4.1",)),)
    retry = RetryPolicy(3, ("429", "connect"), 100, 800)
    assert routing.default == ModelRouting("weighted", retry, 60.0)
    assert dict(routing.models) == {
        "gpt-4o": ModelRouting("latency", retry, 30.0, 128000),
        "claude-sonnet": ModelRouting("cost", retry, 60.0),
    }
    match = RuleMatch(keys=("eu-*",), headers=(("x-region", ("eu",)),))
    assert routing.rules == (RoutingRule("eu", match, ("anthropic",)),)
    # Written back as data, it reads into the same Routing.
    again = parse_config({"routing": routing_data(routing)}).routing
    assert again == routing


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        pytest.param(
            "fallbacks: {gpt-4o: [gpt-4o-mini], gpt-4o-mini: [claude-sonnet], "
            "claude-sonnet: [gpt-4o]}\n",
            "routing.fallbacks['gpt-4o'] (line 9): loops back: "
            "gpt-4o -> gpt-4o-mini -> claude-sonnet -> gpt-4o",
            id="cycle",
        ),
        pytest.param(
            "content_policy_fallbacks: {gpt-4o: [gpt-5-turbo]}\n",
            "routing.content_policy_fallbacks['gpt-4o'][0] (line 9): names 'gpt-5-turbo', "
            "which no provider serves",
            id="unknown-model",
        ),
        pytest.param(
            "retry: {backoff_ms: -5}\n",
            "routing.retry.backoff_ms (line 9)",
            id="negative-backoff",
        ),
        pytest.param(
            "models: {gpt-4o: {strategy: fastest}}\n",
            "routing.models['gpt-4o'].strategy (line 9): unknown strategy 'fastest' "
            "(one of weighted, latency, least_busy, cost)",
            id="unknown-strategy",
        ),
        pytest.param(
            "rules: [{name: eu, match: {}, providers: [azure-eu]}]\n",
            "routing.rules[0].providers[0] (line 9): names no provider: 'azure-eu'",
            id="unknown-provider",
        ),
        pytest.param(
            "rules: [{match: {}, model: nowhere}]\n",
            "routing.rules[0].model (line 9): names 'nowhere', no provider serves it",
            id="rule-unknown-model",
        ),
        pytest.param(
            "fallbacks: {gpt-4o: [gpt-4o]}\n",
            "routing.fallbacks['gpt-4o'][0] (line 9): falls back to itself ('gpt-4o')",
            id="itself",
        ),
        pytest.param(
            "models: {'*': {strategy: cost}}\n",
            "routing.models['*'] (line 9): '*' is every model: give its settings as "
            "routing.retry, deadline_secs and strategy",
            id="star-model",
        ),
        pytest.param(
            "fallbacks: {gpt-4o: ['gpt-4o-mini[']}\n",
            "routing.fallbacks['gpt-4o'][0] (line 9): must be a model name, not a pattern",
            id="broken-regex-in-chain",
        ),
        pytest.param(
            "retry: {attempts: 3, on: [sometimes]}\n",
            "routing.retry.on[0] (line 9): unknown outcome 'sometimes'",
            id="unknown-outcome",
        ),
    ],
)
def test_a_bad_section_names_the_field_and_line(routing: str, expected: str) -> None:
    found = problems(routing)
    assert any(p.startswith(expected) for p in found), found


def test_a_chain_escaping_a_keys_allowed_models_names_the_key() -> None:
    keys = textwrap.dedent(
        f"""\
        master_keys:
          - name: team
            key_sha256: {TEAM_KEY}
            allowed_models: [gpt-4o, gpt-4o-mini]
        """
    )
    found = problems("fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}\n", keys)
    assert found == [
        "routing.fallbacks['gpt-4o'][1] (line 13): takes key 'team' to 'claude-sonnet', beyond "
        "its allowed_models: allow it there, or give that key's models another chain"
    ]
    # A chain of models the key may use, or of a model it cannot ask for, is fine.
    load("fallbacks: {gpt-4o: [gpt-4o-mini], claude-sonnet: [gpt-4o]}\n", keys)


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        """\
        retry: {max_backoff_ms: -1}
        strategy: fastest
        rules: [{match: {}}]
        """
    )
    assert {p.split(" ")[0] for p in found} == {
        "routing.retry.max_backoff_ms",  # not a number >= 0, and below backoff_ms
        "routing.strategy",
        "routing.rules[0]",
    }, found
