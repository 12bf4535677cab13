"""The admin API's OpenAPI 3.1 document (`GET /admin/v1/openapi.json`, no key needed: it holds
no secret). Kept true by a test that fuzzes the running API from it (schemathesis): no 5xx,
every answer as documented."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from llm_proxy.config.model import STRATEGIES
from llm_proxy.observe.records import CACHE_RESULTS

# The tables the config history records (llm_proxy.config.history.TABLES, which imports
# asyncpg: not at startup).
HISTORY_TABLES: Final = (
    "providers",
    "credentials",
    "model_fallbacks",
    "routing_rules",
    "routing_settings",
    "teams",
)
_NULLABLE_STR: Final = {"type": ["string", "null"]}
_NULLABLE_NUM: Final = {"type": ["number", "null"]}
_NULLABLE_INT: Final = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


_ERRORS: Final = {
    str(code): {"description": text, **_json(_ref("Error"))}
    for code, text in (
        (400, "invalid request (`param` names the field)"),
        (401, "no or wrong admin key"),
        (404, "no such object"),
        (405, "method not allowed"),
        (409, "conflict: duplicate name, or read-only (YAML) mode"),
        (412, "If-Match names another config version"),
        (413, "request body too large"),
        (415, "unsupported content encoding"),
        (503, "the admin API is disabled (no admin key set)"),
    )
}


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    *,
    body: dict[str, Any] | None = None,
    status: str = "200",
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {status: {"description": "OK", **(_json(ok) if ok else {})}, **_ERRORS},
    }
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    if not secured:
        op["security"] = []
    return op


_ID: Final = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def _id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": _ID}


def _obj(required: list[str], props: dict[str, Any], closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if closed:
        schema["additionalProperties"] = False
    return schema


_PROVIDER_TYPE: Final = {
    "type": "string",
    "enum": ["openai", "azure", "anthropic", "gemini", "vertex", "bedrock"],
    "description": "azure: api_base is the resource endpoint (https://NAME.openai.azure.com), "
    "the upstream model name (model_mapping target) the deployment, and params.query_params "
    "must give api-version. anthropic: the upstream speaks Anthropic's Messages API; api_base "
    "is the base the Anthropic SDK takes (https://api.anthropic.com, the default: it may be "
    "left out; a trailing /v1 is dropped), the proxy appends /v1/messages; params.auth "
    "defaults to x-api-key. gemini: Google AI Studio; api_key required, sent as "
    "x-goog-api-key (params.auth's default); api_base defaults to "
    "https://generativelanguage.googleapis.com (a trailing /v1beta or /v1 is dropped). "
    "vertex: Vertex AI; no api_key: calls are signed with Google credentials "
    "(params.credentials_file, params.credentials_json, or application default credentials); "
    "params.project required unless the credentials hold a project_id; api_base defaults to "
    "the endpoint of params.location. bedrock: Amazon Bedrock; no api_key: calls are signed "
    "with AWS credentials (params.aws_access_key_id + aws_secret_access_key, params.aws_profile, "
    "or the environment's); params.region required; api_base defaults to its runtime "
    "endpoint. The model_mapping target is the upstream's model id (gemini-2.5-pro, "
    "claude-sonnet-4@20250514, us.anthropic.claude-3-7-sonnet-20250219-v1:0)",
}


_PARAMS_DESCRIPTION: Final = (
    "settings without a column of their own, validated like the YAML keys of the same names "
    "(a 400 names the key): timeouts (request_timeout_secs, ...), verify_ssl, "
    "inject_stream_usage, health_check, pricing, organization, project, auth, headers, "
    "query_params, anthropic_version, default_max_tokens, max_output_tokens; vertex: "
    "location, credentials_file, credentials_json; bedrock: region, aws_access_key_id, "
    "aws_secret_access_key, aws_session_token, aws_profile"
)
_MASKED: Final = (
    ": a secret, shown masked; a masked value as shown, sent back, keeps the stored one"
)
_POSITIVE_INT: Final = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
_PARAMS_INPUT: Final = {
    "type": "object",
    "description": _PARAMS_DESCRIPTION,
    "properties": {
        "auth": {
            "type": "string",
            "enum": ["bearer", "api-key", "x-api-key", "x-goog-api-key", "none"],
            "description": "how api_key is sent: Authorization: Bearer (the default, but for "
            "anthropic and gemini), api-key: <key> (Azure), x-api-key: <key> (Anthropic's, its "
            "default), x-goog-api-key: <key> (Google's, gemini's default), or not at all. Not "
            "for vertex and bedrock (their credentials sign each call)",
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "header name -> value, sent on every call; clients cannot override "
            "them. Not Host, Content-*, Accept-Encoding, hop-by-hop headers, nor "
            "Authorization/api-key (see auth), nor x-api-key with auth x-api-key, nor "
            "anthropic-version on an anthropic provider (see anthropic_version). A masked "
            "value as shown, sent back, keeps the stored one",
        },
        "query_params": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "added to every upstream URL (Azure: api-version). Values but "
            "api-version's are secrets: shown masked; a masked value as shown, sent back, keeps "
            "the stored one",
        },
        "anthropic_version": {
            "type": "string",
            "description": "provider_type anthropic only: the anthropic-version header sent "
            "when the client sent none (default 2023-06-01; an Anthropic client's own is "
            "forwarded unchanged)",
        },
        "default_max_tokens": {
            **_POSITIVE_INT,
            "description": "max_tokens of a translated request whose client gave none "
            "(default 4096; Anthropic requires one)",
        },
        "max_output_tokens": {
            **_POSITIVE_INT,
            "description": "a cap on the max_tokens of every translated request to this "
            "provider; below default_max_tokens it lowers that too (no cap when left out)",
        },
        "location": {
            "type": "string",
            "description": "provider_type vertex only: global (the default) or a Google Cloud "
            "region such as us-east5",
        },
        "credentials_file": {
            "type": "string",
            "description": "provider_type vertex only: the path of a service_account or "
            "authorized_user JSON file, readable by the proxy (not with credentials_json)",
        },
        "credentials_json": {
            "type": "string",
            "description": "provider_type vertex only: that JSON as a value (not with "
            "credentials_file)" + _MASKED,
        },
        "region": {
            "type": "string",
            "description": "provider_type bedrock only (required): the AWS region, e.g. us-east-1",
        },
        "aws_access_key_id": {
            "type": "string",
            "description": "provider_type bedrock only, with aws_secret_access_key" + _MASKED,
        },
        "aws_secret_access_key": {
            "type": "string",
            "description": "provider_type bedrock only, with aws_access_key_id" + _MASKED,
        },
        "aws_session_token": {
            "type": "string",
            "description": "provider_type bedrock only, with the static keys (temporary "
            "credentials)" + _MASKED,
        },
        "aws_profile": {
            "type": "string",
            "description": "provider_type bedrock only: a profile of the shared AWS config "
            "files (not with static keys)",
        },
    },
}
# As shown: what the row holds (a psql edit may hold anything), header values masked unless
# their name is known to be public (HTTP-Referer, X-Title, OpenAI-Organization, ...), query
# parameter values but api-version's masked, the proxy URL without user:password@.
_PARAMS_SHOWN: Final = {
    "type": "object",
    "description": _PARAMS_DESCRIPTION
    + "; header values masked unless known to be public, query_params values but "
    "api-version's masked, cloud credentials masked, proxy without user:password@",
}


_PROVIDER_FIELDS: Final = {
    "name": {"type": "string"},
    "provider_type": _PROVIDER_TYPE,
    "api_base": {
        "type": "string",
        "description": "required but for provider_type anthropic (https://api.anthropic.com), "
        "gemini, vertex and bedrock (the endpoint of their location or region)",
    },
    "api_key": {"type": "string", "writeOnly": True},
    "model_mapping": {"type": "object", "additionalProperties": _NULLABLE_STR},
    "weight": {"type": "integer"},
    "enabled": {"type": "boolean"},
    "params": _PARAMS_INPUT,
}
_CREDENTIAL_FIELDS: Final = {
    "name": {"type": "string"},
    "key": {"type": "string", "writeOnly": True},
    "allowed_models": {"type": ["array", "null"], "items": {"type": "string"}},
    "rate_limit_rps": {"type": ["number", "null"]},
    "rate_limit_burst": {"type": ["integer", "null"]},
    "tokens_per_minute": {"type": ["integer", "null"]},
    "max_budget_usd": {"type": ["number", "null"]},
    "budget_period": {"type": ["string", "null"], "enum": ["daily", "monthly", None]},
    "shared_objects": {"type": "boolean"},
    "max_parallel_requests": {"type": ["integer", "null"]},
    "expires_at": {"type": ["string", "null"], "format": "date-time"},
    "metadata": {"type": "object"},
    "team": {"type": ["string", "null"], "description": "a team's name; null: in no team"},
    "enabled": {"type": "boolean"},
}
_TEAM_FIELDS: Final = {
    "name": {"type": "string"},
    "allowed_models": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "description": "names and patterns; a key of the team names only models within them "
        "(or none: it gets the team's); null: every model",
    },
    "rate_limit_rps": {"type": ["number", "null"], "description": "the team's requests/s"},
    "rate_limit_burst": {"type": ["integer", "null"]},
    "tokens_per_minute": {"type": ["integer", "null"]},
    "max_budget_usd": {"type": ["number", "null"], "description": "US dollars, all keys'"},
    "budget_period": {
        "type": ["string", "null"],
        "enum": ["daily", "monthly", None],
        "description": "UTC day or calendar month; null: monthly",
    },
    "max_parallel_requests": {"type": ["integer", "null"]},
    "shared_objects": {
        "type": "boolean",
        "description": "the team's keys see each other's stored objects",
    },
    "metadata": {"type": "object", "description": "free JSON (at most 16 KiB)"},
}


def _alias(ours: str, schema: dict[str, Any], meaning: str = "") -> dict[str, Any]:
    """A body field accepted as a compatibility alias (`admin.aliases`)."""
    return {
        **schema,
        "deprecated": True,
        "description": f"Compatibility alias: the original llm-proxy's name for `{ours}`"
        + (f" ({meaning})" if meaning else "")
        + "; both given with different values: a 400 naming both.",
    }


def _compatible(op: dict[str, Any], ours: str) -> dict[str, Any]:
    """An operation kept as a compatibility alias of the original llm-proxy's path."""
    return {
        **op,
        "deprecated": True,
        "x-compatibility": f"The original llm-proxy's path, kept for its clients; ours: {ours}.",
    }


