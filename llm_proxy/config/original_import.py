"""`llm-proxy import-config --from-original-db DSN`: the original llm-proxy's database read
(`read_original`) and its configuration written into ours (`write_plan`) through `upsert`, so
that the config history records it like any change (one version; none when nothing differs).
The mapping itself is pure: `original_map`. Its logs: `original_logs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from llm_proxy.config import history
from llm_proxy.config.db_write import upsert
from llm_proxy.config.model import Config, MasterKey
from llm_proxy.config.original_map import (
    ImportPlan,
    NotCarried,
    OriginalConfig,
    OriginalCredential,
    OriginalProvider,
)

# Its columns as of migration 000008; weight (000003) and provider_params (000004) are read
# only when present, so that an older deployment imports too.
_PROVIDERS_SQL: Final = """
SELECT id, provider_key, provider_type, api_base, api_key, model_mapping::text AS model_mapping,
       is_enabled, {weight} AS weight, {params}::text AS provider_params
FROM providers ORDER BY id
"""
_CREDENTIALS_SQL: Final = """
SELECT id, credential_key, name, allowed_models::text AS allowed_models, rate_limit, is_enabled
FROM credentials ORDER BY id
"""


class NotOriginalError(Exception):
    """The database is not the original's (no `providers.provider_key` or no `credentials`)."""


async def read_original(conn: asyncpg.Connection) -> OriginalConfig:
    """The original's providers, credentials and config version, in one consistent read."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        columns = {
            (r["table_name"], r["column_name"])
            for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() "
                "AND table_name IN ('providers', 'credentials', 'config_version')"
            )
        }
        if ("providers", "provider_key") not in columns or (
            "credentials",
            "credential_key",
        ) not in columns:
            raise NotOriginalError(
                "not an original llm-proxy database (migrated to 000002 or later): no "
                "providers.provider_key or credentials.credential_key"
            )
        sql = _PROVIDERS_SQL.format(
            weight="weight" if ("providers", "weight") in columns else "1",
            params="provider_params" if ("providers", "provider_params") in columns else "'{}'",
        )
        providers = tuple(_provider(r) for r in await conn.fetch(sql))
        credentials = tuple(_credential(r) for r in await conn.fetch(_CREDENTIALS_SQL))
        version = 0
        if ("config_version", "version") in columns:
            version = int(await conn.fetchval("SELECT version FROM config_version") or 0)
    return OriginalConfig(providers, credentials, version)


def _json_object(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def _provider(r: asyncpg.Record) -> OriginalProvider:
    return OriginalProvider(
        id=r["id"],
        provider_key=r["provider_key"],
        provider_type=r["provider_type"],
        api_base=r["api_base"],
        api_key=r["api_key"],
        model_mapping=_json_object(r["model_mapping"]),
        weight=r["weight"],
        is_enabled=r["is_enabled"],
        provider_params=_json_object(r["provider_params"]),
    )


def _credential(r: asyncpg.Record) -> OriginalCredential:
    # JSON null read as [] there (`allowed_models or []`). Anything else odd is passed on as
    # it is, for validation to refuse the key: never dropped, which would widen its access.
    allowed = json.loads(r["allowed_models"]) if r["allowed_models"] else None
    return OriginalCredential(
        id=r["id"],
        credential_key=r["credential_key"],
        name=r["name"],
        allowed_models=allowed if allowed is not None else [],
        rate_limit=r["rate_limit"],
        is_enabled=r["is_enabled"],
    )


@dataclass(frozen=True, slots=True)
class Written:
    """What `write_plan` did in the caller's transaction: each change as the config history
    records it, the names of our rows the original does not have (left as they are), and the
    keys not written because their hash is already ours under another name."""

    changes: tuple[history.Change, ...]
    left: tuple[str, ...]
    not_carried: tuple[NotCarried, ...]


async def write_plan(conn: asyncpg.Connection, plan: ImportPlan, actor: str) -> Written:
    """Upsert `plan` by name inside the caller's transaction (which decides: commit, or roll
    back for a dry run); the history records `actor` as who did it. Rows of ours that the
    plan does not name are left as they are."""
    await conn.execute("SELECT set_config('llm_proxy.actor', $1, true)", actor)
    ours = {
        r["key_sha256"]: r["name"]
        for r in await conn.fetch(
            "SELECT encode(key_hash, 'hex') AS key_sha256, name FROM credentials"
        )
    }
    keys: list[MasterKey] = []
    skipped: list[NotCarried] = []
    for k in plan.master_keys:
        holder = ours.get(k.digest.hex())
        if holder is not None and holder != k.name:
            # key_hash is unique: the same key cannot be ours under two names.
            skipped.append(NotCarried(f"credentials/{k.name}", f"key already here as {holder!r}"))
        else:
            keys.append(k)
    config = Config(providers=plan.providers, master_keys=tuple(keys))
    await upsert(conn, config, disabled_providers=plan.disabled_providers)
    imported = {("providers", p.name) for p in plan.providers}
    imported |= {("credentials", k.name) for k in keys}
    left = [
        f"{r['t']}/{r['name']}"
        for r in await conn.fetch(
            "SELECT 'providers' AS t, name FROM providers UNION ALL "
            "SELECT 'credentials', name FROM credentials ORDER BY 1, 2"
        )
        if (r["t"], r["name"]) not in imported
    ]
    return Written(tuple(await history.pending(conn)), tuple(left), tuple(skipped))
