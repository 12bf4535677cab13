"""Every admin curl example of the original llm-proxy's README (`seed/llm-proxy-README.md`,
see `seed/ORIGIN.md`) works verbatim against a database-mode proxy: the examples are read from
its code blocks, run in order by the real `curl` through `bash`, with only the host and port
replaced and `$ADMIN_KEY` set to this proxy's admin key; each answers 2xx with what it says,
but for the one intentional difference: its placeholder master key `mk-xxx` is too short."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from llm_proxy.config.model import Config
from tests.helpers import ProxyFactory
from tests.helpers.db import start_db_proxy

README = Path(__file__).parent / "seed" / "llm-proxy-README.md"
ADMIN_KEY = "adm-seed-readme-0123456789"
BASE = Config(admin_keys=(("ops", ADMIN_KEY),))
README_HOST = "http://localhost:18000"


@dataclass(frozen=True, slots=True)
class Example:
    title: str  # the comment line above it in the README
    command: str  # as written, continuation lines and all


def _complete(command: str) -> bool:
    """Whether `command` is a whole shell command (no open quote, no trailing backslash)."""
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # "No closing quotation": a quoted body spans more lines
        return False
    return True


def admin_examples(text: str) -> list[Example]:
    """The curl commands of the README's bash blocks that call the admin API, in order."""
    examples = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        title, pending = "", ""
        for line in block.splitlines():
            if pending:
                pending += "\n" + line
            elif line.startswith("curl "):
                pending = line
            elif line.startswith("#"):
                title = line.lstrip("# ").strip()
                continue
            else:
                continue
            if _complete(pending):
                if "/admin/" in pending:
                    examples.append(Example(title, pending))
                pending = ""
    return examples


EXAMPLES = admin_examples(README.read_text(encoding="utf-8"))


def test_the_readme_holds_the_admin_examples() -> None:
    """The parser finds every admin example (a test that ran none would pass)."""
    assert [e.title for e in EXAMPLES] == [
        "Create Provider",
        "List all Providers",
        "Check Provider Health",
        "Create Master Key",
        "Hot reload configuration (no restart required)",
    ]
    assert all(README_HOST + "/admin/v1/" in e.command for e in EXAMPLES)
    assert all('"Authorization: Bearer $ADMIN_KEY"' in e.command for e in EXAMPLES)


async def run_curl(command: str, url: str, home: Path) -> tuple[int, Any]:
    """(status, JSON body) of `command` run by bash, the README's host replaced by `url`.
    The status is written by curl's own config file (`CURL_HOME`), so that the command stays
    as the README has it."""
    env = {**os.environ, "ADMIN_KEY": ADMIN_KEY, "CURL_HOME": str(home)}
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command.replace(README_HOST, url),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    body, _, status = out.decode().rpartition("\n")
    return int(status), orjson.loads(body)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples are run by curl")
async def test_every_admin_example_of_the_readme_works_verbatim(
    config_dsn: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await start_db_proxy(start_proxy, config_dsn, BASE)
    # -s, -S and the status after the body: curl's settings, not the README's command.
    (tmp_path / ".curlrc").write_text('silent\nshow-error\nwrite-out = "\\n%{http_code}"\n')
    answers = {}
    for example in EXAMPLES:
        status, body = await run_curl(example.command, url, tmp_path)
        if example.title == "Create Master Key":
            # The one intentional difference: its placeholder key `mk-xxx` is refused, as every
            # master key under 8 characters is (YAML, psql, admin API alike), saying how to
            # make one. The same example with a longer key is accepted, every field as given.
            assert status == 400 and body["error"]["param"] == "key", body
            assert "at least 8 characters" in body["error"]["message"]
            longer = example.command.replace('"mk-xxx"', '"mk-xxx-0123456789"')
            status, body = await run_curl(longer, url, tmp_path)
        assert 200 <= status < 300, (example.title, status, body)
        answers[example.title] = body
    provider = answers["Create Provider"]
    assert (provider["id"], provider["name"], provider["enabled"]) == (1, "openai-main", True)
    assert provider["provider_type"] == "openai" and provider["api_key"] != "sk-xxx"
    assert [p["name"] for p in answers["List all Providers"]["data"]] == ["openai-main"]
    health = answers["Check Provider Health"]
    assert health["provider"] == "openai-main"
    assert [r["model"] for r in health["results"]] == ["gpt-4", "gpt-3.5-turbo"]
    key = answers["Create Master Key"]
    assert (key["name"], key["enabled"], key["allowed_models"]) == ("Default Key", True, ["*"])
    reloaded = answers["Hot reload configuration (no restart required)"]
    assert reloaded["served"] is True and reloaded["version"] >= key["config_version"]
    # The key the README created opens the proxy.
    headers = {"Authorization": "Bearer mk-xxx-0123456789"}
    async with http.get(url + "/v1/models", headers=headers) as r:
        assert r.status == 200, await r.text()