_ROW_ID_ALIAS: Final = {
    "type": ["string", "integer"],
    "deprecated": True,
}
_PROVIDER_ALIASES: Final = {
    "provider_key": _alias("name", {"type": "string"}),
    "provider_params": _alias("params", _PARAMS_INPUT),
    "is_enabled": _alias("enabled", {"type": "boolean"}),
    "id": {
        **_ROW_ID_ALIAS,
        "description": "Compatibility: a string is the original llm-proxy's provider id "
        "(`name`); a number is the row's own id, accepted when it is the id written (a row "
        "read and written back).",
    },
}
_CREDENTIAL_ALIASES: Final = {
    "credential_key": _alias("key", {"type": "string", "writeOnly": True}),
    "is_enabled": _alias("enabled", {"type": "boolean"}),
    "rate_limit": _alias(
        "rate_limit_rps",
        {"type": ["integer", "null"], "minimum": 0},
        "requests per second, also the burst unless rate_limit_burst is given; 0 or null: no limit",
    ),
    "id": {
        **_ROW_ID_ALIAS,
        "description": "Compatibility: a string is the original llm-proxy's key id, the "
        "key's name when no `name` is given (not stored otherwise); a number is the row's "
        "own id, accepted when it is the id written.",
    },
}
_ROW: Final = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "enabled": {"type": "boolean"},
    "created_at": {"type": "string"},
    "updated_at": {"type": "string"},
}
_VERSIONED: Final = {"config_version": {"type": "integer"}}
# `routing:` in the YAML's shape (llm_proxy.config.routing; its checks are the server's).
_CHAINS: Final = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "description": "model name or pattern -> the models tried after it, in order",
}
_RETRY: Final = _obj(
    [],
    {
        "attempts": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
        "on": {
            "type": "array",
            "items": {"type": ["string", "integer"]},
            "description": "outcomes (connect, timeout, 429, 5xx, stream_error) or statuses",
        },
        "backoff_ms": {"type": "number", "minimum": 0},
        "max_backoff_ms": {"type": "number", "minimum": 0},
    },
)
_STRATEGY: Final = {"type": "string", "enum": list(STRATEGIES)}
_ROUTING_SECTION: Final = _obj(
    [],
    {
        "fallbacks": _CHAINS,
        "context_window_fallbacks": _CHAINS,
        "content_policy_fallbacks": _CHAINS,
        "retry": _RETRY,
        "deadline_secs": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "strategy": {
            "oneOf": [_STRATEGY, {"type": "object", "additionalProperties": _STRATEGY}],
            "description": "the default, or {default: NAME, model: NAME, ...}",
        },
        "models": {
            "type": "object",
            "additionalProperties": _obj(
                [],
                {
                    "strategy": {"type": ["string", "null"], "enum": [*STRATEGIES, None]},
                    "retry": _RETRY,
                    "deadline_secs": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    "context_window": {"type": ["integer", "null"], "minimum": 1},
                },
            ),
        },
        "rules": {
            "type": "array",
            "description": "first match wins",
            "items": _obj(
                ["match"],
                {
                    "name": {"type": "string"},
                    "match": _obj(
                        [],
                        {
                            "tags": {"type": ["string", "array"]},
                            "key": {"type": ["string", "array"]},
                            "header": {"type": "object"},
                            "model": {"type": ["string", "array"]},
                        },
                    ),
                    "providers": {"type": ["array", "null"], "items": {"type": "string"}},
                    "model": {"type": ["string", "null"]},
                },
            ),
        },
    },
)
_ROUTING_SERVED: Final = {
    "source": {
        "type": "string",
        "enum": ["file", "database"],
        "description": "the settings file's section, or the routing tables (database mode)",
    },
    "writable": {
        "type": "boolean",
        "description": "PUT may change it: database mode (also while the tables are empty)",
    },
    "version": {"type": "integer"},
    "routing": _ROUTING_SECTION,
}

