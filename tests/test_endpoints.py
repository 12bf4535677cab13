"""The whole OpenAI API through the proxy, as clients call it: base URLs without `/v1`,
Azure OpenAI clients (`/openai/deployments/{deployment}/...`, `api-key`), calls without a
model going to the provider that holds their object, and Responses follow-ups keeping to the
provider that produced the response."""

from __future__ import annotations

import aiohttp
import openai

from tests.conftest import ProxyFactory, Upstream, make_config, provider

KEYS = [{"name": "team", "key": "sk-team-0123456789"}]


async def test_a_base_url_without_v1_works(upstream: Upstream, start_proxy: ProxyFactory) -> None:
    url = await start_proxy(make_config(provider("a", upstream.api_base, {"gpt-4o-mini": None})))
    async with openai.AsyncOpenAI(api_key="x", base_url=url, max_retries=0) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        vectors = await client.embeddings.create(model="gpt-4o-mini", input="x")
        assert vectors.data
    assert {r.path for r in upstream.recorded} == {"/v1/chat/completions", "/v1/embeddings"}


async def test_an_azure_openai_client_is_served(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"gpt-4o": "gpt-4o-2024-08-06"}), master_keys=KEYS
        )
    )
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=url, api_key="sk-team-0123456789", api_version="2024-10-21", max_retries=0
    ) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [c async for c in stream]
        assert chunks
    sent = [r for r in upstream.recorded if r.path == "/v1/chat/completions"]
    assert len(sent) == 2
    assert all(b'"model":"gpt-4o-2024-08-06"' in r.body for r in sent)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            json={"messages": []},
            headers={"api-key": "wrong-key-0123456789"},
        ) as resp,
    ):
        assert resp.status == 401


async def test_every_api_route_needs_a_master_key(
    upstream: Upstream, start_proxy: ProxyFactory
) -> None:
    """Whatever the path (with or without /v1, Azure-style, objects), only the proxy's own
    endpoints answer without a key: the rule names the exempt paths, so a new route is
    guarded from the start."""
    from llm_proxy.app import create_app
    from llm_proxy.middlewares.auth import EXEMPT

    config = make_config(provider("a", upstream.api_base, {"m": None}), master_keys=KEYS)
    url = await start_proxy(config)
    paths = set()
    for resource in create_app(config).router.resources():
        path = resource.canonical
        if path.startswith(EXEMPT) or path in ("/admin", "/ui"):
            continue
        paths.add(
            path.replace("{deployment}", "d").replace("{id}", "x1").replace("{tail}", "t")
            .replace("{model}", "m")
        )  # fmt: skip
    assert len(paths) > 60
    async with aiohttp.ClientSession() as http:
        for path in sorted(paths):
            for method in ("GET", "POST", "DELETE"):
                async with http.request(method, url + path, json={"model": "m"}) as resp:
                    assert resp.status in (401, 405), (method, path, resp.status)
    assert upstream.recorded == type(upstream.recorded)()  # nothing reached the provider
