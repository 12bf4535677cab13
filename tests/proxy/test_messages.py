"""Anthropic's Messages API through the proxy to an Anthropic provider (`provider_type:
anthropic`), driven by the real `anthropic` SDK: the body and the answer cross unchanged but
for the mapped model, the provider's key replaces the client's, Anthropic's headers pass, usage
(cache reads and writes included) is counted, and every error, the proxy's own included, is in
Anthropic's shape with its status. Also `/v1/messages/count_tokens`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web

from tests.helpers import (
    FakeClock,
    ProxyFactory,
    free_port,
    make_config,
    provider,
    sample,
    scrape,
)
from tests.helpers.anthropic_upstream import (
    KEY,
    VERSION,
    Fake,
    anthropic_provider,
    anthropic_upstream,
    error,
    text_stream,
)
from tests.helpers.grammar_anthropic import check_anthropic_stream

CLIENT_KEY = "sk-team-anthropic-0123"
LIMITED = {
    "name": "limited",
    "key": "sk-limited-anthropic-0123",
    "allowed_models": ["claude-*"],
    "rate_limit": {"requests_per_second": 1, "burst_size": 1},
}
MESSAGES = [{"role": "user", "content": "Hi"}]


_OPEN: list[anthropic.AsyncAnthropic] = []


def sdk(url: str, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
    """The real SDK's client for the proxy at `url` (closed after the test), no retries."""
    client = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


async def proxy_for(start_proxy: ProxyFactory, fake: Fake, **top: Any) -> str:
    top.setdefault("master_keys", [{"name": "team", "key": CLIENT_KEY}, LIMITED])
    return await start_proxy(
        make_config(
            anthropic_provider("anth", fake.url, {"claude-sonnet": "claude-sonnet-4-5-20250929"}),
            **top,
        ),
        clock=FakeClock(),
    )


@pytest.fixture
async def fake() -> Any:
    async with anthropic_upstream() as running:
        yield running


