"""Token accounting after a relay: metrics, the key's tokens-per-minute budget and (for a
priced model) its cost budget see every successful call, including streams a client abandoned
halfway.

Usage comes from the upstream when it reports it (the tail of the body or stream, or the usage
chunk the proxy asked for and stripped); otherwise it is counted with tiktoken from the request
text and the relayed bytes, in the background so the connection is not held up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from llm_proxy.config.model import Price, price_for
from llm_proxy.keys import BACKGROUND, LIMITER, METRICS
from llm_proxy.middlewares.observe import ANONYMOUS
from llm_proxy.proxy import tokens
from llm_proxy.proxy.keyring import KeyEntry
from llm_proxy.proxy.state import RequestState
from llm_proxy.proxy.usage import Relayed, Usage, find_usage, text_of_request, text_of_response

log = structlog.get_logger()


def settle(app: web.Application, state: RequestState, data: dict[str, Any]) -> None:
    """Account for the answering attempt of a finished (or abandoned) request."""
    relayed = state.relayed
    if relayed is None or not 200 <= relayed.status < 300:
        return
    model, provider = state.model_label, state.provider
    price = _price(state)
    usage = relayed.stripped_usage or find_usage(relayed.tail)
    if usage is not None:
        state.prompt_tokens, state.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        if price is not None:
            state.cost_usd = price.cost(usage.prompt_tokens, usage.completion_tokens)
        _record(app, usage, state.api_key, model, provider, price)
        return
    task = state.counting = asyncio.get_running_loop().create_task(
        _count_and_record(app, state, relayed, data, model, provider, price)
    )
    background = app[BACKGROUND]
    background.add(task)
    task.add_done_callback(background.discard)


async def _count_and_record(
    app: web.Application,
    state: RequestState,
    relayed: Relayed,
    data: dict[str, Any],
    model: str,
    provider: str,
    price: Price | None,
) -> None:
    try:
        usage = await count_usage(relayed, data)
    except Exception:
        log.exception("token_count_failed", model=model, provider=provider)
        return
    state.prompt_tokens, state.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    if price is not None:
        state.cost_usd = price.cost(usage.prompt_tokens, usage.completion_tokens)
    _record(app, usage, state.api_key, model, provider, price)


def capture(state: RequestState, data: dict[str, Any], limit: int) -> None:
    """The request's and the answer's text for the request log (content capture on), each
    cut to `limit` bytes of UTF-8."""
    state.prompt_text = _cut(text_of_request(data), limit)
    relayed = state.relayed
    if relayed is not None and relayed.status:
        state.completion_text = _cut(text_of_response(relayed.sample), limit)


def _cut(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:
        return text
    return text.encode()[:limit].decode(errors="ignore")


async def count_usage(relayed: Relayed, data: dict[str, Any]) -> Usage:
    """Usage counted with tiktoken. Past the bounded copy the relay keeps (for a stream, its
    tail), the completion count is extrapolated by bytes."""
    sample = relayed.sample
    prompt, completion = await tokens.count(text_of_request(data), text_of_response(sample))
    if relayed.total_bytes > len(sample) > 0:
        completion = round(completion * relayed.total_bytes / len(sample))
    return Usage(prompt, completion, estimated=True)


def _price(state: RequestState) -> Price | None:
    """The price of the requested model at the answering provider: the provider's own
    `pricing`, else the global one (None: no price configured)."""
    config = state.snapshot.config
    model = state.model
    if model is None:
        return None
    for p in config.providers:
        if p.name == state.provider and p.pricing:
            found = price_for(p.pricing, model)
            if found is not None:
                return found
    return price_for(config.pricing, model) if config.pricing else None


def _record(
    app: web.Application,
    usage: Usage,
    key: KeyEntry | None,
    model: str,
    provider: str,
    price: Price | None = None,
) -> None:
    metrics = app[METRICS]
    key_name = key.name if key is not None else ANONYMOUS
    metrics.tokens(model, provider, usage, key_name)
    usd = None
    if price is not None:
        usd = price.cost(usage.prompt_tokens, usage.completion_tokens)
        metrics.cost(model, provider, key_name, usd)
    if key is not None:
        limiter = app[LIMITER]
        limiter.charge_tokens(key_name, usage.total_tokens)
        if usd is not None and key.max_budget_usd is not None:
            limiter.charge_cost(key_name, usd)
