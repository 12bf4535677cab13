"""Token accounting after a relay: metrics, the key's tokens-per-minute budget and (for a
priced model) its cost budget see every successful call, including streams a client abandoned
halfway.

Before the call, `reserve` holds what it could use against the key's tokens per minute and
budget (its prompt, estimated, plus its output cap); `settle` replaces that by the actual usage
when the call ends, or gives it back when the call failed. Every reserved request is settled
exactly once: `settle` runs in the handler's `finally`, and a count still under way settles when
it is done.

Usage comes from the upstream when it reports it (the tail of the body or stream, or the usage
chunk the proxy asked for and stripped); otherwise it is counted with tiktoken from the request
text and the relayed bytes, in the background so the connection is not held up.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final

import structlog
from aiohttp import web

from llm_proxy.config.model import Config, Price, price_for
from llm_proxy.keys import BACKGROUND, LIMITER, METRICS
from llm_proxy.proxy import tokens
from llm_proxy.proxy.budgets import budget_exceeded
from llm_proxy.proxy.keyring import KeyEntry
from llm_proxy.proxy.limiter import Limiter, TeamRefused
from llm_proxy.proxy.state import ANONYMOUS, RequestState
from llm_proxy.proxy.usage import (
    Relayed,
    Usage,
    find_anthropic_usage,
    find_gemini_usage,
    find_usage,
    text_of_request,
    text_of_response,
)
from llm_proxy.proxy.verdicts import Reservation, hold, rate_limited

log = structlog.get_logger()


# The output fields a client caps its answer with (chat, legacy completions, responses).
_OUTPUT_CAPS: Final = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# The endpoints whose answer is generated text (an output to reserve); the others (embeddings,
# moderations, images, speech, rerank) are charged for their input only.
_GENERATING: Final = frozenset(
    {
        "/chat/completions",
        "/completions",
        "/responses",
        "/messages",
        "generateContent",  # a Gemini client's (`Call.endpoint` is its method)
        "streamGenerateContent",
    }
)
# Characters per prompt token for the estimate at admission: a little fewer than tiktoken
# finds in English (about 4), so that the estimate errs toward reserving too much.
_CHARS_PER_TOKEN: Final = 3


async def reserve(
    app: web.Application, state: RequestState, data: dict[str, Any], endpoint: str
) -> None:
    """Hold what this request could use against its key's tokens per minute and budget, and
    its team's (`teams:`), or refuse it (429, the shapes of those limits) when that does not
    fit either. Only for a key with any of those (`KeyEntry.reserves`, precomputed);
    `settle` must follow."""
    key = state.api_key
    if key is None or not key.reserves:
        return
    prompt = math.ceil(len(text_of_request(data)) / _CHARS_PER_TOKEN)
    output = 0
    if endpoint in _GENERATING:
        output = _output_cap(data, state.snapshot.config.reserve_output_tokens)
    limiter = app[LIMITER]
    headers = list(state.rate_headers or ())
    price = _reserve_price(state.snapshot.config, state.model)
    cost = price.cost(prompt, output) if price is not None else None
    team = key.team
    if limiter.local:  # (no wait: no coroutine)
        if key.own_reserves:
            state.reservation = _reserve_local(
                app, limiter, key, key, prompt + output, cost, headers
            )
        if team is not None and team.reserves:  # the team's, in one step
            try:
                state.team_reservation = limiter.team_reserve(team, prompt + output, cost)
            except TeamRefused as refused:
                app[METRICS].rate_limited(key.name, key.team_label, "team", refused.limit)
                if (held := state.reservation) is not None:  # the key's goes back
                    state.reservation = None
                    _give_back(limiter, key, held)
                raise refused.answer(team, headers) from None
        return
    made: list[tuple[KeyEntry, Reservation]] = []
    try:
        for subject in key.reserving:
            held = await _reserve_one(app, limiter, key, subject, prompt + output, cost, headers)
            if held is not None:
                made.append((subject, held))
    except BaseException:  # refused by the team, or cancelled: the key's goes back
        for subject, held in made:
            _give_back(limiter, subject, held)
        raise
    for subject, held in made:
        if subject is key:
            state.reservation = held
        else:
            state.team_reservation = held


async def _reserve_one(
    app: web.Application,
    limiter: Limiter,
    key: KeyEntry,
    subject: KeyEntry,
    tokens_wanted: int,
    cost: float | None,
    headers: list[tuple[str, str]],
) -> Reservation | None:
    """One subject's (the key's, or its team's) reservation, or its 429."""
    tokens, refused = await limiter.reserve_tokens(subject.name, tokens_wanted)
    if refused is not None:
        app[METRICS].rate_limited(key.name, key.team_label, subject.kind, "tokens")
        raise rate_limited(subject.who, refused, "tokens per minute", headers)
    usd, over = 0.0, None
    if cost is not None and subject.max_budget_usd is not None:
        try:
            usd, over = await limiter.budgets.reserve(subject.name, cost)
        except BaseException:  # cancelled (the client hung up) while Redis answered
            limiter.charge_tokens(subject.name, -tokens)
            raise
    if over is not None:
        limiter.charge_tokens(subject.name, -tokens)
        app[METRICS].rate_limited(key.name, key.team_label, subject.kind, "budget")
        raise budget_exceeded(subject.who, over, headers)
    return hold((tokens, usd)) if tokens or usd else None


