"""The full metric set after a known sequence of requests, read with a Prometheus parser."""

from __future__ import annotations

import aiohttp

from tests.helpers import ProxyFactory, Upstream, chat, make_config, provider, sample, scrape


async def test_metric_values_after_known_sequence(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    unused_tcp_port: int,
) -> None:
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"chat": None, "emb-*": None}),
            provider("down", f"http://127.0.0.1:{unused_tcp_port}/v1", {"dead": None}),
        )
    )
    overheads: list[str | None] = []
    for body in (
        {"model": "chat"},
        {"model": "chat", "stream": True, "mock_chunks": 4},
        {"model": "chat", "stream": True, "mock_chunks": 4},
        {"model": "chat", "mock_status": 503},
        {"model": "dead"},
        {"model": "random-name-123"},
    ):
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            await resp.read()
            if body["model"] == "chat":  # relayed responses carry the proxy's own time
                overheads.append(resp.headers.get("x-llm-proxy-overhead-ms"))
    async with http.post(url + "/v1/embeddings", json={"model": "emb-1", "input": "x"}) as resp:
        assert resp.status == 200

    m = await scrape(http, url)

    def requests(**labels: str) -> float | None:
        return sample(m, "llm_proxy_requests_total", **labels)

    assert requests(endpoint="/v1/chat/completions", model="chat", status_code="200") == 3
    assert requests(endpoint="/v1/chat/completions", model="chat", status_code="503") == 1
    assert requests(model="dead", provider="down", status_code="502") == 1
    assert requests(model="other", provider="none", status_code="404") == 1
    assert requests(endpoint="/v1/embeddings", model="emb-*", provider="up") == 1
    # Tokens: 10 (json) + 2 x (5 + 4) (streams, usage asked for and stripped) + embeddings 1.
    tokens = sample(m, "llm_proxy_tokens_total", model="chat", token_type="total_tokens")
    assert tokens == 10 + 2 * 9
    assert sample(m, "llm_proxy_tokens_total", model="emb-*", token_type="prompt_tokens") == 1
    assert sample(m, "llm_proxy_time_to_first_token_seconds_count", model="chat") == 2
    assert sample(m, "llm_proxy_provider_latency_seconds_count", provider="up") == 5
    # A model's only provider is tried max_attempts (3) times; the client sees one answer.
    assert sample(m, "llm_proxy_upstream_errors_total", provider="down", kind="refused") == 3
    assert sample(m, "llm_proxy_upstream_errors_total", provider="up", kind="http_5xx") == 3
    attempts = "llm_proxy_upstream_attempts_total"
    assert sample(m, attempts, provider="up", outcome="ok") == 4
    assert sample(m, attempts, provider="up", outcome="http_5xx") == 3
    assert sample(m, attempts, provider="down", outcome="connect_error") == 3
    assert sample(m, "llm_proxy_provider_health", provider="up") == 1  # last answer: 200
    assert sample(m, "llm_proxy_provider_health", provider="down") == 0
    assert sample(m, "llm_proxy_overhead_seconds_count") == 5  # every relayed response
    assert len(overheads) == 4
    assert all(o is not None and 0 <= float(o) < 1000 for o in overheads)
    assert sample(m, "llm_proxy_active_requests") == 1
    duration = sample(m, "llm_proxy_request_duration_seconds_bucket", model="chat", le="+Inf")
    assert duration == 4


async def test_label_values_are_escaped(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    # Names may hold quotes and backslashes; one of them must not break the whole page.
    name = 'team "a" \\ b'
    url = await start_proxy(
        make_config(
            provider('prov "x"', upstream.api_base, {"m": None}, api_key="sk-prov"),
            master_keys=[
                {
                    "name": name,
                    "key": "sk-quoted-0123456789",
                    "rate_limit": {"requests_per_second": 0.001, "burst_size": 1},
                }
            ],
        )
    )
    headers = {"Authorization": "Bearer sk-quoted-0123456789"}
    for _ in range(2):
        async with http.post(url + "/v1/chat/completions", json={"model": "m"}, headers=headers):
            pass
    m = await scrape(http, url)  # parses the whole page
    assert sample(m, "llm_proxy_rate_limited_total", key_name=name) == 1
    assert sample(m, "llm_proxy_provider_health", provider='prov "x"') == 1
    assert sample(m, "llm_proxy_requests_total", provider='prov "x"', status_code="200") == 1


async def test_team_label_on_requests_tokens_and_cost(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A key's team is a label of its requests, durations, tokens and cost (a cache hit's
    too); a key in no team has `team=""` (Prometheus stores no label)."""
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"m": None}),
            teams=[{"name": "search", "max_budget_usd": 5}],
            master_keys=[
                {"name": "a", "key": "sk-team-member-0123", "team": "search"},
                {"name": "b", "key": "sk-no-team-0123456"},
            ],
            pricing={"m": {"input_per_mtok": 1, "output_per_mtok": 2}},
            cache={"backend": "memory", "charge_hits": True},
        )
    )
    for key in ("sk-team-member-0123", "sk-team-member-0123", "sk-no-team-0123456"):
        resp = await chat(http, url, key=key, temperature=0)  # the member's second: a hit
        assert resp.status == 200
    m = await scrape(http, url)
    requests = "llm_proxy_requests_total"
    for source in ("up", "cache"):
        assert sample(m, requests, api_key_name="a", team="search", provider=source) == 1
        duration = "llm_proxy_request_duration_seconds_count"
        assert sample(m, duration, api_key_name="a", team="search", provider=source) == 1
    assert sample(m, requests, api_key_name="b", team="", status_code="200") == 1
    tokens = "llm_proxy_tokens_total"
    for source in ("up", "cache"):  # the upstream's answer, then the hit's
        assert sample(m, tokens, provider=source, team="search", token_type="total_tokens") == 10
        assert sample(m, "llm_proxy_cost_usd_total", provider=source, team="search") > 0
    assert sample(m, tokens, api_key_name="b", team="", token_type="total_tokens") == 10
    assert sample(m, "llm_proxy_cost_usd_total", api_key_name="b", team="") > 0
