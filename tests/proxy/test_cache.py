"""The response cache (`cache:`) on the request path, through the official SDKs against a fake
OpenAI upstream that checks the provider key, honours `stream_options.include_usage` the way
OpenAI does (a usage chunk, `"usage":null` on every other chunk) and counts every call: repeats
are hits with the same content, streamed or not and across the two forms; keys never see each
other's entries unless the namespace is global; `no-store`, `no-cache`, `max-age` and the TTL
header; what is never cached (errors, aborted streams, sampled requests, n > 1); Redis shared
by two instances and Redis down; 100 identical concurrent misses make one upstream call."""

from __future__ import annotations

import asyncio
import signal
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
import redis.asyncio
from aiohttp import web

from tests.helpers import (
    REDIS_URL,
    ProxyFactory,
    Upstream,
    eventually,
    make_config,
    provider,
    sample,
    scrape,
    sdk,
    serve,
    yaml_config,
)
from tests.helpers.anthropic_upstream import anthropic_provider, anthropic_upstream
from tests.helpers.processes import serve_process

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
        # Sampled above max_temperature: not cached unless forced; nor are n > 1 answers.
        for kw in ({"temperature": 0.9}, {"temperature": 2}, {"temperature": 0, "n": 2}):
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


def _redis_config(base: str, url: str, key: dict[str, str]) -> Any:
    return make_config(
        provider("up", base, {"m": None}),
        master_keys=[key],
        cache={"backend": "redis", "url": url, "max_temperature": 1},
        max_attempts=1,
    )


async def test_two_instances_share_hits_through_redis(
    fake: tuple[Fake, str],
    start_proxy: ProxyFactory,
    redis_client: redis.asyncio.Redis,
    http: aiohttp.ClientSession,
) -> None:
    upstream, base = fake
    key = {"name": f"k-{uuid.uuid4().hex[:8]}", "key": "sk-shared-0123456789abcdef0123"}
    one = await start_proxy(_redis_config(base, REDIS_URL, key))
    two = await start_proxy(_redis_config(base, REDIS_URL, key))
    pattern = f"llm-proxy:cache:{key['name']}:*"
    try:
        async with sdk(one, key["key"]) as first, sdk(two, key["key"]) as second:
            text, headers, _ = await _stream(first)
            assert (text, headers["x-llm-proxy-cache"]) == ("answer 1", "miss")
            # Kept in the background, compressed, with Redis's own expiry.
            names = await eventually(lambda: redis_client.keys(pattern), what="the entry")
            assert len(names) == 1
            assert 3500 < await redis_client.ttl(names[0]) <= 3600
            assert zlib.decompress(await redis_client.get(names[0]))
            text, headers, _ = await _ask(second)  # the other instance: a hit, as a whole
            assert (text, headers["x-llm-proxy-cache"]) == ("answer 1", "hit")
            text, headers, usage = await _stream(second, stream_options={"include_usage": True})
            assert (text, headers["x-llm-proxy-cache"]) == ("answer 1", "hit")
            assert usage is not None and usage.total_tokens == 9
        assert upstream.calls == 1
        # A key of the same name with another secret (made anew, or rotated) reads nothing of
        # the old one's.
        renewed = {**key, "key": "sk-renewed-0123456789abcdef0123"}
        three = await start_proxy(_redis_config(base, REDIS_URL, renewed))
        async with sdk(three, renewed["key"]) as client:
            text, headers, _ = await _ask(client)
            assert (text, headers["x-llm-proxy-cache"]) == ("answer 2", "miss")
    finally:
        for name in await redis_client.keys(pattern):
            await redis_client.delete(name)