SCHEMAS: Final[dict[str, Any]] = {
    "Error": _obj(
        ["error"],
        {
            "error": _obj(
                ["message", "type", "param", "code"],
                {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": _NULLABLE_STR,
                    "code": _NULLABLE_STR,
                },
            )
        },
    ),
    "Provider": _obj(
        ["id", "name", "enabled", "api_base", "api_key", "model_mapping", "weight"],
        {
            **_ROW,
            "provider_type": _PROVIDER_TYPE,
            "api_base": {"type": "string"},
            "api_key": {"type": "string", "description": "masked: sk-...abcd"},
            "model_mapping": {"type": "object", "additionalProperties": _NULLABLE_STR},
            "weight": {"type": "integer"},
            "params": _PARAMS_SHOWN,
            **_VERSIONED,
        },
        closed=False,
    ),
    "ProviderInput": {
        **_obj([], {**_PROVIDER_FIELDS, **_PROVIDER_ALIASES}),
        "anyOf": [{"required": ["name"]}, {"required": ["provider_key"]}, {"required": ["id"]}],
    },
    "ProviderPatch": {
        **_obj([], {**_PROVIDER_FIELDS, **_PROVIDER_ALIASES}),
        "minProperties": 1,
    },
    "Credential": _obj(
        ["id", "name", "enabled", "key_prefix"],
        {
            **_ROW,
            "key_prefix": {"type": "string"},
            "allowed_models": {"type": ["array", "null"], "items": {"type": "string"}},
            "rate_limit_rps": {"type": ["number", "null"]},
            "rate_limit_burst": {"type": ["integer", "null"]},
            "tokens_per_minute": {"type": ["integer", "null"]},
            "max_budget_usd": {"type": ["number", "null"], "description": "US dollars"},
            "budget_period": {
                "type": ["string", "null"],
                "enum": ["daily", "monthly", None],
                "description": "UTC day or calendar month; null: monthly",
            },
            "shared_objects": {
                "type": "boolean",
                "description": "an account-wide key that sees every tenant's stored objects",
            },
            "max_parallel_requests": {
                "type": ["integer", "null"],
                "description": "requests in flight at once; null: no limit",
            },
            "expires_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "refused (401 expired_api_key) from this moment on; null: never",
            },
            "metadata": {
                "type": "object",
                "description": "free JSON (at most 16 KiB); routing rules match it",
            },
            "created_by": {
                "type": ["string", "null"],
                "description": "admin:<name>, db:<role> (psql), or the imported file's word",
            },
            "last_used_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "the key's last request seen by any proxy (about a minute "
                "behind for other proxies than this one); null: never",
            },
            "team": {"type": ["string", "null"], "description": "its team's name"},
            "key": {"type": "string", "description": "in full, only when created or rotated"},
            **_VERSIONED,
        },
        closed=False,
    ),
    "Team": _obj(
        ["id", "name", "members"],
        {
            **_TEAM_FIELDS,
            "id": {"type": "integer"},
            "members": {"type": "integer", "description": "how many keys it has"},
            "created_at": {"type": "string", "description": "database mode only"},
            "updated_at": {"type": "string", "description": "database mode only"},
            **_VERSIONED,
        },
        closed=False,
    ),
    "TeamInput": _obj(["name"], _TEAM_FIELDS),
    "TeamPatch": {**_obj([], _TEAM_FIELDS), "minProperties": 1},
    "TeamMember": _obj(
        ["id", "name", "enabled", "key_prefix"],
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "enabled": {"type": "boolean"},
            "key_prefix": {"type": ["string", "null"], "description": "null in YAML mode"},
            "team": {"type": ["string", "null"]},
            **_VERSIONED,
        },
        closed=False,
    ),
    "TeamMemberInput": _obj(["key"], {"key": {"type": "string", "description": "a key's name"}}),
    "TeamUsage": _obj(
        ["id", "name", "max_budget_usd", "budget_period", "spent_usd", "remaining_usd", "keys"],
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "max_budget_usd": _NULLABLE_NUM,
            "budget_period": {"type": ["string", "null"], "enum": ["daily", "monthly", None]},
            "spent_usd": {
                "type": ["number", "null"],
                "description": "this period, as this instance's limiter counts it (with Redis: "
                "every instance's); null: no budget counted",
            },
            "remaining_usd": _NULLABLE_NUM,
            "resets_at": _NULLABLE_STR,
            "keys": {
                "type": "array",
                "items": _obj(
                    ["id", "name", "spent_usd"],
                    {"spent_usd": _NULLABLE_NUM, "remaining_usd": _NULLABLE_NUM},
                    False,
                ),
                "description": "its keys, each with its own budget's spend (null: none)",
            },
        },
        False,
    ),
    "CredentialInput": {
        **_obj([], {**_CREDENTIAL_FIELDS, **_CREDENTIAL_ALIASES}),
        "anyOf": [{"required": ["name"]}, {"required": ["id"]}],
    },
    "CredentialPatch": {
        **_obj([], {**_CREDENTIAL_FIELDS, **_CREDENTIAL_ALIASES}),
        "minProperties": 1,
    },
    "Status": {
        **_obj(
            [],
            {
                "enabled": {"type": "boolean"},
                "is_enabled": _alias("enabled", {"type": "boolean"}),
            },
        ),
        "anyOf": [{"required": ["enabled"]}, {"required": ["is_enabled"]}],
    },
    "Rotate": _obj(
        [],
        {
            "key": {"type": "string"},
            "credential_key": _alias("key", {"type": "string"}),
        },
    ),
    "List": _obj(["data"], {"data": {"type": "array"}, "source": {"type": "string"}}, False),
    "Deleted": _obj(
        ["id", "deleted"],
        {"id": {"type": "integer"}, "deleted": {"type": "boolean"}, **_VERSIONED},
    ),
    "Change": _obj(
        ["version", "changed_at", "table", "row_id", "operation", "changed_by"],
        {
            "version": {"type": "integer"},
            "changed_at": {"type": "string"},
            "table": {"type": "string", "enum": list(HISTORY_TABLES)},
            "row_id": {"type": "integer"},
            "name": _NULLABLE_STR,
            "operation": {"type": "string", "enum": ["INSERT", "UPDATE", "DELETE"]},
            "fields_changed": {"type": "array", "items": {"type": "string"}},
            "before": {"type": ["object", "null"]},
            "after": {"type": ["object", "null"]},
            "changed_by": {"type": "string"},
        },
    ),
    "HistoryPage": _obj(
        ["data", "next_before", "first_version", "current_version"],
        {
            "data": {"type": "array", "items": _ref("Change")},
            "next_before": {"type": ["integer", "null"]},
            "first_version": {"type": "integer"},
            "current_version": {"type": "integer"},
        },
    ),
    "HistoryVersion": _obj(
        ["version", "changes"],
        {"version": {"type": "integer"}, "changes": {"type": "array", "items": _ref("Change")}},
    ),
    "Rollback": _obj(
        ["version"],
        {
            "version": {
                "oneOf": [
                    _ID,
                    {
                        "type": "string",
                        "pattern": "^[1-9][0-9]{0,17}$",
                        "deprecated": True,
                        "description": "Compatibility: the version as a decimal string "
                        "(what /config/version answered before it answered a number).",
                    },
                ],
                "description": "a version as /config/version, /config/history and every "
                "write answer it",
            },
            "restore_revoked_keys": {
                "type": "boolean",
                "description": "also revive master keys rotated or deleted since (default false)",
            },
        },
    ),
    "RolledBack": _obj(
        ["version", "rolled_back_to", "served", "keys_left_out"],
        {
            "version": {"type": "integer"},
            "rolled_back_to": {"type": "integer"},
            "served": {"type": "boolean"},
            "keys_left_out": {
                "type": "array",
                "description": "master keys kept revoked (rotated: today's key kept)",
                "items": _obj(
                    ["name", "reason"],
                    {
                        "name": {"type": "string"},
                        "reason": {"type": "string", "enum": ["rotated", "deleted"]},
                    },
                ),
            },
        },
    ),
    "CacheStats": _obj(
        [
            "enabled",
            "backend",
            "entries",
            "bytes",
            "max_bytes",
            "hits",
            "misses",
            "bypasses",
            "stored",
            "evictions",
            "errors",
        ],
        {
            "enabled": {"type": "boolean"},
            "backend": {"type": ["string", "null"], "enum": ["memory", "redis", None]},
            "entries": {
                "type": "integer",
                "minimum": 0,
                "description": "the backend's (redis: every instance's)",
            },
            "bytes": {"type": "integer", "minimum": 0},
            "max_bytes": {
                "type": ["integer", "null"],
                "description": "the memory backend's bound (null: redis, or off)",
            },
            **{
                name: {
                    "type": "integer",
                    "minimum": 0,
                    "description": f"{what}, by this instance since it started",
                }
                for name, what in (
                    ("hits", "requests answered from the cache"),
                    ("misses", "requests asked upstream, their answers recorded"),
                    ("bypasses", "requests kept out of the cache"),
                    ("stored", "answers stored"),
                    ("evictions", "entries evicted to make room"),
                    ("errors", "backend errors (each made its request a bypass)"),
                )
            },
        },
    ),
    "CachePurged": _obj(["purged"], {"purged": {"type": "integer", "minimum": 0}}),
    "RoutingSection": _ROUTING_SECTION,
    "RoutingServed": _obj(["source", "writable", "version", "routing"], _ROUTING_SERVED),
    "RoutingWritten": _obj(
        ["source", "writable", "version", "routing", "served"],
        {**_ROUTING_SERVED, "served": {"type": "boolean"}},
    ),
    "ConfigVersion": _obj(
        ["version", "loaded_at", "source"],
        {
            "version": {"type": "integer"},
            "loaded_at": {"type": "number"},
            "source": {"type": "string", "enum": ["file", "database"]},
        },
    ),
    "Config": _obj(
        ["version", "source", "providers", "master_keys", "teams", "settings"], {}, False
    ),
    "Reloaded": _obj(
        ["version", "served"], {"version": {"type": "integer"}, "served": {"type": "boolean"}}
    ),
    "Valid": _obj(["valid", "name"], {"valid": {"type": "boolean"}, "name": {"type": "string"}}),
    "ProbeOptions": _obj(
        [],
        {
            "models": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "max_concurrent": {"type": "integer", "minimum": 1, "maximum": 32},
            "timeout_secs": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
        },
    ),
    "CheckOptions": _obj(
        [],
        {
            "providers": {"type": "array", "items": {"type": "string"}},
            "provider_ids": {
                "type": "array",
                "items": _ID,
                "deprecated": True,
                "description": "Compatibility alias: the original llm-proxy's way to name the "
                "providers, by id (as GET /providers shows them); with `providers` naming "
                "others: a 400.",
            },
            "models": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "max_concurrent": {"type": "integer", "minimum": 1, "maximum": 32},
            "timeout_secs": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
        },
    ),
    "Probe": _obj(["provider", "healthy", "results"], {}, False),
    "OriginalProbe": _obj(
        ["provider", "healthy", "results", "provider_id", "provider_key", "status", "models"],
        {
            "provider_id": {"type": "integer"},
            "provider_key": {"type": "string"},
            "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
            "models": {"type": "array"},
            "avg_response_time_ms": _NULLABLE_INT,
            "checked_at": {"type": "string"},
        },
        False,
    ),
    "Check": _obj(["healthy", "providers"], {}, False),
}


