"""The limiter's answers: a `Verdict` on a request or token limit with its `x-ratelimit-*`
headers (OpenAI's names and formats), the 429s for requests, tokens per minute and parallel
requests, and what an admitted request holds until it ends (`Reservation`, `Slot`). Data and
pure functions: the request state and the accounting use them without the limiter."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple

from llm_proxy.errors import ProxyError

_HEADER_NAMES: Final = {
    kind: (
        f"x-ratelimit-limit-{kind}",
        f"x-ratelimit-remaining-{kind}",
        f"x-ratelimit-reset-{kind}",
    )
    for kind in ("requests", "tokens")
}


@dataclass(slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_secs: float  # until the bucket is full again
    retry_after_secs: float  # 0 when allowed

    def headers(self, kind: str) -> list[tuple[str, str]]:
        limit, remaining, reset = _HEADER_NAMES[kind]
        return [
            (limit, str(self.limit)),
            (remaining, str(self.remaining)),
            (reset, _duration(self.reset_secs)),
        ]


def _duration(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `120ms`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:.0f}s"


# (NamedTuples: made per request, a tuple costs a third of a frozen dataclass to make.)


class Reservation(NamedTuple):
    """What one admitted request holds against its key's limits until it ends."""

    tokens: int  # charged to tokens per minute already
    usd: float  # held against the budget


# `Reservation(tokens, usd)` made as `hold((tokens, usd))`: one C call, where a NamedTuple's
# own `__new__` is a Python function (200 ns against 130: one or two are made on the path of
# every request with a tokens-per-minute limit or a budget).
hold: Final[Callable[[tuple[int, float]], Reservation]] = functools.partial(
    tuple.__new__, Reservation
)


class Slot(NamedTuple):
    """One request's parallel slot; `member` is its lease in Redis (None: counted here)."""

    key_name: str
    redis_key: str
    member: str | None
    held: int  # the key's slots held once this one was taken (with Redis: everywhere)


def rate_limited(
    who: str, verdict: Verdict, what: str, headers: list[tuple[str, str]]
) -> ProxyError:
    """The 429 for requests or tokens per minute (`who`: `KeyEntry.who`, `key 'ci'`)."""
    headers.append(("Retry-After", str(max(1, math.ceil(verdict.retry_after_secs)))))
    return ProxyError(
        429,
        f"Rate limit reached for {who} ({what}). Try again in {verdict.retry_after_secs:.3g}s.",
        type="requests" if what.startswith("requests") else "tokens",
        code="rate_limit_exceeded",
        headers=headers,
    )


def parallel_limited(who: str, limit: int, headers: list[tuple[str, str]]) -> ProxyError:
    """The 429 for `max_parallel_requests`: a slot comes back when any request ends."""
    headers.append(("Retry-After", "1"))
    return ProxyError(
        429,
        f"Rate limit reached for {who} (parallel requests): at most {limit} "
        "requests at once. Try again when one of them has finished.",
        type="requests",
        code="parallel_requests_exceeded",
        headers=headers,
    )
