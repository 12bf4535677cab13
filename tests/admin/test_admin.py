"""The admin API (`/admin/v1`): admin keys (none set: 503, wrong: 401, named: attributed), the
effective config with every secret masked, the config history and rollback in database mode
(recorded as the admin key's change, served by this instance when the answer comes), YAML
mode's read-only answers and file reload, and bad input answered in OpenAI's error shape."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.yaml_file import apply_env_overrides, load_config_text
from tests.helpers import ProxyFactory, Upstream, make_config, provider
from tests.helpers.admin import ADMIN, SETTINGS, assert_error, call
from tests.helpers.db import add_provider, db_version, start_db_proxy
from tests.helpers.processes import serve_process


async def test_no_admin_key_means_disabled_never_open(
    start_proxy: ProxyFactory, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(make_config(provider("a", upstream.api_base, {"m": None})))
    status, body = await call(http, "GET", url + "/admin/v1/config", headers={})
    assert status == 503
    assert_error(body, "admin_disabled")


async def test_admin_keys_are_checked_and_named(
    start_proxy: ProxyFactory, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None}), admin_key="adm-single-0123456789", **SETTINGS
    )
    url = await start_proxy(config)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "adm-ops-0123456789abcdef"},
    ):
        status, body = await call(http, "POST", url + "/admin/v1/auth/validate", headers=headers)
        assert status == 401
        assert_error(body, "invalid_admin_key")
    for key, name in (
        ("adm-ops-0123456789abcdef", "ops"),
        ("adm-ci-0123456789abcdef", "ci"),
        ("adm-single-0123456789", "admin"),
    ):
        status, body = await call(
            http, "POST", url + "/admin/v1/auth/validate", headers={"x-api-key": key}
        )
        assert (status, body) == (200, {"valid": True, "name": name})


async def test_a_master_key_is_not_an_admin_key(
    start_proxy: ProxyFactory, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"m": None}),
        master_keys=[{"name": "team", "key": "sk-team-master-secret"}],
        **SETTINGS,
    )
    url = await start_proxy(config)
    master = {"Authorization": "Bearer sk-team-master-secret"}
    status, body = await call(http, "GET", url + "/admin/v1/config", headers=master)
    assert status == 401
    assert_error(body, "invalid_admin_key")
    # ...nor an admin key a master key.
    admin_as_master = {"Authorization": ADMIN["Authorization"]}
    async with http.post(
        url + "/v1/chat/completions", json={"model": "m"}, headers=admin_as_master
    ) as r:
        assert r.status == 401


def test_admin_keys_config_and_environment() -> None:
    text = "providers: []\nrequire_auth: false\nadmin_keys: {ops: adm-ops-0123456789}\n"
    config = apply_env_overrides(
        load_config_text(text, {}), {"ADMIN_KEYS": "ci:adm-ci-0123456789, deploy:adm-dep-012345"}
    )
    assert [name for name, _ in config.admin_credentials] == ["ci", "deploy"]
    with pytest.raises(ConfigError) as bad:
        apply_env_overrides(load_config_text(text, {}), {"ADMIN_KEYS": "no-colon-here"})
    assert "ADMIN_KEYS" in str(bad.value) and "no-colon-here" not in str(bad.value)
    clash = (
        "providers: []\nadmin_keys: {ops: sk-same-key-0123}\n"
        "master_keys: [{name: team, key: sk-same-key-0123}]\n"
    )
    with pytest.raises(ConfigError) as both:
        load_config_text(clash, {})
    assert "admin keys and master keys must differ" in str(both.value)
    assert "sk-same-key-0123" not in str(both.value)


async def test_the_effective_config_shows_no_secret(
    start_proxy: ProxyFactory, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider("a", upstream.api_base, {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1*": None}),
        master_keys=[{"name": "team", "key": "sk-team-master-secret"}],
        **SETTINGS,
    )
    url = await start_proxy(config, version="7")
    async with http.get(url + "/admin/v1/config", headers=ADMIN) as r:
        assert r.status == 200
        raw = await r.text()
        body = await r.json()
    for secret in (
        "sk-upstream-key",
        "sk-team-master-secret",
        "metrics-token-secret",
        "0123456789abcdef",
    ):
        assert secret not in raw
    assert body["version"] == 7 and body["source"] == "file"
    (prov,) = body["providers"]
    assert prov["api_key"] == "sk-...cret"
    assert prov["model_mapping"] == {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1*": None}
    assert body["master_keys"] == [
        {
            "name": "team",
            "enabled": True,
            "allowed_models": None,
            "rate_limit": None,
            "tokens_per_minute": None,
            "max_budget_usd": None,
            "budget_period": None,
            "shared_objects": False,
            "max_parallel_requests": None,
            "expires_at": None,
            "metadata": {},
            "created_by": None,
            "team": None,
        }
    ]
    assert body["teams"] == []
    assert body["settings"]["metrics_token"] == "set"
    assert body["settings"]["admin_keys"] == ["ops", "ci"]
    status, version = await call(http, "GET", url + "/admin/v1/config/version")
    assert status == 200 and version["version"] == 7 and version["source"] == "file"


async def test_yaml_mode_history_and_rollback_are_read_only(
    start_proxy: ProxyFactory, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(make_config(provider("a", upstream.api_base, {"m": None}), **SETTINGS))
    for method, path, kwargs in (
        ("GET", "/config/history", {}),
        ("POST", "/config/rollback", {"json": {"version": 1}}),
    ):
        status, body = await call(http, method, url + "/admin/v1" + path, **kwargs)
        assert status == 409
        assert_error(body, "read_only_config")
        assert "YAML mode" in body["error"]["message"]


async def test_yaml_mode_reload_rereads_the_file(
    tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    def text(model: str) -> str:
        return (
            f"providers:\n  - {{name: a, api_base: '{upstream.api_base}', api_key: sk-a,"
            f" model_mapping: {{'{model}': null}}}}\nrequire_auth: false\n"
            "admin_key: adm-0123456789abcdef\n"
        )

    admin = {"Authorization": "Bearer adm-0123456789abcdef"}
    async with serve_process(text("first"), tmp_path) as served:
        (config_file,) = tmp_path.glob("proxy-*.yaml")
        config_file.write_text(text("second"))
        status, body = await call(http, "POST", served.url + "/admin/v1/config/reload", admin)
        assert (status, body) == (200, {"version": 2, "served": True})
        async with http.get(served.url + "/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["second"]
        config_file.write_text("providers: [\n")
        status, body = await call(http, "POST", served.url + "/admin/v1/config/reload", admin)
        assert status == 400
        assert_error(body, "invalid_config")
        status, body = await call(http, "GET", served.url + "/admin/v1/config/version", admin)
        assert body["version"] == 2  # the old configuration keeps serving


async def test_history_and_rollback_through_the_api(
    config_dsn: str,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    from llm_proxy.config.model import Config

    sql = await asyncpg.connect(config_dsn)
    try:
        await add_provider(sql, "alpha", upstream.api_base, {"m": None})
        await sql.execute("INSERT INTO credentials (name, key) VALUES ('team', 'sk-team-old-key')")
        good = int(await db_version(sql))
        base = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
        url = await start_db_proxy(start_proxy, config_dsn, base)
        await sql.execute("DELETE FROM providers")
        await sql.execute("UPDATE credentials SET key = 'sk-team-new-key'")
        await sql.execute("UPDATE credentials SET is_enabled = false")
        latest = int(await db_version(sql))
    finally:
        await sql.close()
    admin = url + "/admin/v1"
    status, page = await call(http, "GET", admin + "/config/history?limit=2")
    assert status == 200
    assert [c["version"] for c in page["data"]] == [latest, latest - 1]
    assert page["next_before"] == latest - 1 and page["current_version"] == latest
    status, rest = await call(http, "GET", admin + f"/config/history?before={latest - 1}&limit=50")
    assert [c["version"] for c in rest["data"]] == list(range(latest - 2, 0, -1))[
        : len(rest["data"])
    ]
    assert rest["next_before"] is None
    status, only = await call(http, "GET", admin + "/config/history?table=providers")
    assert {c["table"] for c in only["data"]} == {"providers"}
    status, one = await call(http, "GET", admin + f"/config/history/{latest}")
    assert status == 200
    assert [(c["table"], c["operation"], c["fields_changed"]) for c in one["changes"]] == [
        ("credentials", "UPDATE", ["is_enabled"])
    ]
    assert "sk-alpha-provider-key" not in str(page) + str(rest) + str(one)
    # Rollback: answered once this instance serves the restored config.
    status, done = await call(http, "POST", admin + "/config/rollback", json={"version": good})
    assert status == 200 and done["rolled_back_to"] == good and done["served"] is True
    status, version = await call(http, "GET", admin + "/config/version")
    assert version["version"] == done["version"]
    # The key rotated since stays rotated (enabled again, with its new key), and is named.
    assert done["keys_left_out"] == [{"name": "team", "reason": "rotated"}]
    for key, expected in (("sk-team-old-key", 401), ("sk-team-new-key", 200)):
        async with http.post(
            url + "/v1/chat/completions",
            json={"model": "m"},
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            assert r.status == expected
    status, change = await call(http, "GET", admin + f"/config/history/{done['version']}")
    assert {c["changed_by"] for c in change["changes"]} == {"admin:ops"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "param"),
    [
        ("POST", "/config/rollback", {"data": b"{not json"}, None),
        ("POST", "/config/rollback", {"json": [1]}, None),
        ("POST", "/config/rollback", {"json": {"version": "three"}}, "version"),
        ("POST", "/config/rollback", {"json": {"version": "-3"}}, "version"),
        ("POST", "/config/rollback", {"json": {"version": True}}, "version"),
        ("POST", "/config/rollback", {"json": {"version": 999}}, "version"),
        ("GET", "/config/history?limit=0", {}, "limit"),
        ("GET", "/config/history?limit=x", {}, "limit"),
        ("GET", "/config/history?table=users", {}, "table"),
        ("GET", "/config/history/abc", {}, "version"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    config_dsn: str,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    param: str | None,
) -> None:
    from llm_proxy.config.model import Config

    base = Config(require_auth=False, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
    url = await start_db_proxy(start_proxy, config_dsn, base)
    status, body = await call(http, method, url + "/admin/v1" + path, **kwargs)
    assert status == 400, body
    assert body["error"]["param"] == param
    status, body = await call(http, "GET", url + "/admin/v1/config/history/12345")
    assert status == 404
    assert_error(body, "not_found")


async def raw_get(url: str, target: str, headers: str = "") -> tuple[int, bytes]:
    """GET `target` exactly as written (an HTTP client would normalise it first)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
        writer.write(head.encode())
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def test_only_the_openapi_document_itself_is_open(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    """The guard once let through every path ending in `/openapi.json` (a handler with an
    `{id}` of `openapi.json`, without an admin key)."""
    config = make_config(provider("a", upstream.api_base, {"m": None}), **SETTINGS)
    url = await start_proxy(config)
    status, body = await raw_get(url, "/admin/v1/openapi.json")
    assert status == 200 and b'"openapi"' in body
    for target in (
        "/admin/v1/config/history/openapi.json",
        "/admin/v1/providers/openapi.json",
        "/admin/v1/logs/requests/openapi.json",
        "/admin/v1/x/../openapi.json",
        "/admin/v1/config/history/..%2fopenapi.json",
        "/admin/v1/config/history/%2e%2e/openapi.json",
        "/admin/v1/config/history/openapi%2ejson",
        "/admin/v1//openapi.json",
        "/admin//v1/openapi.json",
        "/admin/v1/openapi.json/",
        "/admin/v1/%6fpenapi.json",
    ):
        status, body = await raw_get(url, target)
        assert status in (401, 404), (target, status, body)
        if status == 401:
            assert orjson.loads(body)["error"]["code"] == "invalid_admin_key", target
        # With the admin key, the same request is not refused for want of one.
        status, body = await raw_get(url, target, f"Authorization: {ADMIN['Authorization']}\r\n")
        assert status != 401, target
