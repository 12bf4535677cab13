"""The original llm-proxy's admin API shapes (`llm_proxy.admin.aliases`): its field names
accepted as ours on a real database-mode proxy, an alias and our name disagreeing refused
naming both, ids and config versions accepted back as the API answers them, its health paths,
and an admin call's access line naming the admin key."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import structlog

from llm_proxy.admin.aliases import our_names
from llm_proxy.config.model import Config
from llm_proxy.errors import ProxyError
from tests.helpers import ProxyFactory, Upstream, chat, make_config, provider
from tests.helpers.admin import ADMIN, SETTINGS, assert_error, call
from tests.helpers.db import start_db_proxy

BASE = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),))


@pytest.mark.parametrize(
    ("table", "body", "row_id", "ours"),
    [
        (
            "providers",
            {"provider_key": "p", "is_enabled": False, "provider_params": {"a": 1}},
            None,
            {"name": "p", "enabled": False, "params": {"a": 1}},
        ),
        (
            "providers",
            {"id": "openai-main", "api_base": "x"},
            None,
            {"name": "openai-main", "api_base": "x"},
        ),
        ("providers", {"id": 3, "weight": 2}, 3, {"weight": 2}),
        ("providers", {"name": "p", "provider_key": "p"}, None, {"name": "p"}),
        (
            "credentials",
            {"credential_key": "sk-1", "is_enabled": True, "rate_limit": 5},
            None,
            {"key": "sk-1", "enabled": True, "rate_limit_rps": 5, "rate_limit_burst": 5},
        ),
        (
            "credentials",
            {"rate_limit": 5, "rate_limit_burst": 9},
            1,
            {"rate_limit_rps": 5, "rate_limit_burst": 9},
        ),
        ("credentials", {"rate_limit": 0}, 1, {"rate_limit_rps": None, "rate_limit_burst": None}),
        (
            "credentials",
            {"rate_limit": None},
            1,
            {"rate_limit_rps": None, "rate_limit_burst": None},
        ),
        ("credentials", {"id": "key-1", "name": "Default"}, None, {"name": "Default"}),
        ("credentials", {"id": "key-1"}, None, {"name": "key-1"}),
        # Not an alias there: passed on as given (for `fields_of` to refuse).
        ("providers", {"rate_limit": 5}, None, {"rate_limit": 5}),
        ("credentials", {"provider_key": "p"}, None, {"provider_key": "p"}),
    ],
)
def test_aliases_become_our_fields(
    table: str, body: dict[str, Any], row_id: int | None, ours: dict[str, Any]
) -> None:
    assert our_names(table, body, row_id) == ours


@pytest.mark.parametrize(
    ("table", "body", "row_id", "param", "named"),
    [
        ("providers", {"name": "a", "provider_key": "b"}, None, "provider_key", "`name`"),
        ("providers", {"name": "a", "id": "b"}, None, "id", "`name`"),
        ("providers", {"enabled": True, "is_enabled": False}, 1, "is_enabled", "`enabled`"),
        (
            "providers",
            {"params": {}, "provider_params": {"a": 1}},
            1,
            "provider_params",
            "`params`",
        ),
        ("credentials", {"key": "a", "credential_key": "b"}, None, "credential_key", "`key`"),
        (
            "credentials",
            {"rate_limit_rps": 2, "rate_limit": 3},
            1,
            "rate_limit",
            "`rate_limit_rps`",
        ),
        ("credentials", {"rate_limit": "3"}, 1, "rate_limit", "integer"),
        ("credentials", {"rate_limit": -1}, 1, "rate_limit", "0"),
        ("providers", {"id": 4}, None, "id", "assigned"),
        ("providers", {"id": 4}, 5, "id", "(5, in the path)"),
        ("credentials", {"id": True}, 5, "id", "number"),
        ("credentials", {"id": ""}, None, "id", "number"),
    ],
)
def test_an_alias_and_our_name_disagreeing_is_a_400_naming_both(
    table: str, body: dict[str, Any], row_id: int | None, param: str, named: str
) -> None:
    with pytest.raises(ProxyError) as caught:
        our_names(table, body, row_id)
    error = caught.value
    assert error.status == 400 and error.param == param
    assert f"`{param}`" in error.message and named in error.message


async def test_the_originals_field_names_through_the_api(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1"
    status, made = await call(
        http,
        "POST",
        admin + "/providers",
        json={
            "provider_key": "openai-primary",
            "provider_type": "openai",
            "api_base": upstream.api_base,
            "api_key": "sk-upstream-0123456789",
            "model_mapping": {"gpt-4o": None},
            "weight": 2,
            "provider_params": {"request_timeout_secs": 30},
            "is_enabled": True,
        },
    )
    assert status == 201, made
    assert (made["name"], made["weight"], made["enabled"]) == ("openai-primary", 2, True)
    assert made["params"] == {"request_timeout_secs": 30}
    status, key = await call(
        http,
        "POST",
        admin + "/credentials",
        json={
            "credential_key": "sk-old-script-key-0123",
            "name": "Production Key",
            "allowed_models": ["gpt-4o"],
            "rate_limit": 100,
        },
    )
    assert status == 201, key
    assert (key["rate_limit_rps"], key["rate_limit_burst"]) == (100, 100)
    assert (await chat(http, url, "gpt-4o", key="sk-old-script-key-0123")).status == 200
    # The original's update names, on PATCH and on the status route.
    status, off = await call(
        http,
        "PATCH",
        f"{admin}/credentials/{key['id']}",
        json={"is_enabled": False, "rate_limit": 0},
    )
    assert status == 200, off
    assert (off["enabled"], off["rate_limit_rps"], off["rate_limit_burst"]) == (False, None, None)
    assert (await chat(http, url, "gpt-4o", key="sk-old-script-key-0123")).status == 401
    status, on = await call(
        http, "PATCH", f"{admin}/credentials/{key['id']}/status", json={"is_enabled": True}
    )
    assert (status, on["enabled"]) == (200, True)
    status, rotated = await call(
        http,
        "POST",
        f"{admin}/credentials/{key['id']}/rotate",
        json={"credential_key": "sk-rotated-key-456789"},
    )
    assert (status, rotated["key"]) == (200, "sk-rotated-key-456789")
    assert (await chat(http, url, "gpt-4o", key="sk-rotated-key-456789")).status == 200
    # A row read and written back with its own id is accepted; another id is not.
    status, row = await call(http, "GET", f"{admin}/providers/{made['id']}")
    back = {k: row[k] for k in ("id", "name", "api_base", "model_mapping", "weight")}
    status, put = await call(http, "PUT", f"{admin}/providers/{made['id']}", json=back)
    assert status == 200, put
    status, body = await call(
        http, "PATCH", f"{admin}/providers/{made['id']}", json={"id": made["id"] + 1, "weight": 3}
    )
    assert status == 400 and body["error"]["param"] == "id"
    # Both names given, disagreeing: a 400 naming both, nothing written.
    status, body = await call(
        http,
        "PATCH",
        f"{admin}/providers/{made['id']}",
        json={"enabled": True, "is_enabled": False},
    )
    assert status == 400
    assert_error(body, "invalid_value")
    assert body["error"]["param"] == "is_enabled" and "`enabled`" in body["error"]["message"]
    status, row = await call(http, "GET", f"{admin}/providers/{made['id']}")
    assert row["enabled"] is True


async def test_versions_and_ids_are_accepted_back_as_given(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1"
    status, made = await call(
        http,
        "POST",
        admin + "/providers",
        json={"name": "a", "api_base": upstream.api_base, "model_mapping": {"m": None}},
    )
    assert status == 201
    status, version = await call(http, "GET", admin + "/config/version")
    assert status == 200 and isinstance(version["version"], int)
    assert version["version"] == made["config_version"]
    first = version["version"]
    for weight in (2, 3):
        status, _ = await call(
            http, "PATCH", f"{admin}/providers/{made['id']}", json={"weight": weight}
        )
        assert status == 200
    # The number as /config/version answered it, then the string an old script sends.
    status, done = await call(http, "POST", admin + "/config/rollback", json={"version": first})
    assert status == 200, done
    assert done["rolled_back_to"] == first
    status, now = await call(http, "GET", admin + "/config/version")
    assert now["version"] == done["version"]
    status, row = await call(http, "GET", f"{admin}/providers/{made['id']}")
    assert row["weight"] == 1
    status, again = await call(
        http, "POST", admin + "/config/rollback", json={"version": str(first + 2)}
    )
    assert status == 200, again
    status, row = await call(http, "GET", f"{admin}/providers/{made['id']}")
    assert row["weight"] == 3
    status, config = await call(http, "GET", admin + "/config")
    assert config["version"] == again["version"]
    status, reloaded = await call(http, "POST", admin + "/config/reload")
    assert reloaded["version"] == again["version"]
    # The version as If-Match, as answered.
    status, body = await call(
        http,
        "PATCH",
        f"{admin}/providers/{made['id']}",
        json={"weight": 4},
        headers={**ADMIN, "If-Match": str(again["version"])},
    )
    assert status == 200, body


async def test_the_originals_health_paths_and_provider_ids(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1"
    ids = {}
    for name in ("a", "b"):
        status, made = await call(
            http,
            "POST",
            admin + "/providers",
            json={"name": name, "api_base": upstream.api_base, "model_mapping": {"m": None}},
        )
        assert status == 201
        ids[name] = made["id"]
    status, checked = await call(
        http, "POST", admin + "/health/check", json={"provider_ids": [ids["b"]]}
    )
    assert status == 200, checked
    assert [p["provider"] for p in checked["providers"]] == ["b"]
    status, body = await call(
        http,
        "POST",
        admin + "/health/check",
        json={"provider_ids": [ids["b"]], "providers": ["a"]},
    )
    assert status == 400 and body["error"]["param"] == "provider_ids"
    status, body = await call(http, "POST", admin + "/health/check", json={"provider_ids": [999]})
    assert status == 400 and "999" in body["error"]["message"]
    status, one = await call(http, "GET", f"{admin}/health/providers/{ids['a']}?models=m")
    assert status == 200, one
    assert (one["provider_id"], one["provider_key"], one["status"]) == (ids["a"], "a", "healthy")
    assert [(m["model"], m["status"]) for m in one["models"]] == [("m", "healthy")]
    assert isinstance(one["avg_response_time_ms"], int) and one["checked_at"].endswith("Z")
    assert one["healthy"] is True  # ours too
    status, body = await call(http, "GET", f"{admin}/health/providers/999")
    assert status == 404


async def test_an_admin_calls_access_line_names_the_admin_key(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(make_config(provider("a", upstream.api_base, {"m": None}), **SETTINGS))
    with structlog.testing.capture_logs() as logs:
        status, _ = await call(http, "GET", url + "/admin/v1/config/version")
        assert status == 200
        status, _ = await call(
            http,
            "GET",
            url + "/admin/v1/config/version",
            headers={"Authorization": "Bearer adm-ci-0123456789abcdef"},
        )
        assert status == 200
    lines = [e for e in logs if e["event"] == "request"]
    assert [line["key"] for line in lines] == ["admin:ops", "admin:ci"]
    assert "0123456789abcdef" not in str(lines)


async def test_a_row_read_and_written_back_is_taken_as_shown(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """GET then PUT the same body: the read-only fields are left out, the masked api_key and
    header values keep the stored secrets, the row is unchanged."""
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1/providers"
    status, made = await call(
        http,
        "POST",
        admin,
        json={
            "name": "a",
            "api_base": upstream.api_base,
            "api_key": "sk-upstream-secret-0123456789",
            "model_mapping": {"m": None},
            "params": {"headers": {"X-Secret": "header-secret-0123456789"}},
        },
    )
    assert status == 201, made
    status, shown = await call(http, "GET", f"{admin}/{made['id']}")
    assert shown["api_key"] != "sk-upstream-secret-0123456789"
    status, written = await call(http, "PUT", f"{admin}/{made['id']}", json=shown)
    assert status == 200, written
    rows = await _provider_secrets(config_dsn)
    assert rows == ("sk-upstream-secret-0123456789", "header-secret-0123456789")
    # A write's answer, written back (config_version and all), is taken too.
    status, again = await call(
        http, "PATCH", f"{admin}/{made['id']}", json={**written, "weight": 5}
    )
    assert (status, again["weight"]) == (200, 5)
    assert await _provider_secrets(config_dsn) == rows


async def _provider_secrets(dsn: str) -> tuple[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT api_key, params FROM providers")
    finally:
        await conn.close()
    return row["api_key"], orjson.loads(row["params"])["headers"]["X-Secret"]


async def test_a_put_in_the_originals_shape_changes_only_the_fields_given(
    config_dsn: str, upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """The original's PUT was a partial update (its web UI and scripts send only what
    changed): a PUT using its field names, or without `name`, is read so; ours replaces."""
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    admin = url + "/admin/v1"
    status, made = await call(
        http,
        "POST",
        admin + "/providers",
        json={
            "name": "a",
            "api_base": upstream.api_base,
            "model_mapping": {"m": None},
            "weight": 3,
        },
    )
    assert status == 201
    status, put = await call(
        http, "PUT", f"{admin}/providers/{made['id']}", json={"is_enabled": False}
    )
    assert status == 200, put
    assert (put["enabled"], put["weight"], put["model_mapping"]) == (False, 3, {"m": None})
    status, put = await call(http, "PUT", f"{admin}/providers/{made['id']}", json={"weight": 2})
    assert (status, put["weight"], put["enabled"]) == (200, 2, False)
    status, key = await call(
        http,
        "POST",
        admin + "/credentials",
        json={"name": "k", "allowed_models": ["m"], "rate_limit_rps": 4, "enabled": False},
    )
    assert status == 201
    status, put = await call(
        http,
        "PUT",
        f"{admin}/credentials/{key['id']}",
        json={"name": "renamed", "rate_limit": 200},
    )
    assert status == 200, put
    assert (put["name"], put["allowed_models"], put["enabled"]) == ("renamed", ["m"], False)
    assert (put["rate_limit_rps"], put["rate_limit_burst"]) == (200, 200)
    # Ours, with `name` and our field names: the row replaced, omitted fields to defaults.
    status, put = await call(http, "PUT", f"{admin}/credentials/{key['id']}", json={"name": "k"})
    assert (status, put["allowed_models"], put["enabled"], put["rate_limit_rps"]) == (
        200,
        None,
        True,
        None,
    )
