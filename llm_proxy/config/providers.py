"""The `providers` section: names, URLs, keys, model mappings, per-provider settings."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, cast

from yarl import URL

from llm_proxy.config.checker import Checker, kind_of
from llm_proxy.config.clouds import parse_cloud
from llm_proxy.config.issues import Path
from llm_proxy.config.model import (
    ANTHROPIC_API_BASE,
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    SIGNED_TYPES,
    AuthMode,
    ModelRule,
    Provider,
    ProviderType,
    Timeouts,
    default_auth,
)
from llm_proxy.config.patterns import compile_pattern
from llm_proxy.config.sections import (
    PROVIDER_KEYS,
    parse_health_check,
    parse_pricing,
    parse_timeouts,
)


def parse_providers(check: Checker, raw: Any) -> tuple[Provider, ...]:
    if raw is None:
        return ()
    out: list[Provider] = []
    seen: set[str] = set()
    for i, item in enumerate(check.sequence(raw, ("providers",))):
        path: Path = ("providers", i)
        p = check.mapping(item, path, PROVIDER_KEYS)
        if p is not None:
            out.append(_provider(check, p, path, seen))
    return tuple(out)


def _provider(check: Checker, p: Mapping[str, Any], path: Path, seen: set[str]) -> Provider:
    """One entry of `providers` (its name joins `seen`)."""
    kind = cast(
        ProviderType,
        _choice(check, p.get("provider_type"), (*path, "provider_type"), PROVIDER_TYPES),
    )
    # The base URL of Anthropic and the clouds is known; any other type's must be given.
    check.required(p, path, "name", *(() if kind in KNOWN_BASE else ("api_base",)))
    name = check.unique_name(p, path, seen, "provider")
    api_base = _api_base(check, p.get("api_base"), (*path, "api_base"))
    if kind == "anthropic":
        api_base = _anthropic_base(check, api_base, (*path, "api_base"))
    # It becomes a header line as is: no spaces, control characters or non-ASCII.
    api_key = check.header_secret(check.optional(p, "api_key", ""), (*path, "api_key")) or ""
    proxy = _provider_proxy(check, p.get("proxy"), (*path, "proxy"))
    ids = _ids(check, p, path)
    cloud = parse_cloud(check, p, kind, path, api_base, ids["project"])
    api_base = cloud.pop("api_base")
    weight = check.positive_int(check.optional(p, "weight", 1), (*path, "weight"))
    mapping = _model_mapping(check, p.get("model_mapping"), (*path, "model_mapping"))
    auth = cast(
        AuthMode, _choice(check, p.get("auth"), (*path, "auth"), AUTH_MODES, default_auth(kind))
    )
    if auth == "none" and api_key and kind not in SIGNED_TYPES:  # (refused by parse_cloud)
        check.fail(
            (*path, "api_key"),
            "is never sent with auth: none: remove it, or use auth: bearer, api-key or x-api-key",
        )
    headers = _headers(check, p.get("headers"), (*path, "headers"), ids)
    _check_header_clashes(check, headers, kind, auth, (*path, "headers"))
    query = _query_params(check, p.get("query_params"), (*path, "query_params"), api_base)
    if kind == "azure":
        _check_azure(check, api_base, query, path)
    verify = p.get("verify_ssl")
    inject = p.get("inject_stream_usage")
    return Provider(
        name=name,
        api_base=api_base,
        api_key=api_key,
        weight=weight,
        model_mapping=mapping,
        verify_ssl=None if verify is None else check.boolean(verify, (*path, "verify_ssl")),
        timeouts=parse_timeouts(check, p, path, Timeouts()),
        health_check=parse_health_check(check, p.get("health_check"), (*path, "health_check")),
        inject_stream_usage=None
        if inject is None
        else check.boolean(inject, (*path, "inject_stream_usage")),
        organization=ids["organization"],
        pricing=parse_pricing(check, p.get("pricing"), (*path, "pricing")),
        project=ids["project"],
        proxy=proxy,
        provider_type=kind,
        auth=auth,
        headers=headers,
        query_params=query,
        anthropic_version=_anthropic_version(check, p.get("anthropic_version"), kind, path),
        default_max_tokens=check.positive_int(
            check.optional(p, "default_max_tokens", DEFAULT_MAX_TOKENS),
            (*path, "default_max_tokens"),
        ),
        max_output_tokens=None
        if p.get("max_output_tokens") is None
        else check.positive_int(p["max_output_tokens"], (*path, "max_output_tokens")),
        **cloud,
    )


def _anthropic_base(check: Checker, api_base: str, path: Path) -> str:
    """provider_type anthropic: the base URL as the Anthropic SDK takes it, the default when
    none is given. A trailing /v1 (the OpenAI SDKs' habit) is dropped: the proxy appends
    /v1/messages itself."""
    if not api_base:
        return ANTHROPIC_API_BASE
    base, mark, query = api_base.partition("?")
    base = base.rstrip("/")
    if base.endswith("/v1/messages"):
        check.fail(
            path,
            f"with provider_type anthropic is the base URL ({ANTHROPIC_API_BASE}): "
            "the proxy appends /v1/messages itself",
        )
    return base.removesuffix("/v1") + mark + query


def _anthropic_version(check: Checker, raw: Any, kind: str, path: Path) -> str:
    """`anthropic_version`: a header value, for provider_type anthropic only."""
    if raw is None:
        return DEFAULT_ANTHROPIC_VERSION
    where = (*path, "anthropic_version")
    value = _text(check, raw, where)  # an unquoted YAML date is a version too
    if kind == "vertex":
        check.fail(
            where,
            "is not sent to Vertex AI: its Anthropic models take anthropic_version "
            "vertex-2023-10-16 in the request body, which the proxy sets itself",
        )
    elif kind != "anthropic":
        check.fail(where, f"is only for provider_type anthropic (this one is {kind})")
    elif not HEADER_SAFE.fullmatch(value):
        check.fail(where, "must be printable ASCII without spaces (for example 2023-06-01)")
    return value or DEFAULT_ANTHROPIC_VERSION


def _check_header_clashes(
    check: Checker, headers: tuple[tuple[str, str], ...], kind: str, auth: str, path: Path
) -> None:
    """`headers` that would repeat what the provider's own settings send: the x-api-key or
    x-goog-api-key header when auth sends the key in it, anthropic-version when
    anthropic_version does, and (bedrock) what AWS request signing sets."""
    for name, _ in headers:
        lower = name.lower()
        if lower in ("x-api-key", "x-goog-api-key") and auth == lower:
            check.fail((*path, name), _KEY_HEADER)
        elif kind == "bedrock" and lower.startswith("x-amz-"):
            check.fail((*path, name), "is set by the request's AWS signature (SigV4)")
        elif lower == "anthropic-version" and kind == "anthropic":
            check.fail((*path, name), "is sent from anthropic_version: set that instead")


def _api_base(check: Checker, raw: Any, path: Path) -> str:
    """The provider's URL, without a trailing slash ("" when missing)."""
    if raw is None:
        return ""
    api_base = check.string(raw, path).rstrip("/")
    shown = redact_url(api_base)
    if api_base and not api_base.startswith(("http://", "https://")):
        check.fail(path, f"must start with http:// or https://: {shown}")
    elif api_base and not _has_host(api_base):
        check.fail(path, f"has no host: {shown}")
    elif api_base and _has_userinfo(api_base):
        check.fail(
            path,
            f"must not carry user:password@ ({shown}): put the provider's key in "
            "api_key (sent as Authorization: Bearer)",
        )
    elif "#" in api_base:
        check.fail(path, f"must not have a #fragment: {shown}")
    return api_base


def _ids(check: Checker, p: Mapping[str, Any], path: Path) -> dict[str, str | None]:
    """`organization` and `project` (OpenAI's header values), None when not given."""
    ids = {}
    for key in ("organization", "project"):
        value = p.get(key)
        if value is not None:
            value = check.string(value, (*path, key))
            if not HEADER_SAFE.fullmatch(value):
                check.fail((*path, key), "must be printable ASCII without spaces")
        ids[key] = value
    return ids


HEADER_SAFE: Final = re.compile(r"[!-~]+")  # printable ASCII, no spaces: a header value
# The first is the default.
PROVIDER_TYPES: Final = ("openai", "azure", "anthropic", "gemini", "vertex", "bedrock")
# Whose api_base need not be given: the type's own is the default.
KNOWN_BASE: Final = frozenset({"anthropic", "gemini", "vertex", "bedrock"})
# The default: default_auth.
AUTH_MODES: Final = ("bearer", "api-key", "x-api-key", "x-goog-api-key", "none")
# RFC 9110 5.6.2: a header name is a token.
HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A configured header value: printable ASCII, inner spaces allowed (`X-Title: My App`).
HEADER_VALUE: Final = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_KEY_HEADER: Final = (
    "carries the provider's key: set api_key and auth: bearer | api-key | x-api-key | "
    "x-goog-api-key | none"
)
_OWNED: Final = "is set by the proxy itself (from the request it forwards)"
_HOP: Final = "is a hop-by-hop header: it never crosses a proxy"
# What `headers:` may not set (lower-case name -> why): the credential `auth` decides, what
# the proxy computes for each call, and hop-by-hop headers.
FORBIDDEN_HEADERS: Final = {
    "authorization": _KEY_HEADER,
    "api-key": _KEY_HEADER,
    "host": _OWNED,
    "content-length": _OWNED,
    "content-type": _OWNED,
    "content-encoding": _OWNED,
    "accept-encoding": _OWNED,
    "expect": _OWNED,
    "proxy-authorization": "belongs to the forward proxy: put user:password in `proxy:`",
    **dict.fromkeys(
        (
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ),
        _HOP,
    ),
}
# Headers known to carry no secret: their values are shown by the admin API and written by
# export. Any other header's value is treated as a secret (masked, exported as a variable).
PUBLIC_HEADERS: Final = frozenset(
    {
        "openai-organization",
        "openai-project",
        "openai-beta",
        "anthropic-beta",
        "anthropic-version",
        "http-referer",  # OpenRouter's app attribution
        "referer",
        "x-title",  # OpenRouter's app name
        "user-agent",
    }
)


def header_is_public(name: str) -> bool:
    """Whether a configured header's value may be shown (else it is masked like a key)."""
    return name.lower() in PUBLIC_HEADERS


# Query parameters known to carry no secret (Azure's api-version): shown and exported as they
# are. Any other value is treated as a secret, like a provider key: some providers take their
# key as `?key=`.
PUBLIC_QUERY_PARAMS: Final = frozenset({"api-version"})


def query_param_is_public(name: str) -> bool:
    """Whether a configured query parameter's value may be shown (else it is masked)."""
    return name.lower() in PUBLIC_QUERY_PARAMS


def _choice(
    check: Checker, raw: Any, path: Path, allowed: tuple[str, ...], default: str | None = None
) -> str:
    """One of `allowed`; `default` (else the first) when not given or not valid."""
    fallback = allowed[0] if default is None else default
    if raw is None:
        return fallback
    value = check.string(raw, path)
    if value not in allowed:
        check.fail(path, f"must be one of {', '.join(allowed)}, got {value!r}")
        return fallback
    return value


def _text(check: Checker, raw: Any, path: Path) -> str:
    """A header or query parameter value: a string; a number or a date as written (YAML
    reads an unquoted `2024-10-21` as a date)."""
    if isinstance(raw, datetime.date):
        return raw.isoformat()
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    if not isinstance(raw, str):
        check.fail(path, f"must be a string, got {kind_of(raw)}")
        return ""
    return str(check.string(raw, path))


def _headers(
    check: Checker, raw: Any, path: Path, ids: dict[str, str | None]
) -> tuple[tuple[str, str], ...]:
    """`headers: {name: value}`. Values are never echoed in messages: they may be keys."""
    mapping = check.mapping(raw, path, None) if raw is not None else None
    if mapping is None:
        return ()
    out: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for name, raw_value in cast("Mapping[object, Any]", mapping).items():
        if not isinstance(name, str):
            continue  # reported by check.mapping
        where = (*path, name)
        lower = name.lower()
        reason = FORBIDDEN_HEADERS.get(lower)
        account = lower.removeprefix("openai-")
        if not HEADER_NAME.fullmatch(name):
            check.fail(where, "is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        elif reason is not None:
            check.fail(where, reason)
        elif lower in seen:
            check.fail(where, f"is given twice (also as {seen[lower]!r})")
        elif account in ("organization", "project") and ids[account] is not None:
            check.fail(where, f"is given twice (also as {account})")
        else:
            seen[lower] = name
            value = _text(check, raw_value, where)
            if value and not HEADER_VALUE.fullmatch(value):
                check.fail(
                    where, "must be printable ASCII, without line breaks or surrounding spaces"
                )
            out.append((name, value))
    return tuple(out)


def _query_params(
    check: Checker, raw: Any, path: Path, api_base: str
) -> tuple[tuple[str, str], ...]:
    """`query_params: {name: value}`, added (percent-encoded) to every upstream URL."""
    mapping = check.mapping(raw, path, None) if raw is not None else None
    if mapping is None:
        return ()
    try:
        in_base = set(URL(api_base).query) if api_base else set()
    except ValueError:
        in_base = set()
    out: list[tuple[str, str]] = []
    for name, raw_value in cast("Mapping[object, Any]", mapping).items():
        if not isinstance(name, str):
            continue  # reported by check.mapping
        where = (*path, name)
        if not name.strip() or not name.isprintable():
            check.fail(path, f"names must be printable, non-empty strings, got {name!r}")
            continue
        value = _text(check, raw_value, where)
        if name in in_base:
            check.fail(where, "is also in api_base's query string: give it once")
        elif not value.isprintable():
            check.fail(where, "must be printable (no control characters or line breaks)")
        out.append((name, value))
    return tuple(out)


AZURE_API_VERSION_HINT: Final = (
    "for example 2024-10-21, the latest GA version (the Responses API needs "
    "2025-03-01-preview or later)"
)


def _check_azure(
    check: Checker, api_base: str, query: tuple[tuple[str, str], ...], path: Path
) -> None:
    """provider_type azure: api_base is the resource endpoint, and api-version is given."""
    try:
        url = URL(api_base) if api_base else None
    except ValueError:
        url = None
    if url is not None and "openai" in url.path.split("/"):
        v1 = url.path.rstrip("/").endswith("/openai/v1")
        check.fail(
            (*path, "api_base"),
            "with provider_type azure is the resource endpoint (https://NAME.openai.azure.com), "
            "without /openai/...: the deployment is the model_mapping target"
            + (
                " (for Azure's v1 API, .../openai/v1, use provider_type: openai and auth: api-key)"
                if v1
                else ""
            ),
        )
    elif url is not None and url.raw_query_string:
        check.fail(
            (*path, "api_base"),
            "with provider_type azure takes no query string: put api-version in query_params",
        )
    if not any(name == "api-version" and value for name, value in query):
        check.fail(
            (*path, "query_params"),
            f"provider_type azure needs query_params: {{api-version: ...}}, "
            f"{AZURE_API_VERSION_HINT}",
        )


def _model_mapping(check: Checker, raw: Any, path: Path) -> tuple[ModelRule, ...]:
    if raw is None:
        return ()
    mapping = check.mapping(raw, path, None)
    if mapping is None:
        return ()
    rules: list[ModelRule] = []
    for key, target in mapping.items():
        if not isinstance(key, str) or not key:
            check.fail(path, f"model names must be non-empty strings, got {key!r}")
            continue
        if target is not None and (not isinstance(target, str) or not target.strip()):
            check.fail((*path, key), f"must be an upstream model name (a string), got {target!r}")
            continue
        pattern = check_pattern(check, key, (*path, key))
        rules.append(ModelRule(key=key, target=target or None, pattern=pattern))
    return tuple(rules)


def check_pattern(check: Checker, text: str, path: Path) -> re.Pattern[str] | None:
    try:
        return compile_pattern(text)
    except re.error as exc:
        check.fail(path, f"invalid regular expression {text!r}: {exc}")
        return None


def redact_url(url: str) -> str:
    """`url` with any `user:password@` replaced by `***@`: safe to print and log.

    Conservative on purpose: everything up to the last `@` after the scheme goes, so a
    malformed URL (an unencoded `/` or `@` in the password) never leaks part of it either.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _has_userinfo(url: str) -> bool:
    try:
        parsed = URL(url)
    except ValueError:
        return False
    return parsed.user is not None or parsed.password is not None


def _provider_proxy(check: Checker, raw: Any, path: Path) -> str | Literal[False] | None:
    """`proxy:` of a provider: an http:// URL (user:password@ allowed, for the proxy), or
    false/"direct" for none at all."""
    if raw is None:
        return None
    if raw is False or raw == "direct":
        return False
    value = check.string(raw, path)
    try:
        parsed = URL(value)
    except ValueError:
        parsed = URL()
    if parsed.scheme != "http" or not parsed.host:
        check.fail(path, f"must be an http:// proxy URL or false, got {redact_url(value)!r}")
        return None
    return value


def _has_host(url: str) -> bool:
    try:
        return bool(URL(url).host)
    except ValueError:
        return False
