"""Reading an upstream's `Retry-After` (and OpenAI's `retry-after-ms`): seconds to wait, or
None when it is absent or unreadable (`soon`): never an exception."""

from __future__ import annotations

import datetime
import email.utils
import math
import time

from llm_proxy.proxy.client import Response


def retry_after(resp: Response) -> float | None:
    """Seconds the upstream asks us to wait (`retry-after-ms`, `Retry-After` in seconds or as
    an HTTP date); None when absent or unreadable (`soon`)."""
    ms = resp.header(b"retry-after-ms")
    if ms is not None and (seconds := _number(ms)) is not None:
        return seconds / 1000
    value = resp.header(b"retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    return _seconds_until(value)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def _seconds_until(http_date: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, origin unknown"
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())
