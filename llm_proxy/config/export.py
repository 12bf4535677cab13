"""The configuration's providers, master keys, teams and routing section as a YAML file that YAML
mode and `llm-proxy import-config` accept (`GET /admin/v1/config/export`,
`llm-proxy export-config`). The routing section is `routing_data`'s, unset values left out.

Secrets stay out of it by default: each provider key becomes `${LLM_PROXY_KEY_<NAME>}` (set
those variables, or a `.env` beside the file, to use it), and so does each provider header
value not known to be public (`${LLM_PROXY_HEADER_<NAME>_<HEADER>}`: any header but
`HTTP-Referer`, `X-Title`, ..., see `header_is_public`), each query parameter value but
`api-version`'s (`${LLM_PROXY_QUERY_<NAME>_<PARAM>}`), and the password of a forward proxy
URL (`http://user:${LLM_PROXY_PROXY_PASSWORD_<NAME>}@host:port`, the password as the URL
spells it, percent-encoded; a user without a password is `${LLM_PROXY_PROXY_USER_<NAME>}`),
and each cloud credential (`credentials_json`, `aws_access_key_id`, `aws_secret_access_key`,
`aws_session_token`: `${LLM_PROXY_<FIELD>_<NAME>}`, e.g. `${LLM_PROXY_AWS_SECRET_ACCESS_KEY_B}`);
a master key becomes its SHA-256 (`key_sha256`, which both accept: the key itself was never
stored). `with_secrets` (the CLI's `--with-secrets`, never the API) writes the secrets
themselves.
Values written as they are have their `$` doubled, so that `${VAR}` interpolation gives them
back unchanged.

`provider_data(p)` is the one mapping from a provider to plain data, secrets included: this
export is made of it, and so are `import-config`'s rows (`config/db_write.py`).
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Any

from ruamel.yaml import YAML

from llm_proxy.config.clouds import CLOUD_FIELDS, SECRET_CLOUD_FIELDS
from llm_proxy.config.master_keys import expiry_text
from llm_proxy.config.model import (
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    DEFAULT_VERTEX_LOCATION,
    GEMINI_API_BASE,
    Config,
    MasterKey,
    Pricing,
    Provider,
    Team,
    bedrock_api_base,
    default_auth,
    vertex_api_base,
)
from llm_proxy.config.providers import header_is_public, query_param_is_public
from llm_proxy.config.routing import routing_data
from llm_proxy.config.teams import own_models


def _variable_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper() or "X"


def key_variable(provider: str) -> str:
    """The environment variable an exported provider's key is read from."""
    return "LLM_PROXY_KEY_" + _variable_part(provider)


def header_variable(provider: str, header: str) -> str:
    """The environment variable an exported provider header's (secret) value is read from."""
    return f"LLM_PROXY_HEADER_{_variable_part(provider)}_{_variable_part(header)}"


def query_variable(provider: str, param: str) -> str:
    """The environment variable an exported provider query parameter's value is read from."""
    return f"LLM_PROXY_QUERY_{_variable_part(provider)}_{_variable_part(param)}"


def proxy_password_variable(provider: str, *, user: bool = False) -> str:
    """The environment variable an exported forward proxy's password is read from (or, for
    a URL with a user and no password, the user: then it is the credential)."""
    return f"LLM_PROXY_PROXY_{'USER' if user else 'PASSWORD'}_{_variable_part(provider)}"


def cloud_variable(provider: str, field: str) -> str:
    """The environment variable an exported provider's cloud credential (`credentials_json`,
    `aws_secret_access_key`, ...) is read from."""
    return f"LLM_PROXY_{field.upper()}_{_variable_part(provider)}"


def secret_variables(p: Provider) -> list[str]:
    """The variables an export without secrets makes `p` read its secrets from."""
    keys = [key_variable(p.name)] if p.api_key else []
    keys += [header_variable(p.name, n) for n, _ in p.headers if not header_is_public(n)]
    keys += [query_variable(p.name, n) for n, _ in p.query_params if not query_param_is_public(n)]
    split = _proxy_credential(p.proxy)
    if split is not None:
        keys.append(proxy_password_variable(p.name, user=split[1] is None))
    keys += [cloud_variable(p.name, f) for f in SECRET_CLOUD_FIELDS if getattr(p, f) is not None]
    return keys


