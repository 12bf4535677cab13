"""`provider_type: anthropic` (an upstream speaking Anthropic's Messages API) as configured:
its defaults (api_base, `auth: x-api-key`, anthropic_version), its own settings
(`anthropic_version`, `default_max_tokens`, `max_output_tokens`), and validation errors that
name the field, in YAML and as plain data."""

from __future__ import annotations

from typing import Any

import pytest

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import (
    ANTHROPIC_API_BASE,
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    Provider,
    default_auth,
)
from llm_proxy.config.yaml_file import load_config_text
from tests.helpers import make_config, provider

ANTHROPIC_KEY = "sk-ant-api03-0123456789abcdef"


def anthropic(**fields: Any) -> Provider:
    """The one provider of a config made of `fields` (an anthropic one unless they say)."""
    entry = {"name": "claude", "provider_type": "anthropic", "api_key": ANTHROPIC_KEY, **fields}
    (p,) = make_config({k: v for k, v in entry.items() if v is not None}).providers
    return p


def problems(*entries: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        make_config(*entries)
    return str(exc.value)


def test_an_anthropic_provider_from_yaml() -> None:
    text = """
require_auth: false
providers:
  - name: claude
    provider_type: anthropic
    api_key: ${ANTHROPIC_API_KEY}
    anthropic_version: 2023-06-01
    default_max_tokens: 8192
    max_output_tokens: 16000
    model_mapping: {claude-sonnet: claude-sonnet-4-5}
"""
    config = load_config_text(text, {"ANTHROPIC_API_KEY": ANTHROPIC_KEY})
    (p,) = config.providers
    assert (p.provider_type, p.auth, p.api_key) == ("anthropic", "x-api-key", ANTHROPIC_KEY)
    assert p.api_base == ANTHROPIC_API_BASE  # omitted: Anthropic's own
    # An unquoted YAML date is read as the version it spells.
    assert p.anthropic_version == "2023-06-01"
    assert (p.default_max_tokens, p.max_output_tokens) == (8192, 16000)
    assert ANTHROPIC_KEY not in repr(config)


def test_defaults_by_type() -> None:
    p = anthropic()
    assert (p.auth, p.anthropic_version) == ("x-api-key", DEFAULT_ANTHROPIC_VERSION)
    assert (p.default_max_tokens, p.max_output_tokens) == (DEFAULT_MAX_TOKENS, None)
    assert DEFAULT_ANTHROPIC_VERSION == "2023-06-01" and DEFAULT_MAX_TOKENS == 4096
    # openai and azure keep theirs: bearer, as before anthropic existed.
    (openai,) = make_config(provider("o", "https://o.example/v1", {"m": None})).providers
    azure_entry = provider(
        "a",
        "https://r.openai.azure.com",
        {"m": None},
        provider_type="azure",
        query_params={"api-version": "2024-10-21"},
    )
    (azure,) = make_config(azure_entry).providers
    assert (openai.auth, azure.auth) == ("bearer", "bearer")
    assert [default_auth(t) for t in ("openai", "azure", "anthropic")] == [
        "bearer",
        "bearer",
        "x-api-key",
    ]
    # The settings every type takes.
    (capped,) = make_config(
        provider("o", "https://o.example/v1", {"m": None}, max_output_tokens=100)
    ).providers
    assert (capped.max_output_tokens, capped.default_max_tokens) == (100, DEFAULT_MAX_TOKENS)


@pytest.mark.parametrize("auth", ["bearer", "api-key", "none"])
def test_any_auth_may_be_chosen(auth: str) -> None:
    p = anthropic(auth=auth, api_key=None if auth == "none" else ANTHROPIC_KEY)
    assert p.auth == auth
    # ...and x-api-key for the other types (gateways that take Anthropic's header).
    (o,) = make_config(
        provider("o", "https://o.example/v1", {"m": None}, auth="x-api-key")
    ).providers
    assert o.auth == "x-api-key"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com"),
        ("https://api.anthropic.com/", "https://api.anthropic.com"),
        # The OpenAI habit: the trailing /v1 is dropped (the proxy appends /v1/messages).
        ("https://api.anthropic.com/v1", "https://api.anthropic.com"),
        ("https://api.anthropic.com/v1/", "https://api.anthropic.com"),
        ("https://gw.example/anthropic/v1", "https://gw.example/anthropic"),
        ("https://gw.example/anthropic/v1?team=a", "https://gw.example/anthropic?team=a"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://gw.example/v10", "https://gw.example/v10"),
    ],
)
def test_the_api_base_is_the_sdk_base(given: str, kept: str) -> None:
    assert anthropic(api_base=given).api_base == kept


