"""`/cache`: the response cache (`llm_proxy.proxy.cache`) from the admin plane: its size and
counters (`GET`), and a purge (`DELETE`) of every entry, or of one key's and/or one model's.

Both answer whether the cache is on or not: with no `cache:` section, `GET` says
`"enabled": false` with zero counts and `DELETE` purges nothing. A purge is logged as
`cache_purged`, with the admin key that asked (`admin:<name>`, as the config history names its
changes), what it named and how many entries went. A redis backend that fails during a purge
is a 503 `cache_unavailable` (retry: a purge removes what is there, so it may be repeated).
"""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web

from llm_proxy.admin.http import json_response
from llm_proxy.admin.logs import text_param
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import ADMIN_NAME, CACHE, STATE

log = structlog.get_logger()

# `DELETE /cache`'s parameters: `key` (a key's name: the namespace of its entries) and `model`.
PURGE_PARAMS: Final = ("key", "model")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/cache", cache_stats)
    app.router.add_delete("/cache", purge_cache)


async def cache_stats(request: web.Request) -> web.Response:
    """`GET /cache`: on or off, the backend, its entries and bytes (for redis, every
    instance's), and this instance's counters since it started (hits, misses, bypasses,
    stored, evictions, errors)."""
    return json_response(await request.config_dict[CACHE].stats())


def _purge_param(request: web.Request, name: str) -> str | None:
    """A `DELETE /cache` filter: absent is None (every entry); present, it must name something:
    an empty `key=` (an unset shell variable) must never widen a purge to everything."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise bad_param(name, f"`{name}` is given more than once.")
    if values[0] == "":
        raise bad_param(name, f"`{name}` is empty: leave it out to purge every {name}'s entries.")
    return text_param(request.query, name)


async def purge_cache(request: web.Request) -> web.Response:
    """`DELETE /cache?key=&model=`: remove the entries of key `key` (the namespace its entries
    are kept under: `cache.namespace: key`, the default; with `global` every entry is in the
    namespace `global`), of model `model`, of both, or with neither every entry;
    `{"purged": N}`. Any other parameter is a 400: a misspelt filter must not purge all."""
    unknown = sorted(set(request.query) - set(PURGE_PARAMS))
    if unknown:
        name = unknown[0][:100]
        raise bad_param(
            name, f"Unknown parameter `{name}`: `DELETE /cache` takes `key` and `model`."
        )
    from redis.exceptions import RedisError

    namespace, model = _purge_param(request, "key"), _purge_param(request, "model")
    by = f"admin:{request[ADMIN_NAME]}"
    try:
        purged = await request.config_dict[CACHE].purge(namespace, model)
    except (RedisError, OSError) as exc:  # the redis backend, unreachable or failing
        log.warning(
            "cache_purge_failed",
            by=by,
            key=namespace,
            model=model,
            error=type(exc).__name__,
            detail=str(exc)[:200],
            request_id=request[STATE].request_id,
        )
        raise ProxyError(
            503,
            f"The response cache's Redis did not answer ({type(exc).__name__}): the purge may "
            "be incomplete; retry it.",
            type="api_error",
            code="cache_unavailable",
        ) from None
    log.info(
        "cache_purged",
        by=by,
        key=namespace,
        model=model,
        purged=purged,
        request_id=request[STATE].request_id,
    )
    return json_response({"purged": purged})
