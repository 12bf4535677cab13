"""Opening upstream connections: a TCP socket to the origin or to the forward proxy, its host's
addresses raced Happy Eyeballs style (RFC 8305, aiohappyeyeballs) from a DNS cache of
`dns_ttl_secs` with one lookup in flight per name; the CONNECT tunnel through an http:// proxy
(`llm_proxy.proxy.client.forward_proxy`); TLS with the origin (with or without certificate
verification). Every failure is a `ConnectError` of its kind, or `ConnectTimeout`
(`llm_proxy.proxy.client.errors`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import aiohappyeyeballs
from aiohappyeyeballs import AddrInfoType, SocketFactoryType

from llm_proxy.proxy.client import forward_proxy
from llm_proxy.proxy.client.errors import ConnectError, ConnectTimeout, connect_error
from llm_proxy.proxy.client.target import Target

HAPPY_EYEBALLS_DELAY: Final = 0.25  # RFC 8305's recommended head start per address

Resolver = Callable[[str, int], Awaitable[Sequence[AddrInfoType]]]
P = TypeVar("P", bound=asyncio.Protocol)


async def _getaddrinfo(host: str, port: int) -> list[AddrInfoType]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(infos))  # (the same address may come once per protocol)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Connector:
    """Opens connections for a `Client`, and keeps its DNS cache."""

    def __init__(
        self,
        dns_ttl_secs: float = 300.0,
        resolver: Resolver | None = None,
        socket_factory: SocketFactoryType | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`dns_ttl_secs`, `resolver`, `socket_factory` and `clock`: as `Client` documents
        them."""
        self.dns_ttl_secs = dns_ttl_secs
        self._clock = clock
        self._resolver: Resolver = resolver or _getaddrinfo
        self._socket_factory = socket_factory
        # Host names resolved once per TTL, one lookup in flight per name: a burst of new
        # connections must not queue a thousand getaddrinfo calls on the executor.
        self._dns: dict[tuple[str, int], tuple[float, list[AddrInfoType]]] = {}
        self._resolving: dict[tuple[str, int], asyncio.Future[list[AddrInfoType]]] = {}

    def lookups_in_flight(self) -> int:
        """Host names being resolved now (each shared by every connection waiting for it)."""
        return len(self._resolving)

    async def connect(
        self,
        target: Target,
        connect_secs: float | None,
        deadline: float,
        protocol: Callable[[], P],
    ) -> P:
        """A connection to `target` (through its tunnel, TLS done), its protocol made by
        `protocol()`; within `connect_secs` and never past `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        if connect_secs is not None:
            deadline = min(deadline, loop.time() + connect_secs)
        via = f" via proxy {target.proxy}" if target.proxy else ""
        to_proxy = bool(target.proxy)  # failures before the tunnel are the proxy's
        try:
            async with asyncio.timeout_at(deadline):
                sock = await self._open_socket(target.connect_host, target.connect_port)
                try:
                    if target.tunnel is not None:
                        await forward_proxy.open_tunnel(
                            sock, target.tunnel, target.proxy, f"{target.host}:{target.port}"
                        )
                    to_proxy = False
                    _, conn = await loop.create_connection(
                        protocol,
                        sock=sock,
                        ssl=target.ssl,
                        server_hostname=target.host if target.ssl is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ConnectTimeout(f"timed out connecting to {target.shown}{via}") from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            error = connect_error(exc, target.shown + via)
            if to_proxy and error.kind != "fd_exhausted":
                error = ConnectError(f"cannot connect to proxy {target.proxy}: {exc}", "proxy")
            raise error from exc
        return conn

    async def _open_socket(self, host: str, port: int) -> socket.socket:
        """A connected TCP socket to `host`: its addresses raced Happy Eyeballs style (RFC 8305,
        as aiohttp does), so an address that drops SYNs costs `HAPPY_EYEBALLS_DELAY`, not the
        connect timeout. The address that won moves to the front of the cached lookup."""
        infos = await self._addresses(host, port)
        try:
            sock = await aiohappyeyeballs.start_connection(
                infos,
                happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                interleave=1,
                socket_factory=self._socket_factory,
            )
        except OSError:
            self._dns.pop((host, port), None)  # every address failed: look again next time
            raise
        cached = self._dns.get((host, port))
        if cached is not None and len(cached[1]) > 1:
            peer = sock.getpeername()[:2]
            winner = [info for info in cached[1] if info[4][:2] == peer]
            if winner and winner[0] is not cached[1][0]:
                rest = [info for info in cached[1] if info is not winner[0]]
                self._dns[(host, port)] = (cached[0], [winner[0], *rest])
        return sock

    async def _addresses(self, host: str, port: int) -> list[AddrInfoType]:
        """The addresses to try for `host`, in the resolver's order (an IP literal as is)."""
        if _is_ip(host):
            return aiohappyeyeballs.addr_to_addr_infos((host, port)) or []
        key = (host, port)
        loop = asyncio.get_running_loop()
        cached = self._dns.get(key)
        if cached is not None and cached[0] > self._now(loop):
            return cached[1]
        pending = self._resolving.get(key)
        if pending is None:
            pending = self._resolving[key] = loop.create_task(self._resolve(host, port))
            pending.add_done_callback(self._resolved)
        return await asyncio.shield(pending)

    async def _resolve(self, host: str, port: int) -> list[AddrInfoType]:
        infos = list(await self._resolver(host, port))
        if not infos:
            raise socket.gaierror(f"no address for {host}")
        now = self._now(asyncio.get_running_loop())
        self._dns[(host, port)] = (now + self.dns_ttl_secs, infos)
        return infos

    def _now(self, loop: asyncio.AbstractEventLoop) -> float:
        """The time on the DNS cache's clock."""
        return loop.time() if self._clock is None else self._clock()

    def _resolved(self, task: asyncio.Future[list[AddrInfoType]]) -> None:
        self._resolving = {k: t for k, t in self._resolving.items() if t is not task}
        if not task.cancelled():
            task.exception()  # retrieved: its waiters may all have timed out
