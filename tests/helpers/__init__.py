"""Shared test helpers (the fixtures stay in `tests/conftest.py`): serving an app on loopback,
configs built through the real parser, a fake clock, /metrics scraping, free ports and the one
way to wait for a condition, `eventually`. The rest by subject: `upstreams` (fake upstream
servers), `processes` (llm-proxy as a real process), `db` (PostgreSQL), `admin` (the admin API).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import aiohttp
import openai
import pytest
from aiohttp import web

from llm_proxy.config.model import Config, MasterKey
from llm_proxy.config.validate import parse_config
from llm_proxy.keys import STORE
from llm_proxy.proxy.keyring import KeyRing
from llm_proxy.server import ProxySite, make_runner
from llm_proxy.testing.mock import RECORDED

if TYPE_CHECKING:
    import trustme

T = TypeVar("T")

# The shared rate-limit backend's Redis (.ci/run starts one when it is down).
REDIS_URL = "redis://127.0.0.1:6379/0"


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "",
) -> T:
    """Call `probe` (sync or async) every `interval` seconds until it returns something truthy,
    and return that. An exception from the probe counts as "not yet" (a server still starting);
    after `timeout` seconds fail with the last value or exception. A probe that must stop the
    wait at once calls `pytest.fail` (not an `Exception`, so it goes through)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        error: Exception | None = None
        value: Any = None
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            error = exc
        if error is None and value:
            return cast("T", value)
        if loop.time() >= deadline:
            last = f"the last call raised {error!r}" if error else f"the last value was {value!r}"
            raise AssertionError(
                f"{what or getattr(probe, '__qualname__', probe)} did not come true "
                f"within {timeout} s; {last}"
            ) from error
        await asyncio.sleep(interval)


def eventually_blocking(probe: Callable[[], T], **kwargs: Any) -> T:
    """`eventually` for sync code (a sync test or fixture, a thread), blocking until it ends:
    on an event loop of its own (in a thread of its own when this thread runs a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(eventually(probe, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, eventually(probe, **kwargs)).result()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 with an ephemeral port. The proxy runs exactly as `llm-proxy
    serve` runs it (the same runner, site, protocol and connection limits)."""
    if STORE in app:
        runner = make_runner(app)
        await runner.setup()
        site = ProxySite(runner, "127.0.0.1", 0)
        await site.start()
        port = site.port
    else:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await _stop(runner)


_STOP_SECS = 30


async def _stop(runner: web.AppRunner) -> None:
    """Stop the server; a shutdown that does not end fails the test with every task's stack
    (the proxy's shutdown must always end: see llm_proxy.tasks)."""
    try:
        async with asyncio.timeout(_STOP_SECS):
            await runner.cleanup()
    except TimeoutError:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=stacks)
        pytest.fail(
            f"the server did not stop within {_STOP_SECS} s; its tasks:\n{stacks.getvalue()}"
        )


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response with a Content-Length body, from a keep-alive connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def accepted(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection from `source` to 127.0.0.1:`port` that the server has taken
    (it answered a request on it), idle now."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
    return reader, writer


class Upstream:
    """A running mock upstream; `recorded` holds what it received."""

    def __init__(self, app: web.Application, url: str) -> None:
        self.app = app
        self.url = url
        self.api_base = url + "/v1"

    @property
    def recorded(self) -> Any:
        return self.app[RECORDED]


# `start_proxy`'s type: start a proxy for a config (and create_app's keywords), get its URL.
ProxyFactory = Callable[..., Awaitable[str]]


def make_config(*providers: dict[str, Any], **top: Any) -> Config:
    """Build a Config through the real parser, from seed-format provider dicts. Without
    `master_keys` the proxy serves without authentication (`require_auth: false`)."""
    top.setdefault("require_auth", bool(top.get("master_keys")))
    return parse_config({"providers": list(providers), **top})


def provider(name: str, api_base: str, mapping: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "api_base": api_base,
        "api_key": f"sk-{name}-secret",
        "model_mapping": mapping,
        **extra,
    }


def yaml_config(upstream: Upstream | str, **extra: Any) -> str:
    """The text of a config file with one provider, `a`, serving model `m` from `upstream` (a
    mock upstream or its api_base), plus a top-level entry per keyword (written as JSON, which
    is YAML). As with `make_config`, without `master_keys` it serves without authentication."""
    api_base = upstream if isinstance(upstream, str) else upstream.api_base
    extra.setdefault("require_auth", bool(extra.get("master_keys")))
    lines = [
        "providers:",
        "  - name: a",
        f"    api_base: {api_base}",
        "    api_key: sk-a",
        "    model_mapping: {m: null}",
        *(f"{key}: {json.dumps(value, default=str)}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def certificate(ca: trustme.CA, directory: Path) -> tuple[Path, Path, trustme.LeafCert]:
    """A server certificate for 127.0.0.1 and localhost issued by `ca`: (cert file with its
    chain, key file, the leaf)."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "cert.pem", directory / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    for extra in leaf.cert_chain_pems[1:]:
        with open(cert, "ab") as f:
            f.write(extra.bytes())
    return cert, key, leaf


async def chat(
    http: aiohttp.ClientSession, url: str, model: str = "m", *, key: str | None = None, **body: Any
) -> aiohttp.ClientResponse:
    """POST /v1/chat/completions `{"model": model, **body}` to the proxy at `url`, with `key`
    as the bearer token when given; the answer, its body read (`.status`, `await .json()`)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    json = {"model": model, **body}
    async with http.post(url + "/v1/chat/completions", json=json, headers=headers) as resp:
        await resp.read()
        return resp


def sdk(url: str, key: str = "sk-client", **kwargs: Any) -> openai.AsyncOpenAI:
    """The official SDK's client for the proxy (or mock) at `url`, without retries."""
    return openai.AsyncOpenAI(api_key=key, base_url=url + "/v1", max_retries=0, **kwargs)


async def ask(client: openai.AsyncOpenAI, model: str, *, stream: bool = False) -> None:
    """One chat completion of `model` ("hi") through the SDK; a stream is read to its end."""
    messages: Any = [{"role": "user", "content": "hi"}]
    if not stream:
        await client.chat.completions.create(model=model, messages=messages)
        return
    async for _ in await client.chat.completions.create(
        model=model, messages=messages, stream=True
    ):
        pass


def ring(*keys: MasterKey) -> KeyRing:
    """A key ring of master `keys` (and no admin keys)."""
    return KeyRing(keys, [])


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def scrape(http: aiohttp.ClientSession, url: str, **kw: Any) -> dict[str, Any]:
    """/metrics parsed by prometheus_client's text parser: {family name: family}."""
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(url + "/metrics", **kw) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    """The value of one sample (by full sample name and labels), None when absent."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
