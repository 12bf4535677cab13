"""An upstream URL compiled once per config snapshot into a `Target`: the pool key (`Origin`),
the request line and Host header as bytes, where the TCP connection goes (the origin, or an
http:// forward proxy), and the TLS context.

A request then writes these bytes, the forwarded headers and the body in one write.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field

from yarl import URL

from llm_proxy.proxy.client import forward_proxy

Origin = tuple[str, int, bool, bool, str]  # the pool key: host, port, tls, verify, proxy


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream URL and method, compiled once per config snapshot."""

    origin: Origin
    host: str  # the origin's (TLS checks its certificate against it)
    port: int
    ssl: ssl.SSLContext | None
    head: bytes = field(repr=False)  # request line and Host (and Proxy-Authorization) header
    url: str  # never with credentials; its query string may hold one (`?key=`): never logged
    connect_host: str = ""  # where the TCP connection goes: the origin, or the proxy
    connect_port: int = 0
    tunnel: bytes | None = field(default=None, repr=False)  # CONNECT request (https via proxy)
    proxy: str = ""  # the proxy URL for messages, without credentials ("" if direct)
    shown: str = ""  # `url` for messages and logs: without its query string


def target(url: URL, method: str = "POST", verify: bool = True, proxy: URL | None = None) -> Target:
    """Compile `url` (path and query string as given: the request line carries both) into a
    `Target`, reached directly or through the http:// forward `proxy` (its user:password, if
    any, sent as `Proxy-Authorization: Basic`). Raises ValueError for anything but an
    absolute http(s) URL, for a URL with user:password@ (credentials go in headers, never
    silently dropped), and for a proxy that is not http://host[:port]."""
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an http(s) URL: {url.with_user(None)}")
    if url.raw_user is not None or url.raw_password is not None:
        raise ValueError(
            f"user:password@ is not supported in an upstream URL: {url.with_user(None)}"
        )
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    host_header = url.host_port_subcomponent
    if proxy is None:
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
        return Target(
            origin=(url.host, port, tls, verify, ""),
            host=url.host,
            port=port,
            ssl=_ssl_context(verify) if tls else None,
            head=head,
            url=str(url),
            shown=str(url.with_query(None)),
            connect_host=url.host,
            connect_port=port,
        )
    if proxy.scheme != "http" or not proxy.host or proxy.raw_path not in ("", "/"):
        raise ValueError(f"not an http://host[:port] forward proxy: {proxy.with_user(None)}")
    auth = forward_proxy.authorization(proxy)
    shown = str(proxy.with_user(None).with_path(""))
    # Connections through a proxy are pooled apart, and apart per proxy credentials (a tunnel
    # is authorized once, when it is opened): the key carries a digest, never the secret.
    key = f"{proxy.host}:{proxy.port or 80}" + (
        "#" + hashlib.sha256(auth).hexdigest()[:16] if auth else ""
    )
    if tls:
        host = f"[{url.host}]" if ":" in url.host else url.host
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
        tunnel: bytes | None = forward_proxy.connect_request(f"{host}:{port}", proxy)
    else:  # absolute form: the proxy forwards it, with the credentials sent on every request
        absolute = f"http://{host_header}{url.raw_path_qs}"
        head = f"{method} {absolute} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii") + auth
        tunnel = None
    return Target(
        origin=(url.host, port, tls, verify, key),
        host=url.host,
        port=port,
        ssl=_ssl_context(verify) if tls else None,
        head=head,
        url=str(url),
        shown=str(url.with_query(None)),
        connect_host=proxy.host,
        connect_port=proxy.port or 80,
        tunnel=tunnel,
        proxy=shown,
    )


_SSL_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def _ssl_context(verify: bool) -> ssl.SSLContext:
    context = _SSL_CONTEXTS.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _SSL_CONTEXTS[verify] = context
    return context