def test_a_trailing_v1_is_kept_for_the_other_types() -> None:
    (p,) = make_config(provider("o", "https://o.example/v1", {"m": None})).providers
    assert p.api_base == "https://o.example/v1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"api_base": "https://api.anthropic.com/v1/messages"},
            "providers[0].api_base: with provider_type anthropic is the base URL "
            "(https://api.anthropic.com): the proxy appends /v1/messages itself",
        ),
        ({"api_base": "api.anthropic.com"}, "providers[0].api_base: must start with http://"),
        ({"anthropic_version": "2023 06 01"}, "providers[0].anthropic_version: must be printable"),
        ({"anthropic_version": ["2023-06-01"]}, "providers[0].anthropic_version: must be a string"),
        ({"default_max_tokens": 0}, "providers[0].default_max_tokens: must be a positive integer"),
        ({"default_max_tokens": "many"}, "providers[0].default_max_tokens: must be a positive"),
        ({"default_max_tokens": 2.5}, "providers[0].default_max_tokens: must be a positive"),
        ({"max_output_tokens": -1}, "providers[0].max_output_tokens: must be a positive integer"),
        ({"max_output_tokens": True}, "providers[0].max_output_tokens: must be a positive"),
        ({"max_output_tokens": 2**31}, "providers[0].max_output_tokens: must be at most"),
        ({"auth": "basic"}, "providers[0].auth: must be one of bearer, api-key, x-api-key, none"),
        (
            {"auth": "none"},
            "providers[0].api_key: is never sent with auth: none: remove it, or use auth: "
            "bearer, api-key or x-api-key",
        ),
        (
            {"headers": {"X-Api-Key": "k"}},
            "providers[0].headers['X-Api-Key']: carries the provider's key: set api_key and "
            "auth: bearer | api-key | x-api-key | none",
        ),
        (
            {"headers": {"anthropic-version": "2024-01-01"}},
            "providers[0].headers['anthropic-version']: is sent from anthropic_version: "
            "set that instead",
        ),
        ({"provider_type": "claude"}, "providers[0].provider_type: must be one of openai, azure"),
        ({"provdier_type": "anthropic"}, "providers[0].provdier_type: unknown key"),
    ],
)
def test_anthropic_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    entry = {"name": "claude", "provider_type": "anthropic", "api_key": ANTHROPIC_KEY, **fields}
    assert message in problems(entry)


def test_anthropic_version_is_for_anthropic_only() -> None:
    text = problems(provider("o", "https://o.example/v1", {"m": None}, anthropic_version="x"))
    assert "providers[0].anthropic_version: is only for provider_type anthropic (this one is " in (
        text
    )
    # Shown where it came from in a file.
    yaml_text = """
providers:
  - name: o
    api_base: https://o.example/v1
    anthropic_version: "2023-06-01"
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(yaml_text, {})
    assert str(exc.value).startswith("providers[0].anthropic_version (line 5): is only for")


def test_api_base_stays_required_for_the_other_types() -> None:
    text = problems({"name": "o"}, {"name": "a", "provider_type": "azure"})
    assert "providers[0].api_base: is required" in text
    assert "providers[1].api_base: is required" in text
    assert "api_base" not in problems({"name": "c", "provider_type": "anthropic", "weight": 0})


def test_headers_beside_an_anthropic_provider() -> None:
    # Anthropic's beta flags: a header like any other, shown (it carries no secret).
    p = anthropic(headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert p.headers == (("anthropic-beta", "prompt-caching-2024-07-31"),)
    # x-api-key is the key's header only when auth puts the key there: a gateway in front of
    # an OpenAI upstream may take its own token in it.
    (gateway,) = make_config(
        provider("o", "https://o.example/v1", {"m": None}, headers={"x-api-key": "gw-token"})
    ).providers
    assert gateway.headers == (("x-api-key", "gw-token"),)
    assert anthropic(auth="bearer", headers={"x-api-key": "gw-token"}).auth == "bearer"


def test_a_cap_below_the_default_is_allowed() -> None:
    # The cap wins over the default (documented): no error, both kept as given.
    p = anthropic(default_max_tokens=8192, max_output_tokens=1024)
    assert (p.default_max_tokens, p.max_output_tokens) == (8192, 1024)
