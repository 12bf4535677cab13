"""The `master_keys` section."""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, cast

import orjson

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Path
from llm_proxy.config.model import Config, MasterKey
from llm_proxy.config.providers import check_pattern
from llm_proxy.config.sections import KEY_KEYS, parse_rate_limit

# The shortest master or admin key accepted: the `credentials` table has refused shorter ones
# since its first migration, and a key of a few characters is guessed in seconds. Keys this
# long can still be weak; those are warned about at startup (`weak_keys`).
MIN_KEY_CHARS: Final = 8
STRONG_KEY_CHARS: Final = 16
STRONG_KEY_DISTINCT: Final = 8


def short_key_problem(secret: str) -> str | None:
    """Why a key is refused for its length, or None (never quoting it)."""
    if len(secret) < MIN_KEY_CHARS:
        return (
            f"must be at least {MIN_KEY_CHARS} characters (it has {len(secret)}); "
            "generate one with `openssl rand -base64 32`"
        )
    return None


def is_weak(secret: str) -> bool:
    """Short, or made of few different characters (`aaaaaaaaaaaaaaaa`, `1212121212121212`)."""
    return len(secret) < STRONG_KEY_CHARS or len(set(secret)) < STRONG_KEY_DISTINCT


def weak_keys(config: Config) -> list[str]:
    """Which configured keys are weak, by name only: `master_keys.<name>`, `admin_keys.<name>`.
    A key given as `key_sha256` (or stored in the database, hashed) cannot be checked."""
    found = [f"master_keys.{k.name}" for k in config.master_keys if k.key and is_weak(k.key)]
    found += [f"admin_keys.{name}" for name, key in config.admin_credentials if is_weak(key)]
    return found


def parse_master_keys(check: Checker, raw: Any) -> tuple[MasterKey, ...]:
    if raw is None:
        return ()
    out: list[MasterKey] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, item in enumerate(check.sequence(raw, ("master_keys",))):
        path: Path = ("master_keys", i)
        k = check.mapping(item, path, KEY_KEYS)
        if k is None:
            continue
        check.required(k, path, "name")
        name = check.unique_name(k, path, names, "key")
        secret, key_sha256 = _secret(check, k, path)
        digest = key_sha256 or hashlib.sha256(secret.encode()).digest()
        if (secret or key_sha256) and digest in digests:
            # Never echo the secret itself.
            check.fail((*path, "key"), "duplicate key value (two entries share one key)")
        digests.add(digest)
        limit = None
        if k.get("rate_limit") is not None:
            limit = parse_rate_limit(check, k["rate_limit"], (*path, "rate_limit"))
        allowed = allowed_models(check, k.get("allowed_models"), (*path, "allowed_models"))
        enabled = check.boolean(check.optional(k, "enabled", True), (*path, "enabled"))
        tpm = k.get("tokens_per_minute")
        if tpm is not None:
            tpm = check.positive_int(tpm, (*path, "tokens_per_minute"))
        budget, period = parse_budget(check, k, path)
        shared = check.boolean(
            check.optional(k, "shared_objects", False), (*path, "shared_objects")
        )
        parallel = k.get("max_parallel_requests")
        if parallel is not None:
            parallel = check.positive_int(parallel, (*path, "max_parallel_requests"))
        expires = k.get("expires_at")
        if expires is not None:
            expires = parse_expiry(check, expires, (*path, "expires_at"))
        metadata = parse_metadata(check, k.get("metadata"), (*path, "metadata"))
        team = k.get("team")
        if team is not None:
            team = check.name(team, (*path, "team"))
        created_by = k.get("created_by")
        if created_by is not None:
            created_by = check.string(created_by, (*path, "created_by"))[:MAX_CREATED_BY]
        out.append(
            MasterKey(
                name,
                secret,
                limit,
                allowed,
                enabled,
                tpm,
                key_sha256,
                budget,
                period,
                shared_objects=shared,
                max_parallel_requests=parallel,
                expires_at=expires,
                metadata=metadata,
                created_by=created_by or None,
                team=team or None,
            )
        )
    return tuple(out)


# A key's metadata is returned by the admin API and kept in every snapshot: bounded.
MAX_METADATA_BYTES: Final = 16 * 1024
MAX_CREATED_BY: Final = 200


