"""Upstream faults: failover before the first byte, no retry after it, circuit breaking,
timeouts; client faults: slow clients, connection cap. Every request gets exactly one answer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.helpers import (
    FakeClock,
    ProxyFactory,
    accepted,
    eventually,
    free_port,
    make_config,
    provider,
    sample,
    scrape,
    sdk,
    serve,
)
from tests.helpers.upstreams import DONE, EVENT, FaultyUpstream

Start = Callable[..., Any]


@pytest.fixture
async def faulty() -> AsyncIterator[Callable[..., Any]]:
    """Start FaultyUpstreams; returns (upstream, api_base)."""
    async with AsyncExitStack() as stack:

        async def start(default: str = "ok", **kwargs: Any) -> tuple[FaultyUpstream, str]:
            up = FaultyUpstream(default, **kwargs)
            url = await stack.enter_async_context(serve(up.app))
            return up, url + "/v1"

        yield start


async def chat(
    http: aiohttp.ClientSession, url: str, stream: bool = False, model: str = "m"
) -> tuple[int, bytes]:
    body = {"model": model, "stream": stream}
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        return resp.status, await resp.read()


def two_providers(a: str, b: str, *, breaker: dict[str, Any] | None = None, **top: Any) -> Any:
    return make_config(
        provider("a", a, {"m": None}),
        provider("b", b, {"m": None}),
        circuit_breaker=breaker or {"failure_threshold": 3, "cooldown_secs": 0.3},
        **top,
    )


@pytest.mark.parametrize(
    "fault",
    ["status:500", "status:503", "status:429:30", "reset", "slow_headers", "sse_error_first"],
)
async def test_failover_before_first_byte(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession, fault: str
) -> None:
    bad, bad_base = await faulty(fault, delay=5)
    good, good_base = await faulty("ok")
    url = await start_proxy(two_providers(bad_base, good_base, ttft_timeout_secs=0.3))
    stream = fault == "sse_error_first"
    # Requests alternate a, b, a, b: each one landing on `a` must fail over to `b`.
    for _ in range(4):
        status, body = await chat(http, url, stream=stream)
        assert status == 200, body
        assert body.endswith(DONE) if stream else orjson.loads(body)["choices"]
    assert len(bad.seen) >= 1
    assert len(good.seen) == 4  # every request was answered by b, exactly once each
    m = await scrape(http, url)
    ok = sample(m, "llm_proxy_upstream_attempts_total", provider="b", outcome="ok")
    assert ok == 4
    assert sample(m, "llm_proxy_requests_total", status_code="200") == 4


async def test_failover_on_connection_refused(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    _, good_base = await faulty("ok")
    url = await start_proxy(two_providers(f"http://127.0.0.1:{unused_tcp_port}/v1", good_base))
    results = [await chat(http, url) for _ in range(6)]
    assert [s for s, _ in results] == [200] * 6
    m = await scrape(http, url)
    refused = sample(m, "llm_proxy_upstream_attempts_total", provider="a", outcome="connect_error")
    assert refused is not None and 1 <= refused <= 3  # then ejected: no more attempts on a


async def test_429_retry_after_keeps_provider_out(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    limited, a_base = await faulty("ok")
    limited.then("status:429:30")
    good, b_base = await faulty("ok")
    url = await start_proxy(two_providers(a_base, b_base))
    for _ in range(6):
        assert (await chat(http, url))[0] == 200
    assert limited.seen == ["status:429:30"]  # honoured Retry-After: not asked again
    assert len(good.seen) == 6
    async with http.get(url + "/health/detailed") as resp:
        a = (await resp.json())["providers"][0]
    assert a["rate_limited_for_secs"] > 25
    assert a["state"] == "healthy"  # rate limited is not unhealthy


async def test_no_retry_after_first_byte(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    _, a_base = await faulty("die_mid_stream")
    good, b_base = await faulty("ok")
    url = await start_proxy(
        make_config(
            provider("a", a_base, {"m": None}, weight=100), provider("b", b_base, {"m": None})
        )
    )
    status, body = await chat(http, url, stream=True)
    assert status == 200
    assert body.startswith(EVENT * 2)
    assert b'"code":"upstream_error"' in body
    assert good.seen == []  # the client already had bytes from a: no second provider


async def test_ejection_half_open_trial_and_recovery(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    flaky, a_base = await faulty("status:500")
    good, b_base = await faulty("ok")
    clock = FakeClock()
    url = await start_proxy(two_providers(a_base, b_base), breaker_clock=clock)
    for _ in range(8):
        assert (await chat(http, url))[0] == 200
    assert flaky.seen == ["status:500"] * 3  # three failures in a row: ejected, then skipped
    assert len(good.seen) == 8  # every request answered by b
    async with http.get(url + "/health/detailed") as resp:
        a = (await resp.json())["providers"][0]
    assert (a["state"], a["healthy"]) == ("ejected", False)
    m = await scrape(http, url)
    assert sample(m, "llm_proxy_provider_health", provider="a") == 0

    flaky.default = "ok"  # the provider recovers
    clock.advance(0.35)  # past the cooldown: half-open, one trial request
    for _ in range(6):
        assert (await chat(http, url))[0] == 200
    assert flaky.seen.count("ok") == 3  # trial succeeded; back in rotation (1 of every 2)
    async with http.get(url + "/health/detailed") as resp:
        assert (await resp.json())["providers"][0]["state"] == "healthy"


async def test_failed_trial_doubles_cooldown(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    flaky, a_base = await faulty("status:500")
    _, b_base = await faulty("ok")
    clock = FakeClock()
    url = await start_proxy(two_providers(a_base, b_base), breaker_clock=clock)
    for _ in range(6):
        await chat(http, url)
    clock.advance(0.35)
    for _ in range(4):
        await chat(http, url)
    assert flaky.seen == ["status:500"] * 4  # one failed trial, then out again
    async with http.get(url + "/health/detailed") as resp:
        a = (await resp.json())["providers"][0]
    assert a["ejected_for_secs"] == 0.6  # 0.3 s doubled


async def test_all_ejected_still_serves(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    a, a_base = await faulty("status:500")
    b, b_base = await faulty("status:500")
    url = await start_proxy(two_providers(a_base, b_base, breaker={"cooldown_secs": 60}))
    statuses = [(await chat(http, url))[0] for _ in range(4)]
    assert statuses == [500] * 4  # the upstream's own error passes through, once per request
    a.default = b.default = "ok"
    # Both are ejected for a minute, yet the least recently failed one is still tried.
    assert (await chat(http, url))[0] == 200


async def test_ttft_timeout_504_and_stream_idle_timeout(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    slow, base = await faulty("slow_headers", delay=5)
    url = await start_proxy(
        make_config(provider("a", base, {"m": None}), ttft_timeout_secs=0.2, max_attempts=1)
    )
    started = time.monotonic()
    status, body = await chat(http, url)
    assert status == 504
    assert orjson.loads(body)["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2

    slow.default = "stall_mid_stream"
    url = await start_proxy(
        make_config(provider("a", base, {"m": None}), stream_idle_timeout_secs=0.3)
    )
    started = time.monotonic()
    status, body = await chat(http, url, stream=True)
    assert status == 200
    assert body.startswith(EVENT)
    assert b"stalled mid-stream" in body and body.endswith(b"\n\n")
    assert time.monotonic() - started < 3


async def test_total_timeout_cuts_a_slow_body(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    _, base = await faulty("trickle_body")
    url = await start_proxy(make_config(provider("a", base, {"m": None}), request_timeout_secs=0.5))
    started = time.monotonic()
    async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as resp:
        body = await resp.json()  # a small answer is sent whole: a clean 504, never a success
    assert resp.status == 504
    assert body["error"]["code"] == "upstream_timeout"
    assert "stalled mid-answer" in body["error"]["message"]
    assert time.monotonic() - started < 3


async def test_connect_timeout(start_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    # A listener that never accepts, with its accept queue full: new SYNs go unanswered.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        url = await start_proxy(
            make_config(
                provider("a", f"http://127.0.0.1:{port}/v1", {"m": None}),
                connect_timeout_secs=0.3,
                max_attempts=1,
            )
        )
        started = time.monotonic()
        status, body = await chat(http, url)
        assert status in (502, 504)
        assert orjson.loads(body)["error"]["code"] in ("upstream_timeout", "upstream_unreachable")
        assert time.monotonic() - started < 2
    finally:
        for s in fillers:
            s.close()
        blackhole.close()


async def test_active_health_checks_eject_and_restore(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    checked, base = await faulty("status:503")
    url = await start_proxy(
        make_config(
            provider("a", base, {"m": None}, health_check={"interval_secs": 0.05}),
            circuit_breaker={"failure_threshold": 2, "cooldown_secs": 0.1},
        )
    )

    async def state() -> str:
        async with http.get(url + "/health/detailed") as resp:
            return str((await resp.json())["providers"][0]["state"])

    async def ejected() -> bool:
        return await state() != "healthy"

    async def restored() -> bool:
        return await state() == "healthy"

    await eventually(ejected, what="health checks ejected the provider")
    assert any(s == "models:status:503" for s in checked.seen)
    checked.default = "ok"
    await eventually(restored, what="health checks restored the provider")


async def test_slow_client_head_is_cut_off(faulty: Start, start_proxy: ProxyFactory) -> None:
    from llm_proxy.app import create_app
    from llm_proxy.server import serve as serve_app

    _, base = await faulty("ok")
    app = create_app(
        make_config(provider("a", base, {"m": None}), max_connections=2, keepalive_timeout_secs=0.5)
    )
    started, stop = asyncio.Event(), asyncio.Event()
    port = free_port()
    task = asyncio.create_task(
        serve_app(
            app,
            "127.0.0.1",
            port,
            started=started,
            stop=stop,
        )
    )
    await started.wait()
    try:
        # Slowloris: a request head that never ends is closed by the keep-alive timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            for _ in range(50):
                await asyncio.sleep(0.1)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()

        trickler = asyncio.create_task(trickle())
        t = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
        assert time.monotonic() - t < 2
        trickler.cancel()
        await asyncio.gather(trickler, return_exceptions=True)
        writer.close()

        # Connection cap: two idle connections fill it; the third gets a clear 503.
        held = [await accepted(port) for _ in range(2)]
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(r3.read(), 2)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b'"code":"over_capacity"' in answer
        for _, w in held:
            w.close()
        w3.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_429_from_the_only_provider_is_not_amplified(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    limited, base = await faulty("status:429:20")
    url = await start_proxy(make_config(provider("a", base, {"m": None}), max_attempts=3))
    async with sdk(url, "k") as client:
        with pytest.raises(openai.RateLimitError) as first:
            await client.chat.completions.create(model="m", messages=[])
    assert limited.seen == ["status:429:20"]  # one call, not max_attempts
    assert first.value.response.headers["Retry-After"] == "20"
    # Inside the window, the provider is not called again: the client hears at once.
    for _ in range(3):
        async with http.post(url + "/v1/chat/completions", json={"model": "m"}) as resp:
            assert resp.status == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 20
            assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
    assert len(limited.seen) == 1


@pytest.mark.parametrize(
    "retry_after", ["soon", "", "NaN", "inf", "-5", "Thu, 01 Jan 1970 00:00:00 -0000", "a, b c"]
)
async def test_unreadable_retry_after_still_fails_over(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession, retry_after: str
) -> None:
    limited, a_base = await faulty("ok")
    limited.then(f"status:429:{retry_after}")
    good, b_base = await faulty("ok")
    url = await start_proxy(
        make_config(
            provider("a", a_base, {"m": None}, weight=1000), provider("b", b_base, {"m": None})
        )
    )
    assert (await chat(http, url))[0] == 200
    assert limited.seen == [f"status:429:{retry_after}"] and len(good.seen) == 1


async def test_unreadable_retry_after_from_the_only_provider_is_its_429(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    limited, base = await faulty("status:429:soon")
    url = await start_proxy(make_config(provider("a", base, {"m": None})))
    status, body = await chat(http, url)
    assert status == 429 and b"upstream says no" in body
    assert limited.seen == ["status:429:soon"]


async def test_requests_that_blame_themselves_do_not_eject_a_provider(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    bad, a_base = await faulty("blame_request")
    other, b_base = await faulty("blame_request")
    url = await start_proxy(
        two_providers(a_base, b_base, breaker={"failure_threshold": 2, "cooldown_secs": 30})
    )
    for _ in range(6):
        status, body = await chat(http, url)
        assert status == 500 and b"invalid_request_error" in body
    async with http.get(url + "/health/detailed") as resp:
        states = {p["name"]: p["state"] for p in (await resp.json())["providers"]}
    assert states == {"a": "healthy", "b": "healthy"}
    # A 4xx is the request's fault too.
    bad.default = other.default = "status:400"
    for _ in range(6):
        assert (await chat(http, url))[0] == 400
    async with http.get(url + "/health/detailed") as resp:
        states = {p["name"]: p["state"] for p in (await resp.json())["providers"]}
    assert states == {"a": "healthy", "b": "healthy"}


async def test_a_client_that_never_reads_is_cut_off(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    from aiohttp import web

    stopped = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            while True:  # far more than any socket buffer holds
                await resp.write(b"data: " + b"x" * 65536 + b"\n\n")
        except (ConnectionError, asyncio.CancelledError):
            stopped.set()
            raise

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    async with serve(app) as up:
        url = await start_proxy(
            make_config(provider("a", up + "/v1", {"m": None}), write_timeout_secs=0.5)
        )
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        port = int(url.rsplit(":", 1)[1])
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        writer.transport.pause_reading()  # the client never reads its answer
        body = b'{"model": "m", "stream": true}'
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        # The proxy gives up on the client, and so closes the upstream connection.
        await asyncio.wait_for(stopped.wait(), 10)
        writer.close()
        m = await scrape(http, url)
    assert sample(m, "llm_proxy_active_requests") == 1  # the scrape itself
    assert sample(m, "llm_proxy_requests_total", status_code="499") == 1


async def test_all_unreachable_names_every_provider_and_logs_each_cause(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    import structlog

    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    url = await start_proxy(
        make_config(provider("a", dead[0], {"m": None}), provider("b", dead[1], {"m": None}))
    )
    with structlog.testing.capture_logs() as logs:
        status, body = await chat(http, url)
    assert status == 502
    error = orjson.loads(body)["error"]
    assert error["code"] == "upstream_unreachable"
    assert "'a'" in error["message"] and "'b'" in error["message"]
    causes = [e["error"] for e in logs if e["event"] == "upstream_attempt_failed"]
    assert len(causes) == 2
    assert all("cannot connect to http://127.0.0.1:" in c for c in causes), causes
    # The cause reaches the metrics as a fixed kind and /health/detailed in words.
    m = await scrape(http, url)
    assert sample(m, "llm_proxy_upstream_errors_total", provider="a", kind="refused") == 1
    async with http.get(url + "/health/detailed") as resp:
        providers = (await resp.json())["providers"]
    assert [p["last_error"] for p in providers] == ["connect_error", "connect_error"]
    assert all("[Errno 111]" in p["last_error_detail"] for p in providers), providers


@pytest.mark.parametrize(
    ("answer", "outcome", "kind", "says"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "protocol_error", "protocol", "invalid HTTP response"),
        (b"", "disconnected", "disconnected", "closed the connection before answering"),
    ],
)
async def test_a_broken_answer_is_named_for_what_it_is(
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    answer: bytes,
    outcome: str,
    kind: str,
    says: str,
) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        url = await start_proxy(
            make_config(provider("a", f"http://127.0.0.1:{port}/v1", {"m": None}), max_attempts=1)
        )
        status, body = await chat(http, url)
        m = await scrape(http, url)
    assert status == 502
    error = orjson.loads(body)["error"]
    assert error["code"] == "upstream_error" and says in error["message"]
    assert sample(m, "llm_proxy_upstream_attempts_total", provider="a", outcome=outcome) == 1
    assert sample(m, "llm_proxy_upstream_errors_total", provider="a", kind=kind) == 1


async def test_connections_per_provider_are_capped_and_say_why(
    faulty: Start, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    slow, base = await faulty("slow_headers", delay=1.0)
    url = await start_proxy(
        make_config(
            provider("a", base, {"m": None}),
            max_connections_per_provider=1,
            pool_timeout_secs=0.3,
            max_attempts=1,
        )
    )
    first = asyncio.create_task(chat(http, url))
    await eventually(lambda: slow.seen)  # it holds the one connection
    status, body = await chat(http, url)  # no free connection within pool_timeout_secs
    assert status == 503
    error = orjson.loads(body)["error"]
    assert error["code"] == "upstream_busy" and "max_connections_per_provider" in error["message"]
    assert (await first)[0] == 200
    assert slow.seen == ["slow_headers"]  # the queued request never reached the provider
    m = await scrape(http, url)
    assert sample(m, "llm_proxy_upstream_errors_total", provider="a", kind="pool_full") == 1
    async with http.get(url + "/health/detailed") as resp:
        assert (await resp.json())["providers"][0]["state"] == "healthy"  # our limit, not its
