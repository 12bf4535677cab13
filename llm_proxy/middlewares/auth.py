"""Authentication by master key (`Authorization: Bearer`, `x-api-key`, or Azure's `api-key`)
of every request but the proxy's own endpoints: `/health*` and `/metrics` (never behind a
master key) and the admin API (behind its own admin keys). Every API path, with or without
`/v1`, Azure-style included, needs a key: the rule names what is exempt, not what is guarded.

With no key configured at all, authentication is off (and the proxy says so loudly at startup
and on `/health/detailed`).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from llm_proxy.keys import STATE
from llm_proxy.middlewares.observe import Handler
from llm_proxy.proxy.keyring import presented_key

EXEMPT: Final = ("/health", "/metrics", "/admin/", "/ui/")


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request[STATE]
    keys = state.snapshot.keys
    path = request.path
    if keys.enabled and not (path.startswith(EXEMPT) or path in ("/admin", "/ui")):
        headers = request.headers
        state.api_key = keys.authenticate(
            presented_key(
                headers.get("Authorization"),
                headers.get("x-api-key") or headers.get("api-key"),  # (Azure clients)
            )
        )
    return await handler(request)
