"""The `cache:` section (the response cache: `llm_proxy.proxy.cache`), checked field by field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Path
from llm_proxy.config.model import (
    CACHEABLE_ENDPOINTS,
    NO_CACHE,
    CacheOverride,
    CacheSettings,
)
from llm_proxy.config.patterns import compile_pattern

CACHE_KEYS: Final = frozenset(
    {
        "enabled",
        "backend",
        "url",
        "max_bytes",
        "max_entry_bytes",
        "ttl_secs",
        "max_request_ttl_secs",
        "namespace",
        "models",
        "endpoints",
        "max_temperature",
        "allow_n",
        "charge_hits",
        "coalesce_wait_secs",
        "per_model",
        "per_endpoint",
    }
)
_OVERRIDE_KEYS: Final = frozenset({"enabled", "ttl_secs"})
_SIZE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE)
_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# A cache entry's bytes are held in memory while it is written: no larger than this.
MAX_ENTRY_BYTES: Final = 64 << 20


def parse_cache(check: Checker, raw: Any, rate_limit_backend: str | None = None) -> CacheSettings:
    """`cache:` (absent or null: off; present: on unless `enabled: false`). `backend: redis`
    takes `url`, else `rate_limit_backend`'s Redis."""
    if raw is None:
        return NO_CACHE
    path: Path = ("cache",)
    c = check.mapping(raw, path, CACHE_KEYS)
    if c is None:
        return NO_CACHE
    d = NO_CACHE
    enabled = check.boolean(check.optional(c, "enabled", True), (*path, "enabled"))
    backend = check.optional(c, "backend", d.backend)
    if backend not in ("memory", "redis"):
        check.fail((*path, "backend"), f"must be memory or redis, got {backend!r}")
        backend = d.backend
    url = c.get("url")
    if url is not None:
        url = check.string(url, (*path, "url"), empty_ok=True).strip() or None
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            check.fail((*path, "url"), "must be a redis://, rediss:// or unix:// URL")
    if url is not None and backend != "redis":
        check.fail((*path, "url"), "is for `backend: redis` only")
    if backend == "redis" and url is None and rate_limit_backend is None:
        check.fail(
            (*path, "backend"),
            "is redis, but neither `cache.url` nor `rate_limit_backend` names a Redis",
        )
    namespace = check.optional(c, "namespace", d.namespace)
    if namespace not in ("key", "team", "global"):
        check.fail((*path, "namespace"), f"must be key, team or global, got {namespace!r}")
        namespace = d.namespace
    max_entry = _size(check, c, "max_entry_bytes", d.max_entry_bytes)
    if max_entry > MAX_ENTRY_BYTES:
        check.fail((*path, "max_entry_bytes"), f"must be at most {MAX_ENTRY_BYTES >> 20}MB")
    max_bytes = _size(check, c, "max_bytes", d.max_bytes)
    if max_entry > max_bytes:
        check.fail((*path, "max_entry_bytes"), "must not be larger than max_bytes")
    temperature = c.get("max_temperature", d.max_temperature)
    temperature = check.non_negative_number(temperature, (*path, "max_temperature"))
    return CacheSettings(
        enabled=enabled,
        backend=backend,
        url=url,
        max_bytes=max_bytes,
        max_entry_bytes=max_entry,
        ttl_secs=check.positive_int(check.optional(c, "ttl_secs", d.ttl_secs), (*path, "ttl_secs")),
        max_request_ttl_secs=check.positive_int(
            check.optional(c, "max_request_ttl_secs", d.max_request_ttl_secs),
            (*path, "max_request_ttl_secs"),
        ),
        namespace=namespace,
        models=_patterns(check, c.get("models"), (*path, "models"), d.models),
        endpoints=_endpoints(check, c.get("endpoints"), (*path, "endpoints")),
        max_temperature=temperature,
        allow_n=check.boolean(check.optional(c, "allow_n", False), (*path, "allow_n")),
        charge_hits=check.boolean(check.optional(c, "charge_hits", False), (*path, "charge_hits")),
        coalesce_wait_secs=check.non_negative_number(
            c.get("coalesce_wait_secs", d.coalesce_wait_secs), (*path, "coalesce_wait_secs")
        ),
        per_model=_overrides(check, c.get("per_model"), (*path, "per_model"), False),
        per_endpoint=_overrides(check, c.get("per_endpoint"), (*path, "per_endpoint"), True),
    )


def parse_size(value: Any) -> int | None:
    """Bytes from an integer or a string such as `256MB`, `1MiB`, `512k` (K, M, G: powers of
    1024, with or without `B` or `iB`); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    match = _SIZE.fullmatch(value)
    if match is None:
        return None
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _UNITS[unit[:1] if unit != "b" else "b"])


def _size(check: Checker, c: Mapping[str, Any], key: str, default: int) -> int:
    value = c.get(key)
    if value is None:
        return default
    size = parse_size(value)
    if size is None or size <= 0:
        check.fail(("cache", key), f"must be a positive size (bytes, or like 256MB), got {value!r}")
        return default
    return size


def _patterns(check: Checker, raw: Any, path: Path, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    found = []
    for i, item in enumerate(check.sequence(raw, path)):
        text = check.string(item, (*path, i))
        if text.strip():
            _check_pattern(check, text, (*path, i))
            found.append(text)
    return tuple(found)


def _check_pattern(check: Checker, text: str, path: Path) -> None:
    try:
        compile_pattern(text)
    except re.error as exc:
        check.fail(path, f"is not a valid pattern: {exc}")


def _endpoints(check: Checker, raw: Any, path: Path) -> tuple[str, ...]:
    if raw is None:
        return CACHEABLE_ENDPOINTS
    found = []
    for i, item in enumerate(check.sequence(raw, path)):
        name = check.string(item, (*path, i)).strip().strip("/")
        if name not in CACHEABLE_ENDPOINTS:
            check.fail((*path, i), f"must be one of {', '.join(CACHEABLE_ENDPOINTS)}, got {item!r}")
        else:
            found.append(name)
    return tuple(found)


def _overrides(
    check: Checker, raw: Any, path: Path, endpoints: bool
) -> tuple[tuple[str, CacheOverride], ...]:
    if raw is None:
        return ()
    given = check.mapping(raw, path, None)
    if given is None:
        return ()
    found = []
    for name, value in given.items():
        where = (*path, str(name))
        if endpoints:
            name = str(name).strip("/")
            if name not in CACHEABLE_ENDPOINTS:
                check.fail(where, f"is not a cached endpoint ({', '.join(CACHEABLE_ENDPOINTS)})")
                continue
        else:
            _check_pattern(check, str(name), where)
        if value is False:  # `"o1-*": false`: shorthand for {enabled: false}
            found.append((str(name), CacheOverride(enabled=False)))
            continue
        o = check.mapping(value, where, _OVERRIDE_KEYS)
        if o is None:
            continue
        enabled = None
        if o.get("enabled") is not None:
            enabled = check.boolean(o["enabled"], (*where, "enabled"))
        ttl = None
        if o.get("ttl_secs") is not None:
            ttl = check.positive_int(o["ttl_secs"], (*where, "ttl_secs"))
        found.append((str(name), CacheOverride(enabled=enabled, ttl_secs=ttl)))
    return tuple(found)
