"""Providers and master keys through the admin API, against a real PostgreSQL and running
proxies: create/read/update/delete served at once by this instance and by another one through
NOTIFY, writes validated by the same rules as psql edits (nothing written on a 400), generated
keys shown once, rotation, If-Match, and YAML mode's read-only answers."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from llm_proxy.config.model import ANTHROPIC_API_BASE, Config
from tests.helpers import ProxyFactory, Upstream, chat, make_config, provider
from tests.helpers.admin import ADMIN, KEYED, assert_error, call
from tests.helpers.db import db_version, start_db_proxy, wait_version

BASE = Config(require_auth=False, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))


async def chat_status(
    http: aiohttp.ClientSession, url: str, model: str, key: str | None = None
) -> int:
    return (await chat(http, url, model, key=key)).status


async def test_provider_lifecycle_on_two_instances(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    one = await start_db_proxy(start_proxy, config_dsn, BASE)
    two = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = one + "/admin/v1/providers"
    new: dict[str, Any] = {
        "name": "alpha",
        "api_base": upstream.api_base,
        "api_key": "sk-alpha-upstream-secret",
        "model_mapping": {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1*": None},
    }
    status, created = await call(http, "POST", admin, json=new)
    assert status == 201, created
    assert created["api_key"] == "sk-...cret" and created["weight"] == 1
    assert created["enabled"] is True and created["provider_type"] == "openai"
    pid = created["id"]
    # Served by this instance when the answer comes, and by the other through NOTIFY.
    assert await chat_status(http, one, "gpt-4o") == 200
    await wait_version(http, two, created["config_version"], ADMIN)
    assert await chat_status(http, two, "gpt-4.1-mini") == 200
    status, listed = await call(http, "GET", admin)
    assert [p["name"] for p in listed["data"]] == ["alpha"]
    assert "sk-alpha-upstream-secret" not in str(listed)
    status, patched = await call(http, "PATCH", f"{admin}/{pid}", json={"weight": 4})
    assert (status, patched["weight"]) == (200, 4)
    # PUT replaces the row; the write-only key, omitted, is kept.
    put = {"name": "alpha", "api_base": upstream.api_base, "model_mapping": {"m": None}}
    status, replaced = await call(http, "PUT", f"{admin}/{pid}", json=put)
    assert status == 200 and replaced["weight"] == 1 and replaced["api_key"] == "sk-...cret"
    assert replaced["model_mapping"] == {"m": None}
    assert (
        await chat_status(http, one, "m") == 200 and await chat_status(http, one, "gpt-4o") == 404
    )
    status, off = await call(http, "PATCH", f"{admin}/{pid}/status", json={"enabled": False})
    assert status == 200 and off["enabled"] is False
    assert await chat_status(http, one, "m") == 404
    status, disabled = await call(http, "GET", admin + "?enabled=false")
    assert [p["id"] for p in disabled["data"]] == [pid]
    status, enabled = await call(http, "GET", admin + "?enabled=true")
    assert enabled["data"] == []
    status, gone = await call(http, "DELETE", f"{admin}/{pid}")
    assert (status, gone["deleted"]) == (200, True)
    status, body = await call(http, "GET", f"{admin}/{pid}")
    assert status == 404
    assert_error(body, "not_found")
    # Each write is in the history as this admin key's change.
    status, hist = await call(http, "GET", one + "/admin/v1/config/history?table=providers")
    assert {c["changed_by"] for c in hist["data"]} == {"admin:ops"}
    assert [c["operation"] for c in hist["data"]][:2] == ["DELETE", "UPDATE"]


async def test_bad_writes_are_400s_naming_the_field_and_write_nothing(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1/providers"
    good = {"name": "alpha", "api_base": upstream.api_base, "model_mapping": {"m": None}}
    status, alpha = await call(http, "POST", admin, json=good)
    assert status == 201
    sql = await asyncpg.connect(config_dsn)
    try:
        before = await db_version(sql)
        cases: list[tuple[str, str, dict[str, Any], int, str | None]] = [
            (
                "POST",
                admin,
                {**good, "name": "beta", "model_mapping": {"bad-(*": None}},
                400,
                "model_mapping",
            ),
            ("POST", admin, {**good, "name": "beta", "weight": 0}, 400, "weight"),
            ("POST", admin, {**good, "name": "beta", "api_base": "ftp://x"}, 400, "api_base"),
            ("POST", admin, {**good, "name": "beta", "weight": "3"}, 400, "weight"),
            ("POST", admin, {**good, "name": "beta", "colour": "red"}, 400, "colour"),
            ("POST", admin, {"api_base": upstream.api_base}, 400, "name"),
            ("POST", admin, good, 409, "name"),
            ("PATCH", f"{admin}/{alpha['id']}", {}, 400, ""),
            (
                "PATCH",
                f"{admin}/{alpha['id']}",
                {"params": {"request_timeout_secs": -1}},
                400,
                "params",
            ),
            ("PATCH", f"{admin}/{alpha['id']}/status", {"enabled": "no"}, 400, "enabled"),
            ("PATCH", f"{admin}/999", {"weight": 2}, 404, None),
            ("DELETE", f"{admin}/999", {}, 404, None),
            ("GET", f"{admin}/abc", {}, 400, "id"),
            # Beyond PostgreSQL's integer and bigint: a 400 naming the field, never a 500.
            ("POST", admin, {**good, "name": "beta", "weight": 2**31}, 400, "weight"),
            ("PATCH", f"{admin}/{alpha['id']}", {"weight": 2**64}, 400, "weight"),
            ("GET", f"{admin}/{2**63}", {}, 400, "id"),
            *(
                ("POST", url + "/admin/v1/credentials", {"name": "k", field: value}, 400, field)
                for field, value in (
                    ("rate_limit_burst", 2**31),
                    ("tokens_per_minute", 2**63),
                    ("max_parallel_requests", 2**40),
                )
            ),
        ]
        for method, target, body, expected, param in cases:
            kwargs = {"json": body} if method != "GET" else {}
            status, answer = await call(http, method, target, **kwargs)
            assert status == expected, (method, body, answer)
            if param is not None:
                assert answer["error"]["param"] == param, (body, answer)
            assert set(answer["error"]) == {"message", "type", "param", "code"}
        assert await db_version(sql) == before  # nothing was written
        assert await sql.fetchval("SELECT count(*) FROM providers") == 1
        # If-Match: a stale version is refused, the current one accepted.
        status, body = await call(
            http, "PATCH", f"{admin}/{alpha['id']}", {**ADMIN, "If-Match": "1"}, json={"weight": 2}
        )
        assert status == 412
        assert_error(body, "precondition_failed")
        status, body = await call(
            http,
            "PATCH",
            f"{admin}/{alpha['id']}",
            {**ADMIN, "If-Match": before},
            json={"weight": 2},
        )
        assert status == 200 and body["config_version"] == int(before) + 1
    finally:
        await sql.close()


async def test_master_keys_generated_shown_once_rotated_and_disabled(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, KEYED)
    status, _ = await call(
        http,
        "POST",
        url + "/admin/v1/providers",
        json={"name": "alpha", "api_base": upstream.api_base, "model_mapping": {"m": None}},
    )
    assert status == 201
    status, created = await call(
        http,
        "POST",
        url + "/admin/v1/credentials",
        json={"name": "team", "tokens_per_minute": 100_000},
    )
    assert status == 201
    key = created["key"]
    assert key.startswith("sk-") and len(key) >= 43 and created["key_prefix"] == key[:6] + "..."
    assert await chat_status(http, url, "m", key) == 200
    # Afterwards: name and prefix only, under both paths.
    for path in ("/credentials", "/master-keys"):
        status, listed = await call(http, "GET", url + "/admin/v1" + path)
        assert [k["name"] for k in listed["data"]] == ["team"]
        assert key not in str(listed)
    status, one = await call(http, "GET", url + f"/admin/v1/master-keys/{created['id']}")
    assert status == 200 and "key" not in one and one["tokens_per_minute"] == 100_000
    # Rotation: the new key works and the old one stops as soon as the answer comes.
    status, rotated = await call(
        http, "POST", url + f"/admin/v1/credentials/{created['id']}/rotate"
    )
    assert status == 200 and rotated["key"] != key
    assert await chat_status(http, url, "m", rotated["key"]) == 200
    assert await chat_status(http, url, "m", key) == 401
    status, chosen = await call(
        http,
        "POST",
        url + f"/admin/v1/credentials/{created['id']}/rotate",
        json={"key": "sk-chosen-by-operator-0123"},
    )
    assert status == 200 and chosen["key"] == "sk-chosen-by-operator-0123"
    status, off = await call(
        http,
        "PATCH",
        url + f"/admin/v1/credentials/{created['id']}/status",
        json={"enabled": False},
    )
    assert status == 200 and off["enabled"] is False
    assert await chat_status(http, url, "m", "sk-chosen-by-operator-0123") == 401
    status, body = await call(
        http, "POST", url + "/admin/v1/credentials", json={"name": "short", "key": "sk-1"}
    )
    assert status == 400
    assert body["error"]["param"] == "key"


async def test_yaml_mode_lists_and_refuses_writes(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("alpha", upstream.api_base, {"m": None}),
        master_keys=[{"name": "team", "key": "sk-team-master-secret"}],
        admin_keys={"ops": "adm-ops-0123456789abcdef"},
    )
    url = await start_proxy(config)
    status, listed = await call(http, "GET", url + "/admin/v1/providers")
    assert status == 200 and listed["source"] == "file"
    assert [p["name"] for p in listed["data"]] == ["alpha"]
    assert listed["data"][0]["api_key"] == "sk-...cret"
    status, keys = await call(http, "GET", url + "/admin/v1/master-keys/1")
    assert (status, keys["name"]) == (200, "team")
    for method, path, body in (
        ("POST", "/providers", {"name": "beta", "api_base": upstream.api_base}),
        ("PATCH", "/providers/1", {"weight": 2}),
        ("DELETE", "/providers/1", None),
        ("POST", "/credentials/1/rotate", None),
    ):
        status, answer = await call(http, method, url + "/admin/v1" + path, json=body)
        assert status == 409, (method, path, answer)
        assert_error(answer, "read_only_config")


@pytest.mark.parametrize("path", ["/providers", "/credentials"])
async def test_the_admin_plane_needs_its_key(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession, path: str
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    status, body = await call(http, "GET", url + "/admin/v1" + path, headers={})
    assert status == 401
    assert_error(body, "invalid_admin_key")


async def test_master_key_replace_delete_and_database_reload(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, KEYED)
    admin = url + "/admin/v1"
    body = {"name": "team", "key": "sk-team-given-key-0123", "tokens_per_minute": 50}
    status, created = await call(http, "POST", admin + "/credentials", json=body)
    assert status == 201 and created["key"] == "sk-team-given-key-0123"
    this = f"{admin}/credentials/{created['id']}"
    # PUT: omitted fields back to defaults, the key (write-only) kept.
    status, replaced = await call(http, "PUT", this, json={"name": "team-a"})
    assert status == 200 and replaced["name"] == "team-a"
    assert replaced["tokens_per_minute"] is None and replaced["key_prefix"] == "sk-tea..."
    status, body = await call(http, "POST", admin + "/credentials", json={"name": "team-a"})
    assert status == 409
    assert_error(body, "duplicate_name")
    status, gone = await call(http, "DELETE", this)
    assert status == 200 and gone["deleted"] is True
    status, body = await call(http, "GET", this)
    assert status == 404
    status, body = await call(http, "DELETE", this)
    assert status == 404
    # A psql edit, then an explicit reload: served when the answer comes.
    sql = await asyncpg.connect(config_dsn)
    try:
        await sql.execute("INSERT INTO credentials (name, key) VALUES ('psql', 'sk-psql-0123456')")
        version = await db_version(sql)
    finally:
        await sql.close()
    status, reloaded = await call(http, "POST", admin + "/config/reload")
    assert (status, reloaded) == (200, {"version": int(version), "served": True})
    assert await chat_status(http, url, "m", "sk-psql-0123456") in (200, 404)  # authenticated


async def test_writes_to_a_disabled_provider_are_validated_too(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A disabled provider is not served, but what is written to it must still be valid:
    otherwise the 400 would come only when someone enables it, far from the bad write."""
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1/providers"
    good = {"name": "alpha", "api_base": upstream.api_base, "model_mapping": {"m": None}}
    status, alpha = await call(http, "POST", admin, json=good)
    assert status == 201
    off = {**good, "name": "off", "enabled": False}
    status, created = await call(http, "POST", admin, json=off)
    assert status == 201 and created["enabled"] is False
    bad_regex, negative = (
        {"model_mapping": {"bad-(*": None}},
        {"params": {"connect_timeout_secs": -1}},
    )
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", admin, {**off, "name": "beta", **bad_regex}, "model_mapping"),
        ("POST", admin, {**off, "name": "beta", **negative}, "params"),
        ("POST", admin, {**off, "name": "beta", "weight": -1}, "weight"),
        ("PUT", f"{admin}/{created['id']}", {**off, **bad_regex}, "model_mapping"),
        ("PUT", f"{admin}/{created['id']}", {**off, **negative}, "params"),
        ("PATCH", f"{admin}/{created['id']}", bad_regex, "model_mapping"),
        ("PATCH", f"{admin}/{created['id']}", negative, "params"),
        ("PATCH", f"{admin}/{created['id']}", {"weight": 0}, "weight"),
        # Disabled and changed in one write.
        ("PATCH", f"{admin}/{alpha['id']}", {"enabled": False, **bad_regex}, "model_mapping"),
        ("PUT", f"{admin}/{alpha['id']}", {**off, "name": "alpha", **negative}, "params"),
    ]
    sql = await asyncpg.connect(config_dsn)
    try:
        before = await db_version(sql)
        rows = [dict(r) for r in await sql.fetch("SELECT * FROM providers ORDER BY id")]
        history = await sql.fetchval("SELECT count(*) FROM config_history")
        for method, target, body, param in cases:
            status, answer = await call(http, method, target, json=body)
            error = answer.get("error", {})
            assert (status, error.get("param")) == (400, param), (method, body, answer)
            assert error["code"] and error["message"], answer
        assert await db_version(sql) == before  # nothing was written
        assert [dict(r) for r in await sql.fetch("SELECT * FROM providers ORDER BY id")] == rows
        assert await sql.fetchval("SELECT count(*) FROM config_history") == history
    finally:
        await sql.close()


