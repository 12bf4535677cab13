"""The `start_mock` fixture: named, recording mock upstream instances with any `MockOptions`;
and `http` without the suite's stream check: these tests read the mock's own streams, quirky
ones (no `[DONE]`) on purpose, not the proxy's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import Upstream, serve

MockFactory = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def start_mock() -> AsyncIterator[MockFactory]:
    """Start named mock instances (recording); all are stopped at the end of the test."""
    async with AsyncExitStack() as stack:

        async def start(name: str = "mock", **options: Any) -> Upstream:
            app = create_mock_app(MockOptions(name=name, record=True, **options))
            url = await stack.enter_async_context(serve(app))
            return Upstream(app, url)

        yield start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
