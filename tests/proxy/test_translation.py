"""Translation in the request path, both ways, driven by the real SDKs: Anthropic clients (the
`anthropic` SDK) on an OpenAI-compatible provider, and OpenAI clients (the `openai` SDK) on an
Anthropic provider. The fake upstreams check what the real services check; every streamed
answer passes its protocol's grammar checker; keys, failover, errors and usage work as on a
pass-through."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from llm_proxy.proxy import relay
from tests.helpers import ProxyFactory, make_config, provider, sample, scrape, serve
from tests.helpers.anthropic_upstream import (
    KEY as ANTHROPIC_KEY,
)
from tests.helpers.anthropic_upstream import (
    Fake,
    anthropic_provider,
    anthropic_upstream,
    error,
    event,
    message,
    send_stream,
    text_stream,
)
from tests.helpers.grammar_anthropic import check_anthropic_stream
from tests.helpers.grammar_openai import check_openai_stream

CLIENT_KEY = "sk-team-translate-0123"
OPENAI_KEY = "sk-oai-provider-secret"
MESSAGES = [{"role": "user", "content": "Hi"}]
KEYS = [{"name": "team", "key": CLIENT_KEY}]


class OpenAIFake:
    """A chat-completions upstream: the provider's bearer key required, the body checked as
    OpenAI checks it (messages with roles, a stream asks for usage), answers scripted."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answers: list[Any] = []
        self.url = ""

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.received.append(body)
            self.headers.append(dict(request.headers))
            if request.headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
                return web.json_response(
                    {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}},
                    status=401,
                )
            roles = [m.get("role") for m in body.get("messages", [])]
            if not roles or not set(roles) <= {"system", "user", "assistant", "tool", "developer"}:
                return web.json_response({"error": {"message": "bad messages"}}, status=400)
            if self.answers:
                return await self.answers.pop(0)(request, body)
            if body.get("stream"):
                return await sse(request, text_chunks(body["model"], ["Hel", "lo"], usage=True))
            return web.json_response(completion(body["model"], "Hello!"))

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        return app


def completion(model: str, text: str | None, **message_fields: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, **message_fields},
                "finish_reason": "tool_calls" if "tool_calls" in message_fields else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 4,
            "total_tokens": 34,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    }


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34},
    }


def text_chunks(model: str, pieces: list[str], usage: bool) -> list[dict[str, Any]]:
    chunks = [chunk(model, {"role": "assistant", "content": ""})]
    chunks += [chunk(model, {"content": piece}) for piece in pieces]
    chunks.append(chunk(model, {}, "stop"))
    if usage:
        chunks.append(usage_chunk(model))
    return chunks


async def sse(
    request: web.Request, chunks: list[dict[str, Any]], done: bool = True, cut: bool = False
) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    for item in chunks:
        await out.write(b"data: " + orjson.dumps(item) + b"\n\n")
    if cut:  # the upstream dies mid-stream
        assert request.transport is not None
        request.transport.abort()
        return out
    if done:
        await out.write(b"data: [DONE]\n\n")
    await out.write_eof()
    return out


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


def anthropic_sdk(url: str) -> anthropic.AsyncAnthropic:
    client = anthropic.AsyncAnthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
    _OPEN.append(client)
    return client


def openai_sdk(url: str) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    _OPEN.append(client)
    return client


