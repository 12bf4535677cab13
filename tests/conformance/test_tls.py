"""TLS upstreams signed by a private CA (trusted through SSL_CERT_FILE, as a deployment with
a corporate CA does), whose servers prefer h2 by ALPN: the proxy speaks HTTP/1.1 to them. A
certificate for another name is a clear TLS failure, and nothing reaches the backend.

The proxy runs as `llm-proxy serve` here: SSL_CERT_FILE is read when its TLS context is made.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conformance.conftest import assert_answered, assert_once, chat, new_id, seen
from tests.conformance.forward_proxy import ForwardProxy
from tests.conformance.servers import Server, nginx, python_server
from tests.helpers import free_port, sample, scrape
from tests.helpers.processes import serve_process

trustme = pytest.importorskip("trustme", reason="trustme is not installed (the [test] extras)")


@pytest.fixture(scope="module")
def ca(conformance_tmp: Path) -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, conformance_tmp: Path) -> Path:
    path = conformance_tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def issue(ca: trustme.CA, directory: Path, *names: str) -> tuple[Path, Path]:
    """A certificate (with its chain) and key for `names`, as two files."""
    issued = ca.issue_cert(*names)
    cert, key = directory / f"{names[0]}.crt", directory / f"{names[0]}.key"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture(scope="module")
def tls_nginx(ca: trustme.CA, conformance_tmp: Path, backend: Server) -> Iterator[tuple[int, int]]:
    """nginx with TLS and h2 on two ports: (certificate for localhost, for upstream.test)."""
    good, wrong = free_port(), free_port()
    directory = conformance_tmp / "certs"
    directory.mkdir()
    right_cert, right_key = issue(ca, directory, "localhost", "127.0.0.1")
    other_cert, other_key = issue(ca, directory, "upstream.test")
    location = f"""
        location / {{
            proxy_pass {backend.url};
            proxy_http_version 1.1;
            proxy_buffering off;
        }}"""
    servers = f"""
    server {{
        listen 127.0.0.1:{good} ssl http2;
        ssl_certificate {right_cert};
        ssl_certificate_key {right_key};
        {location}
    }}
    server {{
        listen 127.0.0.1:{wrong} ssl http2;
        ssl_certificate {other_cert};
        ssl_certificate_key {other_key};
        {location}
    }}"""
    with nginx(servers, conformance_tmp):
        yield good, wrong


def alpn_choice(port: int, cafile: Path) -> str | None:
    """The protocol the server picks when offered h2 and http/1.1."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        return tls.selected_alpn_protocol()


def config(api_base: str) -> str:
    return f"""\
providers:
  - name: up
    api_base: {api_base}
    api_key: sk-up
    model_mapping: {{"m": null}}
require_auth: false
"""


async def _through(
    api_base: str, ca_file: Path, tmp_path: Path, http: aiohttp.ClientSession, counter: str
) -> None:
    async with serve_process(config(api_base), tmp_path, {"SSL_CERT_FILE": str(ca_file)}) as p:
        ids = [new_id("tls") for _ in range(4)]
        for i, request_id in enumerate(ids):
            stream = i % 2 == 0
            assert_answered(
                await chat(http, p.url, request_id, stream=stream), request_id, stream=stream
            )
    assert_once(await seen(http, counter), ids)


