"""`provider_type: anthropic` (an upstream speaking Anthropic's Messages API) as configured:
its defaults (api_base, `auth: x-api-key`, anthropic_version), its own settings
(`anthropic_version`, `default_max_tokens`, `max_output_tokens`), and validation errors that
name the field, in YAML and as plain data."""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.cli import main
from llm_proxy.config import history, migrate
from llm_proxy.config.database import load_once
from llm_proxy.config.export import export_yaml, key_variable, provider_data
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import (
    ANTHROPIC_API_BASE,
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    Provider,
    default_auth,
)
from llm_proxy.config.providers import AUTH_MODES
from llm_proxy.config.yaml_file import load_config_text
from tests.helpers import make_config, provider
from tests.helpers.db import OPEN, db_version

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
        (
            {"auth": "basic"},
            "providers[0].auth: must be one of bearer, api-key, x-api-key, x-goog-api-key, none",
        ),
        (
            {"auth": "none"},
            "providers[0].api_key: is never sent with auth: none: remove it, or use auth: "
            "bearer, api-key or x-api-key",
        ),
        (
            {"headers": {"X-Api-Key": "k"}},
            "providers[0].headers['X-Api-Key']: carries the provider's key: set api_key and "
            "auth: bearer | api-key | x-api-key | x-goog-api-key | none",
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


def test_export_writes_what_reads_back() -> None:
    config = make_config(
        {"name": "claude", "provider_type": "anthropic", "api_key": ANTHROPIC_KEY},
        {
            "name": "gateway",
            "provider_type": "anthropic",
            "api_base": "https://gw.example/anthropic/v1",
            "auth": "bearer",
            "anthropic_version": "2024-10-22",
            "default_max_tokens": 1024,
            "max_output_tokens": 2048,
        },
        provider("o", "https://o.example/v1", {"m": None}, max_output_tokens=64),
    )
    claude, gateway, openai = (provider_data(p) for p in config.providers)
    # Defaults are left out: the type's auth, the default version and max_tokens.
    assert claude == {
        "name": "claude",
        "api_base": ANTHROPIC_API_BASE,
        "provider_type": "anthropic",
        "api_key": ANTHROPIC_KEY,
        "weight": 1,
        "model_mapping": {},
    }
    assert gateway["auth"] == "bearer"  # not the type's default: written
    assert gateway["api_base"] == "https://gw.example/anthropic"
    assert (gateway["anthropic_version"], gateway["default_max_tokens"]) == ("2024-10-22", 1024)
    assert gateway["max_output_tokens"] == 2048
    assert "auth" not in openai and "anthropic_version" not in openai
    assert openai["max_output_tokens"] == 64
    text = export_yaml(config, version="1")
    assert ANTHROPIC_KEY not in text and f"${{{key_variable('claude')}}}" in text
    again = load_config_text(text, {key_variable(n): "sk-x" for n in ("claude", "gateway", "o")})
    assert [provider_data(p) | {"api_key": ""} for p in again.providers] == [
        entry | {"api_key": ""} for entry in (claude, gateway, openai)
    ]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(("openai", "azure", "anthropic")),  # the clouds: test_cloud_providers
    auth=st.sampled_from((None, *AUTH_MODES)),
    version=st.none() | st.from_regex(r"[!-~]{1,20}", fullmatch=True),
    default_max=st.none() | st.integers(1, 2**31 - 1),
    cap=st.none() | st.integers(1, 2**31 - 1),
    base=st.sampled_from(("https://api.anthropic.com", "https://gw.example/a/v1/", None)),
)
def test_what_is_exported_reads_back_the_same(
    kind: str,
    auth: str | None,
    version: str | None,
    default_max: int | None,
    cap: int | None,
    base: str | None,
) -> None:
    """Any valid combination of type, auth and settings: `provider_data` (what export and
    import-config write) parses back into the same provider."""
    entry: dict[str, Any] = {"name": "p", "provider_type": kind, "api_base": base}
    if kind == "azure":
        entry["query_params"] = {"api-version": "2024-10-21"}
        entry["api_base"] = "https://r.openai.azure.com"
    elif base is None and kind != "anthropic":
        entry["api_base"] = "https://o.example/v1"
    optional = {
        "auth": auth,
        "api_key": None if auth == "none" else ANTHROPIC_KEY,
        "anthropic_version": version if kind == "anthropic" else None,
        "default_max_tokens": default_max,
        "max_output_tokens": cap,
    }
    entry |= {k: v for k, v in optional.items() if v is not None}
    (first,) = make_config({k: v for k, v in entry.items() if v is not None}).providers
    (second,) = make_config(provider_data(first)).providers
    assert provider_data(second) == provider_data(first)
    assert second.auth == (auth or default_auth(second.provider_type))
    assert (second.default_max_tokens, second.max_output_tokens) == (
        default_max or DEFAULT_MAX_TOKENS,
        cap,
    )
    if kind == "anthropic":
        assert second.anthropic_version == (version or DEFAULT_ANTHROPIC_VERSION)
        assert not second.api_base.endswith("/v1")


