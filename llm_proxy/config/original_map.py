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
  appended to api_base) become our `openai`; `anthropic`/`claude` our `anthropic`. Its Vertex
  AI types, `gcp-vertex` (and aliases) and `gemini` (`gcp-gemini`), both called
  `{api_base}/v1/projects/{gcp_project}/locations/{gcp_location}/publishers/{gcp_publisher}/
  models/{model}:{action}` with the api_key as a Bearer token (`gemini` with generateContent
  and Gemini's body, `gcp-vertex` with rawPredict and Anthropic's, or `gcp_vertex_actions`),
  defaults us-central1 and publisher anthropic: both become our `vertex`, the location written
  out (ours defaults to global). The key is not carried: a Bearer token for Vertex AI is an
  access token that expires within the hour, so the provider uses application default
  credentials and a note says to set credentials_file. We pick the publisher and method from
  the model name (claude-* anthropic, any other google): a disagreement is listed. (A
  `gemini` row on AI Studio's host never worked there; it becomes our `gemini`, noted.) Its
  Responses-API upstreams have no equivalent here: listed, not imported.

Every entry is validated by our own parser (`parse_config`) one at a time, so that one bad row
is listed with its reason instead of failing the import.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from yarl import URL

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import (
    GEMINI_API_BASE,
    Config,
    MasterKey,
    Provider,
    vertex_api_base,
)
from llm_proxy.config.validate import parse_config

# The original's provider types (lower-cased, as its `Protocol.from_provider_type` reads them)
# and ours. Any type it did not know it sent as OpenAI; so do we.
_TYPES: Final[Mapping[str, str]] = {
    "openai": "openai",
    "azure": "openai",
    "anthropic": "anthropic",
    "claude": "anthropic",
}
# Its two Vertex AI types: `gcp-vertex` calls `gcp_vertex_actions` (rawPredict and
# streamRawPredict unless set), `gemini` always generateContent and streamGenerateContent.
_VERTEX_TYPES: Final = frozenset({"gcp-vertex", "gcp_vertex", "vertex"})
_GEMINI_TYPES: Final = frozenset({"gemini", "gcp-gemini"})
_UNSUPPORTED_TYPES: Final[Mapping[str, str]] = {
    "response_api": "OpenAI Responses API",
    "response-api": "OpenAI Responses API",
    "responses": "OpenAI Responses API",
}
# Its defaults when provider_params name none (`GcpVertexConfig`, in both of its servers).
ORIGINAL_LOCATION: Final = "us-central1"
ORIGINAL_PUBLISHER: Final = "anthropic"
_RAW_PREDICT: Final = ("rawPredict", "streamRawPredict")
_GENERATE: Final = ("generateContent", "streamGenerateContent")
# The provider_params its Vertex AI types read.
_VERTEX_PARAMS: Final = frozenset({"gcp_project", "gcp_location", "gcp_publisher"})
_ACTIONS_PARAM: Final = "gcp_vertex_actions"
_VERTEX_HOST: Final = re.compile(r"(?:[a-z0-9-]+-)?aiplatform\.googleapis\.com")
_AI_STUDIO_HOST: Final = URL(GEMINI_API_BASE).host
_BETA: Final = (
    "no anthropic-beta policy here: an Anthropic client's anthropic-beta header is forwarded "
    "as sent"
)


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
    mapping, mapping_problems = _model_mapping(what, row.model_mapping)
    entry: dict[str, Any] = {
        "name": row.provider_key,
        "weight": row.weight,
        "model_mapping": mapping,
    }
    if kind in _GEMINI_TYPES and _host(row.api_base) == _AI_STUDIO_HOST:
        cloud, problems = _ai_studio_entry(row, what)
    elif kind in _VERTEX_TYPES or kind in _GEMINI_TYPES:
        cloud, problems = _vertex_entry(row, what, kind in _GEMINI_TYPES, mapping)
    else:
        cloud = {
            "provider_type": _TYPES.get(kind, "openai"),
            "api_base": row.api_base,
            "api_key": row.api_key,
        }
        problems = _other_params(
            row,
            what,
            set(),
            "a Vertex AI setting, which the original read only for its gcp-vertex and gemini types",
        )
        if kind not in _TYPES:
            problems.append(
                NotCarried(
                    f"{what}: provider_type",
                    f"{row.provider_type!r} is unknown; sent as OpenAI, as the original did",
                )
            )
    return {**entry, **cloud}, problems + mapping_problems


def _vertex_entry(
    row: OriginalProvider, what: str, gemini: bool, mapping: Mapping[str, str | None]
) -> tuple[dict[str, Any], list[NotCarried]]:
    """A Vertex AI provider of the original's as our `vertex` (its project and location;
    credentials: application default, with a note), and what differs."""
    params = row.provider_params
    # (`or`, as its Python server reads them: an empty string is the default too.)
    location = params.get("gcp_location") or ORIGINAL_LOCATION
    entry: dict[str, Any] = {"provider_type": "vertex", "location": location}
    if params.get("gcp_project") is not None:
        entry["project"] = params["gcp_project"]
    problems: list[NotCarried] = []
    google = _VERTEX_HOST.fullmatch(_host(row.api_base) or "") is not None
    if not google:
        entry["api_base"] = row.api_base
    elif isinstance(location, str) and _host(row.api_base) != _host(vertex_api_base(location)):
        problems.append(
            NotCarried(
                f"{what}: api_base",
                f"{row.api_base!r} is not location {location}'s endpoint: this proxy calls "
                f"{vertex_api_base(location)}",
            )
        )
    problems.append(NotCarried(f"{what}: api_key", _credentials_reason(row, google)))
    problems += _calls(what, gemini, params, mapping)
    if gemini and _ACTIONS_PARAM in params:
        problems.append(
            NotCarried(
                f"{what}: provider_params.{_ACTIONS_PARAM}",
                "not read by the original for provider_type gemini (always generateContent)",
            )
        )
    used = _VERTEX_PARAMS | {_ACTIONS_PARAM}
    beta = (
        "no anthropic-beta policy here: a Vertex AI call carries none of the client's "
        "headers, anthropic-beta included"
    )
    gcp = "not a setting the original read"
    return entry, problems + _other_params(row, what, used, gcp, beta)


def _credentials_reason(row: OriginalProvider, google: bool) -> str:
    sent = (
        "the original sent it as a bearer token (for Vertex AI an access token, valid an hour "
        "at most): not carried"
        if row.api_key
        else "none"
    )
    reason = (
        f"{sent}; imported with application default credentials: set credentials_file (a "
        "service account's key file) or credentials_json unless this host has them"
    )
    if row.api_base and not google:
        reason += (
            f"; api_base {row.api_base!r} is not Google's: this proxy sends it a Google "
            "access token, not this key"
        )
    return reason


def _calls(
    what: str, gemini: bool, params: Mapping[str, Any], mapping: Mapping[str, str | None]
) -> list[NotCarried]:
    """The mapped models whose calls go elsewhere here: the original called each on its
    provider's publisher and actions, this proxy picks both from the model name."""
    publisher = params.get("gcp_publisher") or ORIGINAL_PUBLISHER
    actions = _GENERATE if gemini else _original_actions(params.get(_ACTIONS_PARAM))
    fields: set[str] = set()
    calls: list[str] = []
    for model in sorted({m for m in mapping.values() if m is not None}):
        ours = ("anthropic", _RAW_PREDICT) if model.startswith("claude") else ("google", _GENERATE)
        if ours == (publisher, actions):
            continue
        if ours[0] != publisher:
            fields.add("provider_params.gcp_publisher")
        if ours[1] != actions:
            fields.add("provider_type" if gemini else f"provider_params.{_ACTIONS_PARAM}")
        calls.append(f"{model} on {ours[0]} with {ours[1][0]}")
    if not calls:
        return []
    default = "" if params.get("gcp_publisher") else ", its default publisher"
    why = (
        f"the original called publisher {publisher} with {actions[0]}{default}; this proxy "
        "picks both from the model name (claude-*: anthropic, rawPredict; any other: google, "
        f"generateContent) and calls {', '.join(calls)}"
    )
    return [NotCarried(f"{what}: {', '.join(sorted(fields))}", why)]


def _original_actions(value: Any) -> tuple[str, str]:
    """`gcp_vertex_actions` as the original read it (`GcpVertexConfig._extract_actions`)."""
    if not isinstance(value, Mapping):
        return _RAW_PREDICT
    return (value.get("blocking", _RAW_PREDICT[0]), value.get("streaming", _RAW_PREDICT[1]))


def _ai_studio_entry(row: OriginalProvider, what: str) -> tuple[dict[str, Any], list[NotCarried]]:
    """A `gemini` row pointed at AI Studio: the original called it with Vertex AI's paths and
    the key as a bearer token, which AI Studio does not serve; ours calls it as AI Studio."""
    entry: dict[str, Any] = {"provider_type": "gemini", "api_key": row.api_key}
    if row.api_base.rstrip("/") != GEMINI_API_BASE:
        entry["api_base"] = row.api_base
    note = NotCarried(
        f"{what}: provider_type",
        "'gemini' on Google AI Studio's host, which does not serve the original's Vertex AI "
        "paths and bearer token: imported as an AI Studio provider (the key sent as "
        "x-goog-api-key); check that it is an AI Studio key",
    )
    return entry, [note, *_other_params(row, what, set(), "not used by an AI Studio provider")]


def _host(url: str) -> str | None:
    try:
        return URL(url).host
    except ValueError:
        return None


def _other_params(
    row: OriginalProvider, what: str, used: frozenset[str] | set[str], gcp: str, beta: str = _BETA
) -> list[NotCarried]:
    """The provider_params not `used`, each with why (`gcp`: why a gcp_ one is not; `beta`:
    why its anthropic-beta policy is not)."""
    return [
        NotCarried(f"{what}: provider_params.{name}", _param_reason(name, gcp, beta))
        for name in sorted(row.provider_params)
        if name not in used
    ]


def _param_reason(name: str, gcp: str, beta: str) -> str:
    if name.startswith("gcp_"):
        return gcp
    if name.startswith("anthropic_beta"):
        return beta
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
