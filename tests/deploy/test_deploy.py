"""What the Dockerfile and the systemd unit set up, checked without Docker or systemd: the image
leaves the listen address to its config, its default config works in a container, and token
counting needs neither network nor a cache directory where they run it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_proxy.config.yaml_file import load_config_file

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
UNIT = (ROOT / "deploy" / "llm-proxy.service").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction of the Dockerfile's last (runtime) stage, with
    line continuations joined."""
    runtime = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    joined = re.sub(r"\\\n", " ", runtime)
    return [m.group(1) for m in re.finditer(rf"^{name} (.*)$", joined, flags=re.MULTILINE)]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_image_sets_no_listen_address() -> None:
    """HOST/PORT in the image would silently beat a mounted config's `server:` section."""
    env = image_env()
    assert env["CONFIG_PATH"] == "/etc/llm-proxy/config.yaml"
    assert not {"HOST", "PORT"} & env.keys()


@pytest.mark.skipif(shutil.which("sed") is None, reason="sed is not installed")
def test_image_default_config_listens_on_all_interfaces(tmp_path: Path) -> None:
    """The image's config is example.config.yaml as the Dockerfile's own `sed` rewrites it: on
    0.0.0.0 (a container's loopback is unreachable through -p), authentication required, with
    the upstreams the documented `-e PRIMARY_API_BASE=... -e SECONDARY_API_BASE=...
    -e ANTHROPIC_UPSTREAM_BASE=...` point at."""
    runs = [r for r in instructions("RUN") if "sed -i" in r and "/etc/llm-proxy/config.yaml" in r]
    assert len(runs) == 1, "one RUN rewrites the default config's listen address and auth"
    [run] = runs
    words = shlex.split(run)
    script = words[words.index("-i") + 1]
    example = (ROOT / "example.config.yaml").read_text()
    rewritten = subprocess.run(
        ["sed", script], input=example, capture_output=True, text=True, check=True, timeout=10
    ).stdout
    path = tmp_path / "config.yaml"
    path.write_text(rewritten)
    upstream = "http://mock:18001/v1"
    env = {
        "PRIMARY_API_BASE": upstream,
        "SECONDARY_API_BASE": upstream,
        "ANTHROPIC_UPSTREAM_BASE": "http://mock:18001",
    }
    config = load_config_file(path, env)
    assert (config.host, config.port) == ("0.0.0.0", 18000)
    assert [p.api_base for p in config.providers] == [upstream, upstream, "http://mock:18001"]
    # Published to a network, the image requires a key (the example is open for a laptop).
    assert "require_auth: false\n" in example and config.require_auth is True
    # Nothing else of the example changed.
    restored = rewritten.replace("host: 0.0.0.0", "host: 127.0.0.1")
    assert restored == example.replace("require_auth: false\n", "")


def test_token_counting_without_network_or_cache_dir(tmp_path: Path) -> None:
    """The image and the unit set TIKTOKEN_CACHE_DIR empty: the bundled encoding is read in place
    (no copy into a cache directory), and nothing is downloaded (a proxy that refuses every
    connection is configured for the attempt)."""
    unit_env = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in UNIT.splitlines()
        if line.startswith("Environment=")
    )
    assert image_env()["TIKTOKEN_CACHE_DIR"] == unit_env["TIKTOKEN_CACHE_DIR"] == ""
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_GYM_CACHE_DIR",)}
    dead = "http://127.0.0.1:9"
    env |= {"TIKTOKEN_CACHE_DIR": "", "TMPDIR": str(tmp_path)}
    env |= {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead}
    code = "from llm_proxy.proxy.tokens import count_sync; print(count_sync('hello offline world'))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
    assert list(tmp_path.iterdir()) == []
