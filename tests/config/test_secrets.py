"""A provider's `query_params` values (some providers take their key as `?key=`) and the
password of its forward proxy (`proxy: http://user:password@host:port`) are secrets like its
`api_key`: never in the log, /health/detailed, the error log, the admin API, the history, an
export or check-config; shown masked, kept when a masked value is sent back, exported as
variables that give them back on import. Only a query parameter known to carry none
(`api-version`) is shown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
import pytest
import structlog
from aiohttp import web

from llm_proxy.cli import main
from llm_proxy.config.export import export_yaml, secret_variables
from llm_proxy.config.migrate import migrate_up
from llm_proxy.config.validate import parse_config
from llm_proxy.config.yaml_file import load_config_text
from tests.helpers import ProxyFactory, free_port, make_config, provider, serve
from tests.helpers.admin import ADMIN, call
from tests.helpers.db import start_db_proxy, wait_rows

QUERY_SECRET = "qk-0123456789abcdef/+secret"  # `/` and `+` are percent-encoded in a URL
PROXY_PASSWORD = "pp-0123456789abcdef"
API_VERSION = "2024-10-21"
SECRETS = (QUERY_SECRET, quote(QUERY_SECRET, safe=""), PROXY_PASSWORD)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


class Shown:
    """Everything the channels showed, by channel."""

    def __init__(self) -> None:
        self.by_channel: dict[str, str] = {}

    def add(self, channel: str, text: str) -> None:
        self.by_channel[channel] = self.by_channel.get(channel, "") + text

    def leaks(self) -> dict[str, list[str]]:
        found = {channel: leaked(text) for channel, text in self.by_channel.items()}
        return {channel: secrets for channel, secrets in found.items() if secrets}

    def __contains__(self, text: str) -> bool:
        return any(text in shown for shown in self.by_channel.values())


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[str]]]:
    """An upstream that fails every chat with a 500 whose message repeats the URL it was
    called with (gateways do), and records that URL."""
    seen: list[str] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        error = {"message": f"backend failed for {request.path_qs}", "type": "server_error"}
        return web.json_response({"error": {**error, "code": "backend_down"}}, status=500)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serve(app) as url:
        yield url + "/v1", seen


def rows_of(dead: int, echo_base: str, dead_proxy: int) -> list[dict[str, Any]]:
    query = {"key": QUERY_SECRET, "api-version": API_VERSION}
    return [
        {
            "name": "keyed",
            "api_base": f"http://127.0.0.1:{dead}/v1",
            "model_mapping": {"m-dead": None},
            "params": {"query_params": query},
        },
        {
            "name": "echo",
            "api_base": echo_base,
            "model_mapping": {"m-echo": None},
            "params": {"query_params": query},
        },
        {
            "name": "proxied",
            "api_base": "http://api.example.invalid/v1",
            "model_mapping": {"m-proxy": None},
            "params": {"proxy": f"http://user:{PROXY_PASSWORD}@127.0.0.1:{dead_proxy}"},
        },
    ]


async def stored_params(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT name, params::text FROM providers")
    finally:
        await conn.close()
    return {r["name"]: orjson.loads(r["params"]) for r in rows}


async def test_query_params_and_proxy_passwords_never_leave_the_proxy(
    config_dsn: str,
    other_config_dsn: str,
    echo: tuple[str, list[str]],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo_base, echo_seen = echo
    base = parse_config(
        {
            "require_auth": False,
            "admin_keys": {"ops": "adm-ops-0123456789abcdef"},
            "request_log": {"database_url": config_dsn, "flush_interval_secs": 0.05},
        }
    )
    shown = Shown()
    with structlog.testing.capture_logs() as logs:
        url = await start_db_proxy(start_proxy, config_dsn, base)
        ids = {}
        for row in rows_of(free_port(), echo_base, free_port()):
            status, created = await call(http, "POST", url + "/admin/v1/providers", json=row)
            assert status == 201, created
            shown.add("admin API", orjson.dumps(created).decode())
            ids[row["name"]] = created["id"]
        created_at = created["config_version"]
        for model in ("m-dead", "m-echo", "m-proxy"):
            async with http.post(
                url + "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            ) as resp:
                assert resp.status >= 500, model
        sent = f"/v1/chat/completions?key={quote(QUERY_SECRET, safe='')}&api-version={API_VERSION}"
        assert set(echo_seen) == {sent}  # (retried: the only provider of its model)
        calls = len(echo_seen)

        # The admin API shows them masked, api-version as it is.
        status, keyed = await call(http, "GET", f"{url}/admin/v1/providers/{ids['keyed']}")
        assert keyed["params"]["query_params"] == {"key": "qk-...cret", "api-version": API_VERSION}
        status, proxied = await call(http, "GET", f"{url}/admin/v1/providers/{ids['proxied']}")
        assert proxied["params"]["proxy"].startswith("http://***@127.0.0.1:")
        # Read, edit, write back (PUT and PATCH): the masked values keep the secrets.
        for name, row in (("keyed", keyed), ("proxied", proxied)):
            body = {k: row[k] for k in ("name", "api_base", "model_mapping", "params")}
            status, put = await call(
                http, "PUT", f"{url}/admin/v1/providers/{ids[name]}", json={**body, "weight": 2}
            )
            assert status == 200, put
            status, patched = await call(
                http,
                "PATCH",
                f"{url}/admin/v1/providers/{ids[name]}",
                json={"params": row["params"], "weight": 3},
            )
            assert status == 200, patched
            shown.add("admin API", orjson.dumps([put, patched]).decode())
        params = await stored_params(config_dsn)
        assert params["keyed"]["query_params"]["key"] == QUERY_SECRET
        assert PROXY_PASSWORD in params["proxied"]["proxy"]
        # A rollback restores them from what the history keeps unshown.
        status, done = await call(
            http, "POST", url + "/admin/v1/config/rollback", json={"version": created_at}
        )
        assert status == 200, done
        assert await stored_params(config_dsn) == params
        async with http.post(
            url + "/v1/chat/completions", json={"model": "m-echo", "messages": []}
        ) as resp:
            assert resp.status == 500
        assert len(echo_seen) > calls and set(echo_seen) == {sent}  # the key is still sent

        await wait_rows(config_dsn, "SELECT * FROM error_logs", 3)
        for path in (
            "/health/detailed",
            "/admin/v1/providers",
            "/admin/v1/config",
            "/admin/v1/config/export",
            "/admin/v1/config/history?limit=100",
            "/admin/v1/logs/errors",
            "/admin/v1/logs/requests",
        ):
            async with http.get(url + path, headers=ADMIN) as r:
                assert r.status == 200, path
                shown.add(path, await r.text())
        _, page = await call(http, "GET", url + "/admin/v1/config/history?limit=100")
        for version in {c["version"] for c in page["data"]}:
            _, changes = await call(http, "GET", f"{url}/admin/v1/config/history/{version}")
            shown.add("history", orjson.dumps(changes).decode())
    shown.add("structlog", repr(logs))
    shown.add("logging", caplog.text)
    for table in ("error_logs", "request_logs", "config_history"):
        conn = await asyncpg.connect(config_dsn)
        try:
            shown.add(table, str(await conn.fetch(f"SELECT * FROM {table}")))
        finally:
            await conn.close()

    def run(*args: str) -> str:
        code = main(list(args))
        out = capsys.readouterr()
        assert code == 0, out
        return out.out + out.err

    exported = await asyncio.to_thread(run, "export-config", "--db-url", config_dsn)
    shown.add("export-config", exported)
    check = await asyncio.to_thread(run, "check-config", "--db-url", config_dsn, "--connect")
    shown.add("check-config", check)
    shown.add(
        "config history", await asyncio.to_thread(run, "config", "history", "--db-url", config_dsn)
    )
    assert "qk-...cret" in shown and f"api-version: '{API_VERSION}'" in exported
    leaks = shown.leaks()
    assert not leaks, sorted(leaks)

    # The export gives the secrets back on import, from the variables it names.
    monkeypatch.setenv("LLM_PROXY_QUERY_KEYED_KEY", QUERY_SECRET)
    monkeypatch.setenv("LLM_PROXY_QUERY_ECHO_KEY", QUERY_SECRET)
    monkeypatch.setenv("LLM_PROXY_PROXY_PASSWORD_PROXIED", PROXY_PASSWORD)
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    other = other_config_dsn
    await asyncio.to_thread(run, "import-config", str(path), "--db-url", other)
    assert await stored_params(other) == await stored_params(config_dsn)


YAML = """
require_auth: false
admin_key: adm-ops-0123456789abcdef
providers:
  - name: gemini
    api_base: BASE
    query_params: {key: QUERY, api-version: '2024-10-21'}
    proxy: http://user:PASSWORD@127.0.0.1:PORT
    model_mapping: {m: null}