def _reserve_local(
    app: web.Application,
    limiter: Limiter,
    key: KeyEntry,
    subject: KeyEntry,
    tokens_wanted: int,
    cost: float | None,
    headers: list[tuple[str, str]],
) -> Reservation | None:
    """`_reserve_one` without Redis."""
    tokens, refused = limiter.reserve_tokens_local(subject.name, tokens_wanted)
    if refused is not None:
        app[METRICS].rate_limited(key.name, key.team_label, subject.kind, "tokens")
        raise rate_limited(subject.who, refused, "tokens per minute", headers)
    usd = 0.0
    if cost is not None and subject.max_budget_usd is not None:
        usd, over = limiter.budgets.reserve_local(subject.name, cost)
        if over is not None:
            limiter.charge_tokens(subject.name, -tokens)
            app[METRICS].rate_limited(key.name, key.team_label, subject.kind, "budget")
            raise budget_exceeded(subject.who, over, headers)
    return hold((tokens, usd)) if tokens or usd else None


def _give_back(limiter: Limiter, subject: KeyEntry, reservation: Reservation) -> None:
    limiter.charge_tokens(subject.name, -reservation.tokens)
    limiter.budgets.settle(subject.name, reservation.usd, 0.0)


async def move_reservation(
    app: web.Application, state: RequestState, data: dict[str, Any], endpoint: str, model: str
) -> bool:
    """Before a fallback model is tried: the budget reservations (the key's, its team's)
    re-made at `model`'s prices (the new ones held before the old are given back: never over
    a budget, even for a moment). False, and the old ones kept, when `model` would not fit a
    budget."""
    key = state.api_key
    if key is None:
        return True
    team = key.team
    subjects = [s for s in (key, team) if s is not None and s.max_budget_usd is not None]
    if not subjects:
        return True
    price = _reserve_price(state.snapshot.config, model)
    usd = 0.0
    if price is not None:
        prompt = math.ceil(len(text_of_request(data)) / _CHARS_PER_TOKEN)
        output = 0
        if endpoint in _GENERATING:
            output = _output_cap(data, state.snapshot.config.reserve_output_tokens)
        usd = price.cost(prompt, output)
    budgets = app[LIMITER].budgets
    moved: list[tuple[KeyEntry, float]] = []
    for subject in subjects:
        old = state.reservation if subject is key else state.team_reservation
        if usd == (old.usd if old is not None else 0.0):
            continue
        reserved, over = (await budgets.reserve(subject.name, usd)) if usd else (0.0, None)
        if over is not None:
            for done, amount in moved:
                budgets.settle(done.name, amount, 0.0)
            return False
        moved.append((subject, reserved))
    for subject, reserved in moved:
        old = state.reservation if subject is key else state.team_reservation
        if old is not None and old.usd:
            budgets.settle(subject.name, old.usd, 0.0)
        new = Reservation(old.tokens if old is not None else 0, reserved)
        if subject is key:
            state.reservation = new
        else:
            state.team_reservation = new
    return True


def _output_cap(data: dict[str, Any], default: int) -> int:
    """The most output the request asked for (OpenAI's and Anthropic's fields, a Gemini
    client's `generationConfig.maxOutputTokens`), times its `n` choices."""
    cap = default
    for name in _OUTPUT_CAPS:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            cap = value
            break
    else:
        generation = data.get("generationConfig")  # a Gemini client's
        if isinstance(generation, dict):
            value = generation.get("maxOutputTokens")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                cap = value
    n = data.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and 1 < n <= 128:
        cap *= n
    return cap


