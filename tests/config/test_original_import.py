"""`import-config --from-original-db`: a database built by the original llm-proxy's own
migrations (tests/data/original_migrations), filled as a deployment fills it, imported and
served: its plaintext keys authenticate, its routing (model mapping, weights) and limits hold;
a dry run and a second run change nothing; what cannot be carried over is listed; its Vertex
AI rows (`gcp-vertex`, `gemini`) become our `vertex`, called where it called them, signed with
application default credentials; its logs arrive, bounded. The mapping itself is also checked
alone (`original_map`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import asyncpg
import pytest

from llm_proxy.cli import main
from llm_proxy.config.model import GEMINI_API_BASE, Config, RateLimit
from llm_proxy.config.original_logs import copy_logs
from llm_proxy.config.original_map import (
    OriginalConfig,
    OriginalCredential,
    OriginalProvider,
    plan_import,
    provider_entry,
)
from llm_proxy.errors import ProxyError
from llm_proxy.proxy.cloud import compile_cloud
from llm_proxy.testing.mock import RECORDED, MockOptions, create_mock_app
from tests.helpers import ProxyFactory, Upstream, chat, ring, serve
from tests.helpers.db import db_version, fresh_database, rows, start_db_proxy
from tests.helpers.google_oauth import FakeGoogleOAuth
from tests.helpers.vertex_upstream import PROJECT as VERTEX_PROJECT
from tests.helpers.vertex_upstream import FakeVertex

MIGRATIONS = Path(__file__).parent.parent / "data" / "original_migrations"

# The original's keys, as its users hold them; it stored only their SHA-256 (hex).
TEAM_KEY = "sk-team-original-key-1"
ALL_KEY = "sk-all-models-original-key"
OFF_KEY = "sk-disabled-original-key"
DUP_KEYS = ("sk-dup-original-key-one", "sk-dup-original-key-two")
HI = [{"role": "user", "content": "hi"}]
GOOGLE = {"gcp_publisher": "google"}


def sha256_hex(key: str) -> str:
    """The original's `hash_key` (python-server/app/core/database.py)."""
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
async def original_dsn(pg_server: str) -> AsyncIterator[str]:
    """A scratch database with the original's migrations 000001-000008 applied in order."""
    async with fresh_database(pg_server) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            for path in sorted(MIGRATIONS.glob("*.up.sql")):
                await conn.execute(path.read_text())
        finally:
            await conn.close()
        yield dsn


async def fill(dsn: str, base_a: str, base_b: str, anthropic_base: str) -> None:
    """Providers of each type the original knows, keys with allowed models (some empty) and
    rate limits, disabled rows: as its admin API would have written them."""
    providers: list[tuple[Any, ...]] = [
        # key, type, api_base, model_mapping, weight, enabled, provider_params
        (
            "openai-main",
            "openai",
            base_a,
            {
                "gpt-4": "gpt-4-turbo",
                "gpt-4o": {"mapped_model": "gpt-4o-x", "supports_vision": True},
            },
            3,
            True,
            {},
        ),
        ("azure-east", "azure", base_b, {"gpt-4": "gpt-4-azure"}, 1, True, {}),
        (
            "claude",
            "anthropic",
            anthropic_base,
            {"claude-sonnet": "claude-sonnet-4"},
            1,
            True,
            {"anthropic_beta_policy": "passthrough"},
        ),
        (
            "vertex",
            "gcp-vertex",
            "https://us-east5-aiplatform.googleapis.com",
            {"claude-vertex": "claude-sonnet-4@20250514"},
            1,
            True,
            {"gcp_project": "my-project", "gcp_location": "us-east5", "gcp_publisher": "anthropic"},
        ),
        # Its `gemini` type is Vertex AI's Gemini models (generateContent), not AI Studio.
        (
            "gemini",
            "gemini",
            "https://us-central1-aiplatform.googleapis.com",
            {"gemini-pro": "gemini-2.5-pro"},
            1,
            True,
            {"gcp_project": "my-project", "gcp_publisher": "google"},
        ),
        ("responses", "response_api", base_a, {"o3": "o3"}, 1, True, {}),
        ("old-openai", "openai", base_a, {"gpt-3.5": "gpt-3.5-turbo"}, 1, False, {}),
    ]
    credentials: list[tuple[str, str, list[str], int | None, bool]] = [
        (TEAM_KEY, "team", ["gpt-4"], 1, True),
        (ALL_KEY, "all-models", [], 0, True),  # []: every model; 0: no limit
        (OFF_KEY, "disabled", ["gpt-4"], None, False),
        (DUP_KEYS[0], "shared-name", ["claude-*"], None, True),
        (DUP_KEYS[1], "shared-name", [], 5, True),
    ]
    conn = await asyncpg.connect(dsn)
    try:
        for key, kind, base, mapping, weight, enabled, params in providers:
            await conn.execute(
                "INSERT INTO providers (provider_key, provider_type, api_base, api_key, "
                "model_mapping, weight, is_enabled, provider_params) "
                "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb)",
                key,
                kind,
                base,
                f"sk-upstream-{key}",
                json.dumps(mapping),
                weight,
                enabled,
                json.dumps(params),
            )
        for key, name, allowed, limit, enabled in credentials:
            await conn.execute(
                "INSERT INTO credentials (credential_key, name, allowed_models, rate_limit, "
                "is_enabled) VALUES ($1, $2, $3::jsonb, $4, $5)",
                sha256_hex(key),
                name,
                json.dumps(allowed),
                limit,
                enabled,
            )
    finally:
        await conn.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(run, capsys, "import-config", *args)


