"""Calling the admin API (`/admin/v1/...`) as the `ops` admin key of `SETTINGS`."""

from __future__ import annotations

from typing import Any

import aiohttp

from llm_proxy.config.model import Config

ADMIN = {"Authorization": "Bearer adm-ops-0123456789abcdef"}
SETTINGS: dict[str, Any] = {
    "admin_keys": {"ops": "adm-ops-0123456789abcdef", "ci": "adm-ci-0123456789abcdef"},
    "metrics_token": "metrics-token-secret",
}
# Database mode's settings with the `ops` admin key (and authentication required).
KEYED = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),))


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """(status, JSON body) of one admin call; `headers` replace the admin key."""
    async with http.request(
        method, url, headers=ADMIN if headers is None else headers, **kwargs
    ) as r:
        return r.status, await r.json()


def assert_error(body: Any, code: str) -> None:
    """`body` is the one error shape, with `code`."""
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