def parse_expiry(check: Checker, raw: Any, path: Path) -> float | None:
    """`expires_at`: an ISO-8601 date-time with its offset (`2027-01-31T00:00:00Z`), or a
    date (`2027-01-31`: its midnight, UTC), as Unix time. YAML's own timestamps (unquoted)
    and the database's `timestamptz` arrive as datetimes."""
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            value = (
                datetime.date.fromisoformat(text)
                if len(text) == 10
                else datetime.datetime.fromisoformat(text)
            )
        except ValueError:
            check.fail(path, f"must be an ISO-8601 date-time with its offset, got {raw!r}")
            return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            check.fail(
                path,
                "must say its time zone (`2027-01-31T00:00:00Z`, or `+02:00`): "
                "a key must expire at the same second on every machine",
            )
            return None
        return value.timestamp()
    if isinstance(value, datetime.date):
        return datetime.datetime(
            value.year, value.month, value.day, tzinfo=datetime.UTC
        ).timestamp()
    check.fail(path, f"must be an ISO-8601 date-time (a string), got {type(raw).__name__}")
    return None


def parse_metadata(check: Checker, raw: Any, path: Path) -> dict[str, Any]:
    """`metadata`: a mapping of anything JSON holds, at most MAX_METADATA_BYTES written."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        check.fail(path, f"must be a mapping (a JSON object), got {type(raw).__name__}")
        return {}
    try:
        plain = orjson.loads(orjson.dumps(raw, default=_yaml_scalar))
    except (TypeError, orjson.JSONEncodeError) as exc:
        check.fail(path, f"must hold only what JSON can: {exc}")
        return {}
    if len(orjson.dumps(plain)) > MAX_METADATA_BYTES:
        check.fail(path, f"is larger than {MAX_METADATA_BYTES // 1024} KiB written as JSON")
        return {}
    return cast(dict[str, Any], plain)


def _yaml_scalar(value: Any) -> Any:
    """What ruamel's round-trip types are as JSON (its mappings and sequences are dicts and
    lists already; dates are written as ISO-8601)."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def expiry_text(expires_at: float) -> str:
    """`expires_at` as the API and errors show it: ISO-8601, UTC."""
    moment = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _secret(check: Checker, k: Mapping[str, Any], path: Path) -> tuple[str, bytes | None]:
    """The key itself or its SHA-256 (exactly one is given): ("", digest) or (key, None)."""
    secret, key_sha256 = "", None
    if (k.get("key") is None) == (k.get("key_sha256") is None):
        check.fail((*path, "key"), "exactly one of key and key_sha256 is required")
    elif k.get("key") is not None:
        secret = check.string(k["key"], (*path, "key"))
        problem = short_key_problem(secret) if secret.strip() else None
        if problem is not None:
            check.fail((*path, "key"), problem)
    else:
        hex_digest = check.string(k["key_sha256"], (*path, "key_sha256"))
        if re.fullmatch(r"[0-9a-fA-F]{64}", hex_digest):
            key_sha256 = bytes.fromhex(hex_digest)
        else:
            check.fail((*path, "key_sha256"), "must be 64 hex characters (a SHA-256)")
    return secret, key_sha256


# `allowed_models: []` meant every model in the original llm-proxy (its column defaults to
# '{}') and no model in earlier versions of this proxy: the same text, opposite meanings. Read
# either way it would silently open up or lock out someone's key, so it is refused, saying how
# to write each meaning.
EMPTY_ALLOWED_MODELS: Final = (
    "an empty list is refused: the original llm-proxy read it as every model, earlier versions "
    "of this proxy as no model. For every model, remove allowed_models (NULL in the database, "
    'null in the admin API) or write ["*"]; for no model, disable the key (enabled: false, '
    "is_enabled in the database)"
)


def allowed_models(check: Checker, raw: Any, path: Path) -> tuple[str, ...] | None:
    """Model names and patterns the key may use (None: any model). Refuses a list with no
    entry (`EMPTY_ALLOWED_MODELS`)."""
    if raw is None:
        return None
    entries = []
    items = check.sequence(raw, path)
    for j, entry in enumerate(items):
        text = check.string(entry, (*path, j))
        if text:
            check_pattern(check, text, (*path, j))
            entries.append(text)
    if not items and isinstance(raw, list | tuple):
        check.fail(path, EMPTY_ALLOWED_MODELS)
    return tuple(entries)


def parse_budget(
    check: Checker, k: Mapping[str, Any], path: Path
) -> tuple[float | None, Literal["daily", "monthly"]]:
    """`max_budget_usd` and its `budget_period` (monthly unless given; never without a
    budget, where it would limit nothing)."""
    budget = k.get("max_budget_usd")
    if budget is not None:
        budget = check.positive_number(budget, (*path, "max_budget_usd"))
    raw = k.get("budget_period")
    if raw is None:
        return budget, "monthly"
    where = (*path, "budget_period")
    period = raw.strip() if isinstance(raw, str) else raw
    if period not in ("daily", "monthly"):
        check.fail(where, f"must be daily or monthly, got {raw!r}")
    elif budget is None:
        check.fail(where, "needs max_budget_usd (a period without a budget limits nothing)")
    return budget, "daily" if period == "daily" else "monthly"