def _reserve_price(config: Config, model: str | None) -> Price | None:
    """The highest price any provider could answer `model` at (the answering one is not
    chosen yet): each provider's own `pricing`, and the global one."""
    if model is None:
        return None
    found = [price_for(p.pricing, model) for p in config.providers if p.pricing]
    if config.pricing:
        found.append(price_for(config.pricing, model))
    prices = [p for p in found if p is not None]
    if not prices:
        return None
    return max(prices, key=lambda p: (p.output_per_mtok, p.input_per_mtok))


def release(app: web.Application, key: KeyEntry | None, held: Held) -> None:
    """Give back the reservations (the key's, its team's) of a request that used nothing
    (refused, failed upstream)."""
    if key is None:
        return
    reservation, team_reservation = held
    limiter = app[LIMITER]
    if reservation is not None:
        _give_back(limiter, key, reservation)
    if team_reservation is not None and key.team is not None:
        _give_back(limiter, key.team, team_reservation)


# A request's reservations: its key's, its team's.
Held = tuple[Reservation | None, Reservation | None]


def settle(app: web.Application, state: RequestState, data: dict[str, Any]) -> None:
    """Account for the answering attempt of a finished (or abandoned) request, and settle
    its reservations (also when nothing was relayed)."""
    held: Held = (state.reservation, state.team_reservation)
    state.reservation = state.team_reservation = None
    relayed = state.relayed
    if relayed is None or not 200 <= relayed.status < 300:
        release(app, state.api_key, held)
        return
    model, provider = state.model_label, state.provider
    price = _price(state)
    usage = relayed.stripped_usage or _reported(relayed)
    if usage is not None:
        state.prompt_tokens, state.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        if price is not None:
            state.cost_usd = price.cost(usage.prompt_tokens, usage.completion_tokens)
        _record(app, usage, state.api_key, model, provider, price, held)
        return
    task = state.counting = asyncio.get_running_loop().create_task(
        _count_and_record(app, state, relayed, data, model, provider, price, held)
    )
    background = app[BACKGROUND]
    background.add(task)
    task.add_done_callback(background.discard)


def _reported(relayed: Relayed) -> Usage | None:
    """The usage the upstream's answer reports, read off what the relay kept."""
    if relayed.anthropic:
        return find_anthropic_usage(bytes(relayed.kept[:_ANTHROPIC_HEAD]), relayed.tail)
    if relayed.gemini:
        return find_gemini_usage(relayed.tail)
    return find_usage(relayed.tail)


# Of an Anthropic stream, the bytes that hold its `message_start` event.
_ANTHROPIC_HEAD: Final = 8192


async def _count_and_record(
    app: web.Application,
    state: RequestState,
    relayed: Relayed,
    data: dict[str, Any],
    model: str,
    provider: str,
    price: Price | None,
    reservation: Held,
) -> None:
    try:
        usage = await count_usage(relayed, data)
    except asyncio.CancelledError:  # shutdown: the reservation still ends
        release(app, state.api_key, reservation)
        raise
    except Exception:
        log.exception("token_count_failed", model=model, provider=provider)
        release(app, state.api_key, reservation)
        return
    state.prompt_tokens, state.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    if price is not None:
        state.cost_usd = price.cost(usage.prompt_tokens, usage.completion_tokens)
    _record(app, usage, state.api_key, model, provider, price, reservation)


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
    reservation: Held = (None, None),
) -> None:
    metrics = app[METRICS]
    if key is not None:
        key_name, team = key.name, key.team_label
    else:
        key_name, team = ANONYMOUS, ""
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    metrics.tokens(model, provider, prompt, completion, key_name, team)
    usd = None
    if price is not None:
        usd = price.cost(prompt, completion)
        metrics.cost(model, provider, key_name, usd, team)
    if key is not None:
        limiter = app[LIMITER]
        total = prompt + completion
        _charge(limiter, key, total, usd, reservation[0])
        group = key.team
        if group is not None:  # the team's spend: every key's of it
            if limiter.local:
                limiter.team_settle(group, total, usd, reservation[1])
            else:
                _charge(limiter, group, total, usd, reservation[1])


def _charge(
    limiter: Limiter,
    subject: KeyEntry,
    tokens: int,
    usd: float | None,
    reservation: Reservation | None,
) -> None:
    """A request's usage charged to a key or a team, its reservation settled."""
    reserved_tokens = reservation.tokens if reservation is not None else 0
    limiter.charge_tokens(subject.name, tokens - reserved_tokens)
    if subject.max_budget_usd is not None:
        reserved_usd = reservation.usd if reservation is not None else 0.0
        limiter.budgets.settle(subject.name, reserved_usd, usd or 0.0)
