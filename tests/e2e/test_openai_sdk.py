"""The official openai SDK, unchanged but for `base_url`, works through the proxy."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from llm_proxy.testing.mock import stream_events
from tests.helpers import ProxyFactory, Upstream, make_config, provider, sample, scrape, sdk
from tests.helpers.upstreams import FaultyUpstream


def async_client(proxy_url: str) -> openai.AsyncOpenAI:
    return sdk(proxy_url)


async def test_chat_non_streaming(proxy_url: str, upstream: Upstream) -> None:
    async with async_client(proxy_url) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Hello from the mock upstream."
        assert reply.usage is not None and reply.usage.total_tokens == 10
        # The request's model was rewritten to the mapped upstream name.
        assert reply.model == "gpt-4o-2024-08-06"
        assert b'"model":"gpt-4o-2024-08-06"' in upstream.recorded[-1].body


async def test_chat_streaming_500_chunks_byte_for_byte(
    proxy_url: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async with async_client(proxy_url) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            extra_body={"mock_chunks": 500},
        )
        parts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
        assert "".join(p or "" for p in parts) == "".join(f"tok{i} " for i in range(500))

        # The raw bytes the client receives are exactly the bytes the upstream sent.
        body = b'{"model":"gpt-4o-mini","stream":true,"mock_chunks":500,"messages":[]}'
        async with http.post(proxy_url + "/v1/chat/completions", data=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["Cache-Control"] == "no-cache"
            assert resp.headers["X-Accel-Buffering"] == "no"
            raw = await resp.read()
        assert raw == b"".join(stream_events("chat", "gpt-4o-mini", 500, include_usage=False))


async def test_legacy_completions_both_modes(proxy_url: str) -> None:
    async with async_client(proxy_url) as client:
        done = await client.completions.create(model="gpt-4.1-mini", prompt="Say")
        assert done.choices[0].text == " a mock completion"
        stream = await client.completions.create(
            model="gpt-4.1-mini", prompt="Say", stream=True, extra_body={"mock_chunks": 7}
        )
        text = "".join([c.choices[0].text async for c in stream])
        assert text == "".join(f"tok{i} " for i in range(7))


async def test_sync_client_chat_and_stream(proxy_url: str) -> None:
    # The sync client blocks, so it runs in a worker thread while the servers run on the loop.
    await asyncio.to_thread(_sync_client_session, proxy_url)


def _sync_client_session(proxy_url: str) -> None:
    with openai.OpenAI(api_key="sk-client", base_url=proxy_url + "/v1", max_retries=0) as client:
        _sync_calls(client)


def _sync_calls(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Hello from the mock upstream."
    chunks = client.chat.completions.create(
        model="claude-opus-4", messages=[], stream=True, extra_body={"mock_chunks": 3}
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "tok0 tok1 tok2 "


async def test_embeddings_and_responses(proxy_url: str) -> None:
    async with async_client(proxy_url) as client:
        emb = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert len(emb.data) == 2 and len(emb.data[1].embedding) == 8
        assert emb.data[1].embedding[0] == pytest.approx(0.2)
        resp = await client.responses.create(model="gpt-4.1", input="hello")
        assert resp.output_text == "Hello from the mock upstream."


async def test_models_list_and_retrieve(proxy_url: str) -> None:
    async with async_client(proxy_url) as client:
        ids = [m.id async for m in client.models.list()]
        assert ids == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
        model = await client.models.retrieve("gpt-4o-mini")
        assert (model.id, model.object) == ("gpt-4o-mini", "model")
        # Not listed, but served (by the `gpt-4.1*` mapping): found, as a chat would be.
        assert (await client.models.retrieve("gpt-4.1-mini")).id == "gpt-4.1-mini"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-model")


async def test_sdk_raises_its_typed_errors(proxy_url: str) -> None:
    async with async_client(proxy_url) as client:
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.chat.completions.create(model="no-such-model", messages=[])
        assert not_found.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="", messages=[])
        assert bad.value.param == "model"
        # Upstream errors pass through with their status and body.
        with pytest.raises(openai.BadRequestError) as upstream_bad:
            await client.chat.completions.create(
                model="gpt-4o", messages=[], extra_body={"mock_status": 400}
            )
        assert upstream_bad.value.code == "mock_400"
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model="gpt-4o", messages=[], extra_body={"mock_status": 429}
            )


async def test_unreachable_and_slow_upstreams_map_to_502_504(start_proxy: ProxyFactory) -> None:
    import socket

    from aiohttp import web

    from tests.helpers import serve

    # A port bound but not listening: connections are refused, and no other server of the
    # run can take it meanwhile (a merely unused port can be handed out again).
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    unused_tcp_port = closed.getsockname()[1]

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    slow_app = web.Application()
    slow_app.router.add_post("/v1/chat/completions", slow)
    async with serve(slow_app) as slow_url:
        url = await start_proxy(
            make_config(
                provider("dead", f"http://127.0.0.1:{unused_tcp_port}/v1", {"dead": None}),
                provider("slow", slow_url + "/v1", {"slow": None}, request_timeout_secs=0.3),
            )
        )
        async with async_client(url) as client:
            with pytest.raises(openai.InternalServerError) as dead:
                await client.chat.completions.create(model="dead", messages=[])
            assert dead.value.status_code == 502 and dead.value.code == "upstream_unreachable"
            assert "'dead' is unreachable (connection refused)" in dead.value.message
            with pytest.raises(openai.APIStatusError) as slow_exc:
                await client.chat.completions.create(model="slow", messages=[])
            assert slow_exc.value.status_code == 504
            assert slow_exc.value.code == "upstream_timeout"
    closed.close()


@pytest.mark.parametrize("client_asks_usage", [True, False])
async def test_stream_read_to_done_is_a_200_with_the_upstreams_usage(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession, client_asks_usage: bool
) -> None:
    # Real front ends end the body a moment after `data: [DONE]`; the SDK closes the
    # connection as soon as it has read [DONE]. The client got everything: a 200, the
    # upstream's usage (not an estimate), and the upstream connection is reused.
    from tests.helpers import serve

    up = FaultyUpstream("linger_after_done", delay=0.5)
    async with serve(up.app) as up_url:
        url = await start_proxy(make_config(provider("a", up_url + "/v1", {"m": None})))
        extra: dict[str, object] = {}
        if client_asks_usage:
            extra["stream_options"] = {"include_usage": True}
        async with async_client(url) as client:
            for _ in range(3):
                stream = await client.chat.completions.create(
                    model="m", messages=[], stream=True, **extra
                )
                chunks = [c async for c in stream]
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                if client_asks_usage:
                    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 33
                else:
                    assert all(c.usage is None for c in chunks)
                # Real time: past the upstream's linger, the body has ended and its connection
                # is back in the pool (nothing outside the proxy shows when).
                await asyncio.sleep(0.8)
        m = await scrape(http, url)
    assert sample(m, "llm_proxy_requests_total", status_code="200") == 3
    assert sample(m, "llm_proxy_requests_total", status_code="499") is None
    assert sample(m, "llm_proxy_tokens_total", token_type="total_tokens") == 99
    assert len(set(up.peers)) == 1, up.peers  # one upstream connection, reused
