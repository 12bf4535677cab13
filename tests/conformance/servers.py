"""The real servers of the conformance suite, started as this test run's own processes on
loopback: free ports, configs and pid files in a temp dir, stopped by PID at teardown.

`python_server(kind)` serves `tests.conformance.backend:app` with uvicorn (h11 or httptools),
hypercorn or gunicorn; `nginx(...)` and `haproxy(...)` front such a backend with generated
configs. A server that is not installed is skipped with the reason (`.ci/run` installs them).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import eventually_blocking, free_port
from tests.helpers.processes import stop

APP = "tests.conformance.backend:app"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    url: str  # http(s)://host:port, no path
    log: Path


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until `proc` listens on host:port (for sync fixtures: `eventually` on a loop of its own);
    fail with its log if it exits or never does."""

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()}")
        with socket.create_connection((host, port), timeout=1):
            return True

    try:
        eventually_blocking(listening, timeout=15, interval=0.05)
    except AssertionError as exc:
        pytest.fail(f"{proc.args} never listened on {host}:{port}: {exc}\n{log.read_text()}")


@contextmanager
def process(
    argv: Sequence[str], log: Path, host: str, port: int, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Run `argv` until the block ends (SIGTERM, then SIGKILL, by PID)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, stdin=subprocess.DEVNULL
        )
    try:
        _wait_for_port(host, port, proc, log)
        yield
    finally:
        stop(proc)


def _python_argv(kind: str, port: int, tls: tuple[Path, Path] | None) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if kind in ("uvicorn-h11", "uvicorn-httptools"):
        loop = kind.split("-")[1]
        argv = [sys.executable, "-m", "uvicorn", APP, "--port", str(port), "--http", loop]
        argv += ["--no-access-log", "--lifespan", "off", "--timeout-keep-alive", "1"]
        if tls is not None:
            argv += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        return argv
    if kind == "hypercorn":
        argv = [sys.executable, "-m", "hypercorn", APP, "--bind", bind, "--keep-alive", "1"]
        if tls is not None:  # hypercorn offers h2 by ALPN over TLS
            argv += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
        return argv
    if kind == "gunicorn":
        worker = "uvicorn.workers.UvicornWorker"
        argv = [sys.executable, "-m", "gunicorn", APP, "-b", bind, "-w", "1", "-k", worker]
        return [*argv, "--keep-alive", "1"]
    raise ValueError(kind)


PYTHON_SERVERS = ("uvicorn-h11", "uvicorn-httptools", "hypercorn", "gunicorn")


@contextmanager
def python_server(kind: str, tmp: Path, tls: tuple[Path, Path] | None = None) -> Iterator[Server]:
    module = {"uvicorn-h11": "h11", "uvicorn-httptools": "httptools"}.get(kind, kind)
    pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[test]')")
    port = free_port()
    log = tmp / f"{kind}-{port}.log"
    with process(_python_argv(kind, port, tls), log, "127.0.0.1", port):
        yield Server(kind, f"{'https' if tls else 'http'}://127.0.0.1:{port}", log)


def _require(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{program} is not installed (.ci/run installs it with apt-get)")
    return path


@contextmanager
def nginx(servers: str, tmp: Path) -> Iterator[Path]:
    """nginx (one process, in the foreground) with `servers`: the `server {}` blocks. Waits
    for the first `listen` port; returns the directory of its files."""
    binary = _require("nginx")
    directory = tmp / f"nginx-{free_port()}"
    directory.mkdir()
    temp = " ".join(
        f"{name}_temp_path {directory}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    {servers}
}}
"""
    )
    port = int(servers.split("listen", 1)[1].split()[0].rsplit(":", 1)[1].rstrip(";"))
    host = "::1" if "[::1]" in servers.split("listen", 1)[1].split()[0] else "127.0.0.1"
    log = directory / "stdout.log"
    with process([binary, "-c", str(conf), "-p", str(directory)], log, host, port):
        yield directory


@contextmanager
def haproxy(port: int, backend: str, tmp: Path) -> Iterator[None]:
    """HAProxy in the foreground on 127.0.0.1:`port` in front of `backend` (host:port), with a
    1 s keep-alive timeout towards the proxy."""
    binary = _require("haproxy")
    conf = tmp / f"haproxy-{port}.cfg"
    conf.write_text(
        f"""
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 1s
frontend front
    bind 127.0.0.1:{port}
    default_backend back
backend back
    server app {backend}
"""
    )
    with process([binary, "-db", "-f", str(conf)], tmp / f"haproxy-{port}.log", "127.0.0.1", port):
        yield