def _rows(kind: str, schema: str, what: str) -> dict[str, Any]:
    enabled = {
        "name": "enabled",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["true", "false"]},
    }
    item = {
        "get": _op(f"One {what}", _ref(schema), params=[_id_param()]),
        "put": _op(
            f"Replace a {what}",
            _ref(schema),
            body={
                "anyOf": [_ref(f"{schema}Input"), _ref(f"{schema}Patch")],
                "description": "with `name` and our field names: the row replaced, omitted "
                "fields back to their defaults. Compatibility: a body using one of the "
                "original llm-proxy's field names, or without `name`, changes only the fields "
                "given (its PUT), as PATCH does.",
            },
            params=[_id_param()],
        ),
        "patch": _op(
            f"Change a {what}'s fields",
            _ref(schema),
            body=_ref(f"{schema}Patch"),
            params=[_id_param()],
        ),
        "delete": _op(f"Delete a {what}", _ref("Deleted"), params=[_id_param()]),
    }
    return {
        f"/{kind}": {
            "get": _op(f"List {what}s", _ref("List"), params=[enabled]),
            "post": _op(
                f"Create a {what}", _ref(schema), body=_ref(f"{schema}Input"), status="201"
            ),
        },
        f"/{kind}/{{id}}": item,
        f"/{kind}/{{id}}/status": {
            "patch": _op(
                f"Enable or disable a {what}",
                _ref(schema),
                body=_ref("Status"),
                params=[_id_param()],
            )
        },
    }


