"""Hostile request bodies (`llm_proxy.proxy.request_body`, the handler's checks): compressed, huge,
slow, many at once, with tricky JSON. Every one gets a clear OpenAI-shaped answer."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from llm_proxy.errors import ProxyError
from llm_proxy.proxy.request_body import _inflate
from tests.helpers import ProxyFactory, Upstream, eventually, make_config, provider, serve
from tests.helpers.upstreams import FaultyUpstream

KEY = "sk-body-tests-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
KEYS = [{"name": "k", "key": KEY}]


def bomb(inflated_mb: int) -> bytes:
    """gzip of `inflated_mb` MB of zeros (about 1,000 times smaller)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"0" * (1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(inflated_mb)) + packer.flush()


@pytest.fixture
async def proxy(upstream: Upstream, start_proxy: ProxyFactory) -> str:
    return await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"m": None, "mapped": "upstream-name"}),
            master_keys=KEYS,
            max_request_body_mb=1,
            body_timeout_secs=0.5,
        )
    )


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(
        url + "/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", **AUTH, **(headers or {})},
    ) as resp:
        return resp.status, orjson.loads(await resp.read()), resp


async def test_gzip_body_is_inflated_and_forwarded_plain(
    proxy: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi" * 1000}]})
    for encoding, packed in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", zlib.compress(body)[2:-4]),  # raw deflate, as some clients send it
    ):
        status, _, _ = await post(http, proxy, packed, {"Content-Encoding": encoding})
        assert status == 200
        sent = upstream.recorded[-1]
        assert sent.body == body  # what the headers say: no Content-Encoding, plain JSON
        assert "Content-Encoding" not in sent.headers


async def test_gzip_bomb_stops_at_the_limit(proxy: str, http: aiohttp.ClientSession) -> None:
    packed = bomb(200)  # ~200 KB on the wire, 200 MB inflated
    assert len(packed) < 1 << 20
    status, body, _ = await post(http, proxy, packed, {"Content-Encoding": "gzip"})
    assert status == 413 and body["error"]["code"] == "request_too_large"


def test_inflating_never_holds_more_than_the_limit() -> None:
    packed = bomb(64)
    tracemalloc.start()
    try:
        with pytest.raises(ProxyError) as too_large:
            _inflate(packed, "gzip", 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert too_large.value.status == 413
    assert peak < 4 << 20  # the 1 MB limit (and some change), not 64 MB


async def test_nothing_is_inflated_before_authentication(
    proxy: str, http: aiohttp.ClientSession
) -> None:
    # A body that is not even gzip: without a key the answer is the 401, so it was not read.
    async with http.post(
        proxy + "/v1/chat/completions",
        data=b"not gzip at all",
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 401
    status, body, _ = await post(http, proxy, b"not gzip at all", {"Content-Encoding": "gzip"})
    assert status == 400 and body["error"]["code"] == "invalid_encoding"
    truncated = gzip.compress(b'{"model": "m"}')[:-6]
    status, body, _ = await post(http, proxy, truncated, {"Content-Encoding": "gzip"})
    assert status == 400 and body["error"]["code"] == "invalid_encoding"
    status, body, _ = await post(http, proxy, b"{}", {"Content-Encoding": "br"})
    assert status == 415 and body["error"]["code"] == "unsupported_content_encoding"


async def test_a_trickled_body_is_a_408_and_the_connection_closes(proxy: str) -> None:
    port = int(proxy.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n{{"
        ).encode()
    )

    async def trickle() -> None:
        for _ in range(20):
            await asyncio.sleep(0.2)
            writer.write(b" ")

    trickler = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), 5)  # read() returns at close
    finally:
        trickler.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"code":"request_timeout"' in answer


async def test_bodies_in_flight_are_bounded(start_proxy: ProxyFactory) -> None:
    slow = FaultyUpstream("slow_headers", delay=1.0)
    async with serve(slow.app) as slow_url, aiohttp.ClientSession() as http:
        url = await start_proxy(
            make_config(
                provider("a", slow_url + "/v1", {"m": None}),
                master_keys=KEYS,
                max_inflight_body_mb=1,
            )
        )
        filler = b" " * (600 * 1024)
        body = b'{"model": "m", "pad": "' + filler + b'"}'

        async def one() -> tuple[int, str | None, Any]:
            async with http.post(url + "/v1/chat/completions", data=body, headers=AUTH) as r:
                return r.status, r.headers.get("Retry-After"), await r.json(content_type=None)

        first = asyncio.create_task(one())
        await eventually(lambda: slow.seen)  # the first body is held while its upstream thinks
        status, retry_after, answer = await one()
        assert status == 503 and retry_after == "1"
        assert answer["error"]["code"] == "over_capacity"
        assert (await first)[0] == 200
        # Released when the request ended: the next one fits again.
        assert (await one())[0] == 200


async def test_model_names_are_bounded(proxy: str, http: aiohttp.ClientSession) -> None:
    for size in (257, 512 * 1024):
        name = "x" * size
        status, body, _ = await post(http, proxy, orjson.dumps({"model": name}))
        assert status == 400 and body["error"]["param"] == "model"
        assert name not in body["error"]["message"]
    status, body, _ = await post(http, proxy, orjson.dumps({"model": "y" * 256}))
    assert status == 404 and body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m", "model": "secret"}',
        b'{"model": "m", "\\u006dodel": "secret"}',
        b'{"mod\\u0065l": "secret", "model": "m"}',
    ],
)
async def test_duplicate_model_is_refused(
    proxy: str, http: aiohttp.ClientSession, body: bytes
) -> None:
    status, answer, _ = await post(http, proxy, body)
    assert status == 400 and answer["error"]["param"] == "model"