# provider_type anthropic

ANTHROPIC_KEY = "sk-ant-api03-0123456789abcdef"
CLAUDE: dict[str, Any] = {
    "name": "claude",
    "provider_type": "anthropic",
    "api_key": ANTHROPIC_KEY,
    "model_mapping": {"claude-sonnet": "claude-sonnet-4-5"},
    "params": {
        "anthropic_version": "2024-10-22",
        "default_max_tokens": 1024,
        "max_output_tokens": 2048,
        "headers": {"anthropic-beta": "prompt-caching-2024-07-31"},
    },
}


async def test_an_anthropic_provider_through_the_api(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1/providers"
    # No api_base: Anthropic's own.
    status, created = await call(http, "POST", admin, json=CLAUDE)
    assert status == 201, created
    assert (created["provider_type"], created["api_base"]) == (
        "anthropic",
        ANTHROPIC_API_BASE,
    )
    assert created["api_key"] == "sk-...cdef" and created["params"] == CLAUDE["params"]
    pid = created["id"]
    # Served at once: the effective config shows the provider as the proxy compiled it.
    status, config = await call(http, "GET", url + "/admin/v1/config")
    (shown,) = config["providers"]
    assert (shown["provider_type"], shown["auth"], shown["anthropic_version"]) == (
        "anthropic",
        "x-api-key",
        "2024-10-22",
    )
    assert (shown["default_max_tokens"], shown["max_output_tokens"]) == (1024, 2048)
    # PUT without api_base puts the default back; a trailing /v1 is kept as written (the
    # configuration drops it when it reads the row).
    status, put = await call(
        http, "PUT", f"{admin}/{pid}", json={**CLAUDE, "api_base": "https://gw.example/v1"}
    )
    assert (status, put["api_base"]) == (200, "https://gw.example/v1"), put
    status, config = await call(http, "GET", url + "/admin/v1/config")
    assert config["providers"][0]["api_base"] == "https://gw.example"
    status, put = await call(http, "PUT", f"{admin}/{pid}", json=CLAUDE)
    assert (status, put["api_base"]) == (200, ANTHROPIC_API_BASE), put
    status, patched = await call(
        http, "PATCH", f"{admin}/{pid}", json={"params": {"auth": "bearer"}}
    )
    assert status == 200 and patched["params"] == {"auth": "bearer"}
    status, config = await call(http, "GET", url + "/admin/v1/config")
    assert config["providers"][0]["anthropic_version"] == "2023-06-01"  # the default again
    shown_text = ""
    for path in ("/providers", f"/providers/{pid}", "/config", "/config/history", "/config/export"):
        async with http.get(url + "/admin/v1" + path, headers=ADMIN) as r:
            assert r.status == 200, path
            shown_text += await r.text()
    assert ANTHROPIC_KEY not in shown_text
    assert "provider_type: anthropic" in shown_text  # the export


async def test_bad_anthropic_writes_name_the_field(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1/providers"
    plain = {"name": "o", "provider_type": "openai", "api_base": "https://o.example/v1"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"provider_type": "claude"}, "provider_type", "openai, azure, anthropic"),
        ({"provider_type": "openai", "api_base": None}, "api_base", "`api_base` is required"),
        ({**plain, "params": {"anthropic_version": "x"}}, "params", "anthropic_version (table"),
        ({"params": {"default_max_tokens": 0}}, "params", "default_max_tokens (table"),
        ({"params": {"max_output_tokens": "10"}}, "params", "max_output_tokens (table"),
        ({"params": {"auth": "x-api-key", "headers": {"X-Api-Key": "k"}}}, "params", "headers"),
        ({"api_base": "https://api.anthropic.com/v1/messages"}, "api_base", "appends /v1/messages"),
    ]
    for change, param, message in cases:
        body = {k: v for k, v in {**CLAUDE, **change}.items() if v is not None}
        status, answer = await call(http, "POST", admin, json=body)
        assert status == 400, (change, answer)
        assert answer["error"]["param"] == param, answer
        assert message in answer["error"]["message"], answer
        assert ANTHROPIC_KEY not in str(answer)
    sql = await asyncpg.connect(config_dsn)
    try:
        assert await sql.fetchval("SELECT count(*) FROM providers") == 0
    finally:
        await sql.close()


async def test_yaml_mode_shows_an_anthropic_provider(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        {"name": "claude", "provider_type": "anthropic", "api_key": ANTHROPIC_KEY},
        provider("o", "https://o.example/v1", {"m": None}),
        admin_keys={"ops": "adm-ops-0123456789abcdef"},
    )
    url = await start_proxy(config)
    status, listed = await call(http, "GET", url + "/admin/v1/providers")
    assert status == 200
    claude, other = listed["data"]
    assert (claude["provider_type"], claude["auth"], claude["api_base"]) == (
        "anthropic",
        "x-api-key",
        ANTHROPIC_API_BASE,
    )
    assert (claude["anthropic_version"], claude["default_max_tokens"]) == ("2023-06-01", 4096)
    assert claude["max_output_tokens"] is None and claude["api_key"] == "sk-...cdef"
    assert (other["auth"], other["anthropic_version"]) == ("bearer", None)
