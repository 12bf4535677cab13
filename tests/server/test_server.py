"""The listening side (`llm_proxy.server`), tested on `llm-proxy serve` as a real subprocess:
connection caps, per-client limits, slow heads, and requests aiohttp cannot parse."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import orjson
import pytest

from tests.helpers import Upstream, accepted, eventually, read_response
from tests.helpers.processes import Served, serve_process

KEY = "sk-team-a-0123456789abcdef"
CONFIG = f"""\
providers:
  - name: a
    api_base: http://127.0.0.1:9/v1
    api_key: sk-provider-secret
    model_mapping: {{"m": null}}
master_keys:
  - name: team-a
    key: {KEY}
"""


async def test_the_tests_run_on_uvloop() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def _open(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def _exchange(served: Served, raw: bytes) -> bytes:
    reader, writer = await _open(served.port)
    writer.write(raw)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def _no_tracebacks(served: Served) -> None:
    assert b"Traceback" not in served.log
    assert b"unhandled_error" not in served.log


async def test_connection_cap_answers_503_on_uvloop(tmp_path: Path) -> None:
    async with serve_process(CONFIG + "max_connections: 2\n", tmp_path) as served:
        held = [await accepted(served.port) for _ in range(2)]
        reader, writer = await _open(served.port)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in answer
        body = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "over_capacity"
        for _, w in held:
            w.close()
    _no_tracebacks(served)


async def test_one_address_cannot_fill_the_proxy(tmp_path: Path) -> None:
    config = CONFIG + "max_connections: 50\nmax_connections_per_client: 3\n"
    async with serve_process(config, tmp_path) as served:
        held = [await accepted(served.port) for _ in range(3)]
        reader, writer = await _open(served.port)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"max_connections_per_client" in answer
        # Another address is still served.
        r2, w2 = await _open(served.port, source="127.0.0.2")
        w2.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(r2.readline(), 5)).startswith(b"HTTP/1.1 200")
        w2.close()
        # Once its connections close, the first address is admitted again.
        for _, w in held:
            w.close()
        health = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

        async def admitted() -> bool:
            return (await _exchange(served, health)).startswith(b"HTTP/1.1 200")

        await eventually(admitted)
    _no_tracebacks(served)


async def test_idle_heads_close_sooner_than_authenticated_keep_alive(tmp_path: Path) -> None:
    config = CONFIG + "header_timeout_secs: 0.5\nkeepalive_timeout_secs: 30\n"
    async with serve_process(config, tmp_path) as served:
        loop = asyncio.get_running_loop()
        # Nothing sent: closed after header_timeout_secs.
        silent_r, silent_w = await _open(served.port)
        t = loop.time()
        assert await asyncio.wait_for(silent_r.read(), 5) == b""
        assert 0.3 < loop.time() - t < 3
        silent_w.close()

        # A head that never ends: the same.
        slow_r, slow_w = await _open(served.port)
        slow_w.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        assert await asyncio.wait_for(slow_r.read(), 5) == b""
        slow_w.close()

        # Unauthenticated: the 401 closes the connection.
        answer = await _exchange(served, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401")
        assert b"Connection: close" in answer

        # Authenticated keep-alive connections outlive the head timeout.
        reader, writer = await _open(served.port)
        request = f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n"
        for _ in range(2):
            writer.write(request.encode())
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
            # Real time: past the 0.5 s head timeout of the server process's own clock.
            await asyncio.sleep(1.2)
        writer.close()
    _no_tracebacks(served)


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: Bearer {KEY}\r\r\n",  # trailing CR
        f"Authorization: Bearer {KEY}\x01\r\n",  # control character
        f"Authorization: Bearer {KEY}{'x' * 9000}\r\n",  # over 8 KiB
        f"Authorization: Bearer {KEY}\nX-Other: 1\r\n",  # bare LF
        f"Authorization: Bearer {KEY}\r\n Folded: {KEY}\r\n",  # obsolete line folding
    ],
    ids=["trailing-cr", "control-char", "over-8k", "bare-lf", "folded"],
)
async def test_malformed_header_lines_never_reach_the_log(tmp_path: Path, line: str) -> None:
    async with serve_process(CONFIG, tmp_path) as served:
        raw = f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{line}\r\n".encode()
        answer = await _exchange(served, raw)
    # (the log is read to its end once the process has stopped)
    assert KEY.encode() not in served.log
    assert KEY[:12].encode() not in answer
    if answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")):
        body = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["message"].startswith("Malformed HTTP request")
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        # The parser may accept the line; then the key is simply wrong (401), never echoed.
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    _no_tracebacks(served)


async def test_the_metrics_port_serves_metrics_and_health_only(
    upstream: Upstream, tmp_path: Path
) -> None:
    """`server.metrics_port` is plain HTTP beside a TLS port that requires client
    certificates: it once served the whole proxy, admin API and UI around both."""
    import ssl
    import subprocess
    import sys

    import httpx2 as httpx
    import trustme

    from tests.helpers import certificate, free_port, yaml_config

    ca = trustme.CA()
    cert, key, _ = certificate(ca, tmp_path)
    clients = trustme.CA()
    clients_file = tmp_path / "clients.pem"
    clients.cert_pem.write_to_path(str(clients_file))
    metrics_port, port = free_port(), free_port()
    config = yaml_config(
        upstream,
        server={
            "tls": {"cert_file": cert, "key_file": key, "client_ca_file": clients_file},
            "metrics_port": metrics_port,
        },
        master_keys=[{"name": "team-a", "key": KEY}],
        admin_key="adm-0123456789abcdef",
        metrics_token="metrics-0123456789",
    )
    path = tmp_path / "metrics-port.yaml"
    path.write_text(config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_proxy", "serve", "--config", str(path),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    plain = f"http://127.0.0.1:{metrics_port}"
    master = {"Authorization": f"Bearer {KEY}"}
    try:
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                return (await http.get(plain + "/health")).status_code == 200

            await eventually(up, timeout=20, interval=0.05)
            token = {"Authorization": "Bearer metrics-0123456789"}
            scraped = await http.get(plain + "/metrics", headers=token)
            assert scraped.status_code == 200 and "llm_proxy_" in scraped.text
            assert (await http.get(plain + "/metrics")).status_code == 401
            detailed = await http.get(plain + "/health/detailed", headers=token)
            assert detailed.status_code == 200 and detailed.json()["providers"]
            refused = [
                await http.post(
                    plain + "/v1/chat/completions", headers=master, json={"model": "m"}
                ),
                await http.post(plain + "/chat/completions", headers=master, json={"model": "m"}),
                await http.get(plain + "/v1/models", headers=master),
                await http.get(
                    plain + "/admin/v1/config",
                    headers={"Authorization": "Bearer adm-0123456789abcdef"},
                ),
                await http.get(plain + "/ui/"),
                await http.get(plain + "/"),
            ]
            for answer in refused:
                assert answer.status_code == 404, (answer.request.url, answer.text)
                assert answer.json()["error"]["code"] == "not_found"
        # Spellings an HTTP client would normalise away.
        for target in (b"/metrics/../v1/models", b"/health/../admin/v1/config", b"//v1/models"):
            reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
            writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         + f"Authorization: Bearer {KEY}\r\n\r\n".encode())  # fmt: skip
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 404"), (target, answer[:300])
        # The TLS port still wants a client certificate, and serves the API with one.
        with_cert = ssl.create_default_context()
        ca.configure_trust(with_cert)
        clients.issue_cert("client@example").configure_cert(with_cert)
        async with httpx.AsyncClient(verify=with_cert) as http:
            answer = await http.get(f"https://127.0.0.1:{port}/v1/models", headers=master)
            assert answer.status_code == 200
        without = ssl.create_default_context()
        ca.configure_trust(without)
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(verify=without) as http:
                await http.get(f"https://127.0.0.1:{port}/v1/models", headers=master)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


async def test_request_heads_are_bounded_in_total(tmp_path: Path) -> None:
    """aiohttp bounds a head per line (8 KiB) and per field count (128), not in total: 100
    fields of 1,000 bytes each are a 431, as the first head of a connection (refused as it
    arrives) and as a later one on a keep-alive connection."""
    many = "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(100)).encode()
    auth = f"Authorization: Bearer {KEY}\r\n".encode()
    async with serve_process(CONFIG, tmp_path) as served:
        for size in (len(many), 16 * 1024):  # at once, and in pieces
            reader, writer = await _open(served.port)
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + auth)
            for i in range(0, len(many), size):
                writer.write(many[i : i + size])
            writer.write(b"\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 431"), answer[:300]
            body = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert body["error"]["code"] == "request_header_fields_too_large"
        # After a first request, on the same connection.
        reader, writer = await _open(served.port)
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
        assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + auth + many + b"\r\n")
        answer = await read_response(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431"), answer[:300]
        # A large head within the bound is served.
        some = "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(40)).encode()
        answer = await _exchange(
            served,
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + some + b"\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert KEY.encode() not in served.log
    _no_tracebacks(served)
