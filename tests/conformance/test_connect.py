"""Connecting: a first address that silently drops SYNs (Happy Eyeballs moves on)."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import pytest

from llm_proxy import app as app_module
from llm_proxy.proxy.client import Client
from tests.conformance.conftest import assert_answered, assert_once, chat, new_id, seen
from tests.conformance.servers import Server
from tests.helpers import ProxyFactory, make_config, provider


@pytest.fixture
def blackhole(backend: Server) -> Iterator[tuple[str, int]]:
    """127.0.0.2 on the backend's port, dropping every SYN: a listener that never accepts,
    its one-slot queue already full (Linux then drops new SYNs silently)."""
    port = int(backend.url.rsplit(":", 1)[1])
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.2", port))
        listener.listen(0)
        filler.connect(("127.0.0.2", port))
        probe = socket.socket()
        probe.settimeout(0.3)
        with probe, pytest.raises(TimeoutError):
            probe.connect(("127.0.0.2", port))
    except OSError as exc:
        pytest.skip(f"cannot make a blackholed address on 127.0.0.2: {exc}")
    try:
        yield "127.0.0.2", port
    finally:
        filler.close()
        listener.close()


async def test_blackholed_first_address(
    blackhole: tuple[str, int],
    backend: Server,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """upstream.test resolves to the blackholed address first, then to the backend: the first
    request costs one Happy Eyeballs delay (0.25 s), not the connect timeout; the next ones go
    straight to the address that answered."""
    _, port = blackhole

    async def resolve(host: str, port: int) -> Sequence[Any]:
        assert host == "upstream.test"
        stream, tcp = socket.SOCK_STREAM, socket.IPPROTO_TCP
        return [
            (socket.AF_INET, stream, tcp, "", ("127.0.0.2", port)),
            (socket.AF_INET, stream, tcp, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(app_module, "Client", functools.partial(Client, resolver=resolve))
    config = make_config(
        provider("up", f"http://upstream.test:{port}/v1", {"m": None}),
        connect_timeout_secs=10,
        max_attempts=1,
    )
    proxy = await start_proxy(config)
    ids = [new_id("eyeballs") for _ in range(5)]
    started = time.monotonic()
    assert_answered(await chat(http, proxy, ids[0]), ids[0], stream=False)
    assert time.monotonic() - started < 2  # not the 10 s connect timeout
    started = time.monotonic()
    for request_id in ids[1:]:
        assert_answered(await chat(http, proxy, request_id, stream=True), request_id, stream=True)
    assert time.monotonic() - started < 1
    assert_once(await seen(http, backend.url), ids)