def _teams() -> dict[str, Any]:
    key_id = {"name": "key_id", "in": "path", "required": True, "schema": _ID}
    return {
        "/teams": {
            "get": _op("List teams (with how many keys each has)", _ref("List")),
            "post": _op("Create a team", _ref("Team"), body=_ref("TeamInput"), status="201"),
        },
        "/teams/{id}": {
            "get": _op("One team", _ref("Team"), params=[_id_param()]),
            "put": _op(
                "Replace a team (omitted fields back to their defaults)",
                _ref("Team"),
                body=_ref("TeamInput"),
                params=[_id_param()],
            ),
            "patch": _op(
                "Change a team's fields", _ref("Team"), body=_ref("TeamPatch"), params=[_id_param()]
            ),
            "delete": _op(
                "Delete a team (409 team_has_members while keys are in it)",
                _ref("Deleted"),
                params=[_id_param()],
            ),
        },
        "/teams/{id}/members": {
            "get": _op("The team's keys", _ref("List"), params=[_id_param()]),
            "post": _op(
                "Put a key (by name) in the team",
                _ref("TeamMember"),
                body=_ref("TeamMemberInput"),
                params=[_id_param()],
                status="201",
            ),
        },
        "/teams/{id}/members/{key_id}": {
            "delete": _op(
                "Take a key out of the team (the key stays, in no team)",
                _ref("TeamMember"),
                params=[_id_param(), key_id],
            )
        },
        "/teams/{id}/usage": {
            "get": _op(
                "The team's budget and its spend this period, and its keys'",
                _ref("TeamUsage"),
                params=[_id_param()],
            )
        },
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_TIME_PARAM: Final = {"type": "string", "maxLength": 64}
_TEXT_PARAM: Final = {"type": "string", "maxLength": 1000}
_PAGE_PARAMS: Final = [
    _query("since", _TIME_PARAM),
    _query("until", _TIME_PARAM),
    _query("provider", _TEXT_PARAM),
    _query("request_id", _TEXT_PARAM),
    _query("status", {"type": "string", "maxLength": 8}),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
    _query("cursor", {"type": "string", "maxLength": 200}),
]
_STEP: Final = _obj(
    [
        "t",
        "secs",
        "requests",
        "errors",
        "requests_per_sec",
        "error_rate",
        "tokens_per_min",
        "cost_usd",
    ],
    {
        "t": {"type": "number"},
        "secs": {"type": "number", "exclusiveMinimum": 0},
        "requests": {"type": "integer", "minimum": 0},
        "errors": {"type": "integer", "minimum": 0},
        "requests_per_sec": {"type": "number"},
        "error_rate": {"type": "number"},
        "p50_ms": _NULLABLE_NUM,
        "p95_ms": _NULLABLE_NUM,
        "p99_ms": _NULLABLE_NUM,
        "ttft_p50_ms": _NULLABLE_NUM,
        "ttft_p95_ms": _NULLABLE_NUM,
        "tokens_per_min": {"type": "number"},
        "cost_usd": {"type": "number"},
    },
)
_NULLABLE_BOOL: Final = {"type": ["boolean", "null"]}
_ORIGINAL_REQUEST: Final = _obj(
    ["id", "timestamp", "request_id", "status_code", "input_tokens", "output_tokens"],
    {
        "id": {"type": "integer"},
        "timestamp": {"type": "string"},
        "request_id": {"type": "string"},
        "endpoint": _NULLABLE_STR,
        "credential_name": _NULLABLE_STR,
        "model_requested": _NULLABLE_STR,
        "model_mapped": _NULLABLE_STR,
        "provider_name": _NULLABLE_STR,
        "provider_type": {"type": "null", "description": "not recorded here"},
        "client_protocol": {"type": "null", "description": "not recorded here"},
        "provider_protocol": {"type": "null", "description": "not recorded here"},
        "is_streaming": _NULLABLE_BOOL,
        "status_code": _NULLABLE_INT,
        "input_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "total_duration_ms": _NULLABLE_INT,
        "ttft_ms": _NULLABLE_INT,
        "error_category": _NULLABLE_STR,
        "error_message": _NULLABLE_STR,
        "client": _NULLABLE_STR,
        "trace_id": _NULLABLE_STR,
        "request_headers": {"type": "null", "description": "not recorded here"},
        "request_body": _NULLABLE_STR,
        "response_body": _NULLABLE_STR,
    },
)
_ORIGINAL_ERROR: Final = _obj(
    ["id", "timestamp", "error_category"],
    {
        "id": {"type": "integer"},
        "timestamp": {"type": "string"},
        "request_id": _NULLABLE_STR,
        "error_category": {"type": "string", "description": "our outcome"},
        "error_code": _NULLABLE_INT,
        "error_message": _NULLABLE_STR,
        "provider_name": _NULLABLE_STR,
        **{
            name: {"type": "null", "description": "not recorded here"}
            for name in (
                "credential_name",
                "model_requested",
                "model_mapped",
                "endpoint",
                "client_protocol",
                "provider_protocol",
                "is_streaming",
                "total_duration_ms",
                "request_body",
                "provider_request_body",
                "provider_request_headers",
            )
        },
        "response_body": _NULLABLE_STR,
    },
)


def _original_page(item: dict[str, Any]) -> dict[str, Any]:
    return _obj(
        ["items", "total", "page", "page_size", "total_pages"],
        {
            "items": {"type": "array", "items": item},
            "total": {"type": "integer"},
            "page": {"type": "integer"},
            "page_size": {"type": "integer"},
            "total_pages": {"type": "integer"},
        },
    )


_COUNTS: Final = {"type": "object", "additionalProperties": {"type": "integer"}}
LOG_SCHEMAS: Final[dict[str, Any]] = {
    "OriginalRequestLog": _ORIGINAL_REQUEST,
    "OriginalRequestLogPage": _original_page(_ORIGINAL_REQUEST),
    "OriginalErrorLog": _ORIGINAL_ERROR,
    "OriginalErrorLogPage": _original_page(_ORIGINAL_ERROR),
    "OriginalLogStats": _obj(
        ["total_requests", "total_errors", "error_rate"],
        {
            "total_requests": {"type": "integer"},
            "total_errors": {"type": "integer"},
            "error_rate": {"type": "number"},
            "total_input_tokens": {"type": "integer"},
            "total_output_tokens": {"type": "integer"},
            "avg_duration_ms": _NULLABLE_NUM,
            "avg_ttft_ms": _NULLABLE_NUM,
            "requests_by_provider": _COUNTS,
            "requests_by_model": _COUNTS,
            "requests_by_status": _COUNTS,
        },
    ),
    "Stats": _obj(
        ["interval_secs", "window_secs", "config_version", "providers", "series"],
        {
            "interval_secs": {"type": "number"},
            "window_secs": {"type": "integer"},
            "config_version": {"type": "integer"},
            "providers": {
                "type": "array",
                "items": _obj(
                    ["name", "healthy", "state", "rate_limited_for_secs"],
                    {
                        "name": {"type": "string"},
                        "healthy": {"type": "boolean"},
                        "state": {"enum": ["healthy", "ejected", "half_open"]},
                        "rate_limited_for_secs": {"type": "number", "minimum": 0},
                    },
                ),
            },
            "series": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": _STEP},
            },
        },
    ),
    "RequestLog": _obj(
        ["id", "ts", "request_id", "key_name", "status"],
        {
            "id": {"type": "integer"},
            "ts": {"type": "string"},
            "request_id": {"type": "string"},
            "key_name": {"type": "string"},
            "client": {"type": "string"},
            "method": {"type": "string"},
            "path": {"type": "string"},
            "model": _NULLABLE_STR,
            "model_sent": _NULLABLE_STR,
            "provider": {"type": "string"},
            "attempts": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "integer"},
            "duration_ms": {"type": "number"},
            "ttft_ms": _NULLABLE_NUM,
            "prompt_tokens": _NULLABLE_INT,
            "completion_tokens": _NULLABLE_INT,
            "cost_usd": _NULLABLE_NUM,
            "streamed": {"type": "boolean"},
            "error_code": _NULLABLE_STR,
            "prompt": _NULLABLE_STR,
            "completion": _NULLABLE_STR,
            "trace_id": _NULLABLE_STR,
            "fallback_from": {
                "type": ["string", "null"],
                "description": "the model asked for, when a fallback model answered",
            },
            "fallback_reason": {
                "type": ["string", "null"],
                "enum": ["any", "context_window", "content_policy", None],
            },
            "rule": {"type": ["string", "null"], "description": "the routing rule that matched"},
            "cache": {
                "type": ["string", "null"],
                "enum": [*CACHE_RESULTS, None],
                "description": "the response cache's word (null: it did not look at the request)",
            },
            "team": {"type": ["string", "null"], "description": "the key's team (null: none)"},
        },
    ),
    "ErrorLog": _obj(
        ["id", "ts", "request_id", "provider", "outcome"],
        {
            "id": {"type": "integer"},
            "ts": {"type": "string"},
            "request_id": {"type": "string"},
            "provider": {"type": "string"},
            "outcome": {"type": "string"},
            "upstream_status": _NULLABLE_INT,
            "body": _NULLABLE_STR,
            "detail": _NULLABLE_STR,
        },
    ),
    "RequestLogPage": _obj(
        ["data", "next_cursor"],
        {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/RequestLog"}},
            "next_cursor": _NULLABLE_STR,
        },
    ),
    "ErrorLogPage": _obj(
        ["data", "next_cursor"],
        {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorLog"}},
            "next_cursor": _NULLABLE_STR,
        },
    ),
    "RequestDetail": _obj(
        ["data", "errors"],
        {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/RequestLog"}},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorLog"}},
        },
    ),
    "UsageSums": _obj(
        [
            "requests",
            "errors",
            "error_rate",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost_usd",
        ],
        {
            "key": {"type": "string"},
            "team": {"type": ["string", "null"], "description": "the key's team (null: none)"},
            "model": {"type": "string"},
            "provider": {"type": "string"},
            "day": {"type": "string"},
            "requests": {"type": "integer"},
            "errors": {"type": "integer"},
            "error_rate": {"type": "number"},
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
            "cost_usd": {"type": "number"},
        },
    ),
    "Usage": _obj(
        ["since", "until", "group_by", "data", "truncated", "total"],
        {
            "since": {"type": "string"},
            "until": {"type": "string"},
            "group_by": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/UsageSums"}},
            "truncated": {"type": "boolean"},
            "total": {"$ref": "#/components/schemas/UsageSums"},
        },
    ),
}


