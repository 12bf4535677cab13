"""The `start_mock` fixture: named, recording mock upstream instances with any `MockOptions`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

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
