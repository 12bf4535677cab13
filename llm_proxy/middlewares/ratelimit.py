"""Per-key limits, after authentication: requests per second (token bucket), tokens per
minute and a cost budget per UTC day or month. Every response of a limited key carries OpenAI's
`x-ratelimit-*` headers (and, with a budget, `x-llm-proxy-budget-*`); a refused request gets
429 `rate_limit_exceeded`, or `budget_exceeded` once the budget is spent, with `Retry-After`."""

from __future__ import annotations

import math

from aiohttp import web

from llm_proxy.errors import ProxyError
from llm_proxy.keys import LIMITER, METRICS, STATE
from llm_proxy.middlewares.observe import Handler
from llm_proxy.proxy.budgets import BudgetVerdict, usd


@web.middleware
async def ratelimit(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request[STATE]
    key = state.api_key
    if key is None or (
        key.rate_limit is None and key.tokens_per_minute is None and key.max_budget_usd is None
    ):
        return await handler(request)
    limiter = request.app[LIMITER]
    headers: list[tuple[str, str]] = []
    if key.max_budget_usd is not None:
        # First: a spent budget refuses for hours, and spends no request from the bucket.
        budget = limiter.budget_verdict(key.name)
        if budget is not None:
            headers += budget.headers()
            if not budget.allowed:
                request.app[METRICS].rate_limited(key.name)
                raise _budget_exceeded(key.name, budget, headers)
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


def _budget_exceeded(
    key_name: str, budget: BudgetVerdict, headers: list[tuple[str, str]]
) -> ProxyError:
    # `insufficient_quota` is the type OpenAI gives a spent quota: clients that tell it from
    # a transient 429 stop retrying. Retry-After is the time to the period's end.
    headers.append(("Retry-After", str(max(1, math.ceil(budget.retry_after_secs)))))
    return ProxyError(
        429,
        f"The budget of ${usd(budget.limit_usd)} for this {budget.period} of key "
        f"{key_name!r} is spent; it resets at {budget.resets_at}.",
        type="insufficient_quota",
        code="budget_exceeded",
        headers=headers,
    )