_ORIGINAL_TIMES: Final = [_query("start_time", _TIME_PARAM), _query("end_time", _TIME_PARAM)]
_TRUE_FALSE: Final = {"type": "string", "enum": ["true", "false"]}
_PAGE: Final = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": 200}),
    _query("sort_order", {"type": "string", "enum": ["asc", "desc"]}),
]
# The original llm-proxy's paths where ours differ (`admin.original_logs`, `admin.probes`).
_ORIGINAL_PATHS: Final = {
    "/health/providers/{id}": {
        "get": _compatible(
            _op(
                "Probe a provider's models (models: comma-separated)",
                _ref("OriginalProbe"),
                params=[
                    _id_param(),
                    _query("models", {"type": "string", "maxLength": 1000}),
                    _query("timeout_secs", {"type": "number", "exclusiveMinimum": 0}),
                ],
            ),
            "POST /providers/{id}/health",
        )
    },
    "/logs": {
        "get": _compatible(
            _op(
                "The request log, by page",
                _ref("OriginalRequestLogPage"),
                params=[
                    *_PAGE,
                    *_ORIGINAL_TIMES,
                    *(
                        _query(name, _TEXT_PARAM)
                        for name in ("request_id", "provider_name", "model", "credential_name")
                    ),
                    _query("status_code", {"type": "integer", "minimum": 100, "maximum": 999}),
                    _query("is_streaming", _TRUE_FALSE),
                    _query("error_only", _TRUE_FALSE),
                    _query(
                        "sort_by",
                        {
                            "type": "string",
                            "enum": [
                                "timestamp",
                                "status_code",
                                "total_duration_ms",
                                "input_tokens",
                                "output_tokens",
                                "total_tokens",
                            ],
                        },
                    ),
                ],
            ),
            "GET /logs/requests",
        )
    },
    "/logs/stats": {
        "get": _compatible(
            _op(
                "Request log sums",
                _ref("OriginalLogStats"),
                params=[
                    *_ORIGINAL_TIMES,
                    _query("provider_name", _TEXT_PARAM),
                    _query("model", _TEXT_PARAM),
                ],
            ),
            "GET /usage",
        )
    },
    "/logs/{id}": {
        "get": _compatible(
            _op("One request, by row id", _ref("OriginalRequestLog"), params=[_id_param()]),
            "GET /logs/requests/{request_id}",
        )
    },
    "/error-logs": {
        "get": _compatible(
            _op(
                "Failed upstream attempts, by page",
                _ref("OriginalErrorLogPage"),
                params=[
                    *_PAGE,
                    *_ORIGINAL_TIMES,
                    *(
                        _query(name, _TEXT_PARAM)
                        for name in ("request_id", "provider_name", "error_category")
                    ),
                ],
            ),
            "GET /logs/errors",
        )
    },
    "/error-logs/{id}": {
        "get": _compatible(
            _op("One failed attempt, by row id", _ref("OriginalErrorLog"), params=[_id_param()]),
            "GET /logs/errors",
        )
    },
}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/auth/validate": {"post": _op("Is this admin key valid", _ref("Valid"))},
        "/config/version": {"get": _op("The config version served", _ref("ConfigVersion"))},
        "/config": {"get": _op("The effective config, secrets masked", _ref("Config"))},
        "/config/reload": {"post": _op("Read the config again now", _ref("Reloaded"))},
        "/config/export": {
            "get": {
                "summary": "Providers, master keys, teams and routing as YAML (no secrets)",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/yaml": {
                                "schema": _obj(
                                    ["providers", "master_keys"],
                                    {
                                        "providers": {"type": "array"},
                                        "master_keys": {"type": "array"},
                                        "teams": {"type": "array"},
                                        "routing": {"type": "object"},
                                    },
                                )
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/config/history": {
            "get": _op(
                "Config changes, newest first",
                _ref("HistoryPage"),
                params=[
                    {
                        "name": "table",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(HISTORY_TABLES)},
                    },
                    {"name": "row_id", "in": "query", "schema": _ID},
                    {"name": "before", "in": "query", "schema": _ID},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
            )
        },
        "/config/history/{version}": {
            "get": _op(
                "One version's changes",
                _ref("HistoryVersion"),
                params=[
                    {
                        "name": "version",
                        "in": "path",
                        "required": True,
                        "schema": _ID,
                    }
                ],
            )
        },
        "/config/rollback": {
            "post": _op(
                "Restore the config of a version", _ref("RolledBack"), body=_ref("Rollback")
            )
        },
        "/routing": {
            "get": _op("The routing section served", _ref("RoutingServed")),
            "put": _op(
                "Replace the routing section (database mode)",
                _ref("RoutingWritten"),
                body=_ref("RoutingSection"),
            ),
        },
        "/cache": {
            "get": _op("The response cache: on or off, its size and counters", _ref("CacheStats")),
            "delete": _op(
                "Purge the response cache: every entry, or a key's and/or a model's",
                _ref("CachePurged"),
                params=[
                    _query(
                        "key",
                        {
                            **_TEXT_PARAM,
                            "minLength": 1,
                            "description": "a key's name: the namespace of its entries "
                            "(`global` with cache.namespace: global)",
                        },
                    ),
                    _query("model", {**_TEXT_PARAM, "minLength": 1}),
                ],
            ),
        },
        **_rows("providers", "Provider", "provider"),
        **_rows("credentials", "Credential", "master key"),
        **_teams(),
        "/credentials/{id}/rotate": {
            "post": _op(
                "A new key, shown once",
                _ref("Credential"),
                body=_ref("Rotate"),
                params=[_id_param()],
            )
        },
        "/providers/{id}/health": {
            "post": _op(
                "Probe a provider's models",
                _ref("Probe"),
                body=_ref("ProbeOptions"),
                params=[_id_param()],
            )
        },
        "/health/check": {
            "post": _op("Probe every provider", _ref("Check"), body=_ref("CheckOptions"))
        },
        "/logs/requests": {
            "get": _op(
                "The request log, newest first",
                _ref("RequestLogPage"),
                params=[
                    *_PAGE_PARAMS,
                    _query("key", _TEXT_PARAM),
                    _query("team", _TEXT_PARAM),
                    _query("model", _TEXT_PARAM),
                    _query("trace_id", {"type": "string", "maxLength": 32}),
                    _query("fallback", {"type": "string", "enum": ["true", "false"]}),
                    _query("rule", _TEXT_PARAM),
                    _query("cache", {"type": "string", "enum": list(CACHE_RESULTS)}),
                ],
            )
        },
        "/logs/requests/{request_id}": {
            "get": _op(
                "One request and its failed attempts",
                _ref("RequestDetail"),
                params=[
                    {
                        "name": "request_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                    }
                ],
            )
        },
        "/logs/errors": {
            "get": _op(
                "Failed upstream attempts, newest first",
                _ref("ErrorLogPage"),
                params=[*_PAGE_PARAMS, _query("outcome", _TEXT_PARAM)],
            )
        },
        "/usage": {
            "get": _op(
                "Requests, errors, tokens and cost by key, team, model, provider, day",
                _ref("Usage"),
                params=[
                    _query("group_by", {"type": "string", "maxLength": 64}),
                    _query("since", {"type": "string", "maxLength": 32}),
                    _query("until", {"type": "string", "maxLength": 32}),
                    _query("key", _TEXT_PARAM),
                    _query("team", _TEXT_PARAM),
                    _query("model", _TEXT_PARAM),
                    _query("provider", _TEXT_PARAM),
                ],
            )
        },
        "/stats": {
            "get": _op(
                "Live stats of the last hour, from the proxy's own counters",
                _ref("Stats"),
                params=[
                    _query("window", {"type": "integer", "minimum": 10, "maximum": 3600}),
                    _query("by", {"type": "string", "enum": ["provider", "key", "team"]}),
                ],
            )
        },
        "/openapi.json": {"get": _op("This document", {"type": "object"}, secured=False)},
        **_ORIGINAL_PATHS,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llm-proxy admin API",
            "version": "1",
            "description": (
                "Providers, master keys, teams, config history and rollback, health probes, the "
                "request log, usage and the response cache."
            ),
        },
        "servers": [{"url": "/admin/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**SCHEMAS, **LOG_SCHEMAS},
        },
        "paths": paths,
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
