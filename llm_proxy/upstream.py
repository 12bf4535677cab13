"""The upstream side: one pooled ClientSession per app, per-provider call settings compiled at
config time, and the header policy (what crosses the proxy in each direction)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from llm_proxy.config import Config, Provider

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
# Never forwarded upstream: the client's credentials (the provider's key replaces them), and
# framing/encoding the client session computes itself.
DROP_REQUEST: Final = _HOP_BY_HOP | frozenset(
    (
        "host",
        "authorization",
        "x-api-key",
        "api-key",
        "content-length",
        "accept-encoding",
        "expect",
        "cookie",
        "x-request-id",
        "forwarded",
        "x-forwarded-for",
        "x-real-ip",
    )
)
# Not copied back to the client: framing is ours (the body may have been decompressed), and
# the upstream's request id is renamed so it does not clash with ours.
DROP_RESPONSE: Final = _HOP_BY_HOP | frozenset(
    (
        "content-length",
        "content-encoding",
        "date",
        "server",
        "x-request-id",
        "set-cookie",
        "alt-svc",
        "strict-transport-security",
    )
)
UPSTREAM_REQUEST_ID: Final = "x-upstream-request-id"

ENDPOINTS: Final = ("/chat/completions", "/completions", "/embeddings", "/responses")


@dataclass(frozen=True, slots=True)
class Upstream:
    """How to call one provider, compiled once per config snapshot."""

    name: str
    urls: Mapping[str, URL]  # endpoint ("/chat/completions") -> full URL, parsed once
    models_url: URL  # for active health checks
    authorization: str | None
    ssl: bool  # False: skip certificate verification
    timeout: aiohttp.ClientTimeout  # non-streaming calls: connect and total
    stream_timeout: aiohttp.ClientTimeout  # streams: connect, total, and idle between chunks
    # To the first byte (streams: the first event); None when only the total timeout applies.
    ttft_secs: float | None
    timeout_secs: float  # total
    inject_stream_usage: bool  # ask for a usage chunk in streams (stripped before the client)


def _pick(provider: Provider, config: Config, name: str) -> float | None:
    value: float | None = getattr(provider.timeouts, name)
    return value if value is not None else getattr(config.timeouts, name)


def compile_upstream(provider: Provider, config: Config) -> Upstream:
    total = _pick(provider, config, "request_timeout_secs") or config.request_timeout_secs
    connect = min(total, _pick(provider, config, "connect_timeout_secs") or total)
    idle = _pick(provider, config, "stream_idle_timeout_secs")
    ttft = min(total, _pick(provider, config, "ttft_timeout_secs") or total)
    verify = config.verify_ssl if provider.verify_ssl is None else provider.verify_ssl
    return Upstream(
        name=provider.name,
        urls={ep: URL(provider.api_base + ep) for ep in ENDPOINTS},
        models_url=URL(provider.api_base + "/models"),
        authorization=f"Bearer {provider.api_key}" if provider.api_key else None,
        ssl=verify,
        timeout=aiohttp.ClientTimeout(total=total, sock_connect=connect),
        stream_timeout=aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=idle),
        ttft_secs=ttft if ttft < total else None,
        timeout_secs=total,
        inject_stream_usage=config.inject_stream_usage
        if provider.inject_stream_usage is None
        else provider.inject_stream_usage,
    )


def request_headers(
    incoming: CIMultiDictProxy[str], upstream: Upstream, stream: bool
) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        if name.lower() not in DROP_REQUEST:
            out.add(name, value)
    if upstream.authorization is not None:
        out["Authorization"] = upstream.authorization
    if "Content-Type" not in out:
        out["Content-Type"] = "application/json"  # the body was checked to be a JSON object
    # Streams must not be compressed (it delays the first token); for JSON bodies let the
    # client session negotiate and decompress, since usage is read from the body.
    if stream:
        out["Accept-Encoding"] = "identity"
    return out


def response_headers(upstream_headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream_headers.items():
        if name.lower() not in DROP_RESPONSE:
            out.add(name, value)
    request_id = upstream_headers.get("x-request-id")
    if request_id is not None:
        out[UPSTREAM_REQUEST_ID] = request_id
    return out


def create_session(limit: int = 0, limit_per_host: int = 0) -> aiohttp.ClientSession:
    """The app's one session: pooled keep-alive connections, no cookie jar (a proxy must not
    carry state between clients), and no default timeout (each call passes its own)."""
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        ttl_dns_cache=300,
        keepalive_timeout=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )
