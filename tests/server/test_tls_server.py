"""TLS termination by the proxy itself (`server.tls`): `llm-proxy serve` as a real process,
the openai SDK trusting a test CA, the certificate renewed on SIGHUP without dropping an open
connection, plain HTTP only where configured, and client certificates with `client_ca_file`."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2 as httpx  # the HTTP client the openai SDK uses
import openai
import pytest
import trustme

from tests.helpers import Upstream, certificate, eventually, free_port, yaml_config


@asynccontextmanager
async def serve_tls(
    config: str, tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    path = tmp_path / "tls.yaml"
    path.write_text(config)
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json"}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_proxy", "serve", "--config", str(path),
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        async with httpx.AsyncClient(verify=context) as http:

            async def up() -> bool:
                if proc.poll() is not None:
                    pytest.fail((tmp_path / "serve.log").read_text())
                return (await http.get(f"https://127.0.0.1:{port}/health")).status_code == 200

            await eventually(up, timeout=10, interval=0.05)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()


def config_for(upstream: Upstream, cert: Path, key: Path) -> str:
    return yaml_config(upstream, server={"tls": {"cert_file": cert, "key_file": key}})


async def serial_seen(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    from cryptography import x509

    return int(x509.load_der_x509_certificate(der).serial_number)


async def test_https_with_the_sdk_and_a_renewal_on_sighup(
    upstream: Upstream, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert, key, first = certificate(ca, tmp_path)
    async with serve_tls(config_for(upstream, cert, key), tmp_path, ca) as (port, proc):
        base = f"https://127.0.0.1:{port}/v1"
        async with (
            httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca_file))) as http,
            openai.AsyncOpenAI(
                api_key="x", base_url=base, max_retries=0, http_client=http
            ) as client,
        ):
            reply = await client.chat.completions.create(model="m", messages=[])
            assert reply.choices
            stream = await client.chat.completions.create(model="m", messages=[], stream=True)
            assert [c async for c in stream]
            old = await serial_seen(port)
            # Renewal: new files in place, then SIGHUP (as certbot's deploy hook would).
            _, _, renewed = certificate(ca, tmp_path)
            proc.send_signal(signal.SIGHUP)

            async def renewed_seen() -> bool:
                return await serial_seen(port) != old

            await eventually(renewed_seen, interval=0.05)
            # The SDK's pooled connection (opened before the renewal) still serves.
            assert (await client.chat.completions.create(model="m", messages=[])).choices
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the TLS port
            async with httpx.AsyncClient() as plain:
                await plain.get(f"http://127.0.0.1:{port}/health")
        # A broken renewal keeps the old certificate.
        key.write_text("not a key")
        proc.send_signal(signal.SIGHUP)
        # The SIGHUP handler ran once it logged the failure.
        await eventually(lambda: "tls_reload_failed" in (tmp_path / "serve.log").read_text())
        async with httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(ca_file))
        ) as http:
            assert (await http.get(f"https://127.0.0.1:{port}/health")).status_code == 200
    assert "tls_reload_failed" in (tmp_path / "serve.log").read_text()
    del first, renewed


async def test_client_certificates_and_a_plain_http_port(
    upstream: Upstream, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert, key, _ = certificate(ca, tmp_path)
    clients = trustme.CA()
    clients_file = tmp_path / "clients.pem"
    clients.cert_pem.write_to_path(str(clients_file))
    http_port = free_port()
    config = yaml_config(
        upstream,
        server={
            "tls": {"cert_file": cert, "key_file": key, "client_ca_file": clients_file},
            "http_port": http_port,
        },
    )
    leaf = clients.issue_cert("client@example")
    with_cert = ssl.create_default_context(cafile=str(ca_file))
    leaf.configure_cert(with_cert)
    without = ssl.create_default_context(cafile=str(ca_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    # (serve_tls's readiness probe has no client certificate: poll the plain port instead)
    path = tmp_path / "m.yaml"
    path.write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_proxy", "serve", "--config", str(path),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as plain:

            async def up() -> bool:
                return (await plain.get(f"http://127.0.0.1:{http_port}/health")).status_code == 200

            await eventually(up, timeout=20, interval=0.05)
            assert (await plain.get(f"http://127.0.0.1:{http_port}/v1/models")).status_code == 200
        async with httpx.AsyncClient(verify=with_cert) as http:
            assert (await http.get(f"https://127.0.0.1:{port}/v1/models")).status_code == 200
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(verify=without) as http:
                await http.get(f"https://127.0.0.1:{port}/v1/models")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_unreadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server: {tls: {cert_file: /nonexistent.pem}}\nrequire_auth: false\n")
    done = subprocess.run(
        [sys.executable, "-m", "llm_proxy", "check-config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "server.tls.cert_file" in done.stderr and "server.tls.key_file" in done.stderr
