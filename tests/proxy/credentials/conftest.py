"""The Google token endpoint fake that the credential tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers.google_oauth import FakeGoogleOAuth


@pytest.fixture
async def fake() -> AsyncIterator[FakeGoogleOAuth]:
    """A FakeGoogleOAuth on loopback; a test fails if it saw a request it had to refuse."""
    async with FakeGoogleOAuth() as server:
        yield server
    assert server.problems == []
