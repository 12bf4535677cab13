"""The working directory's `.env` at startup, with a real `llm-proxy serve` and real
`check-config` / `migrate` processes: read for every variable (not only the config's), the
process environment winning, and it winning over the `.env` beside the config file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.helpers import eventually, free_port
from tests.helpers.processes import Served, wait_for_health

CONFIG = """\
providers:
  - name: only
    api_base: http://127.0.0.1:9/v1
    api_key: ${UPSTREAM_KEY}
    model_mapping: {gpt-4o: gpt-4o}
"""
ADMIN_KEY = "admin-key-from-dotenv-0123"
# Variables a test's own environment must not decide for the process under test.
READ_BY_THE_PROXY = (
    "DB_URL", "CONFIG_PATH", "HOST", "PORT", "REQUIRE_AUTH", "ADMIN_KEY", "ADMIN_KEYS",
    "VERIFY_SSL", "LOG_FORMAT", "LOG_LEVEL", "UPSTREAM_KEY", "PROVIDER_SUFFIX",
)  # fmt: skip


def clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in READ_BY_THE_PROXY}
    return {**env, **extra}


def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory and, elsewhere, a config directory with a `.env` of its own."""
    workdir, confdir = tmp_path / "work", tmp_path / "conf"
    workdir.mkdir()
    confdir.mkdir()
    (confdir / "config.yaml").write_text(CONFIG)
    return workdir, confdir


