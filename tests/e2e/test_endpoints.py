"""The whole OpenAI API through the proxy, as clients call it: base URLs without `/v1`,
Azure OpenAI clients (`/openai/deployments/{deployment}/...`, `api-key`), calls without a
model going to the provider that holds their object, and Responses follow-ups keeping to the
provider that produced the response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from llm_proxy.testing.mock import MockOptions, audio_bytes, create_mock_app
from tests.helpers import ProxyFactory, Upstream, make_config, provider, sdk, serve

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


@pytest.fixture
async def two_mocks() -> AsyncIterator[tuple[str, str]]:
    """Two provider accounts that share nothing: each knows only its own objects."""
    async with (
        serve(create_mock_app(MockOptions(name="east"))) as east,
        serve(create_mock_app(MockOptions(name="west"))) as west,
    ):
        yield east + "/v1", west + "/v1"


def two_providers(east: str, west: str, **top: Any) -> Any:
    return make_config(
        provider("east", east, {"gpt-4o-mini": None}),
        provider("west", west, {"gpt-4o-mini": None}),
        **top,
    )


async def test_responses_follow_ups_keep_to_their_provider(
    two_mocks: tuple[str, str], start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(two_providers(*two_mocks))
    async with sdk(url, "x") as client:
        for i in range(6):  # round-robin alternates east and west: affinity must override it
            first = await client.responses.create(model="gpt-4o-mini", input=f"n{i}")
            follow = await client.responses.create(
                model="gpt-4o-mini", input="again", previous_response_id=first.id
            )
            assert follow.previous_response_id == first.id
            stream = await client.responses.create(
                model="gpt-4o-mini", input="more", previous_response_id=follow.id, stream=True
            )
            events = [e async for e in stream]
            assert events[-1].type == "response.completed"
            stored = await client.responses.retrieve(events[-1].response.id)
            assert stored.previous_response_id == follow.id
            await client.responses.delete(first.id)


async def test_objects_go_to_their_holder_and_the_rest_to_default_provider(
    two_mocks: tuple[str, str], start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(two_providers(*two_mocks, default_provider="west"))
    async with sdk(url, "x") as client:
        data = b'{"custom_id": "1"}\n{"custom_id": "2"}\n'
        created = await client.files.create(file=("in.jsonl", data), purpose="batch")
        assert "west" in created.id  # files.create: the default provider
        assert (await client.files.content(created.id)).content == data
        batch = await client.batches.create(
            input_file_id=created.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert (await client.batches.retrieve(batch.id)).request_counts.total == 2
        listed = await client.files.list()
        assert [f.id for f in listed.data] == [created.id]
        store = await client.vector_stores.create(name="docs", file_ids=[created.id])
        assert (await client.vector_stores.retrieve(store.id)).name == "docs"
        await client.files.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve("file-never-made")


async def test_without_default_provider_a_model_less_call_says_what_to_set(
    two_mocks: tuple[str, str], start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(two_providers(*two_mocks))
    async with sdk(url, "x") as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.files.list()
        assert "default_provider" in str(caught.value)
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve("file-unknown")


async def test_every_json_endpoint_by_model(
    two_mocks: tuple[str, str], start_proxy: ProxyFactory
) -> None:
    east, _ = two_mocks
    url = await start_proxy(
        make_config(
            provider(
                "east",
                east,
                {
                    "gpt-image-1": None,
                    "tts-1": None,
                    "omni-moderation-latest": None,
                    "rr": None,
                    "whisper-1": None,
                },
            )
        )
    )
    async with sdk(url, "x") as client:
        image = await client.images.generate(model="gpt-image-1", prompt="a cat")
        assert image.data[0].b64_json
        speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="hello")
        assert speech.content == audio_bytes(len(speech.content)) and len(speech.content) > 1000
        edited = await client.images.edit(
            model="gpt-image-1", image=("cat.png", b"\x89PNG" + bytes(3000)), prompt="hat"
        )
        assert edited.data[0].b64_json
        heard = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", b"RIFF" + bytes(5000))
        )
        assert "5004 bytes" in heard.text
        moderation = await client.moderations.create(
            model="omni-moderation-latest", input="mock-flagged text"
        )
        assert moderation.results[0].flagged
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/v1/rerank", json={"model": "rr", "query": "cat", "documents": ["a cat", "dog"]}
        ) as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["results"][0]["index"] == 0


async def test_two_instances_in_database_mode_share_owners(
    two_mocks: tuple[str, str], start_proxy: ProxyFactory, config_dsn: str
) -> None:
    import asyncpg

    from tests.helpers.db import add_provider, start_db_proxy

    east, west = two_mocks
    sql = await asyncpg.connect(config_dsn)
    try:
        await add_provider(sql, "east", east, {"gpt-4o-mini": None})
        await add_provider(sql, "west", west, {"gpt-4o-mini": None})
    finally:
        await sql.close()
    one = await start_db_proxy(start_proxy, config_dsn)
    two = await start_db_proxy(start_proxy, config_dsn)
    async with (
        sdk(one, "x") as a,
        sdk(two, "x") as b,
    ):
        # Both instances' round-robins start alike: shift one, or each follow-up would land on
        # the right provider by luck.
        await b.responses.create(model="gpt-4o-mini", input="shift")
        for i in range(4):
            first = await a.responses.create(model="gpt-4o-mini", input=f"n{i}")
            follow = await b.responses.create(  # the other instance, at once
                model="gpt-4o-mini", input="again", previous_response_id=first.id
            )
            assert follow.previous_response_id == first.id
            assert (await b.responses.retrieve(first.id)).id == first.id
