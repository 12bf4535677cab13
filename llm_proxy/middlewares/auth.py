"""Authentication of `/v1/*` requests by master key (`Authorization: Bearer` or `x-api-key`).

With no key configured at all, authentication is off (and the proxy says so loudly at startup
and on `/health/detailed`). `/health*` and `/metrics` are never behind a master key.
"""

from __future__ import annotations

from aiohttp import web

from llm_proxy.keys import STATE
from llm_proxy.middlewares.observe import Handler
from llm_proxy.proxy.keyring import presented_key


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request[STATE]
    keys = state.snapshot.keys
    if keys.enabled and request.path.startswith("/v1/"):
        headers = request.headers
        state.api_key = keys.authenticate(
            presented_key(headers.get("Authorization"), headers.get("x-api-key"))
        )
    return await handler(request)