@pytest.fixture
async def oai() -> AsyncIterator[OpenAIFake]:
    fake = OpenAIFake()
    async with serve(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def anth() -> AsyncIterator[Fake]:
    async with anthropic_upstream() as fake:
        yield fake


async def both_ways(start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake, **top: Any) -> str:
    """A proxy where `claude-sonnet` is served by an OpenAI-compatible provider (as
    `gpt-up`) and `gpt-4o` by an Anthropic one (as `claude-up`)."""
    return await start_proxy(
        make_config(
            {
                **provider("oai", oai.url + "/v1", {"claude-sonnet": "gpt-up"}),
                "api_key": OPENAI_KEY,
            },
            anthropic_provider("anth", anth.url, {"gpt-4o": "claude-up"}, default_max_tokens=321),
            master_keys=KEYS,
            **top,
        )
    )


# Anthropic clients on an OpenAI-compatible provider.


async def test_an_anthropic_message_from_a_chat_completion(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake, http: aiohttp.ClientSession
) -> None:
    url = await both_ways(start_proxy, oai, anth)
    answer = await anthropic_sdk(url).messages.create(
        model="claude-sonnet",
        max_tokens=100,
        system="Be brief.",
        stop_sequences=["END"],
        messages=MESSAGES,
        extra_headers={"anthropic-beta": "some-beta"},
    )
    assert answer.content[0].type == "text" and answer.content[0].text == "Hello!"
    assert answer.stop_reason == "end_turn"
    # Anthropic's meaning: the cached tokens are reported apart, not inside input_tokens.
    assert (answer.usage.input_tokens, answer.usage.cache_read_input_tokens) == (20, 10)
    sent = oai.received[-1]
    assert sent["model"] == "gpt-up"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent["max_tokens"], sent["stop"]) == (100, ["END"])
    headers = {name.lower() for name in oai.headers[-1]}
    assert not headers & {"x-api-key", "anthropic-version", "anthropic-beta"}
    families = await scrape(http, url)
    labels = {"model": "claude-sonnet", "provider": "oai", "api_key_name": "team"}
    assert sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) == 30


