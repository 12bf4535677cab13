"""The configuration written to the database: `upsert`, the inverse of `database.fetch`
(`llm-proxy import-config`). A provider's settings without a column of their own go to its
`params` (`database.PARAM_KEYS`), as `fetch` reads them back; a master key is stored by its
hash (and the key itself when the file held it); teams are written before the keys that
name them.

The admin API writes row by row with its own statements (`admin/resources.py`); this is the
whole-file write: upsert by name, never a delete. The routing section is the exception: it is
one whole (`replace_routing`, also the admin API's `PUT /routing`), so a file with one replaces
the routing tables' rows; a file without one leaves them.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Mapping
from typing import Any, Final

import asyncpg
import orjson

from llm_proxy.config.database import PARAM_KEYS
from llm_proxy.config.export import provider_data
from llm_proxy.config.model import Config, MasterKey, Provider, Team
from llm_proxy.config.routing import CHAIN_KEYS, EVERY_MODEL, routing_data
from llm_proxy.config.teams import own_models

_UPSERT_PROVIDER: Final = """
INSERT INTO providers
    (name, provider_type, api_base, api_key, weight, model_mapping, params, is_enabled)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, coalesce($8, true))
ON CONFLICT (name) DO UPDATE SET provider_type = EXCLUDED.provider_type,
    api_base = EXCLUDED.api_base, api_key = EXCLUDED.api_key,
    weight = EXCLUDED.weight, model_mapping = EXCLUDED.model_mapping,
    params = EXCLUDED.params, is_enabled = coalesce($8, providers.is_enabled)
"""
_UPSERT_CREDENTIAL: Final = """
INSERT INTO credentials
    (name, key, key_hash, allowed_models, rate_limit_rps,
     rate_limit_burst, tokens_per_minute, is_enabled,
     max_budget_usd, budget_period, shared_objects,
     max_parallel_requests, expires_at, metadata, created_by, team)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb,
        coalesce($15, llm_proxy_actor()), $16)
ON CONFLICT (name) DO UPDATE SET key = EXCLUDED.key,
    key_hash = EXCLUDED.key_hash,
    allowed_models = EXCLUDED.allowed_models,
    rate_limit_rps = EXCLUDED.rate_limit_rps,
    rate_limit_burst = EXCLUDED.rate_limit_burst,
    tokens_per_minute = EXCLUDED.tokens_per_minute,
    is_enabled = EXCLUDED.is_enabled,
    max_budget_usd = EXCLUDED.max_budget_usd,
    budget_period = EXCLUDED.budget_period,
    shared_objects = EXCLUDED.shared_objects,
    max_parallel_requests = EXCLUDED.max_parallel_requests,
    expires_at = EXCLUDED.expires_at,
    metadata = EXCLUDED.metadata,
    created_by = coalesce($15, credentials.created_by),
    team = EXCLUDED.team