async def test_redis_down_costs_no_request(
    fake: tuple[Fake, str],
    start_proxy: ProxyFactory,
    unused_tcp_port: int,
    http: aiohttp.ClientSession,
) -> None:
    upstream, base = fake
    url = await start_proxy(_redis_config(base, f"redis://127.0.0.1:{unused_tcp_port}/0", KEY_A))
    async with sdk(url, KEY_A["key"]) as client:
        for n in range(1, 4):
            text, headers, _ = await _ask(client)
            assert (text, headers["x-llm-proxy-cache"]) == (f"answer {n}", "bypass")
        text, headers, _ = await _stream(client)
        assert (text, headers["x-llm-proxy-cache"]) == ("answer 4", "bypass")
    assert upstream.calls == 4
    families = await scrape(http, url)
    # The first lookup failed; Redis is then left alone for a while (no wait per request).
    assert sample(families, "llm_proxy_cache_errors_total") == 1
    assert sample(families, "llm_proxy_cache_requests_total", result="bypass") == 4


async def test_anthropic_messages_and_translated_answers_are_cached(
    start_proxy: ProxyFactory,
) -> None:
    async with anthropic_upstream() as claude:
        config = make_config(
            anthropic_provider("claude", claude.url, {"claude-sonnet": None}),
            master_keys=[KEY_A],
            cache={"max_temperature": 0},
        )
        url = await start_proxy(config)
        asked: Any = {
            "model": "claude-sonnet",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with anthropic.AsyncAnthropic(
            base_url=url, api_key=KEY_A["key"], max_retries=0
        ) as client:
            for result in ("miss", "hit"):
                raw = await client.messages.with_raw_response.create(**asked)
                assert raw.headers["x-llm-proxy-cache"] == result
                message = await raw.parse()
                assert message.content[0].text == "Hello!"  # type: ignore[union-attr]
                assert message.usage.output_tokens == 7
            for result in ("miss", "hit"):  # a stream is its own entry here
                async with client.messages.stream(**asked) as stream:
                    text = "".join([t async for t in stream.text_stream])
                    final = await stream.get_final_message()
                assert (text, final.usage.output_tokens) == ("Hello!", 7)
                assert stream.response.headers["x-llm-proxy-cache"] == result
        assert len(claude.received) == 2
        # An OpenAI client of the Anthropic model: the translated answer is what is kept.
        async with sdk(url, KEY_A["key"]) as openai_client:
            for result in ("miss", "hit"):
                text, headers, usage = await _stream(
                    openai_client,
                    model="claude-sonnet",
                    temperature=0,
                    stream_options={"include_usage": True},
                )
                assert (text, headers["x-llm-proxy-cache"]) == ("Hello!", result)
                assert usage is not None and usage.completion_tokens == 7
            text, headers, _ = await _ask(openai_client, model="claude-sonnet", temperature=0)
            assert (text, headers["x-llm-proxy-cache"]) == ("Hello!", "hit")
        assert len(claude.received) == 3


async def test_responses_are_cached_only_when_nothing_is_stored(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    config = make_config(
        provider("up", upstream.api_base, {"gpt-4o": None}),
        master_keys=[KEY_A],
        cache={"max_temperature": 0},
    )
    url = await start_proxy(config)
    async with sdk(url, KEY_A["key"]) as client:
        kw: Any = {"model": "gpt-4o", "input": "hi", "temperature": 0}
        force = {"x-llm-proxy-cache": "force"}  # (which does not force an object's answer)
        for store, results in ((False, ("miss", "hit")), (True, ("bypass", "bypass"))):
            for result in results:
                raw = await client.responses.with_raw_response.create(
                    store=store, extra_headers=force, **kw
                )
                assert raw.headers["x-llm-proxy-cache"] == result, store
                assert raw.parse().output_text


async def test_a_reload_turns_the_cache_on_and_off_in_a_running_proxy(
    upstream: Upstream, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """`llm-proxy serve` (uvloop, a real process): a SIGHUP with a `cache:` section turns it
    on, without a restart; `enabled: false` turns it off again."""
    body = {"model": "m", "messages": MESSAGES, "temperature": 0}

    async def cache_header() -> str | None:
        async with http.post(served.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
            return resp.headers.get("x-llm-proxy-cache")

    async with serve_process(yaml_config(upstream), tmp_path) as served:
        assert await cache_header() is None
        sections: list[tuple[dict[str, Any], str | None]] = [
            ({}, "hit"),
            ({"enabled": False}, None),
        ]
        for section, want in sections:
            served.config.write_text(yaml_config(upstream, cache=section))
            served.proc.send_signal(signal.SIGHUP)
            if want == "hit":
                await eventually(cache_header, what="the cache turned on")
                calls = len(upstream.recorded)
                assert await cache_header() == "hit"
                assert len(upstream.recorded) == calls
            else:
                await eventually(lambda: _is_none(cache_header()), what="the cache turned off")


async def _is_none(value: Any) -> bool:
    return await value is None


@pytest.mark.parametrize("charge_hits", [False, True])
async def test_hits_cost_the_budget_only_when_the_operator_says_so(
    fake: tuple[Fake, str],
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    charge_hits: bool,
) -> None:
    upstream, base = fake
    key = {**KEY_A, "max_budget_usd": 0.02}
    config = make_config(
        provider("up", base, {"m": None}),
        master_keys=[key],
        pricing={"m": {"input_per_mtok": 1000, "output_per_mtok": 1000}},  # $0.009 a call
        cache={"charge_hits": charge_hits},
    )
    url = await start_proxy(config)
    async with sdk(url, KEY_A["key"]) as client:
        _, headers, _ = await _ask(client, max_tokens=2)
        assert headers["x-llm-proxy-cache"] == "miss"
        _, headers, _ = await _ask(client, max_tokens=2)  # $0.018 spent when charged
        assert headers["x-llm-proxy-cache"] == "hit"
        if charge_hits:
            with pytest.raises(openai.RateLimitError) as caught:
                await _ask(client, max_tokens=2)  # $0.027 would be over $0.02
            assert caught.value.code == "budget_exceeded"
        else:
            for _ in range(5):
                _, headers, _ = await _ask(client, max_tokens=2)
                assert headers["x-llm-proxy-cache"] == "hit"
    assert upstream.calls == 1
    families = await scrape(http, url)
    cached_cost = sample(families, "llm_proxy_cost_usd_total", provider="cache")
    assert cached_cost == (pytest.approx(0.009) if charge_hits else None)


async def test_models_endpoints_and_overrides_choose_what_is_cached_and_for_how_long(
    fake: tuple[Fake, str],
    start_proxy: ProxyFactory,
    redis_client: redis.asyncio.Redis,
) -> None:
    upstream, base = fake
    key = {"name": f"k-{uuid.uuid4().hex[:8]}", "key": "sk-override-0123456789abcdef0123"}
    config = make_config(
        provider("up", base, {"m": None, "slow": None, "emb": None}),
        master_keys=[key],
        cache={
            "backend": "redis",
            "url": REDIS_URL,
            "models": ["m", "emb"],  # not `slow`
            "per_model": {"m": {"ttl_secs": 120}},
            "per_endpoint": {"embeddings": False},
        },
    )
    url = await start_proxy(config)
    pattern = f"llm-proxy:cache:{key['name']}:*"
    try:
        async with sdk(url, key["key"]) as client:
            _, headers, _ = await _ask(client, model="slow")
            assert "x-llm-proxy-cache" not in headers  # not looked at
            raw = await client.embeddings.with_raw_response.create(model="emb", input="x")
            assert "x-llm-proxy-cache" not in raw.headers
            await _ask(client)
            name = (await eventually(lambda: redis_client.keys(pattern), what="the entry"))[0]
            assert 100 < await redis_client.ttl(name) <= 120  # per_model's, not ttl_secs'
            # The request's own TTL wins, within max_request_ttl_secs.
            await _ask(client, messages=[{"role": "user", "content": "ttl"}],
                       extra_headers={"x-llm-proxy-cache-ttl": "30"})  # fmt: skip

            async def short() -> bool:
                ttls = [await redis_client.ttl(n) for n in await redis_client.keys(pattern)]
                return any(0 < t <= 30 for t in ttls)

            await eventually(short, what="the entry kept 30 s")
        assert upstream.calls == 4
    finally:
        for name in await redis_client.keys(pattern):
            await redis_client.delete(name)
