"""`routing:` on the request path, through the official SDKs against fake upstreams that check
what OpenAI checks (the bearer key, the model) and count what reaches them: fallbacks to other
models (in order, for context-window and content-policy failures, the request's own chain),
retry policies bounded by a deadline, strategies, and rules that never let a request reach a
provider they exclude."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from tests.helpers import ProxyFactory, make_config, provider, sample, scrape, sdk, serve

CONTEXT_WINDOW = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your "
        "messages resulted in 130512 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
CONTENT_POLICY = {
    "error": {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
        "param": None,
        "code": "content_policy_violation",
    }
}
BAD_PARAM = {
    "error": {
        "message": "Invalid value for 'temperature'.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_value",
    }
}


class Fake:
    """An OpenAI-compatible upstream for one provider: it checks the provider's key, records
    each request's model (and body), and answers by model: "ok", "503", "429",
    "context_window", "content_policy", "bad_param", "slow:<secs>", "die_mid_stream"."""

    def __init__(self, name: str, behaviours: dict[str, str] | None = None) -> None:
        self.name = name
        self.behaviours = behaviours or {}
        self.models: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        """Anthropic's Messages API: its key header, and a refusal as a 200."""
        if request.headers.get("x-api-key") != f"sk-{self.name}-secret":
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return web.json_response({"type": "error", "error": error}, status=401)
        data = await request.json()
        self.models.append(data["model"])
        self.bodies.append(data)
        refused = self.behaviours.get(data["model"]) == "refusal"
        content = [] if refused else [{"type": "text", "text": f"{self.name} says hi"}]
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": data["model"],
                "content": content,
                "stop_reason": "refusal" if refused else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 0 if refused else 3},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer sk-{self.name}-secret":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        data = await request.json()
        model = data["model"]
        self.models.append(model)
        self.bodies.append(data)
        behaviour = self.behaviours.get(model, "ok")
        if behaviour.startswith("slow:"):
            self.in_flight += 1
            try:
                await asyncio.sleep(float(behaviour[5:]))
            finally:
                self.in_flight -= 1
            behaviour = "ok"
        if behaviour in ("503", "429", "500"):
            error = {"error": {"message": "overloaded", "type": "server_error"}}
            return web.json_response(error, status=int(behaviour))
        answers = {
            "context_window": CONTEXT_WINDOW,
            "content_policy": CONTENT_POLICY,
            "bad_param": BAD_PARAM,
        }
        if behaviour in answers:
            return web.json_response(answers[behaviour], status=400)
        text = f"{self.name} answers as {model}"
        if not data.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, word in enumerate(text.split()):
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if i == 1 and behaviour == "die_mid_stream":
                assert request.transport is not None
                request.transport.abort()
                return resp
        end = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await resp.write(b"data: " + orjson.dumps(end) + b"\n\ndata: [DONE]\n\n")
        return resp


Fakes = Callable[..., Any]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with AsyncExitStack() as stack:

        async def start(name: str, behaviours: dict[str, str] | None = None) -> tuple[Fake, str]:
            fake = Fake(name, behaviours)
            url = await stack.enter_async_context(serve(fake.app))
            return fake, url + "/v1"

        yield start


