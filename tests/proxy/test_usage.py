"""Token accounting: upstream usage (body tail, final stream chunk, injected-and-stripped),
tiktoken fallback, and partial usage when a client hangs up mid-stream."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from llm_proxy.proxy import tokens
from llm_proxy.proxy.usage import Usage, UsageStripper, find_usage, request_usage_in_stream
from llm_proxy.testing.mock import stream_events
from tests.helpers import (
    ProxyFactory,
    Upstream,
    eventually,
    make_config,
    provider,
    sample,
    scrape,
    sdk,
    serve,
)


def test_find_usage_shapes() -> None:
    chat = b'{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,'
    chat += b'"prompt_tokens_details":{"cached_tokens":3}}}'
    assert find_usage(chat) == Usage(12, 7)
    responses = b'"usage":{"input_tokens":4,"input_tokens_details":{"cached_tokens":0},'
    responses += b'"output_tokens":9,"total_tokens":13}'
    assert find_usage(responses) == Usage(4, 9)
    embeddings = b'"usage": {"prompt_tokens": 8, "total_tokens": 8}}'
    assert find_usage(embeddings) == Usage(8, 0)
    assert find_usage(b'{"usage":null}') is None
    assert find_usage(b'{"choices":[]}') is None


def test_request_usage_in_stream_splices_or_merges() -> None:
    body = b'{"model":"m","stream":true,"n":1}'
    assert request_usage_in_stream(body, orjson.loads(body)) == (
        b'{"stream_options":{"include_usage":true},"model":"m","stream":true,"n":1}',
        True,
    )
    body = b'{"model":"m","stream_options":{"include_obfuscation":false}}'
    merged, added = request_usage_in_stream(body, orjson.loads(body))
    assert added
    assert orjson.loads(merged)["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    body = b'{"model":"m","stream_options":{"include_usage":true}}'
    assert request_usage_in_stream(body, orjson.loads(body)) == (body, False)


def test_stripper_restores_the_plain_stream_in_any_chunking() -> None:
    injected = b"".join(stream_events("chat", "m", 30, include_usage=True))
    plain = b"".join(stream_events("chat", "m", 30, include_usage=False))
    for size in (1, 7, 64, 1000, len(injected)):
        stripper = UsageStripper()
        out = b"".join(stripper.feed(injected[i : i + size]) for i in range(0, len(injected), size))
        out += stripper.flush()
        assert out == plain, size
        assert stripper.usage == Usage(5, 30)


async def tokens_of(http: aiohttp.ClientSession, url: str, model: str) -> tuple[float, float]:
    families = await scrape(http, url)
    get = lambda kind: sample(  # noqa: E731
        families, "llm_proxy_tokens_total", model=model, token_type=kind
    )
    return get("prompt_tokens") or 0, get("completion_tokens") or 0


async def test_usage_from_json_body(proxy_url: str, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        async with http.post(
            proxy_url + "/v1/chat/completions", json={"model": "gpt-4o", "mock_content": "a b c"}
        ) as resp:
            assert resp.status == 200
    assert await tokens_of(http, proxy_url, "gpt-4o") == (10, 6)


async def test_client_requested_stream_usage_passes_through(
    proxy_url: str, http: aiohttp.ClientSession
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "mock_chunks": 12,
        "stream_options": {"include_usage": True},
    }
    async with http.post(proxy_url + "/v1/chat/completions", json=body) as resp:
        raw = await resp.read()
    assert raw == b"".join(stream_events("chat", "gpt-4o-mini", 12, include_usage=True))
    assert await tokens_of(http, proxy_url, "gpt-4o-mini") == (5, 12)


async def test_injected_usage_is_stripped_byte_identical(
    proxy_url: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    body = {"model": "gpt-4o-mini", "stream": True, "mock_chunks": 40}
    async with http.post(proxy_url + "/v1/chat/completions", json=body) as resp:
        raw = await resp.read()
    # Exactly what the upstream sends to a client that did not ask for usage...
    assert raw == b"".join(stream_events("chat", "gpt-4o-mini", 40, include_usage=False))
    # ...although the proxy asked for it, and counted it.
    sent = orjson.loads(upstream.recorded[-1].body)
    assert sent["stream_options"] == {"include_usage": True}
    assert await tokens_of(http, proxy_url, "gpt-4o-mini") == (5, 40)


async def test_injection_can_be_turned_off(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"m": None}, inject_stream_usage=False),
        )
    )
    body = b'{"model":"m","stream":true,"mock_chunks":3}'
    async with http.post(url + "/v1/chat/completions", data=body) as resp:
        await resp.read()
    assert upstream.recorded[-1].body == body


async def wait_for_tokens(http: aiohttp.ClientSession, url: str, model: str) -> tuple[float, float]:
    """The (prompt, completion) tokens counted for `model`, once some are."""

    async def counted() -> tuple[float, float] | None:
        tokens = await tokens_of(http, url, model)
        return tokens if tokens != (0, 0) else None

    return await eventually(counted, what="tokens counted")


async def test_tiktoken_fallback_when_upstream_reports_no_usage(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    reply = "The quick brown fox jumps over the lazy dog, twice."

    async def no_usage(request: web.Request) -> web.Response:
        return web.json_response(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", no_usage)
    async with serve(app) as up:
        url = await start_proxy(make_config(provider("u", up + "/v1", {"m": None})))
        prompt = "Count these words, please."
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
        expected = (tokens.count_sync(prompt), tokens.count_sync(reply))
        assert await wait_for_tokens(http, url, "m") == expected
        assert expected[1] > 5


async def test_client_hangup_counts_partial_stream(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    sent = asyncio.Event()

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(1000):
            chunk = {"choices": [{"index": 0, "delta": {"content": f" word{i}"}}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if i == 9:
                sent.set()
            await asyncio.sleep(0.01 if i < 10 else 1)
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", slow_stream)
    async with serve(app) as up:
        url = await start_proxy(make_config(provider("u", up + "/v1", {"m": None})))
        resp = await http.post(
            url + "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]},
        )
        await sent.wait()
        got = b""
        while got.count(b" word") < 10:  # the first 10 chunks, relayed
            chunk = await resp.content.readany()
            assert chunk, got
            got += chunk
        resp.close()  # hang up after ~10 of 1000 chunks
        prompt_tokens, completion_tokens = await wait_for_tokens(http, url, "m")
    relayed_text = "".join(f" word{i}" for i in range(10))
    assert prompt_tokens == tokens.count_sync("go")
    assert 0 < completion_tokens <= tokens.count_sync(relayed_text + " word10")


async def test_a_long_stream_without_usage_is_estimated_from_its_tail(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """An upstream that ignores `include_usage`: a stream keeps only its last bytes, and the
    completion count is extrapolated from them by bytes (close, flagged as an estimate)."""
    words = [f" token{i % 50}" for i in range(400)]

    async def stream_without_usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in words:
            chunk = {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": word}}],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream_without_usage)
    async with serve(app) as up:
        url = await start_proxy(make_config(provider("u", up + "/v1", {"m": None})))
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            relayed = await resp.read()
        assert len(relayed) > 10 * 2048  # far more than the tail a stream keeps
        _, completion = await wait_for_tokens(http, url, "m")
    exact = tokens.count_sync("".join(words))
    assert 0.8 * exact <= completion <= 1.2 * exact, (completion, exact)


# Every shape a client may give `stream_options`: what the upstream must receive, and whether
# the client asked for the usage chunk itself (then it gets it) or the proxy added it (stripped).
STREAM_OPTION_SHAPES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("absent", {}, {"include_usage": True}, False),
    ("null", {"stream_options": None}, {"include_usage": True}, False),
    ("empty", {"stream_options": {}}, {"include_usage": True}, False),
    ("false", {"stream_options": {"include_usage": False}}, {"include_usage": True}, False),
    ("usage null", {"stream_options": {"include_usage": None}}, {"include_usage": True}, False),
    (
        "other keys",
        {"stream_options": {"include_obfuscation": False}},
        {"include_obfuscation": False, "include_usage": True},
        False,
    ),
    ("asked", {"stream_options": {"include_usage": True}}, {"include_usage": True}, True),
]


async def test_stream_usage_is_always_asked_for_whatever_the_client_sent(
    proxy_url: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """A stream is accounted from the usage chunk the upstream sends only when asked: a
    client's `"stream_options": null` (or `include_usage: false`) must not turn it off."""

    async with sdk(proxy_url) as client:
        for count, (shape, extra, sent_options, asked) in enumerate(STREAM_OPTION_SHAPES, 1):
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "count"}],
                stream=True,
                extra_body={"mock_chunks": 7, **extra},
            )
            chunks = [chunk async for chunk in stream]
            sent = orjson.loads(upstream.recorded[-1].body)
            assert sent["stream_options"] == sent_options, shape
            usage_chunks = [c for c in chunks if c.usage is not None]
            if asked:
                assert len(usage_chunks) == 1 and usage_chunks[0].usage is not None, shape
                assert usage_chunks[0].usage.completion_tokens == 7
            else:
                assert usage_chunks == [], shape  # what the proxy added is not shown
                assert all(c.choices for c in chunks), shape
            # Counted from the upstream's own report, exactly, every time.
            assert await tokens_of(http, proxy_url, "gpt-4o-mini") == (5 * count, 7 * count), shape


async def test_a_malformed_stream_options_is_a_400(
    proxy_url: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    for value in ("yes", [], 1, True):
        body = {"model": "gpt-4o-mini", "stream": True, "stream_options": value}
        async with http.post(proxy_url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 400, value
            error = (await resp.json())["error"]
        assert error["param"] == "stream_options" and error["type"] == "invalid_request_error"
    assert not upstream.recorded


def test_request_usage_in_stream_is_not_fooled_by_spelling() -> None:
    """A key the proxy cannot see plainly (escaped, or twice) is merged through a parser, so
    the upstream sees one `stream_options`, with usage on."""
    for body in (
        b'{"model":"m","stream_options":{"include_usage":true},"stream_options":null}',
        b'{"model":"m","stream\\u005foptions":null}',
        b'{"model":"m","stream_options":{"include_usage":true,"include_usage":false}}',
    ):
        sent, added = request_usage_in_stream(body, orjson.loads(body))
        assert sent.count(b"stream") == 1, body
        assert orjson.loads(sent)["stream_options"] == {"include_usage": True}, body
        assert added, body
