"""Who may use the admin API: the admin keys (`admin_key`, `admin_keys`, `ADMIN_KEY`,
`ADMIN_KEYS`), compared in constant time, every one of them every time. No admin key
configured: the API answers 503 `admin_disabled`, never open. `POST /auth/validate` asks
whether a key is one (the UI's sign-in)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy.admin.http import json_response
from llm_proxy.errors import ProxyError
from llm_proxy.keys import ADMIN_NAME, STATE
from llm_proxy.proxy.keyring import presented_key

# The one document read without a key (it holds no secret), at this path spelled exactly so:
# a suffix test once let `/admin/v1/<anything>/openapi.json` reach other handlers unguarded.
OPEN_PATH: Final = "/admin/v1/openapi.json"
_OPEN_METHODS: Final = frozenset({"GET", "HEAD"})


def admin_name(presented: str | None, credentials: tuple[tuple[str, str], ...]) -> str | None:
    """The name of the admin key `presented` (None: not an admin key). Digests are compared,
    each in constant time, with no early exit: the time taken says nothing about the keys."""
    given = hashlib.sha256((presented or "").encode("utf-8", "surrogateescape")).digest()
    found = None
    for name, key in credentials:
        if hmac.compare_digest(given, hashlib.sha256(key.encode()).digest()) and presented:
            found = name
    return found


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.raw_path.partition("?")[0] == OPEN_PATH and request.method in _OPEN_METHODS:
        # (The raw path: no dot segment, escape or doubled slash can spell it.)
        return await handler(request)
    credentials = request[STATE].snapshot.config.admin_credentials
    if not credentials:
        raise ProxyError(
            503,
            "The admin API is disabled: set ADMIN_KEY (or admin_key / admin_keys in the config).",
            type="api_error",
            code="admin_disabled",
        )
    headers = request.headers
    name = admin_name(
        presented_key(headers.get("Authorization"), headers.get("x-api-key")), credentials
    )
    if name is None:
        raise ProxyError(
            401,
            "The admin API requires `Authorization: Bearer <admin key>`.",
            type="invalid_request_error",
            code="invalid_admin_key",
        )
    request[ADMIN_NAME] = name
    return await handler(request)


async def validate(request: web.Request) -> web.Response:
    """`POST /auth/validate`: the guard let it through, so the key is valid."""
    return json_response({"valid": True, "name": request[ADMIN_NAME]})
