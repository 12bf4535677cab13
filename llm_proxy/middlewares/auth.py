"""Authentication by master key (`Authorization: Bearer`, `x-api-key`, or Azure's `api-key`)
of every request but the proxy's own endpoints: `/health*` and `/metrics` (never behind a
master key) and the admin API (behind its own admin keys). Every API path, with or without
`/v1`, Azure-style included, needs a key: the rule names what is exempt, not what is guarded.

With no key configured at all, authentication is off (and the proxy says so loudly at startup
and on `/health/detailed`).

First of all, every request's head is checked against `lifecycle.MAX_HEAD_BYTES` in total (431):
the first head of a connection was bounded as it arrived, later ones on a keep-alive
connection only per line and per field count by aiohttp.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy.errors import ProxyError
from llm_proxy.keys import STATE
from llm_proxy.lifecycle import MAX_HEAD_BYTES
from llm_proxy.proxy.keyring import presented_key
from llm_proxy.proxy.state import speaks_gemini

EXEMPT: Final = ("/health", "/metrics", "/admin/", "/ui/")


def _query_key(request: web.Request) -> str | None:
    """Gemini's clients may send their key as `?key=` (on Gemini's paths only)."""
    if not request.rel_url.raw_query_string or not speaks_gemini(request.path):
        return None
    return request.rel_url.query.get("key")


# aiohttp caps a field line at 8190 bytes: a head of this many fields or fewer cannot pass
# MAX_HEAD_BYTES, and is not summed.
_FEW_FIELDS: Final = MAX_HEAD_BYTES // (8190 + 4)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw = request.raw_headers
    if len(raw) > _FEW_FIELDS and sum(len(k) + len(v) + 4 for k, v in raw) > MAX_HEAD_BYTES:
        raise ProxyError(
            431,
            f"The request head is larger than {MAX_HEAD_BYTES // 1024} KiB in total.",
            code="request_header_fields_too_large",
        )
    state = request[STATE]
    keys = state.snapshot.keys
    path = request.path
    if keys.enabled and not (path.startswith(EXEMPT) or path in ("/admin", "/ui")):
        headers = request.headers
        state.api_key = keys.authenticate(
            presented_key(
                headers.get("Authorization"),
                headers.get("x-api-key")
                or headers.get("api-key")  # (Azure clients)
                or headers.get("x-goog-api-key")  # (Gemini clients)
                or _query_key(request),
            ),
            state.started,
        )
    return await handler(request)
