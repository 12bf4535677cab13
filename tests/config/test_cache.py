"""`cache:` read from a YAML file: a full section read into the settings the proxy serves
(sizes with units, per-model and per-endpoint overrides), an absent or disabled one off, and
every problem named by its field and line."""

from __future__ import annotations

import textwrap

import pytest

from llm_proxy.config.cache import parse_size
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import CacheOverride, CacheSettings
from llm_proxy.config.yaml_file import load_config_text

PROVIDERS = """\
providers:
  - name: openai
    api_base: http://127.0.0.1:9/v1
    model_mapping: {gpt-4o: null}
"""


def load(cache: str, extra: str = "") -> CacheSettings:
    text = PROVIDERS + extra + "cache:\n" + textwrap.indent(textwrap.dedent(cache), "  ")
    return load_config_text(text, {}).cache


def problems(cache: str, extra: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(cache, extra)
    return [str(issue) for issue in caught.value.issues]


def test_a_full_section_is_read() -> None:
    settings = load(
        """\
        backend: redis
        url: redis://127.0.0.1:6379/2
        max_entry_bytes: 512KiB
        ttl_secs: 600
        namespace: global
        models: ["gpt-*", text-embedding-3-small]
        endpoints: [chat/completions, /embeddings]
        max_temperature: 0.3
        allow_n: true
        charge_hits: true
        coalesce_wait_secs: 5
        per_model:
          "text-embedding-*": {ttl_secs: 86400}
          gpt-4o-audio: false
        per_endpoint:
          embeddings: {ttl_secs: 604800}
        """
    )
    assert settings == CacheSettings(
        enabled=True,
        backend="redis",
        url="redis://127.0.0.1:6379/2",
        max_entry_bytes=512 * 1024,
        ttl_secs=600,
        namespace="global",
        models=("gpt-*", "text-embedding-3-small"),
        endpoints=("chat/completions", "embeddings"),
        max_temperature=0.3,
        allow_n=True,
        charge_hits=True,
        coalesce_wait_secs=5.0,
        per_model=(
            ("text-embedding-*", CacheOverride(ttl_secs=86400)),
            ("gpt-4o-audio", CacheOverride(enabled=False)),
        ),
        per_endpoint=(("embeddings", CacheOverride(ttl_secs=604800)),),
    )
    assert "6379" not in repr(settings)  # (a URL may carry a password)


def test_absent_empty_or_disabled_is_off_and_an_empty_section_is_on() -> None:
    assert not load_config_text(PROVIDERS, {}).cache.enabled
    assert load("{}\n").enabled
    assert load("{}\n").max_bytes == 256 << 20
    assert not load("enabled: false\n").enabled


@pytest.mark.parametrize(
    ("text", "size"),
    [(1024, 1024), ("256MB", 256 << 20), ("1MiB", 1 << 20), ("512k", 512 << 10), ("2 GB", 2 << 30)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_every_problem_is_named_with_its_line() -> None:
    found = problems(
        """\
        backend: disk
        max_bytes: lots
        max_entry_bytes: 2MB
        namespace: org
        ttl_secs: 0
        models: ["gpt-(4"]
        endpoints: [audio/speech]
        max_temperature: -1
        per_model: {"o1-*": {ttl_secs: 5, cache: no}}
        per_endpoint: {images/generations: {enabled: false}}
        colour: red
        """
    )
    text = "\n".join(found)
    for expected in (
        "cache.backend",
        "cache.max_bytes",
        "cache.namespace",
        "cache.ttl_secs",
        "cache.models[0]",
        "cache.endpoints[0]",
        "cache.max_temperature",
        "cache.per_model['o1-*'].cache",
        "cache.per_endpoint['images/generations']",
        "cache.colour",
    ):
        assert expected in text, (expected, text)
    assert all("line" in issue for issue in found), found
    # An entry larger than the whole cache, and Redis with nowhere to find it.
    assert any("max_entry_bytes" in p for p in problems("max_bytes: 1MB\nmax_entry_bytes: 2MB\n"))
    assert any("neither" in p for p in problems("backend: redis\n"))
    assert load("backend: redis\n", "rate_limit_backend: redis://127.0.0.1:6379/0\n").url is None
    assert any("cache.url" in p for p in problems("url: redis://127.0.0.1:6379/0\n"))
