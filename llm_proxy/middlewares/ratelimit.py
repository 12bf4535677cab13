"""Per-key limits, after authentication: requests per second (token bucket) and tokens per
minute. Every response of a limited key carries OpenAI's `x-ratelimit-*` headers; a refused
request gets 429 `rate_limit_exceeded` with `Retry-After`."""

from __future__ import annotations

import math

from aiohttp import web

from llm_proxy.errors import ProxyError
from llm_proxy.keys import LIMITER, METRICS, STATE
from llm_proxy.middlewares.observe import Handler


@web.middleware
async def ratelimit(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request[STATE]
    key = state.api_key
    if key is None or (key.rate_limit is None and key.tokens_per_minute is None):
        return await handler(request)
    limiter = request.app[LIMITER]
    headers: list[tuple[str, str]] = []
    refused = None
    requests = limiter.check_local(key.name) if limiter.local else await limiter.check(key.name)
    if requests is not None:
        headers += requests.headers("requests")
        if not requests.allowed:
            refused = requests, "requests per second"
    tokens = limiter.tokens_verdict(key.name)
    if tokens is not None:
        headers += tokens.headers("tokens")
        if refused is None and not tokens.allowed:
            refused = tokens, "tokens per minute"
    if refused is not None:
        verdict, what = refused
        request.app[METRICS].rate_limited(key.name)
        headers.append(("Retry-After", str(max(1, math.ceil(verdict.retry_after_secs)))))
        raise ProxyError(
            429,
            f"Rate limit reached for key {key.name!r} ({what}). "
            f"Try again in {verdict.retry_after_secs:.3g}s.",
            type="requests" if what.startswith("requests") else "tokens",
            code="rate_limit_exceeded",
            headers=headers,
        )
    state.rate_headers = headers
    return await handler(request)
