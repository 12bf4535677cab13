"""Shared fixtures: real aiohttp servers on loopback (the mock upstream and the proxy)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import redis.asyncio
import uvloop
from aiohttp import web

from llm_proxy.app import create_app
from llm_proxy.config.model import Config
from llm_proxy.config.validate import parse_config
from llm_proxy.keys import STORE
from llm_proxy.server import ProxySite, make_runner
from llm_proxy.testing.mock_upstream import MockOptions, create_mock_app

# The upstream client's fakes and fixtures (`client`, `no_asyncio_errors`, `tls_cert`).
pytest_plugins = ["tests.upstream_fakes"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on uvloop, the loop `llm-proxy serve` runs on."""
    return {"uvloop": uvloop.new_event_loop}


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


class Upstream:
    """A running mock upstream; `recorded` holds what it received."""

    def __init__(self, app: web.Application, url: str) -> None:
        self.app = app
        self.url = url
        self.api_base = url + "/v1"

    @property
    def recorded(self) -> Any:
        from llm_proxy.testing.mock_upstream import RECORDED

        return self.app[RECORDED]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = create_mock_app(MockOptions(chunks=5, delay_ms=0, record=True))
    async with serve(app) as url:
        yield Upstream(app, url)


ProxyFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_proxy() -> AsyncIterator[ProxyFactory]:
    """Start proxies for given configs; all are stopped at the end of the test."""
    stack: list[Any] = []

    async def start(config: Config, **kwargs: Any) -> str:
        cm = serve(create_app(config, **kwargs))
        url = await cm.__aenter__()
        stack.append(cm)
        return url

    yield start
    for cm in reversed(stack):
        await cm.__aexit__(None, None, None)


@pytest.fixture
async def proxy_url(upstream: Upstream, start_proxy: ProxyFactory) -> str:
    """A proxy with two providers on the mock upstream."""
    config = make_config(
        provider(
            "alpha",
            upstream.api_base,
            {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": None, "text-embedding-3-small": None},
        ),
        provider("beta", upstream.api_base, {"gpt-4.1*": None, "claude-(opus|sonnet)-4": "c4"}),
    )
    return await start_proxy(config)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


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


@pytest.fixture(scope="session")
def pg_server() -> str:
    """DSN of a PostgreSQL server (see tests/pg.py for how it is found or started)."""
    from tests.pg import server_dsn

    return server_dsn()


@pytest.fixture
async def pg_dsn(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    import uuid

    import asyncpg

    from tests.pg import with_database

    name = f"llm_proxy_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(pg_server, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def config_dsn(pg_dsn: str) -> str:
    """A fresh database with the schema migrated."""
    import asyncpg

    from llm_proxy.config.migrate import migrate_up

    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate_up(conn)
    finally:
        await conn.close()
    return pg_dsn


# The shared rate-limit backend's Redis (.ci/run starts one when it is down).
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the Redis on 127.0.0.1:6379 (the test skips without one)."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, redis.RedisError):
        await client.aclose()
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")
    yield client
    await client.aclose()
