"""A proxy that requires authentication with no enabled master key stays locked (every /v1
request is a 401), and `check-config`, the startup log and /health/detailed say so in one line
with the fix for the mode (`config/lockout.py`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from llm_proxy.config.lockout import FIX_IN_DATABASE, FIX_IN_FILE, locked_line, locked_warning
from llm_proxy.config.model import Config, MasterKey
from tests.helpers.processes import serve_process

PROVIDER = """\
providers:
  - name: only
    api_base: http://127.0.0.1:9/v1
    api_key: sk-upstream-0123
    model_mapping: {gpt-4o: gpt-4o}
"""
READ_BY_THE_PROXY = ("DB_URL", "CONFIG_PATH", "HOST", "PORT", "REQUIRE_AUTH", "ADMIN_KEY")


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in READ_BY_THE_PROXY}
    return subprocess.run(
        [sys.executable, "-m", "llm_proxy", *args],
        cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_the_line_names_the_state_and_the_fix_for_the_mode() -> None:
    assert locked_warning(Config(require_auth=False), database=True) is None
    keyed = Config(master_keys=(MasterKey("team", "sk-team-0123456"),))
    assert locked_warning(keyed, database=True) is None
    line = locked_warning(Config(), database=True)
    assert line == (
        "no master keys: every /v1 request is refused (401) until you add one: "
        f"{FIX_IN_DATABASE}; or set require_auth: false to serve without authentication"
    )
    disabled = Config(master_keys=(MasterKey("team", "sk-team-0123456", enabled=False),))
    line = locked_warning(disabled, database=False)
    assert line is not None
    assert line.startswith("no enabled master key (1 disabled): every /v1 request is refused")
    assert "add or re-enable one: " + FIX_IN_FILE in line
    both = locked_line((), database=None)
    assert FIX_IN_FILE in both and FIX_IN_DATABASE in both
    for text in (line, both):
        assert "\n" not in text and "sk-team" not in text


def test_check_config_says_it_in_yaml_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(PROVIDER)
    done = run("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = locked_warning(Config(), database=False)
    assert expected is not None
    assert done.stdout.splitlines().count(expected) == 1


@pytest.mark.usefixtures("sql")  # the schema, and nothing in it
async def test_an_empty_credentials_table_locks_and_says_how_to_add_a_key(
    config_dsn: str, tmp_path: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = await asyncpg.connect(config_dsn)
    try:
        await conn.execute(
            "INSERT INTO providers (name, api_base, model_mapping) "
            """VALUES ('db-provider', 'http://127.0.0.1:9/v1', '{"m": null}')"""
        )
    finally:
        await conn.close()
    expected = locked_warning(Config(), database=True)
    assert expected is not None
    done = await asyncio.to_thread(
        run, "check-config", "--connect", cwd=tmp_path, DB_URL=config_dsn
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines().count(expected) == 1

    for name in READ_BY_THE_PROXY:
        monkeypatch.delenv(name, raising=False)
    settings = f"server: {{host: 127.0.0.1, port: {unused_tcp_port}}}\n"
    async with (
        serve_process(settings, tmp_path, {"DB_URL": config_dsn}, port=unused_tcp_port) as served,
        aiohttp.ClientSession() as http,
    ):
        for headers in ({}, {"Authorization": "Bearer sk-guess-0123456"}):
            async with http.get(served.url + "/v1/models", headers=headers) as resp:
                assert resp.status == 401
        async with http.get(served.url + "/health/detailed") as resp:
            warnings = (await resp.json())["warnings"]
    locked = [
        event
        for event in map(json.loads, served.lines)
        if event["event"] == "authentication_locked"
    ]
    assert len(locked) == 1  # one line, at startup
    assert locked[0]["reason"] == locked_line((), database=None) == warnings[0]
    assert FIX_IN_DATABASE in locked[0]["reason"]


def test_import_config_says_when_the_database_it_leaves_locks_the_proxy(
    tmp_path: Path, other_config_dsn: str
) -> None:
    """Imported without a master key, the database locks a proxy: the import says so in one
    line with the database's fix; once a key is imported, it says nothing."""
    (tmp_path / "config.yaml").write_text(PROVIDER)
    done = run("import-config", "config.yaml", "--db-url", other_config_dsn, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warning = f"warning: {locked_line((), database=True)}"
    assert warning in done.stderr.splitlines()
    keyed = PROVIDER + "master_keys:\n  - {name: team, key: sk-team-0123456789}\n"
    (tmp_path / "config.yaml").write_text(keyed)
    done = run("import-config", "config.yaml", "--db-url", other_config_dsn, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning:" not in done.stderr