"""


async def test_yaml_mode_check_config_admin_api_and_export(
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (
        YAML.replace("BASE", "http://api.example.invalid/v1")
        .replace("QUERY", QUERY_SECRET)
        .replace("PASSWORD", PROXY_PASSWORD)
        .replace("PORT", str(free_port()))
    )
    config = load_config_text(text, {})
    assert leaked(repr(config)) == []
    url = await start_proxy(config)
    shown = Shown()
    for path in ("/admin/v1/config", "/admin/v1/providers", "/admin/v1/providers/1"):
        async with http.get(url + path, headers=ADMIN) as r:
            assert r.status == 200
            shown.add(path, await r.text())
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert await asyncio.to_thread(main, ["check-config", str(path)]) == 0
    out = capsys.readouterr()
    shown.add("check-config", out.out + out.err)
    exported = export_yaml(config, version="1")
    shown.add("export", exported)
    assert "key=qk-...cret" in out.out and f"api-version={API_VERSION}" in out.out
    leaks = shown.leaks()
    assert not leaks, sorted(leaks)
    variables = secret_variables(config.providers[0])
    assert variables == ["LLM_PROXY_QUERY_GEMINI_KEY", "LLM_PROXY_PROXY_PASSWORD_GEMINI"]
    env = dict(zip(variables, (QUERY_SECRET, PROXY_PASSWORD), strict=True))
    again = load_config_text(exported, env)
    assert again.providers == config.providers
    # With secrets (the CLI's --with-secrets), written as they are.
    assert load_config_text(export_yaml(config, version="1", with_secrets=True), {}).providers == (
        config.providers
    )


def test_the_provider_repr_holds_no_query_secret() -> None:
    config = make_config(
        provider("p", "http://h/v1", {"m": None}, query_params={"key": "qsecret1"})
    )
    assert "qsecret1" not in repr(config)


async def test_history_recorded_before_the_migration_is_masked_and_still_restores(
    pg_dsn: str, tmp_path: Path
) -> None:
    from llm_proxy.config.migrate import SQL_DIR, discover, migrate_down

    for path in SQL_DIR.glob("00[1-8]_*.sql"):  # the schema before secret params were masked
        (tmp_path / path.name).write_text(path.read_text())
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate_up(conn, tmp_path)
        params = {
            "query_params": {"key": QUERY_SECRET, "api-version": API_VERSION},
            "proxy": f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128",
        }
        await conn.execute(
            "INSERT INTO providers (name, api_base, params) VALUES ('p', 'http://h/v1', $1::jsonb)",
            orjson.dumps(params).decode(),
        )
        recorded = int(await conn.fetchval("SELECT version FROM config_version"))
        await conn.execute("DELETE FROM providers")
        history = "SELECT before::text, after::text FROM config_history"
        assert leaked(str(await conn.fetch(history)))  # (what the migration has to mask)
        await migrate_up(conn)
        shown = str(await conn.fetch(history))
        assert (
            leaked(shown) == [] and "qk-...cret" in shown and "http://***@127.0.0.1:3128" in shown
        )
        await conn.execute("SELECT llm_proxy_rollback($1)", recorded)
        assert orjson.loads(await conn.fetchval("SELECT params::text FROM providers")) == params
        # Down again: the history holds them as the older functions expect.
        await migrate_down(conn, sum(1 for m in discover() if m.version >= 9))
        await conn.execute("DELETE FROM providers")
        await conn.execute("SELECT llm_proxy_rollback($1)", recorded)
        assert orjson.loads(await conn.fetchval("SELECT params::text FROM providers")) == params
    finally:
        await conn.close()


def test_console_tracebacks_show_no_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """A traceback's local variables hold keys (a request's Authorization header, a provider's
    params): the console format (rich, when installed) must not print them."""
    from llm_proxy.observe import log

    def fail(api_key: str) -> None:
        raise ValueError("boom")

    log.configure("console")
    try:
        try:
            fail(QUERY_SECRET)
        except ValueError:
            structlog.get_logger().exception("unhandled_error")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "boom" in err and "unhandled_error" in err
    assert leaked(err) == []
