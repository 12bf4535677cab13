"""What the admin API shows of the configuration: everything an operator needs, no secret.
A provider key is masked (`sk-...abcd`), and so is the value of each provider header and query
parameter not known to be public (`header_is_public`: `HTTP-Referer`, `X-Title`, ... are shown;
`query_param_is_public`: `api-version`); so is each cloud credential (`credentials_json`,
`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`); a forward proxy URL is
shown without its `user:password@`; a master key is shown by name only, tokens and admin
keys by whether (and under which names) they are set."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from llm_proxy.config.export import pricing_data
from llm_proxy.config.master_keys import expiry_text
from llm_proxy.config.model import CircuitBreaker, Config, HealthCheck, Provider, Team, Timeouts
from llm_proxy.config.providers import header_is_public, query_param_is_public, redact_url
from llm_proxy.config.routing import routing_data


def mask(secret: str) -> str:
    """`sk-...abcd`: enough to tell two keys apart, never enough to use one."""
    if not secret:
        return ""
    if len(secret) <= 8:
        return "..."
    return f"{secret[:3]}...{secret[-4:]}"


def shown_headers(headers: Any) -> Any:
    """A provider's `headers` as shown: secret-looking values masked (any name not known to
    be public). Also for raw `params` rows, whatever their shape: anything but a mapping of
    strings is masked whole."""
    return _shown(headers, header_is_public)


def shown_query(query: Any) -> Any:
    """A provider's `query_params` as shown: every value masked but `api-version`'s (a key may
    be sent as `?key=`). Any shape, as `shown_headers`."""
    return _shown(query, query_param_is_public)


def shown_secret(value: Any) -> Any:
    """A secret setting as shown (a cloud credential): masked like a key; null as it is,
    anything but a string masked whole."""
    if value is None:
        return None
    return mask(value) if isinstance(value, str) else "..."


def shown_proxy(proxy: Any) -> Any:
    """A provider's `proxy` as shown: without its `user:password@` (false and null as they
    are; anything else but a string masked whole)."""
    if isinstance(proxy, str):
        return redact_url(proxy)
    return proxy if proxy is None or isinstance(proxy, bool) else "..."


def _shown(values: Any, public: Callable[[str], bool]) -> Any:
    if not isinstance(values, dict):
        return None if values is None else "..."
    return {
        name: value if public(name) else mask(value) if isinstance(value, str) else "..."
        for name, value in values.items()
    }


def _timeouts(t: Timeouts) -> dict[str, float | None]:
    return {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}


def _health(h: HealthCheck | None) -> dict[str, Any] | None:
    return None if h is None else {"interval_secs": h.interval_secs, "model": h.model}


def _breaker(b: CircuitBreaker) -> dict[str, Any]:
    return {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}


def provider_view(p: Provider) -> dict[str, Any]:
    return {
        "name": p.name,
        "api_base": redact_url(p.api_base),
        "api_key": mask(p.api_key),
        "weight": p.weight,
        "model_mapping": {rule.key: rule.target for rule in p.model_mapping},
        "verify_ssl": p.verify_ssl,
        "inject_stream_usage": p.inject_stream_usage,
        "timeouts": {k: v for k, v in _timeouts(p.timeouts).items() if v is not None},
        "health_check": _health(p.health_check),
        "organization": p.organization,
        "project": p.project,
        "proxy": shown_proxy(p.proxy),
        "pricing": pricing_data(p.pricing),
        "provider_type": p.provider_type,
        "auth": p.auth,
        "headers": shown_headers(dict(p.headers)),
        "query_params": shown_query(dict(p.query_params)),
        # Sent to anthropic providers only: null for the other types.
        "anthropic_version": p.anthropic_version if p.provider_type == "anthropic" else None,
        "default_max_tokens": p.default_max_tokens,
        "max_output_tokens": p.max_output_tokens,
        # The clouds' own (null for the other types); credentials masked.
        "location": p.location,
        "credentials_file": p.credentials_file,
        "credentials_json": shown_secret(p.credentials_json),
        "region": p.region,
        "aws_access_key_id": shown_secret(p.aws_access_key_id),
        "aws_secret_access_key": shown_secret(p.aws_secret_access_key),
        "aws_session_token": shown_secret(p.aws_session_token),
        "aws_profile": p.aws_profile,
    }


def team_view(team: Team, config: Config) -> dict[str, Any]:
    """A team of the loaded configuration, in the shape of the admin API's team rows (the
    names of its keys in `keys`)."""
    limit = team.rate_limit
    return {
        "name": team.name,
        "allowed_models": list(team.allowed_models) if team.allowed_models is not None else None,
        "rate_limit_rps": limit.requests_per_second if limit else None,
        "rate_limit_burst": limit.burst_size if limit else None,
        "tokens_per_minute": team.tokens_per_minute,
        "max_budget_usd": team.max_budget_usd,
        "budget_period": team.budget_period if team.max_budget_usd is not None else None,
        "max_parallel_requests": team.max_parallel_requests,
        "shared_objects": team.shared_objects,
        "metadata": dict(team.metadata),
        "keys": [k.name for k in config.master_keys if k.team == team.name],
    }


_SECRET_SETTINGS = frozenset(
    {
        "providers",
        "master_keys",
        "teams",
        "metrics_token",
        "rate_limit_backend",
        "admin_key",
        "admin_keys",
        "pricing",
    }
)


def config_view(config: Config) -> dict[str, Any]:
    """The whole effective configuration, secrets masked."""
    settings: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name in _SECRET_SETTINGS:
            continue
        value = getattr(config, f.name)
        if isinstance(value, Timeouts):
            value = _timeouts(value)
        elif isinstance(value, CircuitBreaker):
            value = _breaker(value)
        elif isinstance(value, HealthCheck):
            value = _health(value)
        settings[f.name] = value
    settings["metrics_token"] = "set" if config.metrics_token else None
    backend = config.rate_limit_backend
    settings["rate_limit_backend"] = redact_url(backend) if backend else None
    settings["admin_keys"] = [name for name, _ in config.admin_credentials]
    settings["pricing"] = pricing_data(config.pricing)
    settings["routing"] = routing_data(config.routing)
    return {
        "providers": [provider_view(p) for p in config.providers],
        "master_keys": [
            {
                "name": k.name,
                "enabled": k.enabled,
                "allowed_models": list(k.allowed_models) if k.allowed_models is not None else None,
                "rate_limit": dataclasses.asdict(k.rate_limit) if k.rate_limit else None,
                "tokens_per_minute": k.tokens_per_minute,
                "max_budget_usd": k.max_budget_usd,
                "budget_period": k.budget_period if k.max_budget_usd is not None else None,
                "shared_objects": k.shared_objects,
                "max_parallel_requests": k.max_parallel_requests,
                "expires_at": expiry_text(k.expires_at) if k.expires_at is not None else None,
                "metadata": dict(k.metadata),
                "created_by": k.created_by,
                "team": k.team,
            }
            for k in config.master_keys
        ],
        "teams": [team_view(t, config) for t in config.teams],
        "settings": settings,
    }
