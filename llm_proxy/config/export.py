"""The configuration's providers and master keys as a YAML file that YAML mode and
`llm-proxy import-config` accept (`GET /admin/v1/config/export`, `llm-proxy export-config`).

Secrets stay out of it by default: each provider key becomes `${LLM_PROXY_KEY_<NAME>}` (set
those variables, or a `.env` beside the file, to use it), a master key its SHA-256
(`key_sha256`, which both accept: the key itself was never stored). `with_secrets` (the CLI's
`--with-secrets`, never the API) writes the provider keys themselves.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Any

from ruamel.yaml import YAML

from llm_proxy.config.model import Config, MasterKey, Pricing, Provider


def key_variable(provider: str) -> str:
    """The environment variable an exported provider's key is read from."""
    return "LLM_PROXY_KEY_" + (re.sub(r"[^A-Za-z0-9]+", "_", provider).strip("_").upper() or "X")


def _provider(p: Provider, with_secrets: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": p.name,
        "api_base": p.api_base,
        "api_key": p.api_key if with_secrets else f"${{{key_variable(p.name)}}}",
        "weight": p.weight,
        "model_mapping": {rule.key: rule.target for rule in p.model_mapping},
    }
    for name in ("verify_ssl", "inject_stream_usage", "organization", "project"):
        value = getattr(p, name)
        if value is not None:
            entry[name] = value
    entry.update({k: v for k, v in dataclasses.asdict(p.timeouts).items() if v is not None})
    if p.health_check is not None:
        entry["health_check"] = {
            k: v for k, v in dataclasses.asdict(p.health_check).items() if v is not None
        }
    if isinstance(p.proxy, str) or p.proxy is False:
        entry["proxy"] = p.proxy
    if p.pricing:
        entry["pricing"] = pricing_data(p.pricing)
    return entry


def pricing_data(pricing: Pricing) -> dict[str, dict[str, float]]:
    """`pricing` as the config file spells it."""
    return {
        name: {"input_per_mtok": price.input_per_mtok, "output_per_mtok": price.output_per_mtok}
        for name, _, price in pricing
    }


def _master_key(k: MasterKey) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": k.name, "key_sha256": k.digest.hex()}
    if k.allowed_models is not None:
        entry["allowed_models"] = list(k.allowed_models)
    if k.rate_limit is not None:
        entry["rate_limit"] = dataclasses.asdict(k.rate_limit)
    if k.tokens_per_minute is not None:
        entry["tokens_per_minute"] = k.tokens_per_minute
    if k.max_budget_usd is not None:
        entry["max_budget_usd"] = k.max_budget_usd
        entry["budget_period"] = k.budget_period
    if not k.enabled:
        entry["enabled"] = False
    return entry


def export_yaml(config: Config, *, version: str, with_secrets: bool = False) -> str:
    data = {
        "providers": [_provider(p, with_secrets) for p in config.providers],
        "master_keys": [_master_key(k) for k in config.master_keys],
    }
    out = io.StringIO()
    out.write(f"# llm-proxy configuration, exported at config version {version}.\n")
    if not with_secrets and config.providers:
        names = ", ".join(key_variable(p.name) for p in config.providers)
        out.write(f"# Provider keys are read from the environment: {names}.\n")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()
