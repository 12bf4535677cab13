"""The suite's fixtures (helpers are in `tests/helpers`): real aiohttp servers on loopback (the mock
upstream and the proxy), an HTTP client session, PostgreSQL databases and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio
import uvloop

from llm_proxy.app import create_app
from llm_proxy.config.model import Config
from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import REDIS_URL, ProxyFactory, Upstream, make_config, provider, serve
from tests.helpers.db import fresh_database, migrated, server_dsn
from tests.helpers.stream_check import stream_checks

# The upstream client's fakes and fixtures (`client`, `no_asyncio_errors`, `tls_cert`).
pytest_plugins = ["tests.helpers.upstreams"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on uvloop, the loop `llm-proxy serve` runs on."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = create_mock_app(MockOptions(chunks=5, delay_ms=0, record=True))
    async with serve(app) as url:
        yield Upstream(app, url)


@pytest.fixture
async def start_proxy() -> AsyncIterator[ProxyFactory]:
    """Start proxies for given configs; all are stopped at the end of the test."""
    async with AsyncExitStack() as stack:

        async def start(config: Config, **kwargs: Any) -> str:
            return await stack.enter_async_context(serve(create_app(config, **kwargs)))

        yield start


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
    """A client session whose every stream read whole is grammar-checked
    (`tests.helpers.stream_check`)."""
    async with aiohttp.ClientSession(trace_configs=[stream_checks()]) as session:
        yield session


@pytest.fixture(scope="session")
def pg_server() -> str:
    """DSN of a PostgreSQL server (see tests/helpers/db.py for how it is found or started)."""
    return server_dsn()


@pytest.fixture
async def pg_dsn(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    async with fresh_database(pg_server) as dsn:
        yield dsn


@pytest.fixture
async def config_dsn(pg_dsn: str) -> str:
    """A fresh database with the schema migrated."""
    await migrated(pg_dsn)
    return pg_dsn


@pytest.fixture
async def other_config_dsn(pg_server: str) -> AsyncIterator[str]:
    """A second fresh, migrated database (where an export is imported)."""
    async with fresh_database(pg_server) as dsn:
        await migrated(dsn)
        yield dsn


@pytest.fixture
async def sql(config_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """An operator's session on the migrated database, as with psql."""
    conn = await asyncpg.connect(config_dsn)
    yield conn
    await conn.close()


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