async def raw_chat(
    http: aiohttp.ClientSession,
    url: str,
    model: str,
    *,
    key: str = "sk-client",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> tuple[int, dict[str, Any], Any]:
    """One chat completion over plain HTTP: (status, headers, parsed body)."""
    async with http.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body},
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_a_model_family_down_falls_back_in_order(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    openai_fake, openai_base = await fakes("openai", {"gpt-4o": "503", "gpt-4o-mini": "503"})
    claude, claude_base = await fakes("claude")
    config = make_config(
        provider("openai", openai_base, {"gpt-4o": None, "gpt-4o-mini": None}),
        provider("claude", claude_base, {"claude-sonnet": None}),
        routing={
            "fallbacks": {"gpt-4o": ["gpt-4o-mini", "claude-sonnet"]},
            "retry": {"attempts": 2, "backoff_ms": 1},
        },
        circuit_breaker={"failure_threshold": 100},
    )
    url = await start_proxy(config)
    async with sdk(url) as client:
        await _family_down(client, openai_fake, claude)
    families = await scrape(http, url)
    assert sample(
        families, "llm_proxy_fallbacks_total", **{"from": "gpt-4o", "to": "gpt-4o-mini"}
    ) == pytest.approx(2)
    assert sample(
        families,
        "llm_proxy_fallbacks_total",
        **{"from": "gpt-4o-mini", "to": "claude-sonnet", "reason": "any"},
    ) == pytest.approx(2)


async def _family_down(client: openai.AsyncOpenAI, openai_fake: Fake, claude: Fake) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "claude answers as claude-sonnet "[:-1]
    assert answer.model == "claude-sonnet"  # as the upstream gave it
    assert raw.headers["x-llm-proxy-model"] == "claude-sonnet"
    assert raw.headers["x-llm-proxy-provider"] == "claude"
    # Each model's only provider is retried once (attempts: 2), then the next model.
    assert openai_fake.models == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    assert claude.models == ["claude-sonnet"]
    # Streamed too: the stream comes from the model that answered, whole.
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "claude answers as claude-sonnet "


async def test_context_window_and_content_policy_failures_take_their_own_chains(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    _small, small_base = await fakes(
        "small", {"gpt-4o-mini": "context_window", "gpt-4o": "content_policy"}
    )
    big, big_base = await fakes("big")
    config = make_config(
        provider("small", small_base, {"gpt-4o-mini": None, "gpt-4o": None}),
        provider("big", big_base, {"gpt-4.1": None, "claude-sonnet": None, "other": None}),
        routing={
            "context_window_fallbacks": {"gpt-4o-mini": ["gpt-4.1"]},
            "content_policy_fallbacks": {"gpt-4o": ["claude-sonnet"]},
            "fallbacks": {"gpt-4o-mini": ["other"]},
        },
    )
    url = await start_proxy(config)
    status, headers, body = await raw_chat(http, url, "gpt-4o-mini")
    assert status == 200, body
    assert headers["x-llm-proxy-model"] == "gpt-4.1"
    assert big.models == ["gpt-4.1"]  # the context-window chain, not the general one
    status, headers, body = await raw_chat(http, url, "gpt-4o")
    assert status == 200, body
    assert headers["x-llm-proxy-model"] == "claude-sonnet"
    assert big.models == ["gpt-4.1", "claude-sonnet"]
    families = await scrape(http, url)
    assert sample(
        families,
        "llm_proxy_fallbacks_total",
        **{"from": "gpt-4o-mini", "to": "gpt-4.1", "reason": "context_window"},
    ) == pytest.approx(1)
    assert sample(
        families,
        "llm_proxy_fallbacks_total",
        **{"from": "gpt-4o", "to": "claude-sonnet", "reason": "content_policy"},
    ) == pytest.approx(1)


async def test_an_ordinary_bad_request_is_answered_not_fallen_back_from(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A 400 that is neither context window nor content policy is the client's answer, as
    the upstream gave it; and a context-window error with no chain for it is answered too
    (general fallbacks are for failures of the provider, not of the request)."""
    small, small_base = await fakes("small", {"a": "bad_param", "b": "context_window"})
    big, big_base = await fakes("big")
    config = make_config(
        provider("small", small_base, {"a": None, "b": None}),
        provider("big", big_base, {"c": None}),
        routing={"fallbacks": {"a": ["c"], "b": ["c"]}, "context_window_fallbacks": {"a": ["c"]}},
    )
    url = await start_proxy(config)
    status, _, body = await raw_chat(http, url, "a")
    assert status == 400
    assert body == BAD_PARAM
    status, _, body = await raw_chat(http, url, "b")
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert big.models == []
    assert small.models == ["a", "b"]  # read once each: a 400 is never retried


async def test_no_retry_and_no_fallback_after_the_first_byte(
    fakes: Fakes, start_proxy: ProxyFactory
) -> None:
    dying, dying_base = await fakes("dying", {"m": "die_mid_stream"})
    other, other_base = await fakes("other")
    config = make_config(
        provider("dying", dying_base, {"m": None}),
        provider("other", other_base, {"n": None}),
        routing={"fallbacks": {"m": ["n"]}, "retry": {"attempts": 5}},
    )
    url = await start_proxy(config)
    async with sdk(url) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    assert dying.models == ["m"]
    assert other.models == []


async def test_the_deadline_stops_a_retry_storm(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    down, down_base = await fakes("down", {"m": "503", "slow": "slow:30"})
    config = make_config(
        provider("down", down_base, {"m": None, "slow": None}),
        routing={
            "retry": {"attempts": 100, "backoff_ms": 20, "max_backoff_ms": 100},
            "deadline_secs": 0.5,
        },
        circuit_breaker={"failure_threshold": 1000},
    )
    url = await start_proxy(config)
    started = time.monotonic()
    status, _, body = await raw_chat(http, url, "m")
    elapsed = time.monotonic() - started
    assert status == 504, body
    assert body["error"]["code"] == "deadline_exceeded"
    assert "0.5s" in body["error"]["message"] and "http_5xx" in body["error"]["message"]
    # Retried (the only provider), with backoff, until the deadline: far fewer than 100.
    assert 2 <= len(down.models) < 60
    assert elapsed < 5  # (a bound on a broken deadline, not a speed claim)
    # An upstream that does not answer in time is cut at the deadline, not at its timeout.
    started = time.monotonic()
    status, _, body = await raw_chat(http, url, "slow")
    assert status == 504, body
    assert body["error"]["code"] == "deadline_exceeded"
    assert time.monotonic() - started < 5
    # Neither cut was held against the provider: the breaker never saw a timeout.
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_upstream_attempts_total", outcome="timeout") is None


async def test_the_retry_policy_decides_which_outcomes_retry(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    a, a_base = await fakes("a", {"m": "503", "n": "bad_param"})
    b, b_base = await fakes("b", {"n": "bad_param"})
    config = make_config(
        provider("a", a_base, {"m": None, "n": None}, weight=1000),
        provider("b", b_base, {"m": None, "n": None}, weight=1),
        routing={
            "retry": {"on": ["connect", "timeout"]},
            "models": {"n": {"retry": {"on": ["400"]}}},
        },
    )
    url = await start_proxy(config)
    status, _, _ = await raw_chat(http, url, "m")
    assert status == 503  # a 503 is not in `on`: the other provider is not tried
    assert b.models == []
    status, _, body = await raw_chat(http, url, "n")
    assert status == 400 and body == BAD_PARAM  # "400" is, for n: tried at both
    assert sorted(a.models + b.models).count("n") == 2


async def test_latency_routing_follows_the_fast_provider_and_comes_back(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    a, a_base = await fakes("a", {"m": "slow:0.3"})
    b, b_base = await fakes("b")
    config = make_config(
        provider("a", a_base, {"m": None}),
        provider("b", b_base, {"m": None}),
        routing={"strategy": {"m": "latency"}},
    )
    url = await start_proxy(config)
    for _ in range(40):
        assert (await raw_chat(http, url, "m"))[0] == 200
    # The slow one is measured once, then explored 1 request in 20.
    assert len(a.models) <= 4, (len(a.models), len(b.models))
    # `a` recovers and `b` slows down: within a bounded number of requests, `a` has it back.
    a.behaviours["m"] = "ok"
    b.behaviours["m"] = "slow:0.1"
    before = len(a.models)
    for _ in range(120):
        await raw_chat(http, url, "m")
    last = Counter()
    for _ in range(20):
        start_a = len(a.models)
        await raw_chat(http, url, "m")
        last["a" if len(a.models) > start_a else "b"] += 1
    assert len(a.models) > before
    assert last["a"] >= 18, last


async def test_least_busy_routing_avoids_the_provider_holding_requests(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    a, a_base = await fakes("a", {"m": "slow:1.0"})
    b, b_base = await fakes("b", {"m": "slow:1.0"})
    config = make_config(
        provider("a", a_base, {"m": None}, weight=100),
        provider("b", b_base, {"m": None}, weight=1),
        routing={"strategy": {"m": "least_busy"}},
    )
    url = await start_proxy(config)
    results = await asyncio.gather(*(raw_chat(http, url, "m") for _ in range(10)))
    assert all(r[0] == 200 for r in results)
    # Weighted 100:1 would send nearly all to `a`; fewest in flight splits them evenly.
    assert sorted([len(a.models), len(b.models)]) == [5, 5]


async def test_cost_routing_prefers_the_cheapest_healthy_provider(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    dear, dear_base = await fakes("dear")
    cheap, cheap_base = await fakes("cheap")
    price = {"m": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}}
    config = make_config(
        provider("dear", dear_base, {"m": None}, weight=100),
        provider("cheap", cheap_base, {"m": None}, pricing=price),
        pricing={"m": {"input_per_mtok": 2.5, "output_per_mtok": 10}},
        routing={"strategy": "cost"},
        circuit_breaker={"failure_threshold": 1, "cooldown_secs": 60},
    )
    url = await start_proxy(config)
    for _ in range(5):
        assert (await raw_chat(http, url, "m"))[0] == 200
    assert (len(cheap.models), len(dear.models)) == (5, 0)
    cheap.behaviours["m"] = "503"  # ejected after one failure: the next cheapest serves
    for _ in range(3):
        assert (await raw_chat(http, url, "m"))[0] == 200
    assert len(dear.models) == 3
    assert len(cheap.models) == 6


async def test_eu_keys_never_reach_a_us_provider(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    us, us_base = await fakes("us")
    eu, eu_base = await fakes("eu")
    keys = [
        {"name": "eu-app", "key": "sk-eu-app-0123456789abcdef"},
        {"name": "us-app", "key": "sk-us-app-0123456789abcdef"},
    ]
    config = make_config(
        provider("us", us_base, {"m": None, "big": None}),
        provider("eu", eu_base, {"m": None}),
        master_keys=keys,
        routing={
            "fallbacks": {"m": ["big"]},
            "rules": [{"name": "eu-only", "match": {"key": ["eu-*"]}, "providers": ["eu"]}],
        },
    )
    url = await start_proxy(config)
    for _ in range(6):
        status, headers, _ = await raw_chat(http, url, "m", key=keys[0]["key"])
        assert status == 200 and headers["x-llm-proxy-provider"] == "eu"
    assert us.models == []
    # The EU provider down: no failover to the US one, no fallback to a US-only model.
    eu.behaviours["m"] = "503"
    status, _, _ = await raw_chat(http, url, "m", key=keys[0]["key"])
    assert status == 503
    assert us.models == []
    # A model only the US provider serves: a 404 naming the rule, never a route elsewhere.
    status, _, body = await raw_chat(http, url, "big", key=keys[0]["key"])
    assert status == 404
    assert "eu-only" in body["error"]["message"]
    assert us.models == []
    # The US key is not matched: both providers, and the fallback.
    for _ in range(4):
        status, _, _ = await raw_chat(http, url, "m", key=keys[1]["key"])
        assert status == 200
    assert us.models.count("m") >= 2
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_routing_rule_matches_total", rule="eu-only") == 8


async def test_tags_and_headers_route_and_the_tags_stay_at_the_proxy(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    main, main_base = await fakes("main")
    cheap, cheap_base = await fakes("cheap")
    config = make_config(
        provider("main", main_base, {"m": None, "m-cheap": None}, weight=100),
        provider("cheap", cheap_base, {"m": None}),
        routing={
            "rules": [
                {"match": {"tags": ["batch"]}, "providers": ["cheap"]},
                {"match": {"header": {"x-tier": "low"}}, "model": "m-cheap"},
            ]
        },
    )
    url = await start_proxy(config)
    status, _, _ = await raw_chat(http, url, "m", metadata={"tags": ["batch"], "user": "u1"})
    assert status == 200
    status, _, _ = await raw_chat(http, url, "m", headers={"x-llm-proxy-tags": "x, batch"})
    assert status == 200
    assert cheap.models == ["m", "m"]
    assert cheap.bodies[0]["metadata"] == {"user": "u1"}  # the tags are the proxy's
    status, headers, _ = await raw_chat(http, url, "m", headers={"x-tier": "low"})
    assert status == 200
    assert headers["x-llm-proxy-model"] == "m-cheap"
    assert main.models == ["m-cheap"]


async def test_a_request_names_its_own_chain_or_opts_out_within_its_key(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    down, down_base = await fakes("down", {"m": "503"})
    up, up_base = await fakes("up")
    key = {"name": "k", "key": "sk-k-0123456789abcdef0123", "allowed_models": ["m", "n", "o"]}
    config = make_config(
        provider("down", down_base, {"m": None}),
        provider("up", up_base, {"n": None, "o": None, "secret": None}),
        master_keys=[key],
        routing={"fallbacks": {"m": ["n"]}},
    )
    url = await start_proxy(config)
    status, _, _ = await raw_chat(
        http, url, "m", key=key["key"], headers={"x-llm-proxy-fallbacks": "none"}
    )
    assert status == 503
    assert up.models == []
    status, headers, _ = await raw_chat(
        http, url, "m", key=key["key"], headers={"x-llm-proxy-fallbacks": "o"}
    )
    assert status == 200 and headers["x-llm-proxy-model"] == "o"
    # The SDK's extra_body: the extension is read and never sent upstream.
    async with sdk(url, key["key"]) as client:
        answer = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"llm_proxy": {"fallbacks": ["o", "n"]}},
        )
    assert answer.model == "o"
    assert "llm_proxy" not in up.bodies[-1]
    # Beyond the key's models: refused before anything is sent.
    sent = len(down.models)
    status, _, body = await raw_chat(
        http, url, "m", key=key["key"], headers={"x-llm-proxy-fallbacks": "secret"}
    )
    assert status == 403, body
    assert len(down.models) == sent
    status, _, body = await raw_chat(
        http, url, "m", key=key["key"], llm_proxy={"fallbacks": "nope"}
    )
    assert status in (400, 403), body


async def test_the_budget_applies_to_the_model_that_answers(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    _down, down_base = await fakes("down", {"m": "503"})
    up, up_base = await fakes("up")
    key = {"name": "k", "key": "sk-k-0123456789abcdef0123", "max_budget_usd": 0.01}
    config = make_config(
        provider("down", down_base, {"m": None}),
        provider("up", up_base, {"dear": None, "cheap": None}),
        master_keys=[key],
        pricing={
            "m": {"input_per_mtok": 0.1, "output_per_mtok": 0.1},
            "dear": {"input_per_mtok": 1000, "output_per_mtok": 1000},
            "cheap": {"input_per_mtok": 0.1, "output_per_mtok": 0.1},
        },
        routing={"fallbacks": {"m": ["dear", "cheap"]}},
    )
    url = await start_proxy(config)
    status, headers, _ = await raw_chat(http, url, "m", key=key["key"], max_tokens=100)
    assert status == 200
    # `dear` would not fit the key's budget: skipped, never called; `cheap` answered.
    assert headers["x-llm-proxy-model"] == "cheap"
    assert up.models == ["cheap"]


async def test_an_anthropic_client_falls_back_too(fakes: Fakes, start_proxy: ProxyFactory) -> None:
    down, down_base = await fakes("down", {"m": "503"})
    up, up_base = await fakes("up")
    config = make_config(
        provider("down", down_base, {"m": None}),
        provider("up", up_base, {"n": None}),
        routing={"fallbacks": {"m": ["n"]}},
    )
    url = await start_proxy(config)
    async with anthropic.AsyncAnthropic(api_key="sk-client", base_url=url, max_retries=0) as client:
        raw = await client.messages.with_raw_response.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    message = await raw.parse()
    assert message.content[0].text == "up answers as n "[:-1]  # type: ignore[union-attr]
    assert raw.headers["x-llm-proxy-model"] == "n"
    assert (down.models, up.models) == (["m"] * 3, ["n"])  # (max_attempts: 3)


async def test_a_refusal_answered_as_a_200_takes_the_content_policy_chain(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    claude, claude_base = await fakes("claude", {"claude-sonnet": "refusal"})
    other, other_base = await fakes("other")
    config = make_config(
        provider(
            "claude",
            claude_base.removesuffix("/v1"),
            {"claude-sonnet": None, "claude-haiku": None},
            provider_type="anthropic",
        ),
        provider("other", other_base, {"gpt-4o": None}),
        routing={"content_policy_fallbacks": {"claude-sonnet": ["gpt-4o"]}},
    )
    url = await start_proxy(config)
    async with sdk(url) as client:  # an OpenAI client, its calls translated for Anthropic
        answer = await client.chat.completions.create(
            model="claude-sonnet", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "other answers as gpt-4o"
    assert (claude.models, other.models) == (["claude-sonnet"], ["gpt-4o"])
    # With no chain, the refusal is the answer (in the client's protocol).
    claude.behaviours["claude-haiku"] = "refusal"
    status, _, body = await raw_chat(http, url, "claude-haiku")
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "content_filter"
    # And a normal answer of a model with a chain, read before commit, arrives whole.
    claude.behaviours["claude-sonnet"] = "ok"
    status, headers, body = await raw_chat(http, url, "claude-sonnet")
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "claude says hi"
    assert headers["x-llm-proxy-model"] == "claude-sonnet"


async def test_a_prompt_estimated_too_long_skips_the_model(
    fakes: Fakes, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    small, small_base = await fakes("small")
    big, big_base = await fakes("big")
    config = make_config(
        provider("small", small_base, {"mini": None}),
        provider("big", big_base, {"long": None}),
        routing={
            "context_window_fallbacks": {"mini": ["long"]},
            "models": {"mini": {"context_window": 100}},
        },
    )
    url = await start_proxy(config)
    status, _, _ = await raw_chat(http, url, "mini")  # short: the model asked for
    assert status == 200
    long_prompt = [{"role": "user", "content": "word " * 200}]
    status, headers, _ = await raw_chat(http, url, "mini", messages=long_prompt)
    assert status == 200
    assert headers["x-llm-proxy-model"] == "long"
    assert (small.models, big.models) == (["mini"], ["long"])
