"""Streaming relay: client disconnects reach the upstream, upstream failures reach the client,
and the header policy holds in both directions."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest
from aiohttp import web

from llm_proxy.proxy.relay import WHOLE_BODY_BYTES
from tests.helpers import (
    ProxyFactory,
    Upstream,
    eventually,
    make_config,
    provider,
    sample,
    scrape,
    serve,
)

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'


@pytest.mark.parametrize("interval", [0.05, 30.0], ids=["flowing", "stalled"])
async def test_client_disconnect_closes_upstream_within_1s(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession, interval: float
) -> None:
    sent_first = asyncio.Event()
    closed_at: list[float] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(10_000):
                await resp.write(EVENT)
                sent_first.set()
                await asyncio.sleep(interval)
        except (ConnectionResetError, asyncio.CancelledError):
            closed_at.append(time.monotonic())
            raise
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    async with serve(app) as url:
        proxy = await start_proxy(make_config(provider("u", url + "/v1", {"m": None})))
        resp = await http.post(proxy + "/v1/chat/completions", json={"model": "m", "stream": True})
        assert resp.status == 200
        assert (await resp.content.readany()).startswith(b"data: ")
        await sent_first.wait()
        hung_up = time.monotonic()
        resp.close()  # the client goes away mid-stream
        await eventually(lambda: closed_at, timeout=1, what="upstream saw the disconnect")
        assert closed_at[0] - hung_up < 1.0

        async def recorded_499() -> float | None:  # (client closed request)
            return sample(await scrape(http, proxy), "llm_proxy_requests_total", status_code="499")

        assert await eventually(recorded_499, timeout=1) == 1


async def test_upstream_dying_mid_stream_ends_with_error_event(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(EVENT * 3)
        await resp.write(b'data: {"partial')  # half an event, then the connection dies
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", dies)
    async with serve(app) as url:
        proxy = await start_proxy(make_config(provider("u", url + "/v1", {"m": None})))
        async with http.post(
            proxy + "/v1/chat/completions", json={"model": "m", "stream": True}
        ) as resp:
            body = await asyncio.wait_for(resp.read(), 5)
    assert body.startswith(EVENT * 3)
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    error = orjson.loads(events[-1][len(b"data: ") :])
    assert error["error"]["code"] == "upstream_error"
    assert body.endswith(b"\n\n")


def _dies_mid_body(length: int) -> web.Application:
    async def short(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = length
        await resp.prepare(request)
        await resp.write(b'{"id": "x", ')
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", short)
    return app


async def test_upstream_dying_mid_small_json_body_is_a_clean_502(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A small answer is read whole before anything is sent: the client gets an error, never
    a cut body."""
    async with serve(_dies_mid_body(1000)) as url:
        proxy = await start_proxy(make_config(provider("u", url + "/v1", {"m": None})))
        async with http.post(proxy + "/v1/chat/completions", json={"model": "m"}) as resp:
            body = await asyncio.wait_for(resp.json(), 5)
    assert resp.status == 502
    assert body["error"]["code"] == "upstream_error"
    assert "'u'" in body["error"]["message"]


async def test_upstream_dying_mid_large_json_body_truncates_for_the_client(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A large answer is relayed as it arrives: once its head is sent, the only honest
    signal left is a truncated body."""
    async with serve(_dies_mid_body(WHOLE_BODY_BYTES + 1)) as url:
        proxy = await start_proxy(make_config(provider("u", url + "/v1", {"m": None})))
        async with http.post(proxy + "/v1/chat/completions", json={"model": "m"}) as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.read(), 5)


async def test_header_policy_and_unknown_fields(
    proxy_url: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    body = b'{"model":"gpt-4o-mini","future_param":{"x":[1,2.50]},"n":1}'
    async with http.post(
        proxy_url + "/v1/chat/completions",
        data=body,
        headers={
            "Authorization": "Bearer sk-client-key",
            "x-api-key": "sk-client-key",
            "Proxy-Authorization": "Basic abc",
            "Content-Type": "application/json",
            "OpenAI-Beta": "assistants=v2",
            "x-request-id": "client-chosen-id",
        },
    ) as resp:
        assert resp.status == 200
        assert resp.headers["x-request-id"] == "client-chosen-id"
        assert resp.headers["x-upstream-request-id"] == "req_mock"
        assert "Server" not in resp.headers or "aiohttp" in resp.headers["Server"]
    seen = upstream.recorded[-1]
    assert seen.body == body  # model unchanged: the original bytes, untouched
    assert seen.headers["Authorization"] == "Bearer sk-alpha-secret"
    assert "x-api-key" not in seen.headers
    assert "Proxy-Authorization" not in seen.headers
    assert seen.headers["OpenAI-Beta"] == "assistants=v2"
    assert "sk-client-key" not in str(dict(seen.headers))


async def test_model_rewrite_keeps_every_other_field(
    proxy_url: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    huge = 123456789012345678901234567890  # beyond 64 bits: still carried through
    payload = {"model": "gpt-4o", "tools": [{"type": "function"}], "seed": huge, "x": None}
    async with http.post(
        proxy_url + "/v1/chat/completions", data=orjson.dumps({**payload, "seed": 1})
    ) as resp:
        assert resp.status == 200
    assert orjson.loads(upstream.recorded[-1].body) == {
        **payload,
        "seed": 1,
        "model": "gpt-4o-2024-08-06",
    }
    raw = f'{{"model":"gpt-4o","seed":{huge}}}'.encode()
    async with http.post(proxy_url + "/v1/chat/completions", data=raw) as resp:
        assert resp.status == 200
    assert upstream.recorded[-1].body == (f'{{"model":"gpt-4o-2024-08-06","seed":{huge}}}'.encode())


async def test_generated_request_id(proxy_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy_url + "/health") as resp:
        rid = resp.headers["x-request-id"]
    async with http.get(proxy_url + "/health") as resp:
        assert resp.headers["x-request-id"] != rid
    assert len(rid) == 24
