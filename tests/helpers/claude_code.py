"""The real Claude Code CLI (`claude`, npm `@anthropic-ai/claude-code`) as a client of a mock
upstream or of the proxy: where it is installed (`claude_bin`), and `run_claude`, one
`claude -p PROMPT --output-format json` run offline (telemetry, updates and error reports off,
a throwaway HOME and working directory), against a base URL.

What it sends (2.1.197): `POST /v1/messages?beta=true`, always `"stream": true`, with
`x-api-key` (from ANTHROPIC_API_KEY), `anthropic-version: 2023-06-01`, `anthropic-beta`
(claude-code-20250219, interleaved-thinking, context-management, ...), `x-app: cli`; its
`messages` may hold a `system` turn; no count_tokens call in `-p` mode."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

import orjson

ROOT: Final = Path(__file__).resolve().parents[2]
VERSION: Final = "2.1.197"  # the version `.ci/run` installs, which these tests were written for
# The offline environment: no telemetry, update check, error report or other traffic.
_OFFLINE: Final = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


def claude_bin() -> str | None:
    """The CLI: $CLAUDE_CODE_BIN, else the one `.ci/run` installs (.ci/node), else
    /tmp/cc's, else `claude` on the PATH; None when there is none."""
    if configured := os.environ.get("CLAUDE_CODE_BIN"):
        return configured
    for candidate in (
        ROOT / ".ci/node/node_modules/.bin/claude",
        Path("/tmp/cc/node_modules/.bin/claude"),
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which("claude")


async def run_claude(
    base_url: str, api_key: str, prompt: str, *extra_args: str, timeout: float = 120
) -> tuple[int, dict[str, Any] | None, str]:
    """Run `claude -p PROMPT --output-format json *EXTRA_ARGS` against `base_url` (ANTHROPIC_
    BASE_URL: the URL without `/v1`) with `api_key` (ANTHROPIC_API_KEY), offline, in a fresh
    temporary HOME and working directory: (exit status, its JSON output or None when it wrote
    none, its standard error). Async: the server it talks to may run on the caller's loop."""
    binary = claude_bin()
    assert binary is not None, "the Claude Code CLI is not installed"
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        workdir = Path(home) / "work"
        workdir.mkdir()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": api_key,
            **_OFFLINE,
        }
        process = await asyncio.create_subprocess_exec(
            binary,
            "-p",
            prompt,
            "--output-format",
            "json",
            *extra_args,
            cwd=workdir,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert process.returncode is not None
    try:
        output = orjson.loads(out) if out.strip() else None
    except orjson.JSONDecodeError:
        output = None
    return process.returncode, output, err.decode("utf-8", "replace")