def _literal(value: str) -> str:
    return value.replace("$", "$$")


def _proxy_credential(proxy: str | bool | None) -> tuple[str, str | None, str] | None:
    """A proxy URL with a credential as (`scheme://`, the user when a password follows it,
    `@host...`), cut as `redact_url` cuts (at the last `@`); None without a credential."""
    if not isinstance(proxy, str):
        return None
    scheme, sep, rest = proxy.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return scheme + sep, user if colon else None, "@" + host


def _proxy(p: Provider, with_secrets: bool) -> str | bool:
    """`proxy:` as exported: its password (or lone user) a variable unless `with_secrets`."""
    assert p.proxy is not None
    split = _proxy_credential(p.proxy)
    if with_secrets or split is None or not isinstance(p.proxy, str):
        return _literal(p.proxy) if isinstance(p.proxy, str) else p.proxy
    scheme, user, host = split
    variable = f"${{{proxy_password_variable(p.name, user=user is None)}}}"
    shown_user = "" if user is None else _literal(user) + ":"
    return f"{scheme}{shown_user}{variable}{_literal(host)}"


def provider_data(p: Provider) -> dict[str, Any]:
    """`p` as the config file spells it, which `parse_config` reads back into `p`: what is
    unset is left out, secrets are as they are. The one mapping from a provider to plain
    data: the export (which then hides the secrets) and `import-config`'s rows
    (`db_write.upsert`) are made of it."""
    entry: dict[str, Any] = {"name": p.name}
    if p.api_base != _default_base(p):
        entry["api_base"] = p.api_base
    if p.provider_type != "openai":
        entry["provider_type"] = p.provider_type
    if p.auth != default_auth(p.provider_type):
        entry["auth"] = p.auth
    if p.api_key:
        entry["api_key"] = p.api_key
    entry["weight"] = p.weight
    entry["model_mapping"] = {rule.key: rule.target for rule in p.model_mapping}
    if p.headers:
        entry["headers"] = dict(p.headers)
    if p.query_params:
        entry["query_params"] = dict(p.query_params)
    for name in ("verify_ssl", "inject_stream_usage", "organization", "project"):
        value = getattr(p, name)
        if value is not None:
            entry[name] = value
    entry.update({k: v for k, v in dataclasses.asdict(p.timeouts).items() if v is not None})
    if p.health_check is not None:
        entry["health_check"] = {
            k: v for k, v in dataclasses.asdict(p.health_check).items() if v is not None
        }
    if p.proxy is not None:  # a URL, or false: no forward proxy
        entry["proxy"] = p.proxy
    if p.pricing:
        entry["pricing"] = pricing_data(p.pricing)
    if p.provider_type == "anthropic" and p.anthropic_version != DEFAULT_ANTHROPIC_VERSION:
        entry["anthropic_version"] = p.anthropic_version
    if p.default_max_tokens != DEFAULT_MAX_TOKENS:
        entry["default_max_tokens"] = p.default_max_tokens
    if p.max_output_tokens is not None:
        entry["max_output_tokens"] = p.max_output_tokens
    for name in CLOUD_FIELDS:
        value = getattr(p, name)
        if value is not None and not (name == "location" and value == DEFAULT_VERTEX_LOCATION):
            entry[name] = value
    return entry


def _default_base(p: Provider) -> str | None:
    """The api_base a cloud provider gets when its config gives none (left out of its data,
    so that it follows the location or region); None for the types that always spell it."""
    if p.provider_type == "gemini":
        return GEMINI_API_BASE
    if p.provider_type == "vertex" and p.location is not None:
        return vertex_api_base(p.location)
    if p.provider_type == "bedrock" and p.region is not None:
        return bedrock_api_base(p.region)
    return None


