"""Per-key limits, after authentication: requests per second (token bucket), tokens per
minute, a cost budget per UTC day or month, and requests in flight at once. Every response of a
limited key carries OpenAI's `x-ratelimit-*` headers (and, with a budget,
`x-llm-proxy-budget-*`); a refused request gets 429 `rate_limit_exceeded`, `budget_exceeded`
once the budget is spent, or `parallel_requests_exceeded`, with `Retry-After`.

A key in a team (`teams:`) passes its team's limits too; the headers stay the key's, and a
refusal by the team names the team. Without Redis the team's four checks (budget, parallel
slot, request rate, tokens per minute) are one step after all of the key's
(`Limiter.team_admit`, on the team's `TeamState`: a verdict is made only when one refuses,
raised as `TeamRefused`), so a key refused by its own limits spends nothing of its team's;
with Redis each check is the key's, then the team's.

This middleware owns the request's lifetime for the parallel limit: the slot taken here is
given back in its `finally`, whether the request succeeded, failed, or was cancelled by the
client hanging up (the handler returns only once a stream has been relayed)."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy.keys import LIMITER, METRICS, STATE
from llm_proxy.proxy.budgets import budget_exceeded
from llm_proxy.proxy.handlers import name_refused_model
from llm_proxy.proxy.keyring import KeyEntry
from llm_proxy.proxy.limiter import LIMIT_LABELS, Limiter, TeamRefused, TeamState
from llm_proxy.proxy.verdicts import parallel_limited, rate_limited

# Anthropic's token counting: authenticated, never limited.
_UNLIMITED: Final = "/messages/count_tokens"


@web.middleware
async def ratelimit(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request[STATE]
    key = state.api_key
    if key is None or not key.limited:  # precomputed: an unlimited key pays one attribute
        return await handler(request)
    if request.path.endswith(_UNLIMITED):
        return await handler(request)  # counting tokens spends none
    limiter = request.app[LIMITER]
    headers: list[tuple[str, str]] = []
    # The key's limits, then its team's (`teams:`): a request must pass both. The headers
    # are the key's own (OpenAI's, one set); a refusal by the team names the team. Without
    # Redis the team's are met in one step after the key's (`Limiter.team_admit`).
    team = key.team
    fused = team if limiter.local and team is not None and team.limited else None
    subjects = key.own if fused is not None else key.limits
    for subject in subjects:
        if subject.max_budget_usd is not None:
            # First: a spent budget refuses for hours, and spends no request from the bucket.
            if subject is key:
                budget = limiter.budget_verdict(subject.name)
                if budget is not None:
                    headers += budget.headers()
            else:  # (no header: only a refusal is made)
                budget = limiter.budgets.refusal(subject.name)
            if budget is not None and not budget.allowed:
                request.app[METRICS].rate_limited(key.name, key.team_label, subject.kind, "budget")
                await name_refused_model(request)
                raise budget_exceeded(subject.who, budget, headers)
    if (
        fused is None
        and key.max_parallel_requests is None
        and (team is None or not team.max_parallel_requests)
    ):
        await _admit(request, key, subjects, limiter, headers)
        return await handler(request)
    # Before the request buckets: a refused request spends nothing from them.
    slots = []
    team_slot: TeamState | None = None  # the team's parallel slot, when this request holds one
    try:
        for subject in subjects:
            limit = subject.max_parallel_requests
            if limit is None:
                continue
            slot = (
                limiter.acquire_local(subject) if limiter.local else await limiter.acquire(subject)
            )
            if slot is None:
                if subject is key:
                    headers += _parallel_headers(limit, 0)
                request.app[METRICS].rate_limited(
                    key.name, key.team_label, subject.kind, "parallel"
                )
                await name_refused_model(request)
                raise parallel_limited(subject.who, limit, headers)
            slots.append(slot)
            if subject is key:
                headers += _parallel_headers(limit, limit - slot.held)
        await _admit(request, key, subjects, limiter, headers)
        if fused is not None:
            try:
                team_slot = limiter.team_admit(fused)
            except TeamRefused as refused:
                request.app[METRICS].rate_limited(key.name, key.team_label, "team", refused.limit)
                await name_refused_model(request)
                raise refused.answer(fused, headers) from None
        return await handler(request)
    finally:
        for slot in slots:
            limiter.release(slot)
        if team_slot is not None:
            team_slot.inflight -= 1  # (`TeamState.leave`, inline)


async def _admit(
    request: web.Request,
    key: KeyEntry,
    subjects: tuple[KeyEntry, ...],
    limiter: Limiter,
    headers: list[tuple[str, str]],
) -> None:
    """The request-rate and tokens-per-minute checks (429), and the rate headers."""
    refused = None
    for subject in subjects:
        name = subject.name
        requests = limiter.check_local(name) if limiter.local else await limiter.check(name)
        if requests is not None:
            if subject is key:
                headers += requests.headers("requests")
            if refused is None and not requests.allowed:
                refused = subject, requests, "requests per second"
        tokens = limiter.tokens_verdict(name)
        if tokens is not None:
            if subject is key:
                headers += tokens.headers("tokens")
            if refused is None and not tokens.allowed:
                refused = subject, tokens, "tokens per minute"
        if refused is not None:
            break
    if refused is not None:
        who, verdict, what = refused
        request.app[METRICS].rate_limited(key.name, key.team_label, who.kind, LIMIT_LABELS[what])
        await name_refused_model(request)
        raise rate_limited(who.who, verdict, what, headers)
    request[STATE].rate_headers = headers


def _parallel_headers(limit: int, remaining: int) -> list[tuple[str, str]]:
    # `remaining`: as the request was admitted (it holds one of the slots).
    return [
        ("x-ratelimit-limit-parallel-requests", str(limit)),
        ("x-ratelimit-remaining-parallel-requests", str(max(0, remaining))),
    ]
