"""The README's newcomer path stays true: its Quick start runs, as written, against the real
`llm-proxy serve --config example.config.yaml` and `llm-proxy mock-upstream` processes, the
Web UI's quick start shows the key it made and that key logs in, `make run` serves the file even
when DB_URL is set, `make mock` takes a port, and a failed install's `.venv` is rebuilt."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import eventually, free_port
from tests.helpers.processes import stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCUMENTED_BASE = "http://127.0.0.1:18000/v1"
# Variables that would change what `serve` does (database mode, another file or port).
SERVE_ENV_DROPPED = ("DB_URL", "CONFIG_PATH", "HOST", "PORT", "VERIFY_SSL", "PROVIDER_SUFFIX")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class QuickStart:
    proxy_port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/v1"


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    """`llm-proxy mock-upstream` and `llm-proxy serve --config example.config.yaml`, on free
    ports: the example's providers read their api_base from PRIMARY_/SECONDARY_API_BASE."""
    tmp = tmp_path_factory.mktemp("quick_start")
    mock_port, proxy_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVE_ENV_DROPPED}
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    env |= {"PRIMARY_API_BASE": upstream, "SECONDARY_API_BASE": upstream, "LOG_FORMAT": "json"}
    env["ANTHROPIC_UPSTREAM_BASE"] = f"http://127.0.0.1:{mock_port}"
    cli = [sys.executable, "-m", "llm_proxy"]
    mock_log, proxy_log = tmp / "mock.log", tmp / "proxy.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with mock_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [*cli, "mock-upstream", "--port", str(mock_port), "--delay-ms", "1"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        with proxy_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [*cli, "serve", "--config", "example.config.yaml", "--port", str(proxy_port)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_until_up(f"http://127.0.0.1:{mock_port}/v1/models", procs[0], mock_log)
        wait_until_up(f"http://127.0.0.1:{proxy_port}/health", procs[1], proxy_log)
        yield QuickStart(proxy_port, proxy_log)
    finally:
        for proc in reversed(procs):
            stop(proc)


# Runs a README snippet with streaming usage forced on or off, whatever the snippet asks for:
# the snippet must be right in both cases (with usage on, the last chunk has no choices).
RUNNER = """
import sys
from openai.resources.chat.completions import Completions

create = Completions.create

def create_with_usage_set(self, *args, **kwargs):
    if kwargs.get("stream"):
        kwargs.pop("stream_options", None)
        if sys.argv[1] == "on":
            kwargs["stream_options"] = {"include_usage": True}
    return create(self, *args, **kwargs)

Completions.create = create_with_usage_set
exec(compile(sys.stdin.read(), "README.md", "exec"), {"__name__": "__main__"})
"""


def sdk_snippet(sdk: str = "openai") -> str:
    """The Quick start's snippet for the `sdk` (openai, anthropic), preceded by blank lines so
    that a traceback's line numbers are README.md's."""
    blocks = code_blocks(section("Quick start"), "python")
    mine = [block for block in blocks if f"import {sdk}" in block or f"from {sdk} " in block]
    assert len(mine) == 1, f"the Quick start has one Python snippet of the {sdk} SDK"
    assert DOCUMENTED_BASE.removesuffix("/v1") in mine[0]
    first_line = README[: README.index(mine[0])].count("\n")
    return "\n" * first_line + mine[0]


