"""The providers, master keys and teams of the admin API as data: each table's fields and their
types, a request body's fields checked against them (unknown ones, wrong types, values out of
a column's range: 400 naming the field), a row as the API shows it (no secret), and the API
field a config validation issue is about. No I/O: the writes are `resources`'s."""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from llm_proxy.admin.views import mask, shown_headers, shown_proxy, shown_query, shown_secret
from llm_proxy.config.checker import Checker
from llm_proxy.config.clouds import AWS_REGION, SECRET_CLOUD_FIELDS, VERTEX_LOCATION
from llm_proxy.config.master_keys import (
    MAX_METADATA_BYTES,
    expiry_text,
    parse_expiry,
    short_key_problem,
)
from llm_proxy.config.model import (
    ANTHROPIC_API_BASE,
    DEFAULT_VERTEX_LOCATION,
    GEMINI_API_BASE,
    bedrock_api_base,
    vertex_api_base,
)
from llm_proxy.config.providers import PROVIDER_TYPES
from llm_proxy.errors import bad_param

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True, slots=True)
class Field:
    column: str
    kind: type | tuple[type, ...]
    nullable: bool = False
    json: bool = False  # a jsonb column


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # the SQL table
    what: str  # "provider", "master key", "team"
    fields: dict[str, Field]  # API field -> column
    required: frozenset[str]  # on create and PUT


PROVIDERS: Final = Table(
    "providers",
    "provider",
    {
        "name": Field("name", str),
        "provider_type": Field("provider_type", str),
        "api_base": Field("api_base", str),
        "api_key": Field("api_key", str),
        "model_mapping": Field("model_mapping", dict, json=True),
        "weight": Field("weight", int),
        "enabled": Field("is_enabled", bool),
        "params": Field("params", dict, json=True),
    },
    frozenset({"name", "api_base"}),
)
CREDENTIALS: Final = Table(
    "credentials",
    "master key",
    {
        "name": Field("name", str),
        "key": Field("key", str),
        "allowed_models": Field("allowed_models", list, nullable=True),
        "rate_limit_rps": Field("rate_limit_rps", (int, float), nullable=True),
        "rate_limit_burst": Field("rate_limit_burst", int, nullable=True),
        "tokens_per_minute": Field("tokens_per_minute", int, nullable=True),
        "max_budget_usd": Field("max_budget_usd", (int, float), nullable=True),
        "budget_period": Field("budget_period", str, nullable=True),  # null: monthly
        "shared_objects": Field("shared_objects", bool),
        "max_parallel_requests": Field("max_parallel_requests", int, nullable=True),
        "expires_at": Field("expires_at", str, nullable=True),  # ISO-8601, with its offset
        "metadata": Field("metadata", dict, json=True),
        "team": Field("team", str, nullable=True),  # a team's name (`/teams`); null: none
        "enabled": Field("is_enabled", bool),
    },
    frozenset({"name"}),
)
TEAMS: Final = Table(
    "teams",
    "team",
    {
        "name": Field("name", str),
        "allowed_models": Field("allowed_models", list, nullable=True),
        "rate_limit_rps": Field("rate_limit_rps", (int, float), nullable=True),
        "rate_limit_burst": Field("rate_limit_burst", int, nullable=True),
        "tokens_per_minute": Field("tokens_per_minute", int, nullable=True),
        "max_budget_usd": Field("max_budget_usd", (int, float), nullable=True),
        "budget_period": Field("budget_period", str, nullable=True),  # null: monthly
        "max_parallel_requests": Field("max_parallel_requests", int, nullable=True),
        "shared_objects": Field("shared_objects", bool),
        "metadata": Field("metadata", dict, json=True),
    },
    frozenset({"name"}),
)
# What the API shows of a row but never takes: accepted in a body and left out, so that a row
# read, edited and written back is taken as it was shown.
SHOWN_ONLY: Final = frozenset(
    {
        "created_at",
        "updated_at",
        "key_prefix",
        "config_version",
        "created_by",
        "last_used_at",
        "members",
    }
)
# On PUT, what an omitted field becomes (a write-only secret is kept instead).
DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "providers": {
        "provider_type": "openai",
        "model_mapping": {},
        "weight": 1,
        "enabled": True,
        "params": {},
    },
    "credentials": {
        "allowed_models": None,
        "rate_limit_rps": None,
        "rate_limit_burst": None,
        "tokens_per_minute": None,
        "max_budget_usd": None,
        "budget_period": None,
        "shared_objects": False,
        "max_parallel_requests": None,
        "expires_at": None,
        "metadata": {},
        "team": None,
        "enabled": True,
    },
    "teams": {
        "allowed_models": None,
        "rate_limit_rps": None,
        "rate_limit_burst": None,
        "tokens_per_minute": None,
        "max_budget_usd": None,
        "budget_period": None,
        "max_parallel_requests": None,
        "shared_objects": False,
        "metadata": {},
    },
}