"""
_UPSERT_TEAM: Final = """
INSERT INTO teams
    (name, allowed_models, rate_limit_rps, rate_limit_burst, tokens_per_minute,
     max_budget_usd, budget_period, max_parallel_requests, shared_objects, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
ON CONFLICT (name) DO UPDATE SET allowed_models = EXCLUDED.allowed_models,
    rate_limit_rps = EXCLUDED.rate_limit_rps,
    rate_limit_burst = EXCLUDED.rate_limit_burst,
    tokens_per_minute = EXCLUDED.tokens_per_minute,
    max_budget_usd = EXCLUDED.max_budget_usd,
    budget_period = EXCLUDED.budget_period,
    max_parallel_requests = EXCLUDED.max_parallel_requests,
    shared_objects = EXCLUDED.shared_objects,
    metadata = EXCLUDED.metadata
"""


async def upsert(
    conn: asyncpg.Connection, config: Config, *, disabled_providers: Collection[str] | None = None
) -> None:
    """Insert or update `config`'s providers, teams and master keys by name, in one transaction
    (one config version; inside the caller's transaction, if any, as a savepoint). Rows not
    in `config` are left as they are. A provider's `is_enabled` is left as it is (a new one is
    enabled) unless `disabled_providers` is given: then it is set, false for those named."""
    async with conn.transaction():
        for p in config.providers:
            enabled = None if disabled_providers is None else p.name not in disabled_providers
            await conn.execute(_UPSERT_PROVIDER, *_provider_row(p), enabled)
        for t in config.teams:
            await conn.execute(_UPSERT_TEAM, *_team_row(t))
        for k in config.master_keys:
            await conn.execute(_UPSERT_CREDENTIAL, *_credential_row(k))
        if config.routing.configured:
            await replace_routing(conn, routing_data(config.routing))


def _provider_row(p: Provider) -> tuple[Any, ...]:
    data = provider_data(p)
    params = {name: value for name, value in data.items() if name in PARAM_KEYS}
    if p.health_check is not None:
        # With its nulls (`model: null`), as import-config has always stored it: an
        # unchanged file imported again must change no row.
        params["health_check"] = dataclasses.asdict(p.health_check)
    return (
        p.name,
        p.provider_type,
        p.api_base,
        p.api_key,
        p.weight,
        orjson.dumps(data["model_mapping"]).decode(),
        orjson.dumps(params).decode(),
    )


def _credential_row(k: MasterKey) -> tuple[Any, ...]:
    limit = k.rate_limit
    models = own_models(k)
    return (
        k.name,
        k.key or None,
        k.digest,
        list(models) if models is not None else None,
        limit.requests_per_second if limit else None,
        limit.burst_size if limit else None,
        k.tokens_per_minute,
        k.enabled,
        k.max_budget_usd,
        k.budget_period if k.max_budget_usd is not None else None,
        k.shared_objects,
        k.max_parallel_requests,
        _moment(k.expires_at),
        orjson.dumps(k.metadata).decode(),
        k.created_by,
        k.team,
    )


def _team_row(t: Team) -> tuple[Any, ...]:
    limit = t.rate_limit
    return (
        t.name,
        list(t.allowed_models) if t.allowed_models is not None else None,
        limit.requests_per_second if limit else None,
        limit.burst_size if limit else None,
        t.tokens_per_minute,
        t.max_budget_usd,
        t.budget_period if t.max_budget_usd is not None else None,
        t.max_parallel_requests,
        t.shared_objects,
        orjson.dumps(t.metadata).decode(),
    )


def _moment(unix: float | None) -> datetime.datetime | None:
    return None if unix is None else datetime.datetime.fromtimestamp(unix, datetime.UTC)


# The routing tables (migration 014): (key columns, value columns) of each, the key being
# what a row is matched on (a row whose values did not change is not written, so it makes no
# history); `position` numbers the rules 10, 20, ... (room for a psql INSERT between two).
_ROUTING_COLUMNS: Final = {
    "model_fallbacks": (("model", "reason"), ("chain",)),
    "routing_rules": (("position",), ("name", "match", "providers", "model", "is_enabled")),
    "routing_settings": (("model",), ("strategy", "retry", "deadline_secs", "context_window")),
}
_JSON_COLUMNS: Final = frozenset({"match", "retry"})
RULE_STEP: Final = 10


def routing_rows(raw: Mapping[str, Any]) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """A `routing:` section (in the YAML's shape, already validated by `parse_routing`) as
    the rows of each routing table: key -> values, in `_ROUTING_COLUMNS`' order. Only what
    the section gives is written (a models entry without `retry` inherits the defaults' when
    read back, as in YAML)."""
    fallbacks = {}
    for key, reason in CHAIN_KEYS.items():
        for model, chain in (raw.get(key) or {}).items():
            fallbacks[(str(model), reason)] = ([str(name) for name in chain],)
    strategy = raw.get("strategy")
    strategies = dict(strategy) if isinstance(strategy, Mapping) else {"default": strategy}
    defaults = (strategies.pop("default", None), raw.get("retry"), raw.get("deadline_secs"), None)
    settings: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    if any(value is not None for value in defaults):
        settings[(EVERY_MODEL,)] = defaults
    models = {str(m): dict(fields or {}) for m, fields in (raw.get("models") or {}).items()}
    for model, value in strategies.items():  # `strategy: {model: NAME}`: a models entry's
        models.setdefault(str(model), {}).setdefault("strategy", value)
    for model, fields in models.items():
        settings[(model,)] = tuple(
            fields.get(name) for name in ("strategy", "retry", "deadline_secs", "context_window")
        )
    rules = {}
    for i, rule in enumerate(raw.get("rules") or []):
        providers = rule.get("providers")
        name = rule.get("name")
        rules[((i + 1) * RULE_STEP,)] = (
            None if name == f"rules[{i}]" else name,  # the default name: none given
            dict(rule.get("match") or {}),
            [str(p) for p in providers] if providers is not None else None,
            rule.get("model"),
            True,
        )
    return {"model_fallbacks": fallbacks, "routing_rules": rules, "routing_settings": settings}


async def replace_routing(conn: asyncpg.Connection, raw: Mapping[str, Any]) -> None:
    """Make the routing tables hold exactly the section `raw` (validated beforehand), in one
    transaction (a savepoint inside the caller's): rows the section does not give are deleted
    (disabled rules too: the section has none), rows that differ are updated, new ones
    inserted, and rows already as given are left alone."""
    wanted = routing_rows(raw)
    async with conn.transaction():
        # A rule's name or position may move to another row within the write.
        await conn.execute(
            "SET CONSTRAINTS routing_rules_position_key, routing_rules_name_key DEFERRED"
        )
        for table, (keys, values) in _ROUTING_COLUMNS.items():
            await _replace_rows(conn, table, keys, values, wanted[table])


async def _replace_rows(
    conn: asyncpg.Connection,
    table: str,
    keys: tuple[str, ...],
    values: tuple[str, ...],
    wanted: dict[tuple[Any, ...], tuple[Any, ...]],
) -> None:
    shown = ", ".join(f"{c}::text AS {c}" if c in _JSON_COLUMNS else c for c in (*keys, *values))
    existing = {}
    for r in await conn.fetch(f"SELECT id, {shown} FROM {table}"):  # noqa: S608 (constants)
        row = tuple(_loaded(c, r[c]) for c in values)
        existing[tuple(r[c] for c in keys)] = (r["id"], row)
    for key, (row_id, _) in existing.items():
        if key not in wanted:
            await conn.execute(f"DELETE FROM {table} WHERE id = $1", row_id)  # noqa: S608
    for key, row in wanted.items():
        args = [_dumped(c, v) for c, v in zip(values, row, strict=True)]
        found = existing.get(key)
        if found is None:
            every = (*keys, *values)
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(every)}) VALUES ({_marks(every)})",  # noqa: S608
                *key,
                *args,
            )
        elif found[1] != row:
            sets = ", ".join(
                f"{c} = {m}" for c, m in zip(values, _marks(values).split(", "), strict=True)
            )
            await conn.execute(
                f"UPDATE {table} SET {sets} WHERE id = ${len(values) + 1}",  # noqa: S608
                *args,
                found[0],
            )


def _marks(columns: tuple[str, ...]) -> str:
    """`$1, $2::jsonb, ...`: a statement's parameters for `columns`, in order."""
    return ", ".join(
        f"${i + 1}::jsonb" if c in _JSON_COLUMNS else f"${i + 1}" for i, c in enumerate(columns)
    )


def _loaded(column: str, value: Any) -> Any:
    return orjson.loads(value) if column in _JSON_COLUMNS and value is not None else value


def _dumped(column: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if column in _JSON_COLUMNS and value is not None else value