def test_quick_start_anthropic_snippet_runs(quick_start: QuickStart) -> None:
    """The Anthropic SDK's snippet, both ways: to the example's Anthropic provider (passed
    through) and to an OpenAI one (translated), streamed and accumulated by the SDK."""
    base = quick_start.base_url.removesuffix("/v1")
    code = sdk_snippet("anthropic").replace(DOCUMENTED_BASE.removesuffix("/v1"), base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, timeout=60, check=False
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("tok0 tok1" in line and "tokens]" in line for line in lines), out


@pytest.mark.parametrize("usage", ["on", "off"])
def test_quick_start_sdk_snippet_runs(quick_start: QuickStart, usage: str) -> None:
    code = sdk_snippet().replace(DOCUMENTED_BASE, quick_start.base_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, usage],
        input=code.encode(),
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    # The non-streamed reply, then the 20 streamed chunks of the mock, all printed.
    assert "Hello from the mock upstream." in out
    streamed = "".join(f"tok{i} " for i in range(20))
    assert streamed in out
    after_stream = out.split(streamed, 1)[1]
    # The mock's stream usage: 5 prompt + 20 completion tokens. The proxy strips the usage it
    # asked for itself, so the client sees it only when it asked.
    assert ("25" in after_stream) is (usage == "on"), out


def test_quick_start_curl_commands(quick_start: QuickStart) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = code_blocks(section("Quick start"), "sh")[0].replace("\\\n", " ")
    curls = [line for line in script.splitlines() if line.startswith("curl ")]
    assert len(curls) == 4
    outputs = []
    for line in curls:
        command = line.replace("localhost:18000", f"127.0.0.1:{quick_start.proxy_port}")
        done = subprocess.run(command, shell=True, capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done.stdout.decode())
    health, models, reply, stream = outputs
    assert health == '{"status":"ok"}'
    assert '"gpt-4o-mini"' in models
    assert "Hello from the mock upstream." in reply
    assert '"tok19 "' in stream and stream.endswith("data: [DONE]\n\n")


def test_documented_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    text = section("The two commands") + section("Quick start")
    targets = set(re.findall(r"^make ([a-z-]+)", "\n".join(code_blocks(text, "sh")), re.M))
    targets |= set(re.findall(r"`make ([a-z-]+)", README))
    assert {"run", "test", "venv", "mock", "run-db"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is documented"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_the_file_even_with_db_url_set(tmp_path: Path) -> None:
    """An exported DB_URL (for the database tests, say) must not turn `make run` into database
    mode, which refuses the example's providers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVE_ENV_DROPPED}
    env |= {"DB_URL": "postgresql://nobody@127.0.0.1:1/none", "PORT": str(port)}
    # BIN: the llm-proxy of the interpreter running the tests; STAMP empty: make must not try
    # to build a virtualenv here.
    bin_dir = Path(sys.executable).parent
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"BIN={bin_dir}", "STAMP="],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make and the proxy it starts
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as resp:
            assert b'"gpt-4o-mini"' in resp.read()
    finally:
        stop(proc, group=True)
    assert "database" not in log.read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_check_config_checks_the_file_even_with_db_url_set() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SERVE_ENV_DROPPED}
    env["DB_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        ["make", "--no-print-directory", "check-config", f"BIN={bin_dir}", "STAMP="],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "example.config.yaml: OK" in done.stdout


@pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("openssl") is None,
    reason="make or openssl is not installed",
)
async def test_web_ui_quick_start_shows_the_key_it_made_and_the_ui_address(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The Web UI's quick start, run as written in bash (but for `make venv`, the fake provider
    and createdb: this test's interpreter and empty database stand in): it shows the admin key
    it generated, `make run-db` names the UI's address, and that key logs in. Nothing else
    prints the key."""
    block = code_blocks(section("Web UI"), "sh")[0]
    bin_dir = Path(sys.executable).parent
    script = []
    for line in block.splitlines():
        if line.startswith(("make venv", "make mock", "createdb ")):
            continue
        if line.startswith("export DB_URL="):
            line = f"export DB_URL={pg_dsn}"
        line = line.replace(".venv/bin/llm-proxy", f"{bin_dir}/llm-proxy")
        line = line.replace("make run-db", f"make --no-print-directory run-db BIN={bin_dir} STAMP=")
        script.append(line)
    text = "\n".join(script)
    assert f"export DB_URL={pg_dsn}" in text and "STAMP=" in text and "migrate up" in text
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVE_ENV_DROPPED}
    env = {k: v for k, v in env.items() if k not in ("ADMIN_KEY", "ADMIN_KEYS")}
    env["PORT"] = str(port)
    log = tmp_path / "web-ui-quick-start.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", text],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: bash, make and the proxy
        )
    try:
        await asyncio.to_thread(wait_until_up, f"http://127.0.0.1:{port}/health", proc, log)
        # The log's own writer thread may write the line after /health answers.
        ui = f"http://127.0.0.1:{port}/ui/"
        await eventually(lambda: ui in log.read_text(), timeout=10, what=f"{ui} in the log")
        output = log.read_text()
        shown = re.findall(r"adm-[0-9a-f]{32}", output)
        assert len(shown) == 1, output  # the quick start shows it; the proxy never does
        async with aiohttp.ClientSession() as http:
            async with http.get(ui) as page:
                assert page.status == 200
            auth = {"Authorization": f"Bearer {shown[0]}"}
            async with http.get(ui.replace("/ui/", "/admin/v1/providers"), headers=auth) as r:
                assert r.status == 200, await r.text()
    finally:
        stop(proc, group=True)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_venv_starts_over_when_a_failed_install_left_a_broken_venv(tmp_path: Path) -> None:
    """A virtualenv without its stamp is the leftover of a failed install (here: its python is
    one that no longer runs, as a venv made by another interpreter leaves): `make venv` makes
    it again instead of failing on it every time. The package index is cut off, so the
    install itself fails fast, at pip, with a working interpreter in place."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /nonexistent\n")
    (venv / "bin" / "python").symlink_to(shutil.which("false") or "/bin/false")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for _ in range(2):  # and again over what the failed install left
        done = subprocess.run(
            ["make", "--no-print-directory", "venv", f"VENV={venv}", f"PYTHON={sys.executable}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0  # no index: pip cannot install the dependencies
        assert not (venv / ".installed").exists()
        ran = subprocess.run(
            [venv / "bin" / "python", "-c", "import sys; print(sys.prefix)"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.stdout.strip() == str(venv), done.stdout + done.stderr
        assert "No matching distribution" in done.stderr  # pip failed, in a working venv


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_mock_takes_a_port(tmp_path: Path) -> None:
    port = free_port()
    bin_dir = Path(sys.executable).parent
    log = tmp_path / "make-mock.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "mock", f"PORT={port}", f"BIN={bin_dir}", "STAMP="],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "PORT"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log)
    finally:
        stop(proc, group=True)