async def test_nested_model_keys_are_fine(
    proxy: str, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    body = b'{"model": "mapped", "tools": [{"model": "mapped"}], "x": "\\u00e9"}'
    status, _, _ = await post(http, proxy, body)
    assert status == 200
    sent = orjson.loads(upstream.recorded[-1].body)
    assert sent["model"] == "upstream-name" and sent["tools"] == [{"model": "mapped"}]


async def test_deep_nesting_is_a_400(proxy: str, http: aiohttp.ClientSession) -> None:
    # Nested deeper than the stdlib parser goes, and ambiguous for the model splice (so the
    # exact parser is used): a 400, never a 500.
    deep = b"[" * 1000 + b'{"model": "mapped"}' + b"]" * 1000
    body = b'{"model": "mapped", "x": ' + deep + b"}"
    status, answer, _ = await post(http, proxy, body)
    assert status == 400 and answer["error"]["code"] == "invalid_json"
    status, answer, _ = await post(
        http, proxy, b'{"model": "m", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    )
    assert status == 400 and answer["error"]["code"] == "invalid_json"


async def test_non_utf8_header_bytes_are_a_401_not_a_500(proxy: str) -> None:
    port = int(proxy.rsplit(":", 1)[1])
    for header in (b"Authorization: Bearer sk-\xff\xfe", b"x-api-key: \xc3\x28"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n"
            + header
            + b'\r\nConnection: close\r\n\r\n{"model":"m"}'
        )
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:100]


@pytest.fixture
async def accounts() -> AsyncIterator[tuple[list[dict[str, str]], str]]:
    """An upstream that records account headers and answers with its own."""
    from aiohttp import web

    seen: list[dict[str, str]] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(
            {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("openai-")}
        )
        return web.json_response(
            {"choices": []},
            headers={"openai-organization": "org-upstream", "openai-project": "proj-upstream"},
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serve(app) as url:
        yield seen, url + "/v1"


async def test_account_headers_only_from_the_provider_config(
    accounts: tuple[list[dict[str, str]], str],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    seen, base = accounts
    url = await start_proxy(
        make_config(
            provider("plain", base, {"plain": None}),
            provider("org", base, {"org": None}, organization="org-mine", project="proj-mine"),
            master_keys=KEYS,
        )
    )
    client_headers = {**AUTH, "OpenAI-Organization": "org-other", "OpenAI-Project": "proj-x"}
    async with http.post(
        url + "/v1/chat/completions", json={"model": "plain"}, headers=client_headers
    ) as resp:
        assert resp.status == 200
        assert "openai-organization" not in resp.headers
        assert "openai-project" not in resp.headers
    assert seen[-1] == {}
    async with http.post(
        url + "/v1/chat/completions", json={"model": "org"}, headers=client_headers
    ) as resp:
        assert resp.headers["openai-organization"] == "org-upstream"
    assert seen[-1] == {"openai-organization": "org-mine", "openai-project": "proj-mine"}