async def history_size(dsn: str) -> int:
    return len(await rows(dsn, "SELECT 1 FROM config_history"))


async def test_import_serve_dry_run_and_rerun(
    original_dsn: str,
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    second = create_mock_app(MockOptions(record=True))
    async with serve(second) as second_url:
        await fill(original_dsn, upstream.api_base, second_url + "/v1", upstream.url)
        # A row of ours the original does not have is left as it is.
        await sql.execute(
            "INSERT INTO providers (name, api_base, model_mapping) "
            """VALUES ('ours', 'http://127.0.0.1:9/v1', '{"mine": null}')"""
        )
        source = ("--from-original-db", original_dsn, "--db-url", config_dsn)

        # A dry run shows the diff and changes nothing.
        version, recorded = await db_version(sql), await history_size(config_dsn)
        code, out, err = await cli(capsys, *source, "--dry-run")
        assert code == 0, err
        assert "add     providers/openai-main" in out
        assert "add     credentials/shared-name #4" in out
        assert "left as they are (not in the original): providers/ours" in out
        assert out.rstrip().endswith("dry run: nothing changed")
        assert await db_version(sql) == version
        assert await history_size(config_dsn) == recorded
        assert len(await rows(config_dsn, "SELECT 1 FROM credentials")) == 0

        code, out, err = await cli(capsys, *source)
        assert code == 0, err
        added = sorted(line[8:] for line in out.splitlines() if line.startswith("add "))
        assert added == [
            "credentials/all-models",
            "credentials/disabled (disabled)",
            "credentials/shared-name #4",
            "credentials/shared-name #5",
            "credentials/team",
            "providers/azure-east",
            "providers/claude",
            "providers/gemini",
            "providers/old-openai (disabled)",
            "providers/openai-main",
            "providers/vertex",
        ]
        # One line each for what is not carried over, with why.
        for line in (
            "  providers/responses: provider_type 'response_api': this proxy has no OpenAI "
            "Responses API upstream",
            "  providers/vertex: api_key: the original sent it as a bearer token",
            "  providers/gemini: api_key: the original sent it as a bearer token",
            "  providers/claude: provider_params.anthropic_beta_policy: no anthropic-beta policy",
            "  providers/openai-main: model_mapping.gpt-4o: only mapped_model is kept "
            "(supports_vision dropped; prices can be set in `pricing`)",
            "  credentials/shared-name: name shared by several keys: imported as 'shared-name #4'",
        ):
            assert any(o.startswith(line) for o in out.splitlines()), (line, out)
        # Recorded in the history as one version, by the CLI's user.
        after = int(await db_version(sql))
        assert after == int(version) + 1
        by = await rows(
            config_dsn, "SELECT DISTINCT changed_by FROM config_history WHERE version = $1", after
        )
        assert [r["changed_by"][:4] for r in by] == ["cli:"]
        stored = await sql.fetchrow(
            "SELECT allowed_models, rate_limit_rps, rate_limit_burst FROM credentials "
            "WHERE name = 'all-models'"
        )
        # [] there meant every model: no restriction here (NULL), not an empty list.
        assert tuple(stored) == (None, None, None)
        # Its Vertex AI rows: project and location (its default written out), no key.
        vertex = await sql.fetch(
            "SELECT name, provider_type, api_base, api_key, params->>'project' AS project, "
            "params->>'location' AS location FROM providers WHERE provider_type = 'vertex' "
            "ORDER BY name"
        )
        assert [tuple(r) for r in vertex] == [
            (
                "gemini",
                "vertex",
                "https://us-central1-aiplatform.googleapis.com",
                "",
                "my-project",
                "us-central1",
            ),
            (
                "vertex",
                "vertex",
                "https://us-east5-aiplatform.googleapis.com",
                "",
                "my-project",
                "us-east5",
            ),
        ]

        # A second run changes nothing.
        recorded = await history_size(config_dsn)
        code, out, err = await cli(capsys, *source)
        assert code == 0, err
        assert "unchanged: 11" in out and "nothing to change: config version" in out
        assert not [line for line in out.splitlines() if line.startswith(("add ", "change "))]
        assert int(await db_version(sql)) == after
        assert await history_size(config_dsn) == recorded

        url = await start_db_proxy(start_proxy, config_dsn, Config())
        # The old plaintext keys authenticate; a disabled or unknown one does not.
        assert (await chat(http, url, "gpt-4", key=ALL_KEY)).status == 200
        assert (await chat(http, url, "gpt-4", key=OFF_KEY)).status == 401
        assert (await chat(http, url, "gpt-4", key="sk-never-issued-key")).status == 401
        # allowed_models: the listed ones, or (from []) every one.
        assert (await chat(http, url, "claude-sonnet", key=DUP_KEYS[0], messages=HI)).status == 200
        assert (await chat(http, url, "gpt-4", key=DUP_KEYS[0])).status == 403
        assert (await chat(http, url, "claude-sonnet", key=ALL_KEY, messages=HI)).status == 200
        # The anthropic provider: called in its own protocol, its mapping applied.
        messages = [r for r in upstream.app[RECORDED] if r.path == "/v1/messages"]
        assert [json.loads(r.body)["model"] for r in messages] == ["claude-sonnet-4"] * 2
        assert messages[0].headers["x-api-key"] == "sk-upstream-claude"
        # Weights 3:1 between openai-main and azure-east for gpt-4, each with its mapping.
        upstream.app[RECORDED].clear()
        second[RECORDED].clear()
        for _ in range(8):
            assert (await chat(http, url, "gpt-4", key=ALL_KEY)).status == 200
        seen: Counter[str] = Counter()
        for app in (upstream.app, second):
            for r in app[RECORDED]:
                seen[json.loads(r.body)["model"]] += 1
        assert seen == {"gpt-4-turbo": 6, "gpt-4-azure": 2}
        # The disabled provider is kept, not served.
        assert (await chat(http, url, "gpt-3.5", key=ALL_KEY)).status == 404
        # rate_limit 1: one request per second, burst 1.
        statuses = [(await chat(http, url, "gpt-4", key=TEAM_KEY)).status for _ in range(3)]
        assert statuses[0] == 200 and 429 in statuses


def original(
    *credentials: OriginalCredential, providers: tuple[OriginalProvider, ...] = ()
) -> OriginalConfig:
    return OriginalConfig(providers, credentials, version=1)


def test_hash_is_kept_and_the_plaintext_authenticates() -> None:
    plan = plan_import(original(OriginalCredential(1, sha256_hex(TEAM_KEY), "team")))
    (key,) = plan.master_keys
    assert key.key == "" and key.digest == hashlib.sha256(TEAM_KEY.encode()).digest()
    keys = ring(*plan.master_keys)
    assert keys.authenticate(TEAM_KEY).name == "team"
    with pytest.raises(ProxyError):
        keys.authenticate(TEAM_KEY + "x")


@pytest.mark.parametrize(
    ("allowed", "limit", "expected_allowed", "expected_limit"),
    [
        ([], None, None, None),
        ([], 0, None, None),
        (["gpt-4", "claude-*"], 7, ("gpt-4", "claude-*"), RateLimit(7, 7)),
    ],
)
def test_allowed_models_and_rate_limit(
    allowed: list[str],
    limit: int | None,
    expected_allowed: tuple[str, ...] | None,
    expected_limit: RateLimit | None,
) -> None:
    cred = OriginalCredential(1, sha256_hex(TEAM_KEY), "team", allowed, limit)
    (key,) = plan_import(original(cred)).master_keys
    assert key.allowed_models == expected_allowed
    assert key.rate_limit == expected_limit


def test_unmappable_credentials_are_listed() -> None:
    plan = plan_import(
        original(
            OriginalCredential(1, "not-a-hash", "plain"),
            OriginalCredential(2, sha256_hex(TEAM_KEY), "negative", rate_limit=-1),
            OriginalCredential(3, sha256_hex(ALL_KEY), "bad-pattern", ["gpt-(4"]),
            # Refused, not imported with the odd entry dropped (an empty list is every model).
            OriginalCredential(4, sha256_hex(OFF_KEY), "not-names", [42]),
        )
    )
    assert [k.name for k in plan.master_keys] == ["negative"]
    assert plan.not_carried[3].what == "credentials/not-names"
    assert plan.master_keys[0].rate_limit is None
    lines = [item.line() for item in plan.not_carried]
    assert lines[0].startswith("credentials/plain: refused by validation: ")
    assert "key_sha256" in lines[0] and "\n" not in lines[0]
    assert lines[1] == "credentials/negative: rate_limit: -1 is not a rate: no limit set"
    assert lines[2].startswith("credentials/bad-pattern: refused by validation: ")


def test_provider_types() -> None:
    def one(kind: str) -> OriginalProvider:
        return OriginalProvider(1, f"p-{kind}", kind, "https://example.com/v1", "k", {"m": "n"})

    plan = plan_import(
        original(
            providers=tuple(one(k) for k in ("openai", "azure", "Claude", "custom", "responses"))
        )
    )
    assert [(p.name, p.provider_type, p.auth) for p in plan.providers] == [
        ("p-openai", "openai", "bearer"),
        ("p-azure", "openai", "bearer"),
        ("p-Claude", "anthropic", "x-api-key"),
        ("p-custom", "openai", "bearer"),
    ]
    assert [item.what for item in plan.not_carried] == [
        "providers/p-custom: provider_type",
        "providers/p-responses",
    ]


async def test_with_logs_bounded_newest_first_and_once(
    original_dsn: str,
    config_dsn: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start = datetime(2026, 11, 1, 12, tzinfo=UTC)
    conn = await asyncpg.connect(original_dsn)
    try:
        for i in range(30):
            await conn.execute(
                "INSERT INTO request_logs (timestamp, request_id, endpoint, credential_name, "
                "model_requested, model_mapped, provider_name, provider_type, is_streaming, "
                "status_code, input_tokens, output_tokens, total_tokens, total_duration_ms, "
                "ttft_ms, request_body, request_headers) VALUES ($1, $2, '/v1/chat/completions', "
                "'team', 'gpt-4', 'gpt-4-turbo', 'openai-main', 'openai', true, $3, 10, 5, 15, "
                '120, 30, \'{"messages": []}\', \'{"authorization": "Bearer sk-x"}\')',
                start + timedelta(minutes=i),
                f"req-{i:02d}",
                500 if i % 10 == 9 else 200,
            )
        for i in range(5):
            await conn.execute(
                "INSERT INTO error_logs (timestamp, request_id, error_category, error_code, "
                "error_message, provider_name, response_status_code, response_body) "
                "VALUES ($1, $2, 'upstream_5xx', 500, 'boom', 'openai-main', 502, '{\"e\": 1}')",
                start + timedelta(minutes=i),
                f"req-{i:02d}",
            )
    finally:
        await conn.close()

    args = ("--from-original-db", original_dsn, "--db-url", config_dsn, "--with-logs")
    code, out, err = await cli(capsys, *args, "--logs-limit", "20")
    assert code == 0, err
    assert "logs: 20 request logs added (20 read), 5 error logs added (5 read)" in out
    got = await rows(
        config_dsn,
        "SELECT request_id, key_name, path, model, model_sent, provider, status, streamed, "
        "prompt_tokens, completion_tokens, prompt FROM request_logs ORDER BY ts",
    )
    # The newest 20: req-10 .. req-29.
    assert [r["request_id"] for r in got] == [f"req-{i:02d}" for i in range(10, 30)]
    assert tuple(got[0])[1:] == (
        "team",
        "/v1/chat/completions",
        "gpt-4",
        "gpt-4-turbo",
        "openai-main",
        200,
        True,
        10,
        5,
        '{"messages": []}',
    )
    usage = await rows(config_dsn, "SELECT requests, errors, prompt_tokens FROM usage_daily")
    assert [tuple(u) for u in usage] == [(20, 2, 200)]
    errors = await rows(
        config_dsn, "SELECT provider, outcome, upstream_status, body, detail FROM error_logs"
    )
    assert len(errors) == 5
    assert tuple(errors[0]) == ("openai-main", "upstream_5xx", 502, '{"e": 1}', "boom")

    # Again: nothing is added twice (nor counted twice in usage_daily).
    code, out, err = await cli(capsys, *args, "--logs-limit", "20")
    assert code == 0, err
    assert "logs: 0 request logs added (20 read), 0 error logs added (5 read)" in out
    # In batches of 7, up to 25: the 5 older ones arrive, across pages.
    source, target = await asyncpg.connect(original_dsn), await asyncpg.connect(config_dsn)
    try:
        copied = await copy_logs(source, target, limit=25, batch=7)
    finally:
        await source.close()
        await target.close()
    assert (copied.requests_read, copied.requests_added) == (25, 5)
    assert len(await rows(config_dsn, "SELECT 1 FROM request_logs")) == 25
    usage = await rows(config_dsn, "SELECT requests, errors FROM usage_daily")
    assert [tuple(u) for u in usage] == [(25, 3)]


async def test_refuses_a_database_that_is_not_the_original(
    config_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await cli(capsys, "--from-original-db", config_dsn, "--db-url", config_dsn)
    assert code == 1 and "not an original llm-proxy database" in err
    code, _, err = await cli(capsys, "file.yaml", "--from-original-db", config_dsn)
    assert code == 2 and "a FILE or --from-original-db" in err


async def test_changes_in_the_original_and_a_key_already_here(
    original_dsn: str,
    config_dsn: str,
    sql: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nowhere = "http://127.0.0.1:9/v1"
    await fill(original_dsn, nowhere, nowhere, "http://127.0.0.1:9")
    # The same key, already ours under another name: not imported twice (key_hash is unique).
    await sql.execute(f"INSERT INTO credentials (name, key) VALUES ('mine', '{ALL_KEY}')")
    source = ("--from-original-db", original_dsn, "--db-url", config_dsn)
    code, out, err = await cli(capsys, *source)
    assert code == 0, err
    assert "  credentials/all-models: key already here as 'mine'" in out.splitlines()
    assert "unchanged: 0" in out
    assert "left as they are (not in the original): credentials/mine" in out

    # Edited in the original since: the next import shows and applies exactly those edits.
    conn = await asyncpg.connect(original_dsn)
    try:
        await conn.execute("UPDATE providers SET weight = 5 WHERE provider_key = 'azure-east'")
        await conn.execute("UPDATE providers SET is_enabled = false WHERE provider_key = 'claude'")
        await conn.execute("UPDATE credentials SET rate_limit = 3 WHERE name = 'team'")
    finally:
        await conn.close()
    version = await db_version(sql)
    code, out, err = await cli(capsys, *source, "--dry-run")
    assert code == 0, err
    changes = sorted(line for line in out.splitlines() if line.startswith(("add ", "change ")))
    assert changes == [
        "change  credentials/team (rate_limit_burst, rate_limit_rps)",
        "change  providers/azure-east (weight)",
        "change  providers/claude (is_enabled)",
    ]
    assert "unchanged: 7" in out
    assert await db_version(sql) == version
    code, out, err = await cli(capsys, *source)
    assert code == 0, err
    stored = await sql.fetchrow(
        "SELECT rate_limit_rps, rate_limit_burst FROM credentials WHERE name = 'team'"
    )
    assert tuple(stored) == (3, 3)
    enabled = await sql.fetch("SELECT name FROM providers WHERE is_enabled ORDER BY name")
    assert [r["name"] for r in enabled] == ["azure-east", "gemini", "openai-main", "vertex"]


async def test_an_older_original_imports_too(
    pg_server: str, config_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment migrated only to 000002: no weight, no provider_params, no logs."""
    async with fresh_database(pg_server) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            for path in sorted(MIGRATIONS.glob("*.up.sql"))[:2]:
                await conn.execute(path.read_text())
            await conn.execute(
                "INSERT INTO providers (provider_key, provider_type, api_base, api_key, "
                "model_mapping) VALUES ('p', 'openai', 'http://127.0.0.1:9/v1', 'k', $1)",
                '{"m": "n"}',
            )
            await conn.execute(
                "INSERT INTO credentials (credential_key, name) VALUES ($1, 'k')",
                sha256_hex(TEAM_KEY),
            )
        finally:
            await conn.close()
        code, out, err = await cli(
            capsys, "--from-original-db", dsn, "--db-url", config_dsn, "--with-logs"
        )
    assert code == 0, err
    assert "add     providers/p" in out and "add     credentials/k" in out
    assert "logs: 0 request logs added (0 read), 0 error logs added (0 read)" in out
    assert [tuple(r) for r in await rows(config_dsn, "SELECT name, weight FROM providers")] == [
        ("p", 1)
    ]


def original_url(row: OriginalProvider, model: str, streaming: bool) -> str:
    """Where the original sent a call of `model`, without its query string (its
    `build_gcp_vertex_url`, the `gemini` type's fixed actions: python-server/app/api/
    upstream.py and proxy.py; its defaults: `GcpVertexConfig`)."""
    params = row.provider_params
    gemini = row.provider_type == "gemini"
    actions = params.get("gcp_vertex_actions") or {}
    action = (
        ("streamGenerateContent" if streaming else "generateContent")
        if gemini
        else actions.get("streaming" if streaming else "blocking")
        or ("streamRawPredict" if streaming else "rawPredict")
    )
    return (
        f"{row.api_base}/v1/projects/{params['gcp_project']}"
        f"/locations/{params.get('gcp_location') or 'us-central1'}"
        f"/publishers/{params.get('gcp_publisher') or 'anthropic'}/models/{model}:{action}"
    )


# Its Vertex AI providers as deployments configured them: its own tests' fixture, one relying on
# its default location, its `gemini` type (Gemini models on Vertex AI), Gemini models under
# `gcp-vertex` with `gcp_vertex_actions`, and one behind a gateway (its docs' example prefix
# shape).
VERTEX_ROWS = (
    OriginalProvider(
        1,
        "gcp-vertex-test",
        "gcp-vertex",
        "https://us-central1-aiplatform.googleapis.com",
        "test-access-token",
        {"claude-sonnet-4-5": "claude-sonnet-4-5"},
        provider_params={
            "gcp_project": "test-project",
            "gcp_location": "us-central1",
            "gcp_publisher": "anthropic",
        },
    ),
    OriginalProvider(
        2,
        "default-location",
        "vertex",
        "https://us-central1-aiplatform.googleapis.com",
        "ya29.token",
        {"claude-opus": "claude-opus-4-1@20250805"},
        provider_params={"gcp_project": "test-project"},
    ),
    OriginalProvider(
        3,
        "gemini-on-vertex",
        "gemini",
        "https://europe-west1-aiplatform.googleapis.com",
        "ya29.token",
        {"gemini-pro": "gemini-2.5-pro", "gemini-flash-*": "gemini-2.5-flash"},
        provider_params={
            "gcp_project": "test-project",
            "gcp_location": "europe-west1",
            "gcp_publisher": "google",
        },
    ),
    OriginalProvider(
        4,
        "vertex-gemini-actions",
        "gcp-vertex",
        "https://aiplatform.googleapis.com",
        "ya29.token",
        {"gemini-3": "gemini-3-pro-preview"},
        provider_params={
            "gcp_project": "test-project",
            "gcp_location": "global",
            "gcp_publisher": "google",
            "gcp_vertex_actions": {
                "blocking": "generateContent",
                "streaming": "streamGenerateContent",
            },
        },
    ),
    OriginalProvider(
        5,
        "gateway",
        "gcp-vertex",
        "https://llm-gateway.example.com/vertex",
        "sk-gateway-key",
        {"claude-haiku": "claude-haiku-4-5"},
        provider_params={"gcp_project": "test-project", "gcp_location": "us-east5"},
    ),
)


def test_vertex_types_are_called_where_the_original_called_them() -> None:
    plan = plan_import(original(providers=VERTEX_ROWS))
    assert [p.name for p in plan.providers] == [row.provider_key for row in VERTEX_ROWS]
    for row, p in zip(VERTEX_ROWS, plan.providers, strict=True):
        entry, _ = provider_entry(row)
        assert entry is not None
        # Its default location is written out: ours would otherwise be global.
        assert entry["location"] == (row.provider_params.get("gcp_location") or "us-central1")
        assert "api_key" not in entry and p.api_key == ""
        assert (p.provider_type, p.project, p.auth) == ("vertex", "test-project", "none")
        # Application default credentials (the operator is told to set a file).
        assert (p.credentials_file, p.credentials_json) == (None, None)
        cloud = compile_cloud(p, True, None, None, {})
        for model in {m for m in entry["model_mapping"].values() if m is not None}:
            claude = model.startswith("claude")
            for streaming, action in (
                (False, "rawPredict" if claude else "generateContent"),
                (True, "streamRawPredict" if claude else "streamGenerateContent"),
            ):
                ours, _, query = unquote(cloud.call(model, action).target.url).partition("?")
                assert ours == original_url(row, model, streaming), (row.provider_key, model)
                # A Gemini stream is asked for as SSE (the original's `gcp-vertex` type did
                # not ask, and got Vertex's JSON array).
                assert query == ("alt=sse" if streaming and not claude else "")
    # The Google endpoint of the location is ours by default: not stored as an api_base.
    google, _ = provider_entry(VERTEX_ROWS[0])
    gateway, _ = provider_entry(VERTEX_ROWS[4])
    assert google is not None and "api_base" not in google
    assert gateway is not None and gateway["api_base"] == VERTEX_ROWS[4].api_base
    notes = {item.what: item.why for item in plan.not_carried}
    assert sorted(notes) == sorted(f"providers/{row.provider_key}: api_key" for row in VERTEX_ROWS)
    assert notes["providers/gcp-vertex-test: api_key"] == (
        "the original sent it as a bearer token (for Vertex AI an access token, valid an hour "
        "at most): not carried; imported with application default credentials: set "
        "credentials_file (a service account's key file) or credentials_json unless this "
        "host has them"
    )
    assert notes["providers/gateway: api_key"].endswith(
        "; api_base 'https://llm-gateway.example.com/vertex' is not Google's: this proxy "
        "sends it a Google access token, not this key"
    )
    # Never the key itself.
    assert not [line for line in map(str, plan.not_carried) if "ya29" in line or "sk-gat" in line]


def vertex_row(**changes: Any) -> OriginalProvider:
    return replace(VERTEX_ROWS[0], **changes)


@pytest.mark.parametrize(
    ("row", "what", "why"),
    [
        # Gemini models on publisher anthropic (its default): ours calls them on google.
        (
            vertex_row(
                model_mapping={"g": "gemini-2.5-pro", "c": "claude-sonnet-4-5"},
                provider_params={"gcp_project": "test-project"},
            ),
            "provider_params.gcp_publisher, provider_params.gcp_vertex_actions",
            "the original called publisher anthropic with rawPredict, its default publisher; "
            "this proxy picks both from the model name (claude-*: anthropic, rawPredict; any "
            "other: google, generateContent) and calls gemini-2.5-pro on google with "
            "generateContent",
        ),
        # Its `gemini` type with a Claude model: generateContent there, rawPredict here.
        (
            replace(
                VERTEX_ROWS[2],
                model_mapping={"c": "claude-sonnet-4-5"},
                provider_params={"gcp_project": "test-project", "gcp_publisher": "anthropic"},
            ),
            "provider_type",
            "the original called publisher anthropic with generateContent; this proxy picks "
            "both from the model name (claude-*: anthropic, rawPredict; any other: google, "
            "generateContent) and calls claude-sonnet-4-5 on anthropic with rawPredict",
        ),
        (
            vertex_row(api_base="https://aiplatform.googleapis.com"),
            "api_base",
            "'https://aiplatform.googleapis.com' is not location us-central1's endpoint: this "
            "proxy calls https://us-central1-aiplatform.googleapis.com",
        ),
        (
            replace(
                VERTEX_ROWS[2],
                provider_params={
                    **VERTEX_ROWS[2].provider_params,
                    "gcp_vertex_actions": {"blocking": "x"},
                },
            ),
            "provider_params.gcp_vertex_actions",
            "not read by the original for provider_type gemini (always generateContent)",
        ),
        (
            vertex_row(provider_params={"gcp_project": "test-project", "gcp_region": "x"}),
            "provider_params.gcp_region",
            "not a setting the original read",
        ),
        (
            vertex_row(
                provider_params={"gcp_project": "test-project", "anthropic_beta_policy": "allow"}
            ),
            "provider_params.anthropic_beta_policy",
            "no anthropic-beta policy here: a Vertex AI call carries none of the client's "
            "headers, anthropic-beta included",
        ),
        (
            OriginalProvider(
                1,
                "openai",
                "openai",
                "https://api.openai.com/v1",
                "k",
                {},
                provider_params={"gcp_project": "test-project"},
            ),
            "provider_params.gcp_project",
            "a Vertex AI setting, which the original read only for its gcp-vertex and gemini types",
        ),
    ],
)
def test_what_differs_on_vertex_is_listed(row: OriginalProvider, what: str, why: str) -> None:
    plan = plan_import(original(providers=(row,)))
    assert len(plan.providers) == 1
    notes = {item.what: item.why for item in plan.not_carried}
    assert notes[f"providers/{row.provider_key}: {what}"] == why


def test_a_vertex_row_without_a_project_is_refused_with_the_reason() -> None:
    row = vertex_row(provider_params={"gcp_location": "us-central1"})
    plan = plan_import(original(providers=(row,)))
    assert plan.providers == ()
    (refused,) = [item for item in plan.not_carried if item.what == "providers/gcp-vertex-test"]
    assert refused.why.startswith("refused by validation: ") and "project" in refused.why


@pytest.mark.parametrize(
    ("api_base", "stored"),
    [
        ("https://generativelanguage.googleapis.com", None),
        ("https://generativelanguage.googleapis.com/", None),
        (
            "https://generativelanguage.googleapis.com/v1beta",
            "https://generativelanguage.googleapis.com/v1beta",
        ),
    ],
)
def test_a_gemini_row_on_ai_studio_becomes_an_ai_studio_provider(
    api_base: str, stored: str | None
) -> None:
    """Its `gemini` type called Vertex AI's paths with a bearer token, which AI Studio does not
    serve: such a row (a key meant for AI Studio) becomes our gemini, its key sent as
    x-goog-api-key, Google's default api_base not stored, and a note says so."""
    row = OriginalProvider(
        1,
        "studio",
        "gemini",
        api_base,
        "AIza-studio-key",
        {"g": "gemini-2.5-flash"},
        provider_params={"gcp_project": "test-project"},
    )
    entry, _ = provider_entry(row)
    assert entry is not None and entry.get("api_base") == stored
    (p,) = plan_import(original(providers=(row,))).providers
    assert (p.provider_type, p.api_base, p.api_key, p.auth) == (
        "gemini",
        GEMINI_API_BASE,
        "AIza-studio-key",
        "x-goog-api-key",
    )
    notes = [item.line() for item in plan_import(original(providers=(row,))).not_carried]
    assert notes == [
        "providers/studio: provider_type: 'gemini' on Google AI Studio's host, which does not "
        "serve the original's Vertex AI paths and bearer token: imported as an AI Studio "
        "provider (the key sent as x-goog-api-key); check that it is an AI Studio key",
        "providers/studio: provider_params.gcp_project: not used by an AI Studio provider",
    ]


async def test_imported_vertex_rows_serve_with_application_default_credentials(
    original_dsn: str,
    config_dsn: str,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its `gcp-vertex` row (its default location and publisher) and `gemini` row, behind an
    endpoint of their own (here the fake Vertex AI on loopback), imported and served: the
    operator's application default credentials sign the calls (its static bearer tokens are
    not carried), which reach the paths the original called."""
    async with FakeGoogleOAuth() as oauth, FakeVertex(token_valid=oauth.valid) as vertex:
        # (The fake serves us-central1, the original's default location.)
        originals: tuple[tuple[str, str, dict[str, str], dict[str, str]], ...] = (
            ("claude-on-vertex", "gcp-vertex", {"claude-sonnet": "claude-sonnet-4-5"}, {}),
            ("gemini-on-vertex", "gemini", {"gemini-pro": "gemini-2.5-pro"}, GOOGLE),
        )
        conn = await asyncpg.connect(original_dsn)
        try:
            for key, kind, mapping, params in originals:
                await conn.execute(
                    "INSERT INTO providers (provider_key, provider_type, api_base, api_key, "
                    "model_mapping, provider_params) VALUES ($1, $2, $3, 'ya29.expired', $4, $5)",
                    key,
                    kind,
                    vertex.url,
                    json.dumps(mapping),
                    json.dumps({"gcp_project": VERTEX_PROJECT, **params}),
                )
            await conn.execute(
                "INSERT INTO credentials (credential_key, name) VALUES ($1, 'all')",
                sha256_hex(ALL_KEY),
            )
        finally:
            await conn.close()
        code, out, err = await cli(
            capsys, "--from-original-db", original_dsn, "--db-url", config_dsn
        )
        assert code == 0, err
        notes = [line for line in out.splitlines() if ": api_key: " in line]
        assert len(notes) == 2 and all("set credentials_file" in n for n in notes), out
        assert "ya29" not in out

        key_file = tmp_path / "service-account.json"
        key_file.write_text(json.dumps(oauth.service_account_info()))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        url = await start_db_proxy(start_proxy, config_dsn, Config())
        headers = {"x-api-key": ALL_KEY, "anthropic-version": "2023-06-01"}
        body = {"model": "claude-sonnet", "max_tokens": 20, "messages": HI}
        async with http.post(url + "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        assert (await chat(http, url, "gemini-pro", key=ALL_KEY, messages=HI)).status == 200
        # Its location and publisher defaults (us-central1, anthropic), and the publisher its
        # gemini row named: the original's URLs.
        prefix = f"/v1/projects/{VERTEX_PROJECT}/locations/us-central1/publishers"
        assert [r.path for r in vertex.requests] == [
            f"{prefix}/anthropic/models/claude-sonnet-4-5:rawPredict",
            f"{prefix}/google/models/gemini-2.5-pro:generateContent",
        ]
        assert oauth.grants == 1
