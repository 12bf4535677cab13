"""The upstream side: per-provider call settings compiled at config time, and the header policy
(what crosses the proxy in each direction). The client itself is
`llm_proxy.proxy.upstream_client`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from yarl import URL

from llm_proxy.config.model import Config, Provider
from llm_proxy.proxy.upstream_client import Target, target
from llm_proxy.proxy.upstream_proxy import proxy_from_env

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
    )
)
UPSTREAM_REQUEST_ID: Final = "x-upstream-request-id"

# The provider account's identity, shown to clients only when the config names it.
ACCOUNT_HEADERS: Final = frozenset(("openai-organization", "openai-project"))

_DROP_REQUEST_RAW: Final = frozenset(name.encode() for name in DROP_REQUEST)
_DROP_RESPONSE_RAW: Final = frozenset(name.encode() for name in DROP_RESPONSE)
_DROP_RESPONSE_ACCOUNT_RAW: Final = _DROP_RESPONSE_RAW | {n.encode() for n in ACCOUNT_HEADERS}

ENDPOINTS: Final = ("/chat/completions", "/completions", "/embeddings", "/responses")
RawHeaders = Sequence[tuple[bytes, bytes]]


_CACHED_TARGETS: Final = 256  # per upstream: the endpoints x models actually called


@dataclass(frozen=True, slots=True)
class Upstream:
    """How to call one provider, compiled once per config snapshot."""

    name: str
    targets: Mapping[str, Target]  # endpoint ("/chat/completions") -> compiled POST target
    models_target: Target  # GET .../models, for active health checks
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
    _cache: dict[tuple[str, str, str | None, str], Target] = field(
        default_factory=dict, repr=False, compare=False
    )

    def target(self, method: str, path: str, model: str | None = None, query: str = "") -> Target:
        """The compiled target for `method` on `path` (OpenAI's, after `/v1`: `/images/
        generations`, `/files/file-abc/content`), for the upstream `model` (None: a call
        without one), with the client's `query` string (without `?`). The fixed POST
        endpoints are compiled with the snapshot; others once, then cached (bounded)."""
        if method == "POST" and not query:
            fixed = self.targets.get(path)
            if fixed is not None:
                return fixed
        key = (method, path, model, query)
        found = self._cache.get(key)
        if found is not None:
            return found
        url = endpoint_url(self.api_base, path)
        if query:
            # The client's query string as it came (already encoded), after the base's own.
            url = URL(str(url) + ("&" if url.raw_query_string else "?") + query, encoded=True)
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


def compile_target(
    provider: Provider, config: Config, endpoint: str, method: str, env: Mapping[str, str]
) -> Target:
    url = endpoint_url(provider.api_base, endpoint)
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
    provider: Provider, config: Config, env: Mapping[str, str] = os.environ
) -> Upstream:
    total = _pick(provider, config, "request_timeout_secs") or config.request_timeout_secs
    connect = min(total, _pick(provider, config, "connect_timeout_secs") or total)
    idle = _pick(provider, config, "stream_idle_timeout_secs")
    ttft = min(total, _pick(provider, config, "ttft_timeout_secs") or total)
    authorization = f"Bearer {provider.api_key}" if provider.api_key else None
    fixed = b"Accept-Encoding: identity\r\n"
    if authorization is not None:
        fixed = b"Authorization: " + authorization.encode("latin-1") + b"\r\n" + fixed
    if provider.organization is not None:
        fixed += b"OpenAI-Organization: " + provider.organization.encode("ascii") + b"\r\n"
    if provider.project is not None:
        fixed += b"OpenAI-Project: " + provider.project.encode("ascii") + b"\r\n"
    shows_account = provider.organization is not None or provider.project is not None
    return Upstream(
        name=provider.name,
        targets={ep: compile_target(provider, config, ep, "POST", env) for ep in ENDPOINTS},
        models_target=compile_target(provider, config, "/models", "GET", env),
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
    )


def request_headers(raw: RawHeaders, upstream: Upstream) -> bytes:
    """The client's header lines minus what must not cross, plus the provider's fixed ones."""
    lines = []
    has_type = False
    for name, value in raw:
        lname = name.lower()
        if lname not in _DROP_REQUEST_RAW:
            lines.append(name + b": " + value + b"\r\n")
            has_type = has_type or lname == b"content-type"
    if not has_type:
        lines.append(b"Content-Type: application/json\r\n")  # the body was checked to be JSON
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
