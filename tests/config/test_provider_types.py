"""Providers that are not plain OpenAI: `provider_type: azure` (deployments, api-version, the
`api-key` header), `auth: bearer | api-key | none`, extra `headers` and `query_params`, in YAML,
in database mode (psql and the admin API), through export/import, and never showing a secret
header value (admin API, config history, check-config, export)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from llm_proxy.cli import main
from llm_proxy.config.database import load_once
from llm_proxy.config.export import header_variable, key_variable
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config
from llm_proxy.config.yaml_file import load_config_text
from llm_proxy.errors import ProxyError
from llm_proxy.proxy.client import Client
from llm_proxy.proxy.health_checks import probe
from llm_proxy.proxy.upstream import compile_upstream, request_headers
from tests.helpers import ProxyFactory, make_config, provider, sdk, serve
from tests.helpers.admin import ADMIN, call
from tests.helpers.azure import (
    API_VERSION,
    AZURE_KEY,
    DEPLOYMENT,
    Fake,
    Seen,
    azure_app,
    azure_provider,
    recorder_app,
)
from tests.helpers.db import db_version, start_db_proxy

GATEWAY_SECRET = "gw-secret-0123456789abcdef"
ADMIN_BASE = Config(require_auth=False, admin_keys=(("ops", "adm-ops-0123456789abcdef"),))


@pytest.fixture
async def azure() -> AsyncIterator[Fake]:
    calls: list[Seen] = []
    async with serve(azure_app(calls)) as url:
        yield Fake(url, calls)


@pytest.fixture
async def recorder() -> AsyncIterator[Fake]:
    calls: list[Seen] = []
    async with serve(recorder_app(calls)) as url:
        yield Fake(url + "/v1", calls)


async def sdk_chat(url: str) -> tuple[str, str]:
    """One answer and one stream, through the official SDK: their texts."""
    async with sdk(url) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return reply.choices[0].message.content or "", "".join(parts)


# Azure


async def test_the_sdk_chats_with_an_azure_deployment_through_the_proxy(
    azure: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(make_config(azure_provider(azure.url)))
    assert await sdk_chat(url) == ("Hello from Azure", "Hello from Azure")
    expected = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
    assert [c.path_qs for c in azure.calls] == [expected, expected]
    for seen in azure.calls:
        assert seen.headers.getall("api-key") == [AZURE_KEY]
        assert "Authorization" not in seen.headers  # the client's key never crosses
    # A model mapped to no deployment of that name reaches Azure under its own name: 404.
    async with http.post(url + "/v1/chat/completions", json={"model": "gpt-4o-mini"}) as r:
        assert r.status == 404
    assert azure.calls[-1].path_qs.startswith("/openai/deployments/gpt-4o-mini/chat/completions")


@pytest.mark.parametrize(
    ("change", "status"),
    [({"auth": "bearer"}, 401), ({"query_params": {"api-version": "2024-06-01"}}, 404)],
)
async def test_the_fake_azure_is_strict(
    azure: Fake,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    change: dict[str, Any],
    status: int,
) -> None:
    url = await start_proxy(make_config(azure_provider(azure.url, **change), max_attempts=1))
    async with http.post(url + "/v1/chat/completions", json={"model": "gpt-4o"}) as r:
        assert r.status == status


async def test_azure_health_probes(azure: Fake, client: Client) -> None:
    config = make_config(azure_provider(azure.url))
    upstream = compile_upstream(config.providers[0], config)
    listed = await probe(client, upstream, None, 5.0)  # GET /openai/models
    chatted = await probe(client, upstream, DEPLOYMENT, 5.0)
    assert (listed.status, chatted.status) == (200, 200)
    assert [c.path_qs for c in azure.calls] == [
        f"/openai/models?api-version={API_VERSION}",
        f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}",
    ]


def test_azure_urls() -> None:
    config = make_config(azure_provider("https://res.openai.azure.com"))
    up = compile_upstream(config.providers[0], config)
    base, version = "https://res.openai.azure.com/openai", f"api-version={API_VERSION}"
    chat = up.target("POST", "/chat/completions", DEPLOYMENT)
    assert chat.url == f"{base}/deployments/{DEPLOYMENT}/chat/completions?{version}"
    assert up.target("POST", "/chat/completions", DEPLOYMENT) is chat  # compiled once
    assert (
        up.target("POST", "/embeddings", "emb").url
        == f"{base}/deployments/emb/embeddings?{version}"
    )
    audio = up.target("POST", "/audio/transcriptions", "whisper")
    assert audio.url == f"{base}/deployments/whisper/audio/transcriptions?{version}"
    # Not per deployment: the model travels in the body (or there is none).
    assert up.target("POST", "/responses", DEPLOYMENT).url == f"{base}/responses?{version}"
    assert up.target("GET", "/files/file-1", None).url == f"{base}/files/file-1?{version}"
    assert up.models_target.url == f"{base}/models?{version}"
    # The client's query string follows, without a parameter the provider sets.
    listed = up.target("GET", "/batches", None, "limit=2&api-version=2099-01-01")
    assert listed.url == f"{base}/batches?{version}&limit=2"
    # A deployment name a client chose stays one path segment; a dot segment is a 400
    # (`%2E%2E` is `..` to a server that normalises percent-encoding).
    for name, segment in (("../files", "..%2Ffiles"), ("%2e%2e", "%252e%252e"), ("a b", "a%20b")):
        url = up.target("POST", "/chat/completions", name).url
        assert url == f"{base}/deployments/{segment}/chat/completions?{version}"
    for name in (".", ".."):
        with pytest.raises(ProxyError) as caught:
            up.target("POST", "/chat/completions", name)
        assert caught.value.status == 400


def test_openai_targets_stay_a_dict_lookup() -> None:
    config = make_config(provider("p", "http://h:1/v1", {"m": None}, query_params={"a": "b c"}))
    up = compile_upstream(config.providers[0], config)
    fixed = up.targets["/chat/completions"]
    assert up.target("POST", "/chat/completions", "m") is fixed
    assert fixed.url == "http://h:1/v1/chat/completions?a=b%20c"
    assert up.target("GET", "/files", None, "after=x").url == "http://h:1/v1/files?a=b%20c&after=x"


# auth, headers, query_params


@pytest.mark.parametrize(
    ("auth", "key", "expected"),
    [
        ("bearer", "sk-up-0123456789", {"Authorization": "Bearer sk-up-0123456789"}),
        ("api-key", "sk-up-0123456789", {"api-key": "sk-up-0123456789"}),
        ("none", "", {}),
    ],
)
async def test_auth_decides_the_credential_header(
    recorder: Fake,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    auth: str,
    key: str,
    expected: dict[str, str],
) -> None:
    config = make_config(provider("p", recorder.url, {"m": None}, api_key=key, auth=auth))
    url = await start_proxy(config)
    client = {"Authorization": "Bearer sk-client", "api-key": "client", "x-api-key": "client"}
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=client) as r:
        assert r.status == 200
    (seen,) = recorder.calls
    sent = {k: seen.headers.getall(k, []) for k in ("Authorization", "api-key", "x-api-key")}
    assert {k: v for k, v in sent.items() if v} == {k: [v] for k, v in expected.items()}


async def test_headers_and_query_params_arrive_and_clients_cannot_override_them(
    recorder: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    openrouter = provider(
        "openrouter",
        recorder.url,
        {"m": None},
        headers={"HTTP-Referer": "https://app.example", "X-Title": "My App"},
        query_params={"tenant": "a b&c"},
        organization="org-1",
    )
    url = await start_proxy(make_config(openrouter))
    mine = {"http-referer": "https://evil.example", "X-TITLE": "evil", "X-Other": "kept"}
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=mine) as r:
        assert r.status == 200
    (seen,) = recorder.calls
    assert seen.headers.getall("HTTP-Referer") == ["https://app.example"]
    assert seen.headers.getall("X-Title") == ["My App"]
    assert seen.headers.getall("OpenAI-Organization") == ["org-1"]
    assert seen.headers["X-Other"] == "kept"
    assert seen.path_qs == "/v1/chat/completions?tenant=a%20b%26c"


def test_request_headers_policy_unit() -> None:
    config = make_config(provider("p", "http://h:1", {"m": None}, headers={"X-Title": "T"}))
    up = compile_upstream(config.providers[0], config)
    raw = [(b"x-title", b"client"), (b"Authorization", b"Bearer sk-client"), (b"X-Keep", b"1")]
    lines = request_headers(raw, up).split(b"\r\n")
    assert b"X-Title: T" in lines and b"x-title: client" not in lines and b"X-Keep: 1" in lines


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"auth": "basic"},
            "providers[0].auth: must be one of bearer, api-key, x-api-key, x-goog-api-key, "
            "none, got 'basic'",
        ),
        ({"provider_type": "gcp"}, "provider_type: must be one of openai, azure, anthropic"),
        ({"headers": {"Host": "x"}}, "headers.Host: is set by the proxy itself"),
        ({"headers": {"content-length": "1"}}, "is set by the proxy itself"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, "hop-by-hop"),
        ({"headers": {"Authorization": "Bearer x"}}, "headers.Authorization: carries the"),
        (
            {"headers": {"API-Key": "x"}},
            "auth: bearer | api-key | x-api-key | x-goog-api-key | none",
        ),
        ({"headers": {"bad name": "x"}}, "is not a header name"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "is given twice (also as 'X-A')"),
        ({"headers": {"X-A": ["x"]}}, "headers['X-A']: must be a string, got a list"),
        ({"headers": "X-A: 1"}, "headers: must be a mapping"),
        ({"organization": "o", "headers": {"OpenAI-Organization": "o"}}, "also as organization"),
        ({"query_params": {"q": "a\nb"}}, "query_params.q: must be printable"),
        ({"auth": "none"}, "api_key: is never sent with auth: none"),
        ({"provider_type": "azure"}, "provider_type azure needs query_params: {api-version"),
        (
            {
                "provider_type": "azure",
                "api_base": "https://r.openai.azure.com/openai/v1",
                "query_params": {"api-version": "2024-10-21"},
            },
            "use provider_type: openai and auth: api-key",
        ),
        (
            {
                "provider_type": "azure",
                "api_base": "https://r.openai.azure.com/openai/deployments/d",
                "query_params": {"api-version": "2024-10-21"},
            },
            "is the resource endpoint (https://NAME.openai.azure.com)",
        ),
        (
            {"api_base": "http://h/v1?api-version=1", "query_params": {"api-version": "2"}},
            "query_params['api-version']: is also in api_base's query string",
        ),
    ],
)
def test_validation_errors_are_clear(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_config({**provider("p", "https://h.example/v1", {"m": None}), **fields})
    assert message in str(exc.value)


def test_a_secret_header_value_is_never_echoed_nor_in_repr() -> None:
    with pytest.raises(ConfigError) as exc:
        make_config(provider("p", "http://h", {"m": None}, headers={"X-Key": "sk-abc\r\nX: y"}))
    assert "must be printable ASCII" in str(exc.value) and "sk-abc" not in str(exc.value)
    config = make_config(provider("p", "http://h", {"m": None}, headers={"X-Key": GATEWAY_SECRET}))
    assert GATEWAY_SECRET not in repr(config)


def test_yaml_interpolation_and_an_unquoted_api_version() -> None:
    text = """
