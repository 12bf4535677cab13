"""Environment variables the original llm-proxy read that this proxy does not, and what to
use instead: an operator's `.env` keeps working for every variable both read (`DB_URL`,
`ADMIN_KEY`, `HOST`, `PORT`, `VERIFY_SSL`, `PROVIDER_SUFFIX`, `REQUEST_TIMEOUT_SECS`,
`TTFT_TIMEOUT_SECS`, `LOG_LEVEL`, `LANGFUSE_*`), and `check-config` and the startup log name
the others once instead of ignoring them silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

_BREAKER: Final = "use circuit_breaker: failure_threshold, cooldown_secs, max_cooldown_secs"
_NO_EQUIVALENT: Final = "no equivalent here"
_MAX_TOKENS_CLAMP: Final = "use a provider's max_output_tokens: a cap, with no minimum"

# Variable (or prefix ending in `_`) -> what to use here.
INSTEAD: Final[Mapping[str, str]] = {
    "MIN_TOKENS_LIMIT": _MAX_TOKENS_CLAMP,
    "MAX_TOKENS_LIMIT": _MAX_TOKENS_CLAMP,
    "JSONL_LOG_ENABLED": "use request_log.jsonl_path",
    "JSONL_LOG_PATH": "use request_log.jsonl_path",
    "JSONL_LOG_BUFFER_SIZE": "use request_log.queue_size",
    "REQUEST_LOG_ENABLED": "use request_log.enabled",
    "REQUEST_LOG_BODY_ENABLED": "use request_log.capture_content",
    "ADAPTIVE_": _BREAKER,
    "DEFAULT_IMAGE_": _NO_EQUIVALENT,
    "MAX_SHORT_SIDE_FOR_IMAGE_HIGH_RES": _NO_EQUIVALENT,
    "MAX_LONG_SIDE_FOR_IMAGE_HIGH_RES": _NO_EQUIVALENT,
    "MAX_TILE_": _NO_EQUIVALENT,
}


def ignored_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The original's variables set in `environ` that this proxy does not read, each with what
    to use instead, in name order."""
    found = {}
    for name in sorted(environ):
        for known, instead in INSTEAD.items():
            if name == known or (known.endswith("_") and name.startswith(known)):
                found[name] = instead
                break
    return found


def ignored_variables_line(environ: Mapping[str, str]) -> str | None:
    """One line naming them (names only, never a value), or None when there is none."""
    found = ignored_variables(environ)
    if not found:
        return None
    by_instead: dict[str, list[str]] = {}
    for name, instead in found.items():
        by_instead.setdefault(instead, []).append(name)
    parts = [f"{', '.join(names)} ({instead})" for instead, names in by_instead.items()]
    return "variables of the original llm-proxy not read here: " + "; ".join(parts)