async def test_a_message_crosses_unchanged_but_for_the_model_and_the_key(
    fake: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await proxy_for(start_proxy, fake)
    answer = await sdk(url).messages.create(
        model="claude-sonnet",
        max_tokens=100,
        messages=MESSAGES,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert answer.content[0].text == "Hello!"  # type: ignore[union-attr]
    assert answer.usage.cache_read_input_tokens == 5
    sent = fake.received[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY  # the provider's key, never the client's
    assert CLIENT_KEY not in repr(sent.headers)
    # The SDK's own version, forwarded (not the provider's default).
    assert sent.headers["anthropic-version"] == sdk(url).default_headers["anthropic-version"]
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent.body["model"] == "claude-sonnet-4-5-20250929"
    assert sent.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    families = await scrape(http, url)
    labels = {"model": "claude-sonnet", "provider": "anth", "api_key_name": "team"}
    # Anthropic's input excludes the cache's reads (5) and writes (3): the prompt counts them.
    assert sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) == 20
    assert sample(families, "llm_proxy_tokens_total", token_type="completion_tokens", **labels) == 7


async def test_a_stream_crosses_byte_for_byte(
    fake: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await proxy_for(start_proxy, fake)
    body = {"model": "claude-sonnet", "max_tokens": 50, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": VERSION}
    async with http.post(url + "/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    assert raw == b"".join(text_stream("claude-sonnet-4-5-20250929", ["Hel", "lo", "!"]))
    check_anthropic_stream(raw, unknown_events=True)
    families = await scrape(http, url)
    labels = {"model": "claude-sonnet", "provider": "anth", "api_key_name": "team"}
    assert sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) == 20
    assert sample(families, "llm_proxy_tokens_total", token_type="completion_tokens", **labels) == 7


async def test_the_sdk_accumulates_a_stream(fake: Fake, start_proxy: ProxyFactory) -> None:
    url = await proxy_for(start_proxy, fake)
    async with sdk(url).messages.stream(
        model="claude-sonnet", max_tokens=50, messages=MESSAGES
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Hello!"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7
    assert fake.received[-1].body["stream"] is True


async def test_paths_without_v1_and_with_a_query_string(
    fake: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await proxy_for(start_proxy, fake)
    body = {"model": "claude-sonnet", "max_tokens": 5, "messages": MESSAGES}
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}  # the other way a key may come
    for path in ("/messages", "/v1/messages?beta=true"):
        async with http.post(url + path, json=body, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
    # No anthropic-version from the client: the provider's (the default) is sent.
    assert fake.received[-1].headers["anthropic-version"] == VERSION
    assert "authorization" not in {name.lower() for name in fake.received[-1].headers}


async def test_the_proxys_own_errors_are_in_anthropics_shape(
    fake: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await proxy_for(start_proxy, fake, max_request_body_mb=0.01)
    client = sdk(url)
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        await sdk(url, "sk-wrong-key-0000").messages.create(
            model="claude-sonnet", max_tokens=5, messages=MESSAGES
        )
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await client.messages.create(model="no-such-model", max_tokens=5, messages=MESSAGES)
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert unknown.value.request_id is not None
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(model=None, max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    big = [{"role": "user", "content": "x" * 20_000}]
    with pytest.raises(anthropic.APIStatusError) as large:
        await client.messages.create(model="claude-sonnet", max_tokens=5, messages=big)
    assert large.value.status_code == 413
    assert large.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    async with http.get(url + "/v1/messages/batches", headers={"x-api-key": CLIENT_KEY}) as resp:
        body = await resp.json()
        assert (resp.status, body["type"], body["error"]["type"]) == (
            404,
            "error",
            "not_found_error",
        )
        assert body["request_id"] == resp.headers["x-request-id"]


async def test_limits_and_model_permissions_answer_in_anthropics_shape(
    fake: Fake, start_proxy: ProxyFactory
) -> None:
    other = anthropic_provider("other", fake.url, {"gpt-4o": None})
    url = await start_proxy(
        make_config(
            anthropic_provider("anth", fake.url, {"claude-sonnet": None}),
            other,
            master_keys=[LIMITED],
        ),
        clock=(clock := FakeClock()),
    )
    client = sdk(url, LIMITED["key"])  # type: ignore[arg-type]
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        await client.messages.create(model="gpt-4o", max_tokens=5, messages=MESSAGES)
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    clock.now += 5  # the bucket full again
    await client.messages.create(model="claude-sonnet", max_tokens=5, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model="claude-sonnet", max_tokens=5, messages=MESSAGES)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(limited.value.response.headers["retry-after"]) >= 1
    # Counting tokens spends none: never limited.
    for _ in range(3):
        counted = await client.messages.count_tokens(model="claude-sonnet", messages=MESSAGES)
        assert counted.input_tokens == 42


async def test_upstream_errors_pass_with_their_status_and_type(
    fake: Fake, start_proxy: ProxyFactory
) -> None:
    url = await proxy_for(start_proxy, fake)

    async def invalid(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return error(400, "invalid_request_error", "messages.0.content: too short")

    fake.answers.append(invalid)
    with pytest.raises(anthropic.BadRequestError) as bad:
        await sdk(url).messages.create(model="claude-sonnet", max_tokens=5, messages=MESSAGES)
    assert bad.value.body["error"]["message"] == "messages.0.content: too short"  # type: ignore[index]


async def test_an_overloaded_provider_fails_over_and_counts_as_a_5xx(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    async with anthropic_upstream() as first, anthropic_upstream() as second:

        async def overloaded(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
            return error(529, "overloaded_error", "Overloaded")

        first.answers += [overloaded] * 4
        second.answers += [overloaded] * 4
        url = await start_proxy(
            make_config(
                anthropic_provider("one", first.url, {"claude-sonnet": None}),
                anthropic_provider("two", second.url, {"claude-sonnet": None}),
                master_keys=[{"name": "team", "key": CLIENT_KEY}],
            )
        )
        second.answers.clear()  # the second provider answers
        answer = await sdk(url).messages.create(
            model="claude-sonnet", max_tokens=5, messages=MESSAGES
        )
        assert answer.content[0].text == "Hello!"  # type: ignore[union-attr]
        first.answers[:] = [overloaded] * 4
        second.answers[:] = [overloaded] * 4
        with pytest.raises(anthropic.APIStatusError) as over:
            await sdk(url).messages.create(model="claude-sonnet", max_tokens=5, messages=MESSAGES)
        assert over.value.status_code == 529
        assert over.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        families = await scrape(http, url)
        assert sample(families, "llm_proxy_upstream_errors_total", provider="one", kind="http_5xx")


async def test_count_tokens_exact_from_anthropic_else_estimated(
    fake: Fake, start_proxy: ProxyFactory, upstream: Any
) -> None:
    url = await start_proxy(
        make_config(
            anthropic_provider("anth", fake.url, {"claude-sonnet": "claude-up"}),
            provider("oai", upstream.api_base, {"gpt-4o": None}),
            master_keys=[{"name": "team", "key": CLIENT_KEY}],
        )
    )
    client = sdk(url)
    exact = await client.messages.count_tokens(model="claude-sonnet", messages=MESSAGES)
    assert exact.input_tokens == 42
    sent = fake.received[-1]
    assert (sent.path, sent.body["model"], sent.headers["x-api-key"]) == (
        "/v1/messages/count_tokens",
        "claude-up",
        KEY,
    )
    long = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 20}]
    estimate = await client.messages.count_tokens(model="gpt-4o", messages=long, system="Be kind.")
    assert 150 < estimate.input_tokens < 300  # tiktoken's count of ~200 tokens of English
    with pytest.raises(anthropic.AuthenticationError):
        await sdk(url, "sk-wrong-0000").messages.count_tokens(
            model="claude-sonnet", messages=MESSAGES
        )


async def test_a_client_key_never_reaches_the_provider_whatever_the_header(
    fake: Fake, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await proxy_for(start_proxy, fake)
    body = orjson.dumps({"model": "claude-sonnet", "max_tokens": 5, "messages": MESSAGES})
    for header in ("x-api-key", "X-Api-Key"):
        async with http.post(
            url + "/v1/messages",
            data=body,
            headers={header: CLIENT_KEY, "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
    assert all(CLIENT_KEY not in repr(r.headers) for r in fake.received)


async def test_an_anthropic_provider_is_probed_in_its_protocol(fake: Fake) -> None:
    from llm_proxy.config.validate import parse_config
    from llm_proxy.proxy.client import Client
    from llm_proxy.proxy.health_checks import probe
    from llm_proxy.proxy.upstream import compile_upstream

    config = parse_config(
        {"providers": [anthropic_provider("anth", fake.url, {"claude-sonnet": "claude-up"})]}
    )
    upstream = compile_upstream(config.providers[0], config)
    client = Client()
    try:
        result = await probe(client, upstream, "claude-up", 5.0)
    finally:
        await client.close()
    assert result.status == 200
    sent = fake.received[-1]
    assert (sent.path, sent.body["max_tokens"], sent.headers["anthropic-version"]) == (
        "/v1/messages",
        1,
        VERSION,
    )


async def test_unreachable_and_silent_providers_answer_in_anthropics_shape(
    fake: Fake, start_proxy: ProxyFactory
) -> None:
    silent = asyncio.Event()

    async def never(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await silent.wait()  # (set at the end: the handler then returns)
        return error(500, "api_error", "late")

    fake.answers.append(never)
    url = await start_proxy(
        make_config(
            anthropic_provider("gone", f"http://127.0.0.1:{free_port()}", {"claude-gone": None}),
            anthropic_provider("slow", fake.url, {"claude-slow": None}),
            master_keys=[{"name": "team", "key": CLIENT_KEY}],
            max_attempts=1,
            request_timeout_secs=0.5,
        )
    )
    client = sdk(url)
    with pytest.raises(anthropic.InternalServerError) as unreachable:
        await client.messages.create(model="claude-gone", max_tokens=5, messages=MESSAGES)
    assert unreachable.value.status_code == 502
    assert unreachable.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    with pytest.raises(anthropic.APIStatusError) as timed_out:
        await client.messages.create(model="claude-slow", max_tokens=5, messages=MESSAGES)
    silent.set()
    assert timed_out.value.status_code == 504
    assert timed_out.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