providers:
  - name: azure
    provider_type: azure
    api_base: https://res.openai.azure.com
    api_key: ${AZURE_KEY}
    auth: api-key
    query_params: {api-version: 2024-10-21}
    headers: {X-Gateway-Key: "${GATEWAY_KEY}", X-Cost: "$$5"}
    model_mapping: {gpt-4o: my-deployment}
require_auth: false
"""
    config = load_config_text(text, {"AZURE_KEY": AZURE_KEY, "GATEWAY_KEY": GATEWAY_SECRET})
    (p,) = config.providers
    assert p.query_params == (("api-version", "2024-10-21"),)
    assert p.headers == (("X-Gateway-Key", GATEWAY_SECRET), ("X-Cost", "$5"))
    assert (p.provider_type, p.auth) == ("azure", "api-key")


# What is shown: the admin API (YAML mode), check-config


YAML_WITH_SECRETS = """
require_auth: false
admin_key: adm-ops-0123456789abcdef
providers:
  - name: openrouter
    api_base: BASE
    api_key: sk-or-0123456789abcdef
    headers:
      HTTP-Referer: https://app.example
      X-Title: My App
      X-Gateway-Key: SECRET
    model_mapping: {m: null}
"""


async def test_secret_headers_are_not_shown_by_the_admin_api_nor_check_config(
    recorder: Fake,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = YAML_WITH_SECRETS.replace("BASE", recorder.url).replace("SECRET", GATEWAY_SECRET)
    url = await start_proxy(load_config_text(text, {}))
    for path in ("/admin/v1/config", "/admin/v1/providers"):
        async with http.get(url + path, headers=ADMIN) as r:
            assert r.status == 200
            raw = await r.text()
        assert GATEWAY_SECRET not in raw and "https://app.example" in raw and "My App" in raw
    _, config = await call(http, "GET", url + "/admin/v1/config")
    (shown,) = config["providers"]
    assert shown["headers"]["X-Gateway-Key"] == "gw-...cdef"
    assert (shown["auth"], shown["provider_type"], shown["query_params"]) == (
        "bearer",
        "openai",
        {},
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert await asyncio.to_thread(main, ["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert "openrouter" in out.out and GATEWAY_SECRET not in out.out + out.err


# Database mode


async def admin_create(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    status, created = await call(http, "POST", url + "/admin/v1/providers", json=body)
    assert status == 201, created
    return created


AZURE_ROW: dict[str, Any] = {
    "name": "azure",
    "provider_type": "azure",
    "api_key": AZURE_KEY,
    "model_mapping": {"gpt-4o": DEPLOYMENT},
    "params": {
        "auth": "api-key",
        "query_params": {"api-version": API_VERSION},
        "headers": {"X-Title": "My App", "X-Gateway-Key": GATEWAY_SECRET},
    },
}


async def test_an_azure_provider_made_through_the_admin_api(
    config_dsn: str, azure: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, ADMIN_BASE)
    created = await admin_create(http, url, {**AZURE_ROW, "api_base": azure.url})
    assert created["provider_type"] == "azure" and created["api_key"] == "azu...cdef"
    assert created["params"]["headers"] == {"X-Title": "My App", "X-Gateway-Key": "gw-...cdef"}
    assert await sdk_chat(url) == ("Hello from Azure", "Hello from Azure")
    assert {c.headers["X-Gateway-Key"] for c in azure.calls} == {GATEWAY_SECRET}
    # Read, edit, write back: the masked value keeps the secret.
    admin = f"{url}/admin/v1/providers/{created['id']}"
    status, row = await call(http, "GET", admin)
    params = {**row["params"], "headers": {**row["params"]["headers"], "X-Title": "Other"}}
    status, put = await call(
        http, "PUT", admin, json={**AZURE_ROW, "api_base": azure.url, "params": params}
    )
    assert status == 200, put
    azure.calls.clear()
    assert (await sdk_chat(url))[0] == "Hello from Azure"
    assert azure.calls[0].headers["X-Gateway-Key"] == GATEWAY_SECRET
    assert azure.calls[0].headers["X-Title"] == "Other"
    # No secret in anything the API shows, the history included.
    shown = ""
    for path in ("/providers", "/config", "/config/history?limit=50", "/config/export"):
        async with http.get(url + "/admin/v1" + path, headers=ADMIN) as r:
            assert r.status == 200
            shown += await r.text()
    assert GATEWAY_SECRET not in shown and AZURE_KEY not in shown
    assert "${LLM_PROXY_HEADER_AZURE_X_GATEWAY_KEY}" in shown


async def test_bad_admin_writes_are_400s_naming_the_field(
    config_dsn: str, azure: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, ADMIN_BASE)
    good = {**AZURE_ROW, "api_base": azure.url}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"provider_type": "gcp"}, "provider_type", "must be one of openai, azure, anthropic"),
        (
            {"params": {**good["params"], "auth": "basic"}},
            "params",
            "auth (table providers, row id=",
        ),
        (
            {"params": {**good["params"], "headers": {"Host": "x"}}},
            "params",
            "headers.Host (table providers, row id=",
        ),
        (
            {"params": {"auth": "api-key"}},
            "params",
            "query_params (table providers, row id=",
        ),
        ({"api_base": azure.url + "/openai/deployments/d"}, "api_base", "resource endpoint"),
    ]
    for change, param, message in cases:
        status, body = await call(
            http, "POST", url + "/admin/v1/providers", json={**good, **change}
        )
        assert status == 400, (change, body)
        assert body["error"]["param"] == param and message in body["error"]["message"], body
        assert GATEWAY_SECRET not in str(body)
    conn = await asyncpg.connect(config_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM providers") == 0
    finally:
        await conn.close()


async def test_psql_edits_are_validated_and_rollback_restores_headers(
    config_dsn: str, azure: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        await sql.execute(
            "INSERT INTO providers (name, provider_type, api_base, api_key, model_mapping, params)"
            " VALUES ('azure', 'azure', $1, $2, $3::jsonb, $4::jsonb)",
            azure.url,
            AZURE_KEY,
            orjson.dumps(AZURE_ROW["model_mapping"]).decode(),
            orjson.dumps(AZURE_ROW["params"]).decode(),
        )
        good = int(await db_version(sql))
        url = await start_db_proxy(start_proxy, config_dsn, ADMIN_BASE)
        assert (await sdk_chat(url))[0] == "Hello from Azure"
        with pytest.raises(asyncpg.CheckViolationError):
            await sql.execute("UPDATE providers SET provider_type = 'gcp'")
        await sql.execute(
            'UPDATE providers SET params = params || \'{"headers": {"Content-Length": "1"}}\''
        )
        with pytest.raises(ConfigError) as exc:
            await load_once(config_dsn, ADMIN_BASE)
        assert str(exc.value) == (
            "providers[0].headers['Content-Length'] (table providers, row id=1 ('azure'), "
            "column params): is set by the proxy itself (from the request it forwards)"
        )
        # The running proxy keeps what it served.
        assert (await sdk_chat(url))[0] == "Hello from Azure"
        await sql.execute(
            "UPDATE providers SET params = jsonb_set(params, '{headers}', $1::jsonb)",
            '{"X-Gateway-Key": "new-0123456789"}',
        )
        history = await sql.fetch("SELECT before::text, after::text FROM config_history")
        assert GATEWAY_SECRET not in str(history) and "new-0123456789" not in str(history)
    finally:
        await sql.close()
    status, done = await call(
        http, "POST", url + "/admin/v1/config/rollback", json={"version": good}
    )
    assert status == 200 and done["served"] is True, done
    azure.calls.clear()
    assert (await sdk_chat(url))[0] == "Hello from Azure"
    assert azure.calls[0].headers["X-Gateway-Key"] == GATEWAY_SECRET
    assert azure.calls[0].headers["X-Title"] == "My App"


# Export and import


async def test_export_import_round_trip(
    config_dsn: str,
    other_config_dsn: str,
    azure: Fake,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sql = await asyncpg.connect(config_dsn)
    try:
        for name, kind, key, params in (
            ("azure", "azure", AZURE_KEY, AZURE_ROW["params"]),
            (
                "local",
                "openai",
                "",
                {"auth": "none", "organization": "org-1", "headers": {"User-Agent": "app ($5)"}},
            ),
        ):
            await sql.execute(
                "INSERT INTO providers (name, provider_type, api_base, api_key, model_mapping,"
                " params) VALUES ($1, $2, $3, $4, '{\"m\": null}', $5::jsonb)",
                name,
                kind,
                azure.url,
                key,
                orjson.dumps(params).decode(),
            )
        rows = await sql.fetch("SELECT name, provider_type, api_key, params::text FROM providers")
    finally:
        await sql.close()

    def run(*args: str) -> str:
        assert main(list(args)) == 0
        return capsys.readouterr().out

    text = await asyncio.to_thread(run, "export-config", "--db-url", config_dsn)
    assert GATEWAY_SECRET not in text and AZURE_KEY not in text
    assert "provider_type: azure" in text and "auth: api-key" in text and "auth: none" in text
    assert "X-Title: My App" in text and "api-version: '2024-10-21'" in text
    assert "User-Agent: app ($$5)" in text
    secret_var = header_variable("azure", "X-Gateway-Key")
    assert f"X-Gateway-Key: ${{{secret_var}}}" in text
    assert key_variable("local") not in text  # no key, no variable to set
    exported = tmp_path / "exported.yaml"
    exported.write_text(text)
    monkeypatch.setenv(key_variable("azure"), AZURE_KEY)
    monkeypatch.setenv(secret_var, GATEWAY_SECRET)
    other = other_config_dsn
    out = await asyncio.to_thread(run, "import-config", str(exported), "--db-url", other)
    assert out.startswith("imported 2 providers")
    again = await asyncio.to_thread(run, "export-config", "--db-url", other)
    assert again.splitlines()[1:] == text.splitlines()[1:]  # (the first line: the version)
    conn = await asyncpg.connect(other)
    try:
        copied = await conn.fetch(
            "SELECT name, provider_type, api_key, params::text FROM providers"
        )
    finally:
        await conn.close()
    assert sorted(map(tuple, copied)) == sorted(map(tuple, rows))