async def test_serve_reads_the_working_directory_env_below_the_process_environment(
    tmp_path: Path,
) -> None:
    workdir, confdir = layout(tmp_path)
    port = free_port()
    (workdir / ".env").write_text(
        # LOG_FORMAT is read by no config file: only the startup load can set it.
        "LOG_FORMAT=json\n"
        f"CONFIG_PATH={confdir / 'config.yaml'}\n"
        "REQUIRE_AUTH=false\n"
        "PORT=1\n"  # the process environment's PORT wins
        "HOST=127.0.0.1\n"
        f"ADMIN_KEY={ADMIN_KEY}\n"
        "ADAPTIVE_ROUTING_ENABLED=true\n"  # the original's, not read here: named at startup
    )
    (confdir / ".env").write_text("UPSTREAM_KEY=sk-upstream-0123\nREQUIRE_AUTH=true\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_proxy", "serve",
        cwd=workdir, env=clean_environment(PORT=str(port)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", port, proc, confdir / "config.yaml")

    async def collect() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            served.lines.append(line)

    reader = asyncio.create_task(collect())
    try:
        await wait_for_health(served)
        detailed = served.url + "/health/detailed"
        async with aiohttp.ClientSession() as http:
            async with http.get(detailed) as resp:
                assert resp.status == 401  # ADMIN_KEY from the .env is required
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            async with http.get(detailed, headers=admin) as resp:
                assert resp.status == 200
                health = await resp.json()
        # REQUIRE_AUTH=false from the working directory beat REQUIRE_AUTH=true beside the file.
        assert health["auth"]["required"] is False
        assert [p["name"] for p in health["providers"]] == ["only"]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        await asyncio.wait_for(reader, 5)
    lines = [line for line in served.lines if line.strip()]
    assert lines, "serve logged nothing"
    events = [json.loads(line) for line in lines]  # LOG_FORMAT=json took effect
    assert "starting" in [e["event"] for e in events]
    (ignored,) = [e for e in events if e["event"] == "original_variables_ignored"]
    assert list(ignored["variables"]) == ["ADAPTIVE_ROUTING_ENABLED"]


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_proxy", *args],
        cwd=cwd, env=clean_environment(**env),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_check_config_reads_config_path_and_variables_from_the_working_directory(
    tmp_path: Path,
) -> None:
    workdir, confdir = layout(tmp_path)
    (workdir / ".env").write_text(
        f"CONFIG_PATH={confdir / 'config.yaml'}\nPORT=18123\nMAX_TOKENS_LIMIT=4096\n"
    )
    (confdir / ".env").write_text("UPSTREAM_KEY=sk-upstream-0123\nPORT=18999\n")
    done = run("check-config", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "listen: 0.0.0.0:18123" in done.stdout
    assert done.stderr == (
        "warning: variables of the original llm-proxy not read here: MAX_TOKENS_LIMIT "
        "(use a provider's max_output_tokens: a cap, with no minimum)\n"
    )
    done = run("check-config", cwd=workdir, PORT="18555")
    assert "listen: 0.0.0.0:18555" in done.stdout


def test_a_malformed_line_stops_every_command_naming_file_and_line(tmp_path: Path) -> None:
    workdir, confdir = layout(tmp_path)
    secret = "sk-this-must-never-be-printed"
    (workdir / ".env").write_text(f"# settings\nDB_URL=postgresql://db/x\n{secret}\n")
    for args in (
        ("serve", "--config", str(confdir / "config.yaml")),
        ("check-config", str(confdir / "config.yaml")),
        ("migrate", "status"),
        ("export-config",),
    ):
        done = run(*args, cwd=workdir)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == (
            f"error: {workdir / '.env'} line 3: expected NAME=value (no `=` on this line)"
        )
        assert secret not in done.stdout + done.stderr


def test_a_malformed_line_beside_the_config_names_that_file(tmp_path: Path) -> None:
    workdir, confdir = layout(tmp_path)
    (confdir / ".env").write_text("UPSTREAM_KEY='sk-unterminated\n")
    done = run("check-config", str(confdir / "config.yaml"), cwd=workdir)
    assert done.returncode == 1
    assert f"{confdir / '.env'} line 1: the ' that opens the value is not closed" in done.stderr
    assert "sk-unterminated" not in done.stderr


async def test_sighup_sees_an_edit_of_the_working_directory_env(tmp_path: Path) -> None:
    """The common layout (config and `.env` in the working directory): the `.env` loaded at
    startup is read again on SIGHUP, like the config, instead of its startup values winning
    over the edit; a variable the process was given still wins."""
    port = free_port()
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / ".env").write_text(
        f"UPSTREAM_KEY=sk-upstream-0123\nREQUIRE_AUTH=true\nADMIN_KEY={ADMIN_KEY}\n"
        "LOG_FORMAT=json\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_proxy", "serve", "--host", "127.0.0.1",
        cwd=tmp_path, env=clean_environment(PORT=str(port)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", port, proc, tmp_path / "config.yaml")

    async def collect() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            served.lines.append(line)

    reader = asyncio.create_task(collect())
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        await wait_for_health(served)
        async with aiohttp.ClientSession() as http:

            async def required() -> bool:
                async with http.get(served.url + "/health/detailed", headers=admin) as resp:
                    return bool((await resp.json())["auth"]["required"])

            assert await required() is True
            # PORT=1 in the file: the process was given PORT, which still wins (no restart
            # happens, but the reload must not refuse or move anything).
            (tmp_path / ".env").write_text(
                f"UPSTREAM_KEY=sk-upstream-0123\nREQUIRE_AUTH=false\nADMIN_KEY={ADMIN_KEY}\n"
                "PORT=1\n"
            )
            proc.send_signal(signal.SIGHUP)

            async def not_required() -> bool:
                return not await required()

            await eventually(not_required, timeout=10, what="REQUIRE_AUTH=false after SIGHUP")
            # A bad line now: the reload is refused naming file and line; the old config serves.
            (tmp_path / ".env").write_text("UPSTREAM_KEY='sk-upstream-0123\n")
            proc.send_signal(signal.SIGHUP)
            await eventually(
                lambda: b"config_reload_rejected" in served.log, what="the reload rejected"
            )
            assert await required() is False
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        await asyncio.wait_for(reader, 5)
    (rejected,) = [json.loads(line) for line in served.lines if b"config_reload_rejected" in line]
    assert rejected["errors"] == [
        f"(top level) ({tmp_path / '.env'} line 1): the ' that opens the value is not closed "
        "on this line"
    ]
    assert b"sk-upstream-0123" not in served.log