def _provider(p: Provider, with_secrets: bool) -> dict[str, Any]:
    """`provider_data`, its secrets made variables unless `with_secrets`, and every value
    written as it is (header, query parameter, proxy URL) `$`-escaped."""
    entry = provider_data(p)
    if p.api_key and not with_secrets:  # (no key: no variable to set)
        entry["api_key"] = f"${{{key_variable(p.name)}}}"
    for field, public, variable in (
        ("headers", header_is_public, header_variable),
        ("query_params", query_param_is_public, query_variable),
    ):
        if field in entry:
            entry[field] = {
                name: _literal(value)
                if with_secrets or public(name)
                else f"${{{variable(p.name, name)}}}"
                for name, value in entry[field].items()
            }
    if p.proxy is not None:
        entry["proxy"] = _proxy(p, with_secrets)
    for name in SECRET_CLOUD_FIELDS:
        if name in entry:
            secret = entry[name]
            entry[name] = (
                _literal(secret) if with_secrets else f"${{{cloud_variable(p.name, name)}}}"
            )
    return entry


def pricing_data(pricing: Pricing) -> dict[str, dict[str, float]]:
    """`pricing` as the config file spells it."""
    return {
        name: {"input_per_mtok": price.input_per_mtok, "output_per_mtok": price.output_per_mtok}
        for name, _, price in pricing
    }


def _master_key(k: MasterKey) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": k.name, "key_sha256": k.digest.hex()}
    if k.team is not None:
        entry["team"] = k.team
    models = own_models(k)  # (a key with its team's models names none)
    if models is not None:
        entry["allowed_models"] = list(models)
    entry.update(_limits(k))
    if not k.enabled:
        entry["enabled"] = False
    if k.expires_at is not None:
        entry["expires_at"] = expiry_text(k.expires_at)
    if k.metadata:
        entry["metadata"] = dict(k.metadata)
    if k.created_by is not None:
        entry["created_by"] = k.created_by
    return entry


def _team(t: Team) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": t.name}
    if t.allowed_models is not None:
        entry["allowed_models"] = list(t.allowed_models)
    entry.update(_limits(t))
    if t.metadata:
        entry["metadata"] = dict(t.metadata)
    return entry


def _limits(k: MasterKey | Team) -> dict[str, Any]:
    """The limits a key and a team share, as the YAML spells them (unset ones left out)."""
    entry: dict[str, Any] = {}
    if k.rate_limit is not None:
        entry["rate_limit"] = dataclasses.asdict(k.rate_limit)
    if k.tokens_per_minute is not None:
        entry["tokens_per_minute"] = k.tokens_per_minute
    if k.max_budget_usd is not None:
        entry["max_budget_usd"] = k.max_budget_usd
        entry["budget_period"] = k.budget_period
    if k.max_parallel_requests is not None:
        entry["max_parallel_requests"] = k.max_parallel_requests
    if k.shared_objects:
        entry["shared_objects"] = True
    return entry


def _routing(config: Config) -> dict[str, Any]:
    """`routing:` as exported: what is unset (None, an empty chain list, a rule's default
    name `rules[i]`) left out."""
    out: dict[str, Any] = {}
    for key, value in routing_data(config.routing).items():
        if key == "models":
            value = {m: _set(fields) for m, fields in value.items()}
        elif key == "rules":
            value = [
                _set({k: v for k, v in rule.items() if (k, v) != ("name", f"rules[{i}]")})
                for i, rule in enumerate(value)
            ]
        elif key == "retry":
            value = _set(value)
        if value is not None and value != {} and value != []:
            out[key] = value
    return out


def _set(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` without its None values, at every depth but a rule's `match`."""
    return {
        k: _set(v) if isinstance(v, dict) and k != "match" else v
        for k, v in fields.items()
        if v is not None
    }


def export_yaml(config: Config, *, version: str, with_secrets: bool = False) -> str:
    data: dict[str, Any] = {
        "providers": [_provider(p, with_secrets) for p in config.providers],
        "master_keys": [_master_key(k) for k in config.master_keys],
    }
    if config.teams:
        data["teams"] = [_team(t) for t in config.teams]
    if config.routing.configured:
        data["routing"] = _routing(config)
    out = io.StringIO()
    out.write(f"# llm-proxy configuration, exported at config version {version}.\n")
    variables = [] if with_secrets else [v for p in config.providers for v in secret_variables(p)]
    if variables:
        out.write(f"# Provider secrets are read from the environment: {', '.join(variables)}.\n")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()
