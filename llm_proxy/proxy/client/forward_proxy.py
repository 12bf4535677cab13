"""HTTP forward proxies for the upstream client: which proxy a URL goes through (the
environment, as curl, requests and httpx read it), the `Proxy-Authorization` header, and the
CONNECT tunnel that https targets are reached through.

A plain-http target goes to the proxy in absolute form (`POST http://host/path HTTP/1.1`); an
https target gets a CONNECT tunnel to host:port, then TLS to the origin inside it (SNI and
certificate checked against the origin, never the proxy). Only http:// proxies are supported.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

from yarl import URL

from llm_proxy.proxy.client.errors import ConnectError

MAX_TUNNEL_HEAD: Final = 16 * 1024  # the proxy's answer to CONNECT


def proxy_from_env(url: URL, env: Mapping[str, str]) -> URL | None:
    """The forward proxy for `url` per the environment, or None to connect directly.

    - The proxy: `https_proxy` for https URLs, `http_proxy` for http ones, else `all_proxy`; for
      each name the lower-case variable wins over the upper-case one (curl, urllib/requests);
      an empty value counts as unset. `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set (a
      CGI environment, where it comes from a client's `Proxy:` header: "httpoxy"), as urllib
      does. A value without a scheme means http:// (curl, requests).
    - `no_proxy` (wins over `NO_PROXY`): a comma- or space-separated list; `*` bypasses the
      proxy for every host; `example.com` and `.example.com` match that domain and its
      subdomains (never `notexample.com`); an IP address matches itself; a CIDR (`10.0.0.0/8`,
      `fd00::/8`) matches the addresses in it; `host:port` (or `[v6]:port`) matches that port
      only. Comparisons ignore case and a trailing dot.
    - Loopback is never proxied: `localhost`, `*.localhost`, 127.0.0.0/8 and ::1 (as Go's
      net/http does; a proxy cannot reach this host's loopback, and a local mock upstream must
      keep working under a corporate `HTTPS_PROXY`).
    """
    host = (url.host or "").lower().rstrip(".")
    if not host or _is_loopback(host):
        return None
    scheme = url.scheme.lower()
    names = ["https_proxy"] if scheme == "https" else ["http_proxy"] if scheme == "http" else []
    value = None
    for name in [*names, "all_proxy"]:
        value = _env(env, name)
        if value:
            break
    if not value or _bypassed(host, url.port, _env(env, "no_proxy") or ""):
        return None
    return URL(value if "://" in value else "http://" + value)


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if not value and not (name == "http_proxy" and "REQUEST_METHOD" in env):
        value = env.get(name.upper())
    return value.strip() if value else None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    ip = _ip(host)
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port = None
        if entry.startswith("["):  # [v6] or [v6]:port
            address, _, rest = entry[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
            entry = address
        elif entry.count(":") == 1:  # host:port (a bare v6 address has several colons)
            name, _, number = entry.partition(":")
            if number.isdigit():
                entry, entry_port = name, int(number)
        if entry_port is not None and entry_port != port:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.lstrip("*").lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def authorization(proxy: URL) -> bytes:
    """The `Proxy-Authorization` header line for the proxy URL's user:password (b"" if none)."""
    if proxy.raw_user is None:
        return b""
    user = unquote(proxy.raw_user)
    password = unquote(proxy.raw_password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Proxy-Authorization: Basic {token}\r\n".encode("ascii")


def connect_request(authority: str, proxy: URL) -> bytes:
    """The CONNECT request for a tunnel to `authority` (host:port, IPv6 in brackets)."""
    return (
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n".encode("ascii")
        + authorization(proxy)
        + b"\r\n"
    )


async def open_tunnel(sock: socket.socket, request: bytes, proxy: str, authority: str) -> None:
    """Ask the proxy (connected on `sock`) for a tunnel; returns once it said 2xx. `proxy` is
    the proxy URL for messages, without credentials. Raises ConnectError(kind="proxy")."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request)
    head = b""
    # Byte-exact: the bytes after the proxy's head are the origin's (TLS), not the proxy's.
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        data = await loop.sock_recv(sock, MAX_TUNNEL_HEAD - len(head))
        if not data:
            raise ConnectError(f"proxy {proxy} closed the connection on CONNECT", "proxy")
        head += data
        if len(head) >= MAX_TUNNEL_HEAD:
            raise ConnectError(f"proxy {proxy} sent an oversized answer to CONNECT", "proxy")
    status_line = head.split(b"\n", 1)[0].strip().decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ConnectError(f"proxy {proxy} sent an invalid answer to CONNECT", "proxy")
    if not 200 <= int(parts[1]) < 300:
        raise ConnectError(
            f"proxy {proxy} refused CONNECT to {authority}: {status_line[:200]}", "proxy"
        )
    end = head.find(b"\r\n\r\n")
    rest = head[end + 4 :] if end >= 0 else head[head.find(b"\n\n") + 2 :]
    if rest:
        raise ConnectError(f"proxy {proxy} sent bytes before the tunnel was used", "proxy")
