"""The upstream side: per-provider call settings compiled at config time, and the header policy
(what crosses the proxy in each direction). The client itself is
`llm_proxy.proxy.client`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, unquote_plus

from yarl import URL

from llm_proxy import errors
from llm_proxy.config.model import Config, Provider
from llm_proxy.proxy.client import Target, proxy_from_env, target
from llm_proxy.proxy.cloud import BEDROCK, CLOUD_TYPES, GEMINI, Cloud, compile_cloud
from llm_proxy.proxy.credentials import CredentialRegistry

# Lower-case names (header names arrive in any case; `istr` does not hash case-insensitively).
# Hop-by-hop headers (RFC 9110 7.6.1) plus what the proxy owns itself.
_HOP_BY_HOP: Final = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
# Never forwarded upstream: the client's credentials (the provider's key replaces them) and
# account selectors (the provider config's organization/project replace them), framing the
# proxy computes itself, and encodings (the body goes as read, inflated; answers: identity).
DROP_REQUEST: Final = _HOP_BY_HOP | frozenset(
    (
        "host",
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "openai-organization",
        "openai-project",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "expect",
        "cookie",
        "x-request-id",
        "forwarded",
        "x-forwarded-for",
        "x-real-ip",
    )
)
# Not copied back to the client: framing is ours, and the upstream's request id is renamed so it
# does not clash with ours. (Content-Encoding passes: bodies are relayed as they come.)
DROP_RESPONSE: Final = _HOP_BY_HOP | frozenset(
    (
        "content-length",
        "date",
        "server",
        "x-request-id",
        "set-cookie",
        "alt-svc",
        "strict-transport-security",
        # The proxy's own (an upstream that is itself an llm-proxy sends them too).
        "x-llm-proxy-overhead-ms",
        "x-llm-proxy-provider",
        "x-llm-proxy-model",
        "x-llm-proxy-cache",
    )
)
UPSTREAM_REQUEST_ID: Final = "x-upstream-request-id"
# Anthropic's protocol headers mean nothing to an OpenAI-compatible upstream (an Anthropic
# client's call translated for one): not sent there.
_ANTHROPIC_HEADERS: Final = frozenset(("anthropic-version", "anthropic-beta"))

# The protocols an upstream speaks (`Upstream.protocol`).
OPENAI: Final = "openai"
ANTHROPIC: Final = "anthropic"

# The provider account's identity, shown to clients only when the config names it.
ACCOUNT_HEADERS: Final = frozenset(("openai-organization", "openai-project"))

_DROP_REQUEST_RAW: Final = frozenset(name.encode() for name in DROP_REQUEST)
_DROP_REQUEST_OPENAI_RAW: Final = _DROP_REQUEST_RAW | {n.encode() for n in _ANTHROPIC_HEADERS}
_TRACE_HEADERS: Final = frozenset((b"traceparent", b"tracestate"))
_DROP_RESPONSE_RAW: Final = frozenset(name.encode() for name in DROP_RESPONSE)
# Anthropic names the account an answer was billed to: hidden from clients as OpenAI's are.
_ACCOUNT_RESPONSE: Final = ACCOUNT_HEADERS | {"anthropic-organization-id"}
_DROP_RESPONSE_ACCOUNT_RAW: Final = _DROP_RESPONSE_RAW | {n.encode() for n in _ACCOUNT_RESPONSE}

ENDPOINTS: Final = ("/chat/completions", "/completions", "/embeddings", "/responses")
# An Anthropic upstream's (after its api_base and `/v1`).
ANTHROPIC_ENDPOINTS: Final = ("/messages", "/messages/count_tokens")
RawHeaders = Sequence[tuple[bytes, bytes]]
_JSON_LINE: Final = b"Content-Type: application/json\r\n"

# Azure OpenAI (dated API versions): these paths are per deployment,
# `{api_base}/openai/deployments/{deployment}{path}`; every other one is `{api_base}/openai{path}`
# (files, batches, responses, models). The same split as the official SDK's AzureOpenAI client.
AZURE_DEPLOYMENT_PATHS: Final = frozenset(
    (
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/audio/transcriptions",
        "/audio/translations",
        "/audio/speech",
        "/images/generations",
        "/images/edits",
    )
)


_CACHED_TARGETS: Final = 256  # per upstream: the endpoints x models actually called


@dataclass(frozen=True, slots=True)
class Upstream:
    """How to call one provider, compiled once per config snapshot."""

    name: str
    targets: Mapping[str, Target]  # endpoint ("/chat/completions") -> compiled POST target
    models_target: Target | None  # GET .../models, for active health checks (None: none)
    # Header lines every call carries: the provider's key, and no compression (bytes are
    # relayed as they come, and usage is read from them).
    fixed_headers: bytes
    connect_secs: float
    # To the first byte (streams: the first event); None when only the total timeout applies.
    ttft_secs: float | None
    idle_secs: float | None  # between two chunks of a stream
    timeout_secs: float  # total
    inject_stream_usage: bool  # ask for a usage chunk in streams (stripped before the client)
    drop_response: frozenset[bytes]  # lower-case header names the client never sees
    # For `target()`: how to build any other URL of this provider.
    api_base: str = ""
    verify: bool = True
    proxy: URL | None = field(default=None, repr=False)
    # Lower-case header names never taken from the client: the shared policy plus the
    # provider's own `headers` (which clients cannot override).
    drop_request: frozenset[bytes] = field(default=_DROP_REQUEST_RAW, repr=False)
    query: str = ""  # the provider's `query_params`, encoded (without `?`)
    query_names: frozenset[str] = frozenset()  # a client's parameters of these names are dropped
    path_prefix: str = ""  # before every path: "/openai" for Azure
    deployment_paths: frozenset[str] = frozenset()  # paths per deployment (Azure)
    # OPENAI, ANTHROPIC, GEMINI or BEDROCK: what the upstream speaks (a Vertex provider: see
    # `speaks`, per model).
    protocol: str = OPENAI
    # ANTHROPIC: the `anthropic-version` header line sent when the client sent none.
    version_line: bytes = b""
    # For a translated request: the max_tokens sent when the client gave none (Anthropic
    # requires one), and a cap on it (None: none).
    default_max_tokens: int = 4096
    max_output_tokens: int | None = None
    # For traces: the config's provider_type and the host and port called.
    provider_type: str = "openai"
    server: tuple[str, int] = ("", 0)
    # `drop_request` and the client's trace headers (tracing on: the attempt sends its own).
    drop_traced: frozenset[bytes] = field(default=_DROP_REQUEST_RAW | _TRACE_HEADERS, repr=False)
    # Google AI Studio, Vertex AI and Amazon Bedrock: their per-model URLs and credentials.
    cloud: Cloud | None = field(default=None, repr=False)
    _cache: dict[tuple[str, str, str | None, str], Target] = field(
        default_factory=dict, repr=False, compare=False
    )

    def speaks(self, model: str) -> str:
        """The protocol the upstream speaks for `model`."""
        return self.protocol if self.cloud is None else self.cloud.protocol(model)

    def target(self, method: str, path: str, model: str | None = None, query: str = "") -> Target:
        """The compiled target for `method` on `path` (OpenAI's, after `/v1`: `/images/
        generations`, `/files/file-abc/content`), for the upstream `model` (None: a call
        without one; for Azure, the deployment), with the client's `query` string (without
        `?`). The fixed POST endpoints are compiled with the snapshot (a dict lookup); others,
        Azure's per-deployment ones included, once, then cached (bounded)."""
        if self.cloud is not None:
            raise errors.ProxyError(
                400,
                f"Provider {self.name!r} ({self.provider_type}) answers chat completions, "
                f"embeddings and the Messages API only, not {path}.",
                code="unsupported_endpoint",
            )
        if method == "POST" and not query:
            fixed = self.targets.get(path)
            if fixed is not None:
                return fixed
        deployment = model if path in self.deployment_paths else None
        key = (method, path, deployment, query)
        found = self._cache.get(key)
        if found is not None:
            return found
        url = provider_url(self.api_base, self.path_prefix, path, deployment)
        url = with_query(url, self.query, _client_query(query, self.query_names))
        compiled = target(url, method, self.verify, self.proxy)
        if len(self._cache) >= _CACHED_TARGETS:
            self._cache.clear()
        self._cache[key] = compiled
        return compiled


def _pick(provider: Provider, config: Config, name: str) -> float | None:
    value: float | None = getattr(provider.timeouts, name)
    return value if value is not None else getattr(config.timeouts, name)


def endpoint_url(api_base: str, endpoint: str) -> URL:
    """`endpoint` appended to the path of `api_base`, before its query string if it has one
    (Azure OpenAI: `.../deployments/d?api-version=2024-06-01`)."""
    base, mark, query = api_base.partition("?")
    return URL(base.rstrip("/") + endpoint + mark + query)


def provider_url(api_base: str, prefix: str, path: str, deployment: str | None = None) -> URL:
    """`api_base` + `prefix` + `path`; with a `deployment`, Azure's
    `{prefix}/deployments/{deployment}{path}`, the name percent-encoded as one path segment
    (a client may choose it: `../files` must stay a name, never climb the path). A dot
    segment is a 400: `%2E%2E` is `..` to a server that normalises percent-encoding."""
    if deployment is None:
        return endpoint_url(api_base, prefix + path)
    if deployment in (".", ".."):
        raise errors.bad_param("model", f"{deployment!r} is not a deployment name.")
    segment = quote(deployment, safe="")
    base = endpoint_url(api_base, prefix + "/deployments")
    url = base.with_path(base.raw_path + "/" + segment + path, encoded=True)
    return URL(f"{url}?{base.raw_query_string}", encoded=True) if base.raw_query_string else url


def with_query(url: URL, *parts: str) -> URL:
    """`url` with encoded query `parts` appended (after its own query string, if any)."""
    extra = "&".join(part for part in parts if part)
    if not extra:
        return url
    return URL(str(url) + ("&" if url.raw_query_string else "?") + extra, encoded=True)


def _client_query(query: str, drop: frozenset[str]) -> str:
    """The client's query string as it came (already encoded), without the parameters the
    provider's `query_params` set (Azure's `api-version` is the operator's choice)."""
    if not query or not drop:
        return query
    kept = (p for p in query.split("&") if unquote_plus(p.partition("=")[0]) not in drop)
    return "&".join(kept)


def _encoded_query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params)


def _path_prefix(provider: Provider) -> str:
    """What comes between api_base and a path: Azure's `/openai`, Anthropic's `/v1` (its
    api_base is the SDK's, without it)."""
    if provider.provider_type == "azure":
        return "/openai"
    return "/v1" if provider.provider_type == ANTHROPIC else ""


def compile_target(
    provider: Provider, config: Config, endpoint: str, method: str, env: Mapping[str, str]
) -> Target:
    prefix = _path_prefix(provider)
    url = with_query(
        endpoint_url(provider.api_base, prefix + endpoint), _encoded_query(provider.query_params)
    )
    verify = config.verify_ssl if provider.verify_ssl is None else provider.verify_ssl
    return target(url, method, verify, _proxy_for(provider, config, url, env))


def _proxy_for(provider: Provider, config: Config, url: URL, env: Mapping[str, str]) -> URL | None:
    """The provider's `proxy:`; else, with `trust_env`, the environment's (*_PROXY, NO_PROXY)."""
    if provider.proxy is False:
        return None
    if provider.proxy is not None:
        return URL(provider.proxy)
    return proxy_from_env(url, env) if config.trust_env else None


def compile_upstream(
    provider: Provider,
    config: Config,
    env: Mapping[str, str] = os.environ,
    credentials: CredentialRegistry | None = None,
) -> Upstream:
    """How to call `provider`. (`credentials`: where Vertex's tokens and Bedrock's signers
    live, shared across config reloads; required for those types.)"""
    if provider.provider_type in CLOUD_TYPES:
        return _compile_cloud_upstream(provider, config, env, credentials)
    total, connect, idle, ttft = _timeouts(provider, config)
    headers = _provider_headers(provider)
    fixed = _lines(headers)
    configured = {name.lower() for name, _ in headers}
    shows_account = not ACCOUNT_HEADERS.isdisjoint(configured)
    azure = provider.provider_type == "azure"
    anthropic = provider.provider_type == ANTHROPIC
    # Azure's per-deployment paths are compiled per model, on first use (see `target()`).
    fixed_endpoints = [ep for ep in ENDPOINTS if not (azure and ep in AZURE_DEPLOYMENT_PATHS)]
    if anthropic:
        fixed_endpoints = list(ANTHROPIC_ENDPOINTS)
    drop_request = _DROP_REQUEST_RAW if anthropic else _DROP_REQUEST_OPENAI_RAW
    models_target = compile_target(provider, config, "/models", "GET", env)
    return Upstream(
        name=provider.name,
        targets={ep: compile_target(provider, config, ep, "POST", env) for ep in fixed_endpoints},
        models_target=models_target,
        fixed_headers=fixed,
        connect_secs=connect,
        ttft_secs=ttft if ttft < total else None,
        idle_secs=idle,
        timeout_secs=total,
        inject_stream_usage=config.inject_stream_usage
        if provider.inject_stream_usage is None
        else provider.inject_stream_usage,
        drop_response=_DROP_RESPONSE_RAW if shows_account else _DROP_RESPONSE_ACCOUNT_RAW,
        api_base=provider.api_base,
        verify=config.verify_ssl if provider.verify_ssl is None else provider.verify_ssl,
        proxy=_proxy_for(provider, config, endpoint_url(provider.api_base, "/"), env),
        drop_request=drop_request | {name.encode() for name in configured},
        drop_traced=drop_request | _TRACE_HEADERS | {name.encode() for name in configured},
        query=_encoded_query(provider.query_params),
        query_names=frozenset(name for name, _ in provider.query_params),
        path_prefix=_path_prefix(provider),
        deployment_paths=AZURE_DEPLOYMENT_PATHS if azure else frozenset(),
        protocol=ANTHROPIC if anthropic else OPENAI,
        version_line=_version_line(provider, configured) if anthropic else b"",
        default_max_tokens=provider.default_max_tokens,
        max_output_tokens=provider.max_output_tokens,
        provider_type=provider.provider_type,
        server=(models_target.host, models_target.port),
    )


def _timeouts(provider: Provider, config: Config) -> tuple[float, float, float | None, float]:
    """Total, connect, stream idle and first-byte timeouts: the provider's, else the global
    ones; connect and first byte bounded by the total."""
    total = _pick(provider, config, "request_timeout_secs") or config.request_timeout_secs
    connect = min(total, _pick(provider, config, "connect_timeout_secs") or total)
    idle = _pick(provider, config, "stream_idle_timeout_secs")
    ttft = min(total, _pick(provider, config, "ttft_timeout_secs") or total)
    return total, connect, idle, ttft


def _lines(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)


def _compile_cloud_upstream(
    provider: Provider,
    config: Config,
    env: Mapping[str, str],
    credentials: CredentialRegistry | None,
) -> Upstream:
    """A `gemini`, `vertex` or `bedrock` provider: targets compiled per model (`Cloud`)."""
    total, connect, idle, ttft = _timeouts(provider, config)
    fixed = _lines(_provider_headers(provider))
    verify = config.verify_ssl if provider.verify_ssl is None else provider.verify_ssl
    proxy = _proxy_for(provider, config, endpoint_url(provider.api_base, "/"), env)
    cloud = compile_cloud(provider, verify, proxy, credentials, env)
    listing = cloud.list_models()
    origin = URL(provider.api_base)
    protocol = BEDROCK if provider.provider_type == "bedrock" else GEMINI
    return Upstream(
        name=provider.name,
        targets={},
        models_target=listing.target if listing is not None else None,
        fixed_headers=fixed,
        connect_secs=connect,
        ttft_secs=ttft if ttft < total else None,
        idle_secs=idle,
        timeout_secs=total,
        inject_stream_usage=False,
        drop_response=_DROP_RESPONSE_ACCOUNT_RAW,
        api_base=provider.api_base,
        verify=verify,
        proxy=proxy,
        protocol=protocol,
        default_max_tokens=provider.default_max_tokens,
        max_output_tokens=provider.max_output_tokens,
        provider_type=provider.provider_type,
        server=(origin.host or "", origin.port or 0),
        cloud=cloud,
    )


def _version_line(provider: Provider, configured: set[str]) -> bytes:
    """The `anthropic-version` line for a client that sends none; none when the provider's
    own `headers` set one (then it is fixed, as every configured header is)."""
    if "anthropic-version" in configured:
        return b""
    return f"anthropic-version: {provider.anthropic_version}\r\n".encode("latin-1")


def _provider_headers(provider: Provider) -> list[tuple[str, str]]:
    """The header lines every call to `provider` carries, in order: its credential as `auth`
    says (none without a key), no compression (bytes are relayed as they come, and usage is
    read from them), the account selectors, then its own `headers`."""
    lines: list[tuple[str, str]] = []
    if provider.api_key and provider.auth == "bearer":
        lines.append(("Authorization", f"Bearer {provider.api_key}"))
    elif provider.api_key and provider.auth == "api-key":
        lines.append(("api-key", provider.api_key))
    elif provider.api_key and provider.auth == "x-api-key":
        lines.append(("x-api-key", provider.api_key))
    elif provider.api_key and provider.auth == "x-goog-api-key":
        lines.append(("x-goog-api-key", provider.api_key))
    lines.append(("Accept-Encoding", "identity"))
    if provider.provider_type in CLOUD_TYPES:  # (a Vertex `project` is Google's, in the URL)
        lines.extend(provider.headers)
        return lines
    if provider.organization is not None:
        lines.append(("OpenAI-Organization", provider.organization))
    if provider.project is not None:
        lines.append(("OpenAI-Project", provider.project))
    lines.extend(provider.headers)
    return lines


def request_headers(raw: RawHeaders, upstream: Upstream, trace: bytes | None = None) -> bytes:
    """The client's header lines minus what must not cross, plus the provider's fixed ones
    (and, for an Anthropic upstream, `anthropic-version` when the client sent none). With
    tracing on, `trace` is the attempt's `traceparent` (and `tracestate`) lines, sent in place
    of the client's."""
    if upstream.cloud is not None:
        # A cloud API gets none of the client's headers: its own (and the call's credential,
        # added by the caller) only.
        if trace is None:
            return _JSON_LINE + upstream.fixed_headers
        return _JSON_LINE + trace + upstream.fixed_headers
    if upstream.protocol == ANTHROPIC:
        return _anthropic_headers(raw, upstream, trace)
    lines = []
    has_type = False
    drop = upstream.drop_request if trace is None else upstream.drop_traced
    for name, value in raw:
        lname = name.lower()
        if lname not in drop:
            lines.append(name + b": " + value + b"\r\n")
            has_type = has_type or lname == b"content-type"
    if not has_type:
        lines.append(b"Content-Type: application/json\r\n")  # the body was checked to be JSON
    if trace is not None:
        lines.append(trace)
    lines.append(upstream.fixed_headers)
    return b"".join(lines)


def _anthropic_headers(raw: RawHeaders, upstream: Upstream, trace: bytes | None) -> bytes:
    """As `request_headers`, and the body's type is JSON whatever the client said (it was
    checked to be JSON, or translated into it)."""
    lines = []
    has_version = False
    drop = upstream.drop_request if trace is None else upstream.drop_traced
    for name, value in raw:
        lname = name.lower()
        if lname in drop or lname == b"content-type":
            continue
        lines.append(name + b": " + value + b"\r\n")
        has_version = has_version or lname == b"anthropic-version"
    lines.append(b"Content-Type: application/json\r\n")
    if not has_version:
        lines.append(upstream.version_line)  # (b"" when the provider's headers set it)
    if trace is not None:
        lines.append(trace)
    lines.append(upstream.fixed_headers)
    return b"".join(lines)


def response_headers(raw: RawHeaders, upstream: Upstream) -> list[tuple[str, str]]:
    """The upstream's headers the client gets; its request id renamed."""
    out: list[tuple[str, str]] = []
    drop = upstream.drop_response
    for name, value in raw:
        lname = name.lower()
        if lname in drop:
            if lname == b"x-request-id":
                out.append((UPSTREAM_REQUEST_ID, value.decode("latin-1")))
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    return out
