"""The original llm-proxy's configuration rows mapped to ours: pure functions, no I/O (the
database side is `original_import`).

The original (github.com/maywzh/llm-proxy, migrations 000001-000008) keeps `providers`
(provider_key, provider_type, api_base, api_key, model_mapping, weight, is_enabled,
provider_params) and `credentials` (credential_key = SHA-256 hex of the key, name,
allowed_models, rate_limit, is_enabled). What it meant, and so what each maps to:

* a credential's key is hashed exactly as ours is (SHA-256 of the UTF-8 key; it stores the hex
  digest, we the 32 bytes): the hash is imported as `key_sha256` and the old plaintext key
  authenticates unchanged;
* `allowed_models: []` meant every model (its `check_model_permission`): imported as no
  restriction, explicitly (`allowed_models` absent), never as an empty list;
* `rate_limit` N meant N requests per second, burst N (`requests_per_second = burst_size =
  rate_limit`); 0 or NULL meant no limit;
* provider types: `openai` and `azure` (both sent as OpenAI calls with a Bearer key, the path
  appended to api_base) become our `openai`; `anthropic`/`claude` our `anthropic`. Its
  Vertex AI, Gemini and Responses-API upstreams have no equivalent here: listed, not imported.

Every entry is validated by our own parser (`parse_config`) one at a time, so that one bad row
is listed with its reason instead of failing the import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config, MasterKey, Provider
from llm_proxy.config.validate import parse_config

# The original's provider types (lower-cased, as its `Protocol.from_provider_type` reads them)
# and ours. Any type it did not know it sent as OpenAI; so do we.
_TYPES: Final[Mapping[str, str]] = {
    "openai": "openai",
    "azure": "openai",
    "anthropic": "anthropic",
    "claude": "anthropic",
}
_UNSUPPORTED_TYPES: Final[Mapping[str, str]] = {
    "gcp-vertex": "Vertex AI",
    "gcp_vertex": "Vertex AI",
    "vertex": "Vertex AI",
    "gemini": "Gemini",
    "gcp-gemini": "Gemini",
    "response_api": "OpenAI Responses API",
    "response-api": "OpenAI Responses API",
    "responses": "OpenAI Responses API",
}


@dataclass(frozen=True, slots=True)
class OriginalProvider:
    """One row of the original's `providers` table."""

    id: int
    provider_key: str
    provider_type: str
    api_base: str
    api_key: str
    model_mapping: Mapping[str, Any]
    weight: int = 1
    is_enabled: bool = True
    provider_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OriginalCredential:
    """One row of the original's `credentials` table (`credential_key`: the key's SHA-256,
    hex; `allowed_models`: its JSON as read, a list of names unless the row is corrupt)."""

    id: int
    credential_key: str
    name: str
    allowed_models: Any = ()
    rate_limit: int | None = None
    is_enabled: bool = True


@dataclass(frozen=True, slots=True)
class OriginalConfig:
    """The original's configuration as one read saw it."""

    providers: tuple[OriginalProvider, ...]
    credentials: tuple[OriginalCredential, ...]
    version: int


