"""Who used what: requests, durations and tokens labelled by master key and by kind of client
(a bounded set read from the User-Agent), and an access line naming the key, the client, the
providers tried, the time to first token and the tokens."""

from __future__ import annotations

import socket

import aiohttp
import openai
import pytest
import structlog

from llm_proxy.observe.clients import CLIENTS, client_label
from tests.conftest import ProxyFactory, Upstream, make_config, provider, sample, scrape


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
    async with openai.AsyncOpenAI(
        api_key="sk-team-a-0123456789", base_url=url + "/v1", max_retries=0
    ) as client:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            pass
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
