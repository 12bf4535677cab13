"""The cloud provider types through the admin API: made, read, edited and written back
(credentials shown masked, a masked value sent back keeps the secret), bad bodies answered
400 naming the field, and no credential in anything the API shows (the config, the history,
the export: variables instead)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from llm_proxy.config.database import load_once
from llm_proxy.config.model import (
    GEMINI_API_BASE,
    Config,
    bedrock_api_base,
    vertex_api_base,
)
from llm_proxy.config.yaml_file import load_config_text
from tests.helpers import ProxyFactory
from tests.helpers.admin import ADMIN, call
from tests.helpers.cloud_config import (
    AWS_KEY_ID,
    AWS_SECRET,
    AWS_TOKEN,
    GEMINI_KEY,
    SERVICE_ACCOUNT_JSON,
    leaked,
)
from tests.helpers.db import start_db_proxy

ADMIN_BASE = Config(require_auth=False, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
BODIES: dict[str, dict[str, Any]] = {
    "gemini": {
        "name": "gemini",
        "provider_type": "gemini",
        "api_key": GEMINI_KEY,
        "model_mapping": {"gemini-flash": "gemini-2.5-flash"},
    },
    "vertex": {
        "name": "vertex",
        "provider_type": "vertex",
        "model_mapping": {"claude-sonnet": "claude-sonnet-4@20250514"},
        "params": {"location": "us-east5", "credentials_json": SERVICE_ACCOUNT_JSON},
    },
    "bedrock": {
        "name": "bedrock",
        "provider_type": "bedrock",
        "model_mapping": {"claude": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"},
        "params": {
            "region": "eu-central-1",
            "aws_access_key_id": AWS_KEY_ID,
            "aws_secret_access_key": AWS_SECRET,
            "aws_session_token": AWS_TOKEN,
            "request_timeout_secs": 300,
        },
    },
}


async def shown_everywhere(http: aiohttp.ClientSession, url: str) -> str:
    """Everything the admin API shows of the configuration, as one text."""
    text = ""
    for path in ("/providers", "/config", "/config/history?limit=50", "/config/export"):
        async with http.get(url + "/admin/v1" + path, headers=ADMIN) as r:
            assert r.status == 200, path
            text += await r.text()
    return text


async def test_each_type_made_read_and_written_back(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, ADMIN_BASE)
    made = {}
    for kind, body in BODIES.items():
        status, created = await call(http, "POST", url + "/admin/v1/providers", json=body)
        assert status == 201, created
        made[kind] = created
    # api_base: the type's own (of the location, the region).
    assert [made[k]["api_base"] for k in BODIES] == [
        GEMINI_API_BASE,
        vertex_api_base("us-east5"),
        bedrock_api_base("eu-central-1"),
    ]
    assert made["gemini"]["api_key"] == "AIz...rstu"
    assert made["vertex"]["params"] == {"location": "us-east5", "credentials_json": '{"t...en"}'}
    assert made["bedrock"]["params"] == {
        "region": "eu-central-1",
        "aws_access_key_id": "AKI...MPLE",
        "aws_secret_access_key": "wJa...EKEY",
        "aws_session_token": "Fwo...6789",
        "request_timeout_secs": 300,
    }
    # Read, edit one setting, write the row back as shown: every secret is kept.
    for kind in BODIES:
        row_url = f"{url}/admin/v1/providers/{made[kind]['id']}"
        status, row = await call(http, "GET", row_url)
        assert status == 200 and leaked(json.dumps(row)) == []
        edited = {k: v for k, v in row.items() if k not in ("id", "created_at", "updated_at")}
        edited["weight"] = 3
        status, put = await call(http, "PUT", row_url, json=edited)
        assert status == 200, put
    (config, _) = await load_once(config_dsn, ADMIN_BASE)
    g, v, b = config.providers
    assert (g.api_key, g.weight, g.auth) == (GEMINI_KEY, 3, "x-goog-api-key")
    assert (v.credentials_json, v.location, v.weight) == (SERVICE_ACCOUNT_JSON, "us-east5", 3)
    assert (b.aws_access_key_id, b.aws_secret_access_key, b.aws_session_token) == (
        AWS_KEY_ID,
        AWS_SECRET,
        AWS_TOKEN,
    )
    assert (b.region, b.timeouts.request_timeout_secs, b.weight) == ("eu-central-1", 300, 3)
    # PATCH a new secret: it replaces the old one.
    status, patched = await call(
        http,
        "PATCH",
        f"{url}/admin/v1/providers/{made['bedrock']['id']}",
        json={"params": {"region": "eu-central-1", "aws_profile": "prod"}},
    )
    assert status == 200, patched
    (config, _) = await load_once(config_dsn, ADMIN_BASE)
    assert (config.providers[2].aws_profile, config.providers[2].aws_access_key_id) == (
        "prod",
        None,
    )
    shown = await shown_everywhere(http, url)
    assert leaked(shown) == []
    assert "${LLM_PROXY_KEY_GEMINI}" in shown
    assert "${LLM_PROXY_CREDENTIALS_JSON_VERTEX}" in shown
    assert "aws_profile: prod" in shown


@pytest.mark.parametrize(
    ("kind", "change", "param", "message"),
    [
        (
            "bedrock",
            {"params": {"aws_access_key_id": AWS_KEY_ID}},
            "params",
            "`params.region` is required for provider_type bedrock",
        ),
        (
            "bedrock",
            {"params": {"region": "eu-central-1", "aws_access_key_id": AWS_KEY_ID}},
            "params",
            "aws_secret_access_key (table providers, row id=",
        ),
        (
            "bedrock",
            {"params": {"region": "eu-central-1", "aws_profile": "p", "aws_session_token": "t"}},
            "params",
            "aws_session_token (table providers, row id=",
        ),
        ("vertex", {"api_key": GEMINI_KEY}, "api_key", "is not used by provider_type vertex"),
        (
            "vertex",
            {"params": {"credentials_json": SERVICE_ACCOUNT_JSON.replace("client_email", "x")}},
            "params",
            "(service_account) lacks client_email",
        ),
        ("vertex", {"params": {"location": "moon"}}, "params", "must be global or a Google"),
        ("vertex", {"params": {"auth": "bearer"}}, "params", "auth (table providers, row id="),
        ("gemini", {"api_key": ""}, "api_key", "is required for provider_type gemini"),
        ("gemini", {"params": {"region": "us-east-1"}}, "params", "is only for provider_type"),
        ("gemini", {"provider_type": "gcp"}, "provider_type", "bedrock"),
    ],
)
async def test_bad_writes_are_400s_naming_the_field(
    config_dsn: str,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    kind: str,
    change: dict[str, Any],
    param: str,
    message: str,
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, ADMIN_BASE)
    body = {**BODIES[kind], **change}
    status, answer = await call(http, "POST", url + "/admin/v1/providers", json=body)
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer
    assert message in answer["error"]["message"], answer
    assert leaked(json.dumps(answer)) == []
    status, listed = await call(http, "GET", url + "/admin/v1/providers")
    assert listed["data"] == []


YAML = f"""
require_auth: false
admin_key: adm-ops-0123456789abcdef
providers:
  - name: vertex
    provider_type: vertex
    project: my-project-123
    credentials_json: '{SERVICE_ACCOUNT_JSON}'
  - name: bedrock
    provider_type: bedrock
    region: us-east-1
    aws_access_key_id: {AWS_KEY_ID}
    aws_secret_access_key: {AWS_SECRET}
"""


async def test_yaml_mode_shows_the_settings_masked(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(load_config_text(YAML, {}))
    status, listed = await call(http, "GET", url + "/admin/v1/providers")
    assert status == 200 and listed["source"] == "file"
    vertex, bedrock = listed["data"]
    assert (vertex["project"], vertex["location"], vertex["credentials_json"]) == (
        "my-project-123",
        "global",
        '{"t...en"}',
    )
    assert (vertex["region"], vertex["aws_access_key_id"], vertex["auth"]) == (None, None, "none")
    assert (bedrock["region"], bedrock["api_base"], bedrock["aws_secret_access_key"]) == (
        "us-east-1",
        bedrock_api_base("us-east-1"),
        "wJa...EKEY",
    )
    assert (bedrock["aws_session_token"], bedrock["aws_profile"]) == (None, None)
    async with http.get(url + "/admin/v1/config", headers=ADMIN) as r:
        assert leaked(await r.text()) == []