async def test_an_anthropic_stream_with_a_tool_call_streamed_as_it_arrives(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake, http: aiohttp.ClientSession
) -> None:
    url = await both_ways(start_proxy, oai, anth)

    async def tool_stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        assert body["stream_options"] == {"include_usage": True}  # the proxy asks for usage
        model = body["model"]
        call = {"index": 0, "id": "call_1", "type": "function"}
        chunks = [
            chunk(model, {"role": "assistant", "content": "Let me look."}),
            chunk(
                model, {"tool_calls": [{**call, "function": {"name": "lookup", "arguments": ""}}]}
            ),
            chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
            chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk(model, {}, "tool_calls"),
            usage_chunk(model),
        ]
        return await sse(request, chunks, done=False)  # (some upstreams send no [DONE])

    oai.answers.append(tool_stream)
    tools = [{"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}]
    body = {
        "model": "claude-sonnet",
        "max_tokens": 100,
        "messages": MESSAGES,
        "tools": tools,
        "stream": True,
    }
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    async with http.post(url + "/v1/messages", json=body, headers=headers) as resp:
        raw = await resp.read()
    events = check_anthropic_stream(raw)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"] == [
        '{"city": ',
        '"Paris"}',
    ]
    stop = next(e for e in events if e["type"] == "message_delta")
    assert stop["delta"]["stop_reason"] == "tool_use"
    assert stop["usage"]["output_tokens"] == 4
    # The SDK's accumulator agrees.
    oai.answers.append(tool_stream)
    async with anthropic_sdk(url).messages.stream(
        model="claude-sonnet",
        max_tokens=100,
        messages=MESSAGES,
        tools=tools,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_message()
    used = [block for block in final.content if block.type == "tool_use"]
    assert used[0].input == {"city": "Paris"} and used[0].name == "lookup"


async def test_a_tool_result_turn_reaches_the_chat_upstream_as_tool_messages(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await both_ways(start_proxy, oai, anth)
    await anthropic_sdk(url).messages.create(
        model="claude-sonnet",
        max_tokens=50,
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks"},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                ],
            },
        ],
    )
    sent = oai.received[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q":1}'}
    assert sent[2]["tool_call_id"] == "toolu_1" and "Sunny" in str(sent[2]["content"])


async def test_what_a_chat_upstream_cannot_carry_is_a_400_and_never_sent(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await both_ways(start_proxy, oai, anth)
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        await anthropic_sdk(url).messages.create(
            model="claude-sonnet",
            max_tokens=50,
            messages=[{"role": "user", "content": [document]}],  # type: ignore[list-item]
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert oai.received == []


async def test_chat_upstream_errors_reach_anthropic_clients_in_their_shape(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await both_ways(start_proxy, oai, anth)

    def failing(status: int, message: str) -> Any:
        async def answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
            payload = {"error": {"message": message, "type": "x", "code": None}}
            return web.json_response(payload, status=status, headers={"Retry-After": "7"})

        return answer

    client = anthropic_sdk(url)
    oai.answers.append(failing(400, "context too long"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(model="claude-sonnet", max_tokens=5, messages=MESSAGES)
    assert bad.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "context too long"},
    } | ({"request_id": bad.value.body["request_id"]} if "request_id" in bad.value.body else {})  # type: ignore[index, operator]
    oai.answers.append(failing(429, "slow down"))
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model="claude-sonnet", max_tokens=5, messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_a_chat_upstream_dying_mid_stream_ends_the_anthropic_stream_with_an_error(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake, http: aiohttp.ClientSession
) -> None:
    url = await both_ways(start_proxy, oai, anth)

    async def dying(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = body["model"]
        return await sse(request, text_chunks(model, ["Hel"], usage=False)[:2], cut=True)

    oai.answers.append(dying)
    body = {"model": "claude-sonnet", "max_tokens": 9, "messages": MESSAGES, "stream": True}
    async with http.post(url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}) as r:
        raw = await r.read()
    events = check_anthropic_stream(raw)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"


# OpenAI clients on an Anthropic provider.


async def test_a_chat_completion_from_an_anthropic_message(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await both_ways(start_proxy, oai, anth)
    answer = await openai_sdk(url).chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use English."},
            {"role": "user", "content": "Hi"},
        ],
        stop="END",
        temperature=0.2,
    )
    assert answer.choices[0].message.content == "Hello!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (20, 7)
    assert answer.usage.prompt_tokens_details.cached_tokens == 5  # type: ignore[union-attr]
    sent = anth.received[-1]
    assert (sent.path, sent.headers["x-api-key"], sent.headers["anthropic-version"]) == (
        "/v1/messages",
        ANTHROPIC_KEY,
        "2023-06-01",
    )
    body = sent.body
    assert body["model"] == "claude-up" and body["max_tokens"] == 321  # the provider's default
    assert "Be brief." in str(body["system"]) and "Use English." in str(body["system"])
    assert body["stop_sequences"] == ["END"] and body["temperature"] == 0.2
    assert CLIENT_KEY not in repr(sent.headers)


async def test_an_openai_stream_with_usage_from_an_anthropic_stream(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake, http: aiohttp.ClientSession
) -> None:
    url = await both_ways(start_proxy, oai, anth)
    for include_usage in (True, False):
        body: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
        async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
            raw = await resp.read()
        chunks = check_openai_stream(raw, include_usage=include_usage)
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "Hello!"
        assert any("usage" in c and c["usage"] for c in chunks) is include_usage
    families = await scrape(http, url)
    labels = {"model": "gpt-4o", "provider": "anth", "api_key_name": "team"}
    # Counted both times, asked or not: 12 + 3 + 5 prompt tokens each.
    assert sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) == 40


async def test_openai_tools_and_images_on_an_anthropic_provider(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await both_ways(start_proxy, oai, anth)

    async def tool_use(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        start = message(body["model"], "")
        start.update(content=[], stop_reason=None)
        block = {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {}}
        events = [
            event("message_start", {"type": "message_start", "message": start}),
            event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
        ]
        for part in ('{"city":', ' "Paris"}'):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        events += [
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 9},
                },
            ),
            event("message_stop", {"type": "message_stop"}),
        ]
        return await send_stream(request, events)

    anth.answers.append(tool_use)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    stream = await openai_sdk(url).chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            }
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": {"type": "object"}},
            }
        ],
        parallel_tool_calls=False,
        stream=True,
    )
    arguments, finish = "", None
    async for piece in stream:
        for choice in piece.choices:
            for call in choice.delta.tool_calls or ():
                arguments += call.function.arguments or ""  # type: ignore[union-attr]
            finish = choice.finish_reason or finish
    assert (orjson.loads(arguments), finish) == ({"city": "Paris"}, "tool_calls")
    sent = anth.received[-1].body
    content = sent["messages"][0]["content"]
    assert content[1]["source"] == {"type": "base64", "media_type": "image/png", "data": png}
    assert content[2]["source"] == {"type": "url", "url": "https://example.com/a.jpg"}
    assert sent["tool_choice"]["disable_parallel_tool_use"] is True
    assert sent["tools"][0]["name"] == "lookup"