@dataclass(frozen=True, slots=True)
class NotCarried:
    """Something of the original's that is not imported (or not entirely): `what` names it
    (`providers/vertex-main`, `providers/x: provider_params.gcp_project`), `why` says why."""

    what: str
    why: str

    def line(self) -> str:
        return f"{self.what}: {self.why}"


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What the import writes: our providers and master keys (validated), the providers to
    write disabled (the original's `is_enabled = false`: our `fetch` skips them, as it did),
    and what is left out, one entry per reason."""

    providers: tuple[Provider, ...]
    master_keys: tuple[MasterKey, ...]
    disabled_providers: frozenset[str]
    not_carried: tuple[NotCarried, ...]

    @property
    def config(self) -> Config:
        return Config(providers=self.providers, master_keys=self.master_keys)


def plan_import(original: OriginalConfig) -> ImportPlan:
    """Map every row of `original` to ours, or to a `NotCarried` saying why not."""
    providers: list[Provider] = []
    disabled: set[str] = set()
    left_out: list[NotCarried] = []
    for row in original.providers:
        entry, problems = provider_entry(row)
        left_out += problems
        if entry is None:
            continue
        parsed = _parse("providers", entry, f"providers/{row.provider_key}", left_out)
        if parsed is not None:
            providers.append(parsed.providers[0])
            if not row.is_enabled:
                disabled.add(parsed.providers[0].name)
    names = credential_names(original.credentials)
    keys: list[MasterKey] = []
    for cred in original.credentials:
        key_entry, problems = master_key_entry(cred, names[cred.id])
        left_out += problems
        if key_entry is None:
            continue
        parsed = _parse("master_keys", key_entry, f"credentials/{cred.name}", left_out)
        if parsed is not None:
            keys.append(parsed.master_keys[0])
    return ImportPlan(tuple(providers), tuple(keys), frozenset(disabled), tuple(left_out))


def _parse(
    section: str, entry: dict[str, Any], what: str, left_out: list[NotCarried]
) -> Config | None:
    """`entry` validated alone as our config would validate it; None (and the reason listed)
    when refused."""
    try:
        return parse_config({section: [entry]})
    except ConfigError as exc:
        reasons = "; ".join(str(issue) for issue in exc.issues)
        left_out.append(NotCarried(what, f"refused by validation: {reasons}"))
        return None


def provider_entry(row: OriginalProvider) -> tuple[dict[str, Any] | None, list[NotCarried]]:
    """Our provider entry (parse_config's shape) for one original provider, or None; and
    what of it is not carried over."""
    what = f"providers/{row.provider_key}"
    kind = row.provider_type.strip().lower()
    if kind in _UNSUPPORTED_TYPES:
        why = (
            f"provider_type {row.provider_type!r}: this proxy has no "
            f"{_UNSUPPORTED_TYPES[kind]} upstream protocol (add it by hand as an "
            "OpenAI-compatible endpoint if it has one)"
        )
        return None, [NotCarried(what, why)]
    problems = [
        NotCarried(f"{what}: provider_params.{name}", _param_reason(name))
        for name in sorted(row.provider_params)
    ]
    if kind not in _TYPES:
        problems.append(
            NotCarried(
                f"{what}: provider_type",
                f"{row.provider_type!r} is unknown; sent as OpenAI, as the original did",
            )
        )
    mapping, mapping_problems = _model_mapping(what, row.model_mapping)
    entry: dict[str, Any] = {
        "name": row.provider_key,
        "provider_type": _TYPES.get(kind, "openai"),
        "api_base": row.api_base,
        "api_key": row.api_key,
        "weight": row.weight,
        "model_mapping": mapping,
    }
    return entry, problems + mapping_problems


def _param_reason(name: str) -> str:
    if name.startswith("gcp_"):
        return "Vertex AI settings; this proxy has no Vertex AI upstream"
    if name.startswith("anthropic_beta"):
        return (
            "no anthropic-beta policy here: an Anthropic client's anthropic-beta header is "
            "forwarded as sent"
        )
    return "not a setting the original read, nor one of ours"


def _model_mapping(
    what: str, raw: Mapping[str, Any]
) -> tuple[dict[str, str | None], list[NotCarried]]:
    """The original's mapping: a target name, or an entry whose `mapped_model` is the target
    (its other fields, costs and capabilities, are metadata we do not keep)."""
    mapping: dict[str, str | None] = {}
    problems: list[NotCarried] = []
    for name, value in raw.items():
        if isinstance(value, str):
            mapping[name] = value
        elif isinstance(value, Mapping) and isinstance(value.get("mapped_model"), str):
            mapping[name] = value["mapped_model"]
            extra = sorted(k for k in value if k != "mapped_model")
            if extra:
                problems.append(
                    NotCarried(
                        f"{what}: model_mapping.{name}",
                        f"only mapped_model is kept ({', '.join(extra)} dropped; "
                        "prices can be set in `pricing`)",
                    )
                )
        else:
            problems.append(
                NotCarried(f"{what}: model_mapping.{name}", "neither a name nor {mapped_model}")
            )
    return mapping, problems


def credential_names(credentials: Sequence[OriginalCredential]) -> dict[int, str]:
    """Our name for each credential, by its id: its own, unless the original had several of
    that name (ours must be unique), then `name #id` for each of them (stable across runs)."""
    counts = Counter(c.name for c in credentials)
    return {c.id: c.name if counts[c.name] == 1 else f"{c.name} #{c.id}" for c in credentials}


def master_key_entry(
    cred: OriginalCredential, name: str
) -> tuple[dict[str, Any] | None, list[NotCarried]]:
    """Our master key entry for one original credential, or None; and what is not carried."""
    what = f"credentials/{cred.name}"
    problems: list[NotCarried] = []
    if name != cred.name:
        problems.append(NotCarried(what, f"name shared by several keys: imported as {name!r}"))
    entry: dict[str, Any] = {
        "name": name,
        "key_sha256": cred.credential_key.strip().lower(),
        "enabled": cred.is_enabled,
    }
    # An empty list meant every model there: no `allowed_models` at all here (ours would
    # otherwise read it as a list to match against).
    if cred.allowed_models:
        entry["allowed_models"] = cred.allowed_models
    if cred.rate_limit is not None and cred.rate_limit > 0:
        entry["rate_limit"] = {
            "requests_per_second": cred.rate_limit,
            "burst_size": cred.rate_limit,
        }
    elif cred.rate_limit is not None and cred.rate_limit < 0:
        problems.append(
            NotCarried(f"{what}: rate_limit", f"{cred.rate_limit} is not a rate: no limit set")
        )
    return entry, problems