def new_master_key() -> str:
    """`sk-` and 32 random bytes (URL-safe base64): what a key is when none is given."""
    return "sk-" + secrets.token_urlsafe(32)


def view(table: Table, row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it: no secret."""
    if table is TEAMS:
        return _team_view(row)
    common = {
        "id": row["id"],
        "name": row["name"],
        "enabled": row["is_enabled"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if table is PROVIDERS:
        return {
            **common,
            "provider_type": row["provider_type"],
            "api_base": row["api_base"],
            "api_key": mask(row["api_key"]),
            "model_mapping": orjson.loads(row["model_mapping"]),
            "weight": row["weight"],
            "params": _shown_params(orjson.loads(row["params"])),
        }
    allowed = row["allowed_models"]
    return {
        **common,
        "key_prefix": row["key_prefix"],
        "allowed_models": list(allowed) if allowed is not None else None,
        "rate_limit_rps": row["rate_limit_rps"],
        "rate_limit_burst": row["rate_limit_burst"],
        "tokens_per_minute": row["tokens_per_minute"],
        "max_budget_usd": row["max_budget_usd"],
        "budget_period": row["budget_period"],
        "shared_objects": row["shared_objects"],
        "max_parallel_requests": row["max_parallel_requests"],
        "expires_at": _moment_text(row["expires_at"]),
        "metadata": _json(row["metadata"]),
        "created_by": row["created_by"],
        "team": row["team"],
        # (a column of key_last_used, where the query joined it; `resources` adds what this
        # process saw since its last write there)
        "last_used_at": _moment_text(row.get("last_used_at")),
    }


def _team_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A team row as the API shows it; `members`, how many keys it has, where the query
    counted them."""
    allowed = row["allowed_models"]
    return {
        "id": row["id"],
        "name": row["name"],
        "allowed_models": list(allowed) if allowed is not None else None,
        "rate_limit_rps": row["rate_limit_rps"],
        "rate_limit_burst": row["rate_limit_burst"],
        "tokens_per_minute": row["tokens_per_minute"],
        "max_budget_usd": row["max_budget_usd"],
        "budget_period": row["budget_period"],
        "max_parallel_requests": row["max_parallel_requests"],
        "shared_objects": row["shared_objects"],
        "metadata": _json(row["metadata"]),
        "members": row.get("members"),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _moment_text(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else expiry_text(moment.timestamp())


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _shown_params(params: Any) -> Any:
    """A provider's `params` without secrets: its `headers` and `query_params` values and its
    cloud credentials masked, its `proxy` without `user:password@` (see views)."""
    if not isinstance(params, dict):
        return params
    shown = dict(params)
    for name, show in SECRET_PARAMS.items():
        if name in shown:
            shown[name] = show(shown[name])
    return shown


SECRET_PARAMS: Final = {
    "headers": shown_headers,
    "query_params": shown_query,
    "proxy": shown_proxy,
    **dict.fromkeys(SECRET_CLOUD_FIELDS, shown_secret),
}


_INT_MAX: Final = 2**31 - 1  # every integer column of these tables is a PostgreSQL `integer`


def _in_column_range(name: str, field: Field, value: int) -> None:
    """A JSON integer the column can hold (asyncpg would refuse it, unnamed). The JSON parser
    takes integers up to 64 bits, which a `double precision` column always holds."""
    if field.kind is int and not -_INT_MAX - 1 <= value <= _INT_MAX:
        raise bad_param(name, f"`{name}` must be at most {_INT_MAX}.")


def fields_of(table: Table, data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The request body's fields, type-checked; unknown ones are a 400."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        field = table.fields.get(name)
        if field is None:
            allowed = ", ".join(sorted(table.fields))
            raise bad_param(name, f"Unknown field `{name}` (a {table.what} has: {allowed}).")
        if value is None and field.nullable:
            out[name] = None
            continue
        ok = isinstance(value, field.kind) and not (
            isinstance(value, bool) and field.kind is not bool
        )
        if not ok:
            raise bad_param(name, f"`{name}` has the wrong type ({type(value).__name__}).")
        if isinstance(value, int) and not isinstance(value, bool):
            _in_column_range(name, field, value)
        if table is CREDENTIALS and name == "key" and (short := short_key_problem(value)):
            # The database refuses it too; this says why and how to make one.
            raise bad_param(name, f"`key` {short}.")
        if table is CREDENTIALS and name == "expires_at":
            value = _expiry(value)
        if name == "metadata":
            _metadata(value)
        if name == "allowed_models" and not all(isinstance(m, str) for m in value):
            raise bad_param(name, "`allowed_models` must be a list of strings.")
        if table is PROVIDERS and name == "provider_type" and value not in PROVIDER_TYPES:
            raise bad_param(name, f"`provider_type` must be one of {', '.join(PROVIDER_TYPES)}.")
        out[name] = value
    if not partial and table is PROVIDERS and not out.get("api_base"):
        # The types whose base URL is known: a body may leave it out (the column may not).
        base = default_api_base(out.get("provider_type"), out.get("params"))
        if base is not None:
            out["api_base"] = base
    if not partial:
        missing = sorted(table.required - out.keys())
        if missing:
            raise bad_param(missing[0], f"`{missing[0]}` is required.")
    return out


def _expiry(text: str) -> datetime.datetime:
    """`expires_at` as the column takes it (a 400 for what the config would refuse)."""
    check = Checker(None)
    unix = parse_expiry(check, text, ("expires_at",))
    if unix is None or check.issues:
        message = check.issues[0].message if check.issues else "is not a date-time"
        raise bad_param("expires_at", f"`expires_at` {message}.")
    return datetime.datetime.fromtimestamp(unix, datetime.UTC)


def _metadata(value: dict[str, Any]) -> None:
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise bad_param(
            "metadata", f"`metadata` is larger than {MAX_METADATA_BYTES // 1024} KiB as JSON."
        )


def default_api_base(kind: Any, params: Any) -> str | None:
    """The api_base a provider of type `kind` with these `params` gets when its body gives
    none (the clouds': of its location or region), None when it must be given (or `params`
    name no usable region: the validation says what is wrong with them)."""
    settings = params if isinstance(params, dict) else {}
    if kind == "anthropic":
        return ANTHROPIC_API_BASE
    if kind == "gemini":
        return GEMINI_API_BASE
    if kind == "vertex":
        location = settings.get("location", DEFAULT_VERTEX_LOCATION)
        if isinstance(location, str) and VERTEX_LOCATION.fullmatch(location):
            return vertex_api_base(location)
        return vertex_api_base(DEFAULT_VERTEX_LOCATION)  # the location's error comes next
    if kind == "bedrock":
        region = settings.get("region")
        if isinstance(region, str) and AWS_REGION.fullmatch(region):
            return bedrock_api_base(region)
        raise bad_param(
            "params", "`params.region` is required for provider_type bedrock (e.g. us-east-1)."
        )
    return None


def param_of(issue_path: tuple[Any, ...]) -> str | None:
    """The API field a config validation issue is about (a provider's `params` are read as
    settings of the provider, so their issues name the setting: the field is `params`)."""
    if len(issue_path) < 3 or issue_path[0] not in ("providers", "master_keys", "teams"):
        return None
    name = str(issue_path[2])
    if issue_path[0] == "providers":
        return name if name in PROVIDERS.fields else "params"
    return {"rate_limit": "rate_limit_rps", "key_sha256": "key"}.get(name, name)
