"""The cloud provider types in database mode: their settings in the `params` column, read by
the same rules as YAML; psql edits validated (a bad one is refused and the running proxy keeps
what it served); their credentials never in the config history yet restored by a rollback;
export/import; the migration (013) and its way back."""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from llm_proxy.cli import main
from llm_proxy.config import history, migrate
from llm_proxy.config.database import load_once
from llm_proxy.config.export import cloud_variable, key_variable, provider_data
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config, bedrock_api_base, vertex_api_base
from tests.helpers import ProxyFactory, eventually, sample, scrape
from tests.helpers.admin import ADMIN, call
from tests.helpers.cloud_config import (
    AWS_KEY_ID,
    AWS_SECRET,
    AWS_TOKEN,
    GEMINI_KEY,
    SERVICE_ACCOUNT_JSON,
    leaked,
)
from tests.helpers.db import OPEN, db_version, start_db_proxy

ADMIN_BASE = Config(require_auth=False, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
INSERT = (
    "INSERT INTO providers (name, provider_type, api_base, api_key, model_mapping, params)"
    " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)"
)
BEDROCK_PARAMS: dict[str, Any] = {
    "region": "eu-central-1",
    "aws_access_key_id": AWS_KEY_ID,
    "aws_secret_access_key": AWS_SECRET,
    "aws_session_token": AWS_TOKEN,
}
VERTEX_PARAMS: dict[str, Any] = {"location": "us-east5", "credentials_json": SERVICE_ACCOUNT_JSON}
ROWS: tuple[tuple[str, str, str, str, dict[str, Any], dict[str, Any]], ...] = (
    (
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        GEMINI_KEY,
        {"gemini-flash": "gemini-2.5-flash"},
        {},
    ),
    (
        "vertex",
        "vertex",
        vertex_api_base("us-east5"),
        "",
        {"claude-sonnet": "claude-sonnet-4@20250514"},
        VERTEX_PARAMS,
    ),
    (
        "bedrock",
        "bedrock",
        bedrock_api_base("eu-central-1"),
        "",
        {"claude": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"},
        BEDROCK_PARAMS,
    ),
)


async def insert_rows(sql: asyncpg.Connection) -> None:
    for name, kind, base, key, mapping, params in ROWS:
        await sql.execute(
            INSERT,
            name,
            kind,
            base,
            key,
            orjson.dumps(mapping).decode(),
            orjson.dumps(params).decode(),
        )


async def test_rows_are_read_like_yaml(config_dsn: str) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert_rows(sql)
        config, _ = await load_once(config_dsn, OPEN)
        g, v, b = config.providers
        assert (g.api_base, g.auth, g.api_key) == (
            "https://generativelanguage.googleapis.com",  # the version dropped
            "x-goog-api-key",
            GEMINI_KEY,
        )
        assert (v.location, v.project, v.credentials_json, v.auth) == (
            "us-east5",
            None,  # the service account's project_id serves
            SERVICE_ACCOUNT_JSON,
            "none",
        )
        assert v.model_mapping[0].target == "claude-sonnet-4@20250514"
        assert (b.region, b.aws_access_key_id, b.aws_secret_access_key, b.aws_session_token) == (
            "eu-central-1",
            AWS_KEY_ID,
            AWS_SECRET,
            AWS_TOKEN,
        )
        # Errors name the row and the column, never the secret.
        await sql.execute(
            "UPDATE providers SET params = params - 'aws_secret_access_key' WHERE name = 'bedrock'"
        )
        with pytest.raises(ConfigError) as exc:
            await load_once(config_dsn, OPEN)
        assert str(exc.value) == (
            "providers[2].aws_secret_access_key (table providers, row id=3 ('bedrock'), column "
            "params): is required with the other static key: give aws_access_key_id and "
            "aws_secret_access_key together (or neither)"
        )
        await sql.execute(
            "UPDATE providers SET params = $1::jsonb WHERE name = 'bedrock'",
            orjson.dumps({**BEDROCK_PARAMS, "location": "us-east5"}).decode(),
        )
        with pytest.raises(ConfigError) as exc:
            await load_once(config_dsn, OPEN)
        assert leaked(str(exc.value)) == []
        assert str(exc.value).startswith(
            "providers[2].location (table providers, row id=3 ('bedrock'), column params): "
            "is only for provider_type vertex (this one is bedrock)"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await sql.execute("UPDATE providers SET provider_type = 'gcp'")
    finally:
        await sql.close()


async def rejected(http: aiohttp.ClientSession, url: str) -> bool:
    """Once `url` counted a rejected reload (an edit its rules refuse)."""

    async def counted() -> bool:
        families = await scrape(http, url)
        return bool(sample(families, "llm_proxy_config_reloads_total", result="error"))

    return await eventually(counted, what="a rejected reload counted")


async def test_a_bad_psql_edit_is_refused_and_the_proxy_keeps_serving(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert_rows(sql)
        url = await start_db_proxy(start_proxy, config_dsn, ADMIN_BASE)
        served = await db_version(sql)
        # The region moved without the endpoint: refused (calls would go to the old one).
        await sql.execute(
            'UPDATE providers SET params = params || \'{"region": "us-west-2"}\' '
            "WHERE name = 'bedrock'"
        )
        await rejected(http, url)
        with pytest.raises(ConfigError) as exc:
            await load_once(config_dsn, ADMIN_BASE)
        assert str(exc.value) == (
            "providers[2].api_base (table providers, row id=3 ('bedrock'), column api_base): is "
            "the endpoint of region eu-central-1, but region is us-west-2: change both, or "
            "leave api_base out"
        )
        status, config = await call(http, "GET", url + "/admin/v1/config")
        assert status == 200
        bedrock = config["providers"][2]
        assert (bedrock["region"], bedrock["api_base"]) == (
            "eu-central-1",
            bedrock_api_base("eu-central-1"),
        )
        async with http.get(url + "/health/detailed", headers=ADMIN) as r:
            assert str((await r.json())["config_version"]) == served
    finally:
        await sql.close()


async def test_the_history_holds_no_credential_and_rollback_restores_them(
    config_dsn: str,
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert_rows(sql)
        created = int(await db_version(sql))
        await sql.execute(
            "UPDATE providers SET params = params || $1::jsonb WHERE name = 'bedrock'",
            orjson.dumps(
                {"aws_access_key_id": "AKIANEWKEY0123456789", "aws_secret_access_key": "new/se"}
            ).decode(),
        )
        recorded = await sql.fetch("SELECT before::text, after::text FROM config_history")
        assert leaked(str(recorded)) == [] and "new/se" not in str(recorded)
        (change,) = await history.history(sql, table="providers", limit=1)
        assert change.fields_changed() == [
            "aws_access_key_id_sha256",
            "aws_secret_access_key_sha256",
            "params",
        ]
        assert change.after is not None and change.before is not None
        assert change.before["params"]["aws_secret_access_key"] == "wJa...EKEY"
        assert change.after["params"]["aws_secret_access_key"] == "..."  # 8 characters or less
        assert change.after["params"]["region"] == "eu-central-1"  # not a secret: as it is
        (vertex_insert,) = [
            c for c in await history.history(sql, table="providers", limit=10) if c.name == "vertex"
        ]
        assert vertex_insert.after is not None
        assert vertex_insert.after["params"]["credentials_json"] == '{"t...en"}'
        assert vertex_insert.after["params"]["location"] == "us-east5"
        await history.rollback(sql, created, "cli:test")
        _, v, b = (await load_once(config_dsn, OPEN))[0].providers
        assert (b.aws_access_key_id, b.aws_secret_access_key, b.aws_session_token) == (
            AWS_KEY_ID,
            AWS_SECRET,
            AWS_TOKEN,
        )
        assert v.credentials_json == SERVICE_ACCOUNT_JSON
        # A secret no longer kept: the rollback is refused, nothing changes.
        await sql.execute("DELETE FROM config_secrets WHERE value = $1", f'"{AWS_TOKEN}"')
        await sql.execute("UPDATE providers SET params = params - 'aws_session_token'")
        with pytest.raises(history.HistoryError, match="no longer in config_secrets"):
            await history.rollback(sql, created, "cli:test")
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
        await insert_rows(sql)
    finally:
        await sql.close()

    def run(*args: str) -> str:
        assert main(list(args)) == 0
        return capsys.readouterr().out

    text = await asyncio.to_thread(run, "export-config", "--db-url", config_dsn)
    assert leaked(text) == []
    assert "aws_secret_access_key: ${LLM_PROXY_AWS_SECRET_ACCESS_KEY_BEDROCK}" in text
    assert "credentials_json: ${LLM_PROXY_CREDENTIALS_JSON_VERTEX}" in text
    assert "region: eu-central-1" in text and "location: us-east5" in text
    assert "api_base" not in text  # each the type's default
    exported = tmp_path / "exported.yaml"
    exported.write_text(text)
    monkeypatch.setenv(key_variable("gemini"), GEMINI_KEY)
    monkeypatch.setenv(cloud_variable("vertex", "credentials_json"), SERVICE_ACCOUNT_JSON)
    for name, value in BEDROCK_PARAMS.items():
        if name != "region":
            monkeypatch.setenv(cloud_variable("bedrock", name), value)
    out = await asyncio.to_thread(run, "import-config", str(exported), "--db-url", other_config_dsn)
    assert out.startswith("imported 3 providers")
    again = await asyncio.to_thread(run, "export-config", "--db-url", other_config_dsn)
    assert again.splitlines()[1:] == text.splitlines()[1:]
    first = (await load_once(config_dsn, OPEN))[0].providers
    second = (await load_once(other_config_dsn, OPEN))[0].providers
    assert [provider_data(p) for p in first] == [provider_data(p) for p in second]
    conn = await asyncpg.connect(other_config_dsn)
    try:
        params = await conn.fetchval("SELECT params::text FROM providers WHERE name = 'bedrock'")
        assert orjson.loads(params) == BEDROCK_PARAMS
    finally:
        await conn.close()


async def test_the_migration_down_refuses_while_a_cloud_provider_exists(
    config_dsn: str,
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await insert_rows(sql)
        later = await migrate.migrate_down(sql, 5)  # 018 to 014 first
        assert [m.name for m in later] == [
            "request_log_team",
            "teams",
            "key_lifetimes",
            "request_log_cache",
            "routing",
        ]
        with pytest.raises(asyncpg.ObjectInUseError, match="gemini, vertex or bedrock exist"):
            await migrate.migrate_down(sql, 1)
        await sql.execute("DELETE FROM providers")
        (reverted,) = await migrate.migrate_down(sql, 1)
        assert reverted.name == "cloud_providers"
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_rows(sql)
        # The history of what was deleted stays masked on the way down.
        recorded = await sql.fetch("SELECT before::text, after::text FROM config_history")
        assert leaked(str(recorded)) == []
        assert [m.name for m in await migrate.migrate_up(sql)] == [
            "cloud_providers",
            "routing",
            "request_log_cache",
            "key_lifetimes",
            "teams",
            "request_log_team",
        ]
        await insert_rows(sql)
    finally:
        await sql.close()
