"""`allowed_models: []`: the original llm-proxy read it as every model, earlier versions of this
proxy as no model. It is refused everywhere a key is written (YAML, database rows, the admin
API, which validates its writes with the database's rules), with the two ways to say what was
meant; `null` / omitted and `["*"]` mean every model."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from llm_proxy.config.database import build_config, fetch
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.master_keys import EMPTY_ALLOWED_MODELS
from llm_proxy.config.model import Config
from llm_proxy.config.yaml_file import load_config_text
from llm_proxy.proxy.keyring import KeyRing
from tests.helpers import ProxyFactory
from tests.helpers.admin import call
from tests.helpers.db import add_provider, db_version, start_db_proxy

YAML = """\
providers:
  - name: one
    api_base: https://one.example/v1
    api_key: sk-upstream
    model_mapping: {gpt-4o: gpt-4o, claude-3: claude-3}
master_keys:
  - name: team
    key: sk-team-key-0123
{allowed}
"""


def load(allowed: str) -> Config:
    return load_config_text(YAML.replace("{allowed}", allowed), {})


def test_an_empty_list_is_refused_naming_the_line_and_both_fixes() -> None:
    with pytest.raises(ConfigError) as exc:
        load("    allowed_models: []")
    assert str(exc.value) == f"master_keys[0].allowed_models (line 9): {EMPTY_ALLOWED_MODELS}"
    assert 'write ["*"]' in EMPTY_ALLOWED_MODELS and "enabled: false" in EMPTY_ALLOWED_MODELS


@pytest.mark.parametrize("allowed", ["", "    allowed_models:", "    allowed_models: ['*']"])
def test_every_model_is_written_by_omitting_it_or_with_a_star(allowed: str) -> None:
    config = load(allowed)
    keys = KeyRing(config.master_keys, ["gpt-4o", "claude-3"])
    entry = keys.authenticate("sk-team-key-0123")
    assert entry.may_use("gpt-4o") and entry.may_use("claude-3")


def test_a_list_restricts() -> None:
    config = load("    allowed_models: [gpt-*]")
    entry = KeyRing(config.master_keys, ["gpt-4o", "claude-3"]).authenticate("sk-team-key-0123")
    assert entry.may_use("gpt-4o") and not entry.may_use("claude-3")


async def test_an_empty_array_in_a_row_is_refused_naming_the_row(
    sql: asyncpg.Connection,
) -> None:
    await add_provider(sql, "alpha", "https://api.example/v1", {"m": None})
    await sql.execute(
        "INSERT INTO credentials (name, key, allowed_models) VALUES ('team', 'sk-team-0123', '{}')"
    )
    row_id = await sql.fetchval("SELECT id FROM credentials")
    with pytest.raises(ConfigError) as exc:
        build_config(Config(), await fetch(sql))
    assert str(exc.value) == (
        f"master_keys[0].allowed_models (table credentials, row id={row_id} ('team'), "
        f"column allowed_models): {EMPTY_ALLOWED_MODELS}"
    )
    # The fix the message gives works.
    await sql.execute("UPDATE credentials SET allowed_models = NULL")
    config = build_config(Config(), await fetch(sql))
    assert config.master_keys[0].allowed_models is None


async def test_the_admin_api_refuses_it_and_writes_nothing(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    base = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
    url = await start_db_proxy(start_proxy, config_dsn, base)
    sql = await asyncpg.connect(config_dsn)
    try:
        before = await db_version(sql)
        body: dict[str, Any] = {"name": "team", "key": "sk-team-0123456", "allowed_models": []}
        status, answer = await call(http, "POST", url + "/admin/v1/credentials", json=body)
        assert status == 400, answer
        assert EMPTY_ALLOWED_MODELS in answer["error"]["message"]
        assert await db_version(sql) == before
        assert await sql.fetchval("SELECT count(*) FROM credentials") == 0
        status, answer = await call(
            http, "POST", url + "/admin/v1/credentials", json={**body, "allowed_models": None}
        )
        assert status == 201, answer
        assert answer["allowed_models"] is None
    finally:
        await sql.close()
