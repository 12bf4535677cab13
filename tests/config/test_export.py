"""Export and import: `export-config` writes what the database serves as YAML without
secrets, `import-config` takes it back (the round trip is exact), `--dry-run` prints what would
change and changes nothing, and the admin API's export is the same file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from llm_proxy.cli import main
from llm_proxy.config.export import key_variable
from llm_proxy.config.model import Config
from llm_proxy.config.yaml_file import load_config_file, load_config_text
from tests.helpers import ProxyFactory
from tests.helpers.db import add_provider, db_version, start_db_proxy


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


async def seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await add_provider(
            conn, "alpha", "http://127.0.0.1:9/v1", {"gpt-4o": "gpt-4o-x", "gpt-4.1*": None}, 3
        )
        await conn.execute(
            'UPDATE providers SET params = \'{"request_timeout_secs": 30, "proxy": false, '
            '"pricing": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10}}}\' '
            "WHERE name = 'alpha'"
        )
        await conn.execute(
            "INSERT INTO credentials (name, key, allowed_models, rate_limit_rps, rate_limit_burst)"
            " VALUES ('team', 'sk-team-secret-key', '{gpt-4o}', 5, 10)"
        )
        await conn.execute(
            "INSERT INTO credentials (name, key, is_enabled) "
            "VALUES ('old', 'sk-old-secret-key', false)"
        )
    finally:
        await conn.close()


async def test_round_trip_and_dry_run(
    config_dsn: str,
    other_config_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed(config_dsn)
    exported = tmp_path / "exported.yaml"
    code, _, err = await asyncio.to_thread(
        run, capsys, "export-config", "--db-url", config_dsn, "-o", str(exported)
    )
    assert code == 0 and "wrote" in err
    text = exported.read_text()
    assert "sk-alpha-provider-key" not in text and "sk-team-secret-key" not in text
    assert "${LLM_PROXY_KEY_ALPHA}" in text
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    # YAML mode reads it (with the key in the environment)...
    env = {key_variable("alpha"): "sk-alpha-provider-key"}
    config = load_config_file(exported, env)
    assert [p.name for p in config.providers] == ["alpha"]
    assert config.providers[0].timeouts.request_timeout_secs == 30
    assert [(n, p.output_per_mtok) for n, _, p in config.providers[0].pricing] == [("gpt-4o", 10)]
    assert [(k.name, k.enabled) for k in config.master_keys] == [("team", True), ("old", False)]
    # ...and import-config loads it into an empty database: exported again, the same file.
    other = other_config_dsn
    os.environ.update(env)
    try:
        code, out, _ = await asyncio.to_thread(
            run, capsys, "import-config", str(exported), "--db-url", other, "--dry-run"
        )
        assert code == 0
        assert out.splitlines() == [
            "INSERT providers/alpha",
            "INSERT credentials/team",
            "INSERT credentials/old",
        ]
        conn = await asyncpg.connect(other)
        try:
            assert await conn.fetchval("SELECT count(*) FROM providers") == 0  # dry
        finally:
            await conn.close()
        code, out, _ = await asyncio.to_thread(
            run, capsys, "import-config", str(exported), "--db-url", other
        )
        assert code == 0 and out.startswith("imported 1 providers and 2 master keys")
        code, out, _ = await asyncio.to_thread(
            run, capsys, "import-config", str(exported), "--db-url", other, "--dry-run"
        )
        assert out.strip() == "no changes"
    finally:
        for key in env:
            os.environ.pop(key, None)
    code, again, _ = await asyncio.to_thread(run, capsys, "export-config", "--db-url", other)
    assert code == 0

    def body(yaml_text: str) -> list[str]:
        return [line for line in yaml_text.splitlines() if not line.startswith("# llm-proxy")]

    assert body(again) == body(text)
    conn = await asyncpg.connect(other)
    try:  # the master key itself works there: its hash came across
        digest = await conn.fetchval("SELECT key_hash FROM credentials WHERE name = 'team'")
        import hashlib

        assert digest == hashlib.sha256(b"sk-team-secret-key").digest()
    finally:
        await conn.close()


async def test_the_admin_export_is_the_same_file(
    config_dsn: str,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed(config_dsn)
    base = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
    url = await start_db_proxy(start_proxy, config_dsn, base)
    async with http.get(
        url + "/admin/v1/config/export",
        headers={"Authorization": "Bearer adm-ops-0123456789abcdef"},
    ) as r:
        assert r.status == 200 and r.content_type == "application/yaml"
        served = await r.text()
    code, cli, _ = await asyncio.to_thread(run, capsys, "export-config", "--db-url", config_dsn)
    # (the in-process proxy's log lines share standard output in this test)
    assert code == 0 and served == cli[cli.index("# llm-proxy configuration") :]
    conn = await asyncpg.connect(config_dsn)
    try:
        assert f"config version {await db_version(conn)}" in served
    finally:
        await conn.close()


async def test_the_routing_section_round_trips(
    config_dsn: str,
    other_config_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llm_proxy.config.database import build_config, fetch
    from tests.config.test_routing_db import ROUTING_YAML, seed_routing, yaml_providers
    from tests.helpers.db import OPEN

    conn = await asyncpg.connect(config_dsn)
    try:
        await seed_routing(conn)
        served = build_config(OPEN, await fetch(conn)).routing
    finally:
        await conn.close()
    exported = tmp_path / "exported.yaml"
    code, _, _ = await asyncio.to_thread(
        run, capsys, "export-config", "--db-url", config_dsn, "-o", str(exported)
    )
    assert code == 0
    text = exported.read_text()
    assert "routing:" in text and "nowhere" not in text  # the disabled rule is not served
    for name in ("openai", "anthropic"):
        monkeypatch.setenv(key_variable(name), f"sk-{name}-provider-key")
    # YAML mode reads the same routing from it as the section written by hand...
    from_file = load_config_file(exported, dict(os.environ))
    assert from_file.routing == served
    assert (
        served
        == load_config_text(yaml_providers("http://127.0.0.1:9/v1") + ROUTING_YAML, {}).routing
    )
    # ...and import-config writes it into another database's tables: the same again.
    code, out, _ = await asyncio.to_thread(
        run, capsys, "import-config", str(exported), "--db-url", other_config_dsn
    )
    assert code == 0 and out.startswith("imported 2 providers and 0 master keys and the routing")
    code, out, _ = await asyncio.to_thread(
        run, capsys, "import-config", str(exported), "--db-url", other_config_dsn, "--dry-run"
    )
    assert out.strip() == "no changes"
    code, again, _ = await asyncio.to_thread(
        run, capsys, "export-config", "--db-url", other_config_dsn
    )
    assert again.splitlines()[1:] == text.splitlines()[1:]
    conn = await asyncpg.connect(other_config_dsn)
    try:
        assert build_config(OPEN, await fetch(conn)).routing == served
    finally:
        await conn.close()