async def test_nginx_tls_h2_preferred(
    tls_nginx: tuple[int, int],
    ca_file: Path,
    backend: Server,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    good, _ = tls_nginx
    assert alpn_choice(good, ca_file) == "h2"
    await _through(f"https://localhost:{good}/v1", ca_file, tmp_path, http, backend.url)


async def test_hypercorn_tls_h2_preferred(
    ca: trustme.CA, ca_file: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with python_server("hypercorn", tmp_path, tls=issue(ca, tmp_path, "localhost")) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert alpn_choice(port, ca_file) == "h2"
        counter = f"https://localhost:{port}"
        api_base = counter + "/v1"
        context = ssl.create_default_context(cafile=str(ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as tls_http:
            async with serve_process(
                config(api_base), tmp_path, {"SSL_CERT_FILE": str(ca_file)}
            ) as p:
                ids = [new_id("h2") for _ in range(4)]
                for i, request_id in enumerate(ids):
                    answer = await chat(http, p.url, request_id, stream=i % 2 == 0)
                    assert_answered(answer, request_id, stream=i % 2 == 0)
            assert_once(await seen(tls_http, counter), ids)


async def test_wrong_hostname_is_a_tls_failure(
    tls_nginx: tuple[int, int],
    ca_file: Path,
    backend: Server,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    _, wrong = tls_nginx
    api_base = f"https://localhost:{wrong}/v1"
    request_id = new_id("wrong-host")
    async with serve_process(config(api_base), tmp_path, {"SSL_CERT_FILE": str(ca_file)}) as p:
        answer = await chat(http, p.url, request_id)
        metrics = await scrape(http, p.url)
    # Read once the process has stopped: its log lines leave through a background writer,
    # so while it runs the last ones may not have reached the pipe yet.
    log = [json.loads(line) for line in p.lines if line.startswith(b"{")]
    assert answer.status == 502, answer.body
    # The cause: a fixed kind in metrics, the detail in the log.
    assert sample(metrics, "llm_proxy_upstream_errors_total", provider="up", kind="tls")
    failures = [e for e in log if e.get("event") == "upstream_attempt_failed"]
    assert failures
    assert all("CERTIFICATE_VERIFY_FAILED" in e["error"] for e in failures), failures
    assert "Hostname mismatch" in failures[0]["error"]
    assert request_id not in await seen(http, backend.url)


async def test_https_through_connect_proxy_from_env(
    tls_nginx: tuple[int, int],
    ca_file: Path,
    backend: Server,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """HTTPS_PROXY (trust_env): a CONNECT tunnel to nginx, TLS with the origin inside it. The
    name (upstream.test) is resolved by the proxy only, as behind a corporate proxy."""
    _, port = tls_nginx
    forward = ForwardProxy(hosts={"upstream.test": "127.0.0.1"})
    async with forward.running() as address:
        env = {"SSL_CERT_FILE": str(ca_file), "HTTPS_PROXY": f"http://{address}", "NO_PROXY": ""}
        api_base = f"https://upstream.test:{port}/v1"
        async with serve_process(config(api_base), tmp_path, env) as p:
            ids = [new_id("tunnel") for _ in range(4)]
            for i, request_id in enumerate(ids):
                answer = await chat(http, p.url, request_id, stream=i % 2 == 0)
                assert_answered(answer, request_id, stream=i % 2 == 0)
    assert forward.requests  # pooled: one tunnel carries them all
    assert set(forward.requests) == {f"CONNECT upstream.test:{port}"}
    assert_once(await seen(http, backend.url), ids)


async def test_proxy_refusing_the_tunnel(
    tls_nginx: tuple[int, int],
    ca_file: Path,
    backend: Server,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """Wrong proxy credentials: the tunnel is refused (407), a 502 of kind proxy, nothing sent."""
    _, port = tls_nginx
    forward = ForwardProxy("user", "right", hosts={"upstream.test": "127.0.0.1"})
    request_id = new_id("refused")
    async with forward.running() as address:
        proxy = f"http://user:wrong@{address}"
        env = {"SSL_CERT_FILE": str(ca_file), "HTTPS_PROXY": proxy, "NO_PROXY": ""}
        text = config(f"https://upstream.test:{port}/v1") + "max_attempts: 1\n"
        async with serve_process(text, tmp_path, env) as p:
            answer = await chat(http, p.url, request_id)
            metrics = await scrape(http, p.url)
    assert answer.status == 502, answer.body
    assert sample(metrics, "llm_proxy_upstream_errors_total", provider="up", kind="proxy")
    assert forward.refused == 1
    assert request_id not in await seen(http, backend.url)