async def test_check_config_shows_the_type(
    tmp_path: FsPath, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "require_auth: false\nproviders:\n  - name: claude\n    provider_type: anthropic\n"
        f"    api_key: {ANTHROPIC_KEY}\n    model_mapping: {{claude-sonnet: null}}\n"
    )
    assert await asyncio.to_thread(main, ["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"claude  weight 1 (100.0%)  {ANTHROPIC_API_BASE}" in out
    assert "anthropic; auth x-api-key" in out and ANTHROPIC_KEY not in out


# Database mode: the settings live in `params`, the type in its column.

INSERT = (
    "INSERT INTO providers (name, provider_type, api_base, api_key, model_mapping, params)"
    " VALUES ($1, $2, $3, $4, '{\"claude-sonnet\": null}', $5::jsonb)"
)
ANTHROPIC_PARAMS: dict[str, Any] = {
    "anthropic_version": "2024-10-22",
    "default_max_tokens": 1024,
    "max_output_tokens": 2048,
    "headers": {"anthropic-beta": "prompt-caching-2024-07-31"},
}


async def insert(sql: asyncpg.Connection, name: str, kind: str, params: dict[str, Any]) -> None:
    base = ANTHROPIC_API_BASE + "/v1" if kind == "anthropic" else "https://o.example/v1"
    await sql.execute(INSERT, name, kind, base, ANTHROPIC_KEY, orjson.dumps(params).decode())


async def test_rows_are_read_like_yaml(config_dsn: str) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert(sql, "claude", "anthropic", ANTHROPIC_PARAMS)
        await insert(sql, "plain", "anthropic", {})
        config, _ = await load_once(config_dsn, OPEN)
        claude, plain = config.providers
        assert (claude.provider_type, claude.auth, claude.api_base) == (
            "anthropic",
            "x-api-key",
            ANTHROPIC_API_BASE,  # the row's /v1 dropped
        )
        assert (claude.anthropic_version, claude.default_max_tokens) == ("2024-10-22", 1024)
        assert claude.max_output_tokens == 2048
        assert (plain.anthropic_version, plain.default_max_tokens, plain.max_output_tokens) == (
            DEFAULT_ANTHROPIC_VERSION,
            DEFAULT_MAX_TOKENS,
            None,
        )
        # Errors name the row and the column.
        await sql.execute("DELETE FROM providers")
        await insert(sql, "o", "openai", {"anthropic_version": "2023-06-01"})
        with pytest.raises(ConfigError) as exc:
            await load_once(config_dsn, OPEN)
        assert str(exc.value).startswith(
            "providers[0].anthropic_version (table providers, row id=3 ('o'), column params): "
            "is only for provider_type anthropic"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await sql.execute("UPDATE providers SET provider_type = 'claude'")
    finally:
        await sql.close()


async def test_history_shows_the_settings_and_rollback_restores_them(config_dsn: str) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert(sql, "claude", "anthropic", ANTHROPIC_PARAMS)
        created = int(await db_version(sql))
        await sql.execute(
            "UPDATE providers SET params = params || $1::jsonb",
            '{"max_output_tokens": 512, "auth": "bearer", "anthropic_version": "2025-01-01"}',
        )
        (change,) = await history.history(sql, table="providers", limit=1)
        assert change.fields_changed() == ["params"]
        assert change.before is not None and change.after is not None
        assert change.after["params"]["max_output_tokens"] == 512
        assert change.before["params"]["anthropic_version"] == "2024-10-22"
        assert change.after["provider_type"] == "anthropic"
        assert ANTHROPIC_KEY not in str(change.as_dict())
        (p,) = (await load_once(config_dsn, OPEN))[0].providers
        assert (p.auth, p.max_output_tokens, p.anthropic_version) == ("bearer", 512, "2025-01-01")
        await history.rollback(sql, created, "cli:test")
        (p,) = (await load_once(config_dsn, OPEN))[0].providers
        assert (p.auth, p.max_output_tokens, p.anthropic_version) == (
            "x-api-key",
            2048,
            "2024-10-22",
        )
        assert p.api_key == ANTHROPIC_KEY
    finally:
        await sql.close()


async def test_export_import_round_trip(
    config_dsn: str,
    other_config_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: FsPath,
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert(sql, "claude", "anthropic", ANTHROPIC_PARAMS)
        await insert(sql, "gateway", "anthropic", {"auth": "bearer"})
    finally:
        await sql.close()

    def run(*args: str) -> str:
        assert main(list(args)) == 0
        return capsys.readouterr().out

    text = await asyncio.to_thread(run, "export-config", "--db-url", config_dsn)
    assert ANTHROPIC_KEY not in text and text.count("provider_type: anthropic") == 2
    assert "anthropic_version: '2024-10-22'" in text and "max_output_tokens: 2048" in text
    assert "anthropic-beta: prompt-caching-2024-07-31" in text  # public: shown as it is
    assert text.count("auth: ") == 1 and "auth: bearer" in text  # x-api-key: the default
    exported = tmp_path / "exported.yaml"
    exported.write_text(text)
    for name in ("claude", "gateway"):
        monkeypatch.setenv(key_variable(name), ANTHROPIC_KEY)
    out = await asyncio.to_thread(run, "import-config", str(exported), "--db-url", other_config_dsn)
    assert out.startswith("imported 2 providers")
    again = await asyncio.to_thread(run, "export-config", "--db-url", other_config_dsn)
    assert again.splitlines()[1:] == text.splitlines()[1:]  # (the first line: the version)
    first = (await load_once(config_dsn, OPEN))[0].providers
    second = (await load_once(other_config_dsn, OPEN))[0].providers
    assert [provider_data(p) for p in first] == [provider_data(p) for p in second]


async def test_the_migration_down_refuses_while_an_anthropic_provider_exists(
    config_dsn: str,
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert(sql, "claude", "anthropic", {})
        # The request log's team column (018), the teams (017), the key lifetimes (016), the
        # request log's cache column (015), the routing tables (014), the cloud providers
        # (013), the request log's trace id (012).
        later = await migrate.migrate_down(sql, 7)
        assert [m.name for m in later] == [
            "request_log_team",
            "teams",
            "key_lifetimes",
            "request_log_cache",
            "routing",
            "cloud_providers",
            "request_log_trace_id",
        ]
        with pytest.raises(asyncpg.ObjectInUseError, match="provider_type anthropic exist"):
            await migrate.migrate_down(sql, 1)
        await sql.execute("UPDATE providers SET provider_type = 'openai', params = '{}'")
        (reverted,) = await migrate.migrate_down(sql, 1)
        assert reverted.name == "anthropic_providers"
        with pytest.raises(asyncpg.CheckViolationError):
            await sql.execute("UPDATE providers SET provider_type = 'anthropic'")
        assert [m.name for m in await migrate.migrate_up(sql)] == [
            "anthropic_providers",
            "request_log_trace_id",
            "cloud_providers",
            "routing",
            "request_log_cache",
            "key_lifetimes",
            "teams",
            "request_log_team",
        ]
        await sql.execute("UPDATE providers SET provider_type = 'anthropic'")
    finally:
        await sql.close()
