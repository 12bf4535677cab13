"""Every way the upstream client fails, as one class per cause (httpcore's and aiohttp's model).

Callers catch by class, never by message. Each class has a `kind` from a small fixed set, fit for
a metric label; `str(exc)` is a detail safe to log (it never carries URL credentials).

    UpstreamError                      kind
    ├── ConnectError                   per instance: dns, refused, unreachable, tls,
    │                                  fd_exhausted, proxy, connect (any other socket error)
    ├── ProtocolError                  protocol: the answer is not valid HTTP/1.1 (or too large)
    ├── Disconnected                   disconnected: closed or reset before the answer was whole
    ├── PoolTimeout                    pool_full: no connection slot for the origin in time
    ├── ClientClosed                   client_closed: the client was closed (shutdown)
    └── UpstreamTimeout (also TimeoutError)
        ├── ConnectTimeout             connect_timeout
        ├── FirstByteTimeout           first_byte_timeout: no status line and headers in time
        └── ReadTimeout                read_timeout: the body stalled (idle) or ran past the total
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Final


class UpstreamError(Exception):
    """The upstream failed; `kind` says how."""

    kind: str = "upstream"


class ConnectError(UpstreamError):
    """No connection was made (nothing of the request was sent)."""

    def __init__(self, message: str, kind: str = "connect") -> None:
        super().__init__(message)
        self.kind = kind


class ProtocolError(UpstreamError):
    kind = "protocol"


class Disconnected(UpstreamError):
    kind = "disconnected"


class PoolTimeout(UpstreamError):
    kind = "pool_full"


class ClientClosed(UpstreamError):
    kind = "client_closed"


class UpstreamTimeout(UpstreamError, TimeoutError):
    kind = "timeout"


class ConnectTimeout(UpstreamTimeout):
    kind = "connect_timeout"


class FirstByteTimeout(UpstreamTimeout):
    kind = "first_byte_timeout"


class ReadTimeout(UpstreamTimeout):
    kind = "read_timeout"


_ERRNO_KINDS: Final = {
    errno.ECONNREFUSED: "refused",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.EMFILE: "fd_exhausted",
    errno.ENFILE: "fd_exhausted",
}


def connect_kind(exc: BaseException) -> str:
    """The `ConnectError.kind` for an exception raised while connecting."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):  # (SSLError is an OSError too)
        return "tls"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_KINDS.get(exc.errno, "connect")
    return "connect"


# The cause in words first: the socket's own text varies by loop ("Connect call failed" on
# asyncio's sock_connect for a refused connection).
_SAYS: Final = {
    "dns": "unknown host",
    "refused": "connection refused",
    "unreachable": "host or network unreachable",
    "tls": "TLS handshake failed",
    "fd_exhausted": "out of file descriptors (raise the open files limit)",
}


def connect_error(exc: BaseException, url: str) -> ConnectError:
    """The ConnectError for `exc`, raised while connecting to `url` (no credentials in it)."""
    kind = connect_kind(exc)
    says = _SAYS.get(kind)
    message = f"cannot connect to {url}: " + (f"{says}: {exc}" if says else str(exc))
    return ConnectError(message, kind)
