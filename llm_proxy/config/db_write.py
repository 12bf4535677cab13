"""The configuration written to the database: `upsert`, the inverse of `database.fetch`
(`llm-proxy import-config`). A provider's settings without a column of their own go to its
`params` (`database.PARAM_KEYS`), as `fetch` reads them back; a master key is stored by its
hash (and the key itself when the file held it).

The admin API writes row by row with its own statements (`admin/resources.py`); this is the
whole-file write: upsert by name, never a delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any, Final

import asyncpg
import orjson

from llm_proxy.config.database import PARAM_KEYS
from llm_proxy.config.export import provider_data
from llm_proxy.config.model import Config, MasterKey, Provider

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
     max_parallel_requests)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
    max_parallel_requests = EXCLUDED.max_parallel_requests
"""


async def upsert(
    conn: asyncpg.Connection, config: Config, *, disabled_providers: Collection[str] | None = None
) -> None:
    """Insert or update `config`'s providers and master keys by name, in one transaction
    (one config version; inside the caller's transaction, if any, as a savepoint). Rows not
    in `config` are left as they are. A provider's `is_enabled` is left as it is (a new one is
    enabled) unless `disabled_providers` is given: then it is set, false for those named."""
    async with conn.transaction():
        for p in config.providers:
            enabled = None if disabled_providers is None else p.name not in disabled_providers
            await conn.execute(_UPSERT_PROVIDER, *_provider_row(p), enabled)
        for k in config.master_keys:
            await conn.execute(_UPSERT_CREDENTIAL, *_credential_row(k))


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
    return (
        k.name,
        k.key or None,
        k.digest,
        list(k.allowed_models) if k.allowed_models is not None else None,
        limit.requests_per_second if limit else None,
        limit.burst_size if limit else None,
        k.tokens_per_minute,
        k.enabled,
        k.max_budget_usd,
        k.budget_period if k.max_budget_usd is not None else None,
        k.shared_objects,
        k.max_parallel_requests,
    )
