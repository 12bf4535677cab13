"""Who used what: requests, durations and tokens labelled by master key and by kind of client
(a bounded set read from the User-Agent), and an access line naming the key, the client, the
providers tried, the time to first token and the tokens."""

from __future__ import annotations

import socket

import aiohttp
import pytest
import structlog

from llm_proxy.observe.clients import CLIENTS, client_label
from tests.helpers import ProxyFactory, Upstream, ask, make_config, provider, sample, scrape, sdk


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        ("OpenAI/Python 1.54.0", "openai-python"),
        ("AsyncOpenAI/Python 1.54.0", "openai-python"),
        ("OpenAI/JS 4.67.3", "openai-node"),
        ("langchain-openai/0.2.1 OpenAI/Python 1.54.0", "langchain"),
        ("llama-index-llms-openai/0.2 OpenAI/Python 1.40", "llamaindex"),
        ("claude-cli/1.0.3 (external, cli)", "claude-code"),
        ("curl/8.5.0", "curl"),
        ("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "browser"),
        ("Python/3.11 aiohttp/3.14.5", "other"),
        ("", "other"),
        (None, "other"),
        ("x" * 10_000, "other"),
    ],
)
def test_client_labels_are_a_fixed_set(agent: str | None, label: str) -> None:
    assert client_label(agent) == label
    assert label in CLIENTS


KEYS = [
    {"name": "team-a", "key": "sk-team-a-0123456789"},
    {"name": "team-b", "key": "sk-team-b-0123456789"},
]


async def test_metrics_by_key_and_client(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(provider("a", upstream.api_base, {"gpt-4o-mini": None}), master_keys=KEYS)
    )
    async with sdk(url, "sk-team-a-0123456789") as client:
        await ask(client, "gpt-4o-mini")
        await ask(client, "gpt-4o-mini", stream=True)
    headers = {"Authorization": "Bearer sk-team-b-0123456789", "User-Agent": "curl/8.5.0"}
    async with http.post(
        url + "/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers=headers
    ) as r:
        assert r.status == 200
    m = await scrape(http, url)
    requests = "llm_proxy_requests_total"
    assert sample(m, requests, api_key_name="team-a", client="openai-python") == 2
    assert sample(m, requests, api_key_name="team-b", client="curl") == 1
    tokens = "llm_proxy_tokens_total"
    a = sample(m, tokens, api_key_name="team-a", token_type="total_tokens")
    b = sample(m, tokens, api_key_name="team-b", token_type="total_tokens")
    assert a is not None and b is not None and a > b > 0
    count = "llm_proxy_request_duration_seconds_count"
    assert sample(m, count, api_key_name="team-a") == 2


async def test_the_access_line_says_who_what_and_how(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    config = make_config(
        provider("dead", dead, {"m": None}, weight=1000),
        provider("a", upstream.api_base, {"m": None}, weight=1),
    )
    url = await start_proxy(config)
    with structlog.testing.capture_logs() as logs:
        async with http.post(
            url + "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            headers={"User-Agent": "OpenAI/Python 1.54.0"},
        ) as r:
            await r.read()
    closed.close()
    (line,) = [e for e in logs if e["event"] == "request"]
    assert line["key"] == "anonymous" and line["client"] == "openai-python"
    assert line["attempts"] == ["dead", "a"]  # the failover, in order
    assert line["ttft_ms"] is not None and 0 < line["ttft_ms"] <= line["duration_ms"]
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] > 0


async def test_prices_give_costs_per_key_model_and_provider(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    config = make_config(
        provider(
            "a",
            upstream.api_base,
            {"gpt-4o": None, "gpt-4.1-mini": None},
            pricing={"gpt-4.1*": {"input_per_mtok": 0.4, "output_per_mtok": 1.6}},
        ),
        master_keys=KEYS,
        pricing={
            "gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10},
            "gpt-4.1-mini": {"input_per_mtok": 0},
        },
    )
    assert config.pricing[1][2].output_per_mtok == 0.0  # a side not given costs nothing
    url = await start_proxy(config)
    auth = {"Authorization": "Bearer sk-team-a-0123456789"}
    with structlog.testing.capture_logs() as logs:
        for model in ("gpt-4o", "gpt-4.1-mini"):
            async with http.post(
                url + "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                headers=auth,
            ) as r:
                body = await r.json()
                assert r.status == 200
            usage = body["usage"]
            line = [e for e in logs if e["event"] == "request"][-1]
            # The provider's own price wins over the global one.
            price = (2.5, 10) if model == "gpt-4o" else (0.4, 1.6)
            expected = (
                usage["prompt_tokens"] * price[0] + usage["completion_tokens"] * price[1]
            ) / 1e6
            assert line["cost_usd"] == pytest.approx(expected)
    m = await scrape(http, url)
    cost = sample(m, "llm_proxy_cost_usd_total", model="gpt-4o", api_key_name="team-a")
    assert cost is not None and cost > 0


@pytest.mark.parametrize(
    ("pricing", "problem"),
    [
        ({"gpt-4o": {"input_per_mtok": -1}}, "input_per_mtok: must be zero or a positive"),
        ({"gpt-4o": {"per_token": 1}}, "pricing['gpt-4o'].per_token: unknown key"),
        ({"gpt-4o": {}}, "must give input_per_mtok and/or output_per_mtok"),
        ({"gpt-(": {"input_per_mtok": 1}}, "invalid regular expression"),
        ({"gpt-4o": 3}, "must be a mapping"),
    ],
)
def test_bad_prices_are_config_errors(pricing: dict[str, object], problem: str) -> None:
    from llm_proxy.config.issues import ConfigError

    with pytest.raises(ConfigError) as bad:
        make_config(provider("a", "http://127.0.0.1:9/v1", {"m": None}), pricing=pricing)
    assert problem in str(bad.value)