async def test_anthropic_errors_reach_openai_clients_in_their_shape(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake, http: aiohttp.ClientSession
) -> None:
    url = await both_ways(start_proxy, oai, anth, max_attempts=2)

    async def overloaded(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return error(529, "overloaded_error", "Overloaded")

    anth.answers += [overloaded] * 2  # (the only provider is tried twice)
    with pytest.raises(openai.APIStatusError) as over:
        await openai_sdk(url).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert over.value.status_code == 529
    assert over.value.body["type"] == "overloaded_error"  # type: ignore[index]
    assert over.value.body["message"] == "Overloaded"  # type: ignore[index]

    async def dies_mid_stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        start = message(body["model"], "")
        start.update(content=[], stop_reason=None)
        failure = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return await send_stream(
            request,
            [
                event("message_start", {"type": "message_start", "message": start}),
                event("error", failure),
            ],
        )

    anth.answers.append(dies_mid_stream)
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
        raw = await resp.read()
    chunks = check_openai_stream(raw)
    assert chunks[-1]["error"]["type"] == "overloaded_error"
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_upstream_errors_total", provider="anth", kind="http_5xx")


async def test_an_anthropic_provider_serves_no_other_openai_endpoint(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await both_ways(start_proxy, oai, anth)
    with pytest.raises(openai.BadRequestError) as refused:
        await openai_sdk(url).embeddings.create(model="gpt-4o", input="hi")
    assert refused.value.code == "unsupported_endpoint"
    assert anth.received == []


async def test_a_model_served_both_ways_fails_over_across_protocols(
    start_proxy: ProxyFactory, oai: OpenAIFake, anth: Fake
) -> None:
    url = await start_proxy(
        make_config(
            anthropic_provider("anth", anth.url, {"claude-sonnet": "claude-up"}, weight=100),
            {
                **provider("oai", oai.url + "/v1", {"claude-sonnet": "gpt-up"}),
                "api_key": OPENAI_KEY,
            },
            master_keys=KEYS,
        )
    )

    async def overloaded(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return error(529, "overloaded_error", "Overloaded")

    anth.answers.append(overloaded)
    async with anthropic_sdk(url).messages.stream(
        model="claude-sonnet", max_tokens=10, messages=MESSAGES
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "Hello"  # type: ignore[union-attr]
    assert oai.received[-1]["model"] == "gpt-up"  # translated for the second provider


@pytest.mark.parametrize("anthropic_client", [True, False])
async def test_a_silent_upstream_gets_the_client_pings_until_it_speaks(
    start_proxy: ProxyFactory,
    oai: OpenAIFake,
    anth: Fake,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    anthropic_client: bool,
) -> None:
    monkeypatch.setattr(relay, "PING_SECS", 0.05)
    url = await both_ways(start_proxy, oai, anth)
    pinged = asyncio.Event()

    async def thinking(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        if anthropic_client:
            chunks = text_chunks(body["model"], ["Hel", "lo"], usage=True)
            events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
        else:
            events = text_stream(body["model"], ["Hel", "lo"])
        await out.write(events[0])  # the stream starts (the answer is committed)...
        await pinged.wait()  # ...then the model thinks, silent until the client had a ping
        await out.write(b"".join(events[1:]))
        await out.write_eof()
        return out

    if anthropic_client:
        oai.answers.append(thinking)
        path = "/v1/messages"
        body = {"model": "claude-sonnet", "max_tokens": 9, "messages": MESSAGES, "stream": True}
        ping = b"event: ping"
    else:
        anth.answers.append(thinking)
        path = "/v1/chat/completions"
        body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
        ping = b": ping"
    raw = b""
    async with http.post(url + path, json=body, headers={"x-api-key": CLIENT_KEY}) as resp:
        async for piece in resp.content.iter_any():
            raw += piece
            if ping in raw:
                pinged.set()
    assert ping in raw
    if anthropic_client:
        check_anthropic_stream(raw)
    else:
        check_openai_stream(raw)
