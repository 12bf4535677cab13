"""The response cache (`cache:`) on the request path, through the official SDKs against a fake
OpenAI upstream that checks the provider key, honours `stream_options.include_usage` the way
OpenAI does (a usage chunk, `"usage":null` on every other chunk) and counts every call: repeats
are hits with the same content, streamed or not and across the two forms; keys never see each
other's entries unless the namespace is global; `no-store`, `no-cache`, `max-age` and the TTL
header; what is never cached (errors, aborted streams, sampled requests, n > 1); Redis shared
by two instances and Redis down; 100 identical concurrent misses make one upstream call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from tests.helpers import ProxyFactory, make_config, provider, sample, scrape, sdk, serve

KEY_A = {"name": "team-a", "key": "sk-team-a-0123456789abcdef0123"}
KEY_B = {"name": "team-b", "key": "sk-team-b-0123456789abcdef0123"}
MESSAGES: Any = [{"role": "user", "content": "What is 2+2?"}]


class Fake:
    """An OpenAI chat and embeddings upstream that counts calls. A model named `fail` answers
    503; `die` streams two chunks then drops the connection; `slow` waits for `release`."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/embeddings", self._embeddings)

    async def _embeddings(self, request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == "Bearer sk-up-secret"
        data = await request.json()
        self.calls += 1
        vectors = [{"object": "embedding", "index": 0, "embedding": [0.5, self.calls]}]
        usage = {"prompt_tokens": 3, "total_tokens": 3}
        return web.json_response(
            {"object": "list", "data": vectors, "model": data["model"], "usage": usage}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer sk-up-secret":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        data = await request.json()
        self.calls += 1
        self.bodies.append(data)
        model = data["model"]
        if model == "slow":
            await self.release.wait()
        if model == "fail":
            error = {"error": {"message": "overloaded", "type": "server_error"}}
            return web.json_response(error, status=503)
        text = f"answer {self.calls}"
        usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
        base = {"id": f"chatcmpl-{self.calls}", "created": 1700000000, "model": model}
        if not data.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            answer = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return web.json_response(answer)
        with_usage = (data.get("stream_options") or {}).get("include_usage") is True
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        deltas = [{"role": "assistant", "content": ""}, {"content": "answer "}]
        deltas.append({"content": str(self.calls)})
        for i, delta in enumerate(deltas):
            chunk: dict[str, Any] = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            if with_usage:
                chunk["usage"] = None
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if model == "die" and i == 1:
                assert request.transport is not None
                request.transport.abort()
                return resp
        end: dict[str, Any] = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        if with_usage:
            end["usage"] = None
        await resp.write(b"data: " + orjson.dumps(end) + b"\n\n")
        if with_usage:
            last = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await resp.write(b"data: " + orjson.dumps(last) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Fake, str]]:
    async with AsyncExitStack() as stack:
        f = Fake()
        url = await stack.enter_async_context(serve(f.app))
        yield f, url + "/v1"


Start = Callable[..., Any]


def _config(base: str, **cache: Any) -> Any:
    models = {"m": None, "fail": None, "die": None, "slow": None, "emb": None}
    return make_config(
        provider("up", base, models),
        master_keys=[KEY_A, KEY_B],
        cache={"backend": "memory", "max_temperature": 1, **cache},
        circuit_breaker={"failure_threshold": 1000},
        max_attempts=1,
    )


async def _ask(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, dict[str, str], str]:
    """One chat through the SDK: (text, headers, id)."""
    raw = await client.chat.completions.with_raw_response.create(
        model=kw.pop("model", "m"), messages=kw.pop("messages", MESSAGES), **kw
    )
    answer = raw.parse()
    return answer.choices[0].message.content or "", dict(raw.headers), answer.id


async def _stream(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, dict[str, str], Any]:
    """One streamed chat through the SDK: (text, headers, usage)."""
    raw = await client.chat.completions.with_raw_response.create(
        model=kw.pop("model", "m"), messages=kw.pop("messages", MESSAGES), stream=True, **kw
    )
    text, usage = [], None
    async for chunk in raw.parse():
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
    return "".join(text), dict(raw.headers), usage


async def test_a_repeat_is_a_hit_with_the_same_answer_streamed_or_not(
    fake: tuple[Fake, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    upstream, base = fake
    url = await start_proxy(_config(base))
    async with sdk(url, KEY_A["key"]) as client:
        first, headers, first_id = await _ask(client)
        assert headers["x-llm-proxy-cache"] == "miss"
        again, headers, again_id = await _ask(client)
        assert (again, again_id) == (first, first_id) == ("answer 1", "chatcmpl-1")
        assert headers["x-llm-proxy-cache"] == "hit"
        assert headers["x-llm-proxy-provider"] == "cache"
        assert int(headers["age"]) >= 0
        # The whole answer serves a stream of the same request, usage included when asked.
        text, headers, usage = await _stream(client, stream_options={"include_usage": True})
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 1", "hit")
        assert usage is not None and usage.total_tokens == 9
        assert upstream.calls == 1
        # A different request is a miss; its stream is kept and replayed, and serves the
        # whole answer too.
        other: Any = [{"role": "user", "content": "And 3+3?"}]
        text, headers, usage = await _stream(client, messages=other)
        assert (text, headers["x-llm-proxy-cache"], usage) == ("answer 2", "miss", None)
        text2, headers, usage = await _stream(client, messages=other)
        assert (text2, headers["x-llm-proxy-cache"], usage) == ("answer 2", "hit", None)
        _, _, usage = await _stream(client, messages=other, stream_options={"include_usage": True})
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 2)
        whole, headers, _ = await _ask(client, messages=other)
        assert (whole, headers["x-llm-proxy-cache"]) == ("answer 2", "hit")
        assert upstream.calls == 2
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_cache_requests_total", result="hit") == 5
    assert sample(families, "llm_proxy_cache_requests_total", result="miss") == 2
    assert sample(families, "llm_proxy_tokens_total", provider="cache", token_type="total_tokens")


async def test_keys_do_not_share_entries_unless_the_namespace_is_global(
    fake: tuple[Fake, str], start_proxy: ProxyFactory
) -> None:
    upstream, base = fake
    url = await start_proxy(_config(base))
    async with sdk(url, KEY_A["key"]) as a, sdk(url, KEY_B["key"]) as b:
        assert (await _ask(a))[0] == "answer 1"
        text, headers, _ = await _ask(b)
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 2", "miss")
        assert (await _ask(a))[0] == "answer 1"
        assert (await _ask(b))[0] == "answer 2"
    assert upstream.calls == 2
    shared = await start_proxy(_config(base, namespace="global"))
    async with sdk(shared, KEY_A["key"]) as a, sdk(shared, KEY_B["key"]) as b:
        assert (await _ask(a))[0] == "answer 3"
        text, headers, _ = await _ask(b)
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 3", "hit")


async def test_cache_control_no_store_no_cache_max_age_and_ttl(
    fake: tuple[Fake, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    upstream, base = fake
    url = await start_proxy(_config(base))
    async with sdk(url, KEY_A["key"]) as client:
        no_store = {"Cache-Control": "no-store"}
        text, headers, _ = await _ask(client, extra_headers=no_store)
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 1", "bypass")
        text, headers, _ = await _ask(client)  # nothing was kept
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 2", "miss")
        text, headers, _ = await _ask(client, extra_headers=no_store)  # nor read
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 3", "bypass")
        # no-cache: the lookup is skipped, the fresh answer replaces the entry.
        text, headers, _ = await _ask(client, extra_headers={"Cache-Control": "no-cache"})
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 4", "miss")
        assert (await _ask(client))[0] == "answer 4"
        # max-age: an entry older than asked is not served (then refreshed); 0: none is.
        text, headers, _ = await _ask(client, extra_headers={"Cache-Control": "max-age=0"})
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 5", "miss")
        text, headers, _ = await _ask(client, extra_headers={"Cache-Control": "max-age=60"})
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 5", "hit")
        assert upstream.calls == 5
    # Bad values are a 400 in OpenAI's shape, before anything is sent upstream.
    for headers in (
        {"x-llm-proxy-cache-ttl": "soon"},
        {"x-llm-proxy-cache-ttl": "0"},
        {"Cache-Control": "max-age=abc"},
        {"x-llm-proxy-cache": "yes"},
    ):
        async with http.post(
            url + "/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {KEY_A['key']}", **headers},
        ) as resp:
            body = await resp.json()
            assert resp.status == 400, body
            assert body["error"]["code"] == "invalid_cache_control"
    assert upstream.calls == 5


async def test_what_is_never_cached(
    fake: tuple[Fake, str], start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    upstream, base = fake
    url = await start_proxy(_config(base, max_temperature=0.5))
    async with sdk(url, KEY_A["key"]) as client:
        for _ in range(2):  # an upstream error, twice: both go upstream
            with pytest.raises(openai.APIStatusError) as caught:
                await _ask(client, model="fail", temperature=0)
            assert caught.value.status_code == 503
            assert caught.value.response.headers["x-llm-proxy-cache"] == "miss"
        assert upstream.calls == 2
        for _ in range(2):  # an aborted stream is never kept
            with pytest.raises(openai.APIError):
                await _stream(client, model="die", temperature=0)
        assert upstream.calls == 4
        # Sampled above max_temperature (or at the API's default, 1): not cached unless forced.
        for kw in ({"temperature": 0.9}, {}, {"temperature": 0, "n": 2}):
            _, headers, _ = await _ask(client, **kw)
            assert headers["x-llm-proxy-cache"] == "bypass", kw
        forced = {"x-llm-proxy-cache": "force"}
        text, headers, _ = await _ask(client, temperature=0.9, extra_headers=forced)
        assert headers["x-llm-proxy-cache"] == "miss"
        again, headers, _ = await _ask(client, temperature=0.9, extra_headers=forced)
        assert (again, headers["x-llm-proxy-cache"]) == (text, "hit")
        # 0 and 0.0 are one temperature; key order does not matter.
        await _ask(client, temperature=0, top_p=1)
        calls = upstream.calls
        _, headers, _ = await _ask(client, top_p=1.0, temperature=0.0)
        assert headers["x-llm-proxy-cache"] == "hit"
        assert upstream.calls == calls
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_cache_requests_total", result="bypass") == 3


async def test_embeddings_are_cached(fake: tuple[Fake, str], start_proxy: ProxyFactory) -> None:
    upstream, base = fake
    url = await start_proxy(_config(base))
    async with sdk(url, KEY_A["key"]) as client:
        first = await client.embeddings.create(model="emb", input="hello")
        raw = await client.embeddings.with_raw_response.create(model="emb", input="hello")
        assert raw.headers["x-llm-proxy-cache"] == "hit"
        assert raw.parse().data[0].embedding == first.data[0].embedding
    assert upstream.calls == 1


async def test_a_hundred_identical_misses_make_one_upstream_call(
    fake: tuple[Fake, str], start_proxy: ProxyFactory
) -> None:
    upstream, base = fake
    upstream.release.clear()
    url = await start_proxy(_config(base))
    async with sdk(url, KEY_A["key"]) as client:
        tasks = [asyncio.create_task(_ask(client, model="slow")) for _ in range(100)]

        while upstream.calls < 1:  # the first is upstream; the rest wait for it
            await asyncio.sleep(0.01)
        upstream.release.set()
        answers = await asyncio.gather(*tasks)
    assert upstream.calls == 1
    assert {text for text, _, _ in answers} == {"answer 1"}
    results = sorted(headers["x-llm-proxy-cache"] for _, headers, _ in answers)
    assert results == ["hit"] * 99 + ["miss"]
