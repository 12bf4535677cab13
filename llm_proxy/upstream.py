"""The upstream side: per-provider call settings compiled at config time, and the header policy
(what crosses the proxy in each direction). The client itself is `llm_proxy.upstream_client`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from multidict import CIMultiDict
from yarl import URL

from llm_proxy.config import Config, Provider
from llm_proxy.upstream_client import Target, target

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
# Never forwarded upstream: the client's credentials (the provider's key replaces them),
# framing the proxy computes itself, and encodings (the proxy asks for identity).
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

_DROP_REQUEST_RAW: Final = frozenset(name.encode() for name in DROP_REQUEST)
_DROP_RESPONSE_RAW: Final = frozenset(name.encode() for name in DROP_RESPONSE)

ENDPOINTS: Final = ("/chat/completions", "/completions", "/embeddings", "/responses")
RawHeaders = Sequence[tuple[bytes, bytes]]


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


def _pick(provider: Provider, config: Config, name: str) -> float | None:
    value: float | None = getattr(provider.timeouts, name)
    return value if value is not None else getattr(config.timeouts, name)


def compile_upstream(provider: Provider, config: Config) -> Upstream:
    total = _pick(provider, config, "request_timeout_secs") or config.request_timeout_secs
    connect = min(total, _pick(provider, config, "connect_timeout_secs") or total)
    idle = _pick(provider, config, "stream_idle_timeout_secs")
    ttft = min(total, _pick(provider, config, "ttft_timeout_secs") or total)
    verify = config.verify_ssl if provider.verify_ssl is None else provider.verify_ssl
    authorization = f"Bearer {provider.api_key}" if provider.api_key else None
    fixed = b"Accept-Encoding: identity\r\n"
    if authorization is not None:
        fixed = b"Authorization: " + authorization.encode("latin-1") + b"\r\n" + fixed
    return Upstream(
        name=provider.name,
        targets={ep: target(URL(provider.api_base + ep), "POST", verify) for ep in ENDPOINTS},
        models_target=target(URL(provider.api_base + "/models"), "GET", verify),
        fixed_headers=fixed,
        connect_secs=connect,
        ttft_secs=ttft if ttft < total else None,
        idle_secs=idle,
        timeout_secs=total,
        inject_stream_usage=config.inject_stream_usage
        if provider.inject_stream_usage is None
        else provider.inject_stream_usage,
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


def response_headers(raw: RawHeaders) -> CIMultiDict[str]:
    """The upstream's headers the client gets; its request id renamed."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in raw:
        lname = name.lower()
        if lname in _DROP_RESPONSE_RAW:
            if lname == b"x-request-id":
                out.add(UPSTREAM_REQUEST_ID, value.decode("latin-1"))
            continue
        out.add(name.decode("latin-1"), value.decode("latin-1"))
    return out
