"""Google AI Studio (`gemini`), Vertex AI (`vertex`) and Amazon Bedrock (`bedrock`) providers
behind the proxy, driven by the real SDKs (openai, anthropic, google-genai) against fakes that
check what the real services check: the AI Studio key, Vertex's OAuth token (minted from a
service account whose JWT the fake token server verifies), Bedrock's SigV4 signature
(recomputed by botocore) and its binary event-stream framing. Every stream passes its client
protocol's grammar checker; keys, failover, usage and errors work as on every other route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.helpers import ProxyFactory, Upstream, eventually, make_config, provider, sample, scrape
from tests.helpers.anthropic_upstream import anthropic_provider, anthropic_upstream
from tests.helpers.bedrock_upstream import ACCESS_KEY, SECRET_KEY, FakeBedrock
from tests.helpers.gemini_upstream import KEY as GEMINI_KEY
from tests.helpers.gemini_upstream import FakeGemini
from tests.helpers.google_oauth import FakeGoogleOAuth
from tests.helpers.grammar_anthropic import check_anthropic_stream
from tests.helpers.grammar_gemini import check_gemini_stream
from tests.helpers.grammar_openai import check_openai_stream
from tests.helpers.refusals import BEDROCK_CONTEXT
from tests.helpers.vertex_upstream import LOCATION, PROJECT, FakeVertex

pytestmark = pytest.mark.filterwarnings(
    # google-genai's async client subclasses aiohttp.ClientSession (its own doing).
    "ignore:Inheritance class .* from ClientSession is discouraged:DeprecationWarning"
)

CLIENT_KEY = "sk-team-cloud-0123"
KEYS = [{"name": "team", "key": CLIENT_KEY}]
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


def openai_sdk(url: str) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    _OPEN.append(client)
    return client


def anthropic_sdk(url: str) -> anthropic.AsyncAnthropic:
    client = anthropic.AsyncAnthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
    _OPEN.append(client)
    return client


def genai_sdk(url: str, version: str | None = None) -> genai.Client:
    options: dict[str, Any] = {"base_url": url}
    if version is not None:
        options["api_version"] = version
    return genai.Client(api_key=CLIENT_KEY, http_options=genai_types.HttpOptions(**options))


@pytest.fixture
async def gemini_fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


@pytest.fixture
async def oauth() -> AsyncIterator[FakeGoogleOAuth]:
    async with FakeGoogleOAuth() as fake:
        yield fake


@pytest.fixture
async def vertex_fake(oauth: FakeGoogleOAuth) -> AsyncIterator[FakeVertex]:
    async with FakeVertex(token_valid=oauth.valid) as fake:
        yield fake


@pytest.fixture
async def bedrock_fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as fake:
        yield fake


def gemini_provider(fake: FakeGemini, mapping: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "gem",
        "provider_type": "gemini",
        "api_base": fake.url,
        "api_key": GEMINI_KEY,
        "model_mapping": mapping,
        **extra,
    }


def vertex_provider(
    fake: FakeVertex, oauth: FakeGoogleOAuth, mapping: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "name": "vtx",
        "provider_type": "vertex",
        "api_base": fake.url,
        "project": PROJECT,
        "location": LOCATION,
        "credentials_json": json.dumps(oauth.service_account_info()),
        "model_mapping": mapping,
        **extra,
    }


def bedrock_provider(fake: FakeBedrock, mapping: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "bed",
        "provider_type": "bedrock",
        "api_base": fake.url,
        "region": "us-east-1",
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "model_mapping": mapping,
        **extra,
    }


async def openai_stream(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bytes:
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def anthropic_stream(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bytes:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    async with http.post(f"{url}/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


# Google AI Studio.


async def test_openai_clients_on_ai_studio_with_tools_and_streams(
    start_proxy: ProxyFactory, gemini_fake: FakeGemini, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(gemini_provider(gemini_fake, {"gpt-4o": "gemini-2.5-flash"}), master_keys=KEYS)
    )
    client = openai_sdk(url)
    answer = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert answer.choices[0].message.content == "You said: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    sent = gemini_fake.requests[-1]
    assert sent.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert CLIENT_KEY not in str(sent.headers)
    # Tools: the schema converted to Gemini's subset (the fake refuses the rest).
    called = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[TOOL],  # type: ignore[list-item]
    )
    calls = called.choices[0].message.tool_calls
    assert calls and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert called.choices[0].finish_reason == "tool_calls"
    assert json.loads(calls[0].function.arguments)["city"]
    # A stream, in OpenAI's grammar, usage at the end when asked.
    raw = await openai_stream(
        http,
        url,
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    check_openai_stream(raw)
    assert b"three" in raw and raw.endswith(b"data: [DONE]\n\n")
    assert gemini_fake.requests[-1].query.get("alt") == "sse"
    families = await scrape(http, url)
    labels = {"model": "gpt-4o", "provider": "gem", "api_key_name": "team"}
    assert (
        sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) or 0
    ) > 0


async def test_anthropic_clients_on_ai_studio_stream_in_anthropics_grammar(
    start_proxy: ProxyFactory, gemini_fake: FakeGemini, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(
            gemini_provider(gemini_fake, {"claude-sonnet": "gemini-2.5-pro"}), master_keys=KEYS
        )
    )
    message = await anthropic_sdk(url).messages.create(
        model="claude-sonnet",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi Gemini"}],
    )
    assert message.content[0].type == "text" and "Hi Gemini" in message.content[0].text
    sent = gemini_fake.requests[-1].json
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["generationConfig"]["maxOutputTokens"] == 200
    raw = await anthropic_stream(
        http,
        url,
        {
            "model": "claude-sonnet",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "stream please"}],
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        },
    )
    check_anthropic_stream(raw)


async def test_gemini_native_clients_pass_through_to_ai_studio(
    start_proxy: ProxyFactory, gemini_fake: FakeGemini, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(
            gemini_provider(
                gemini_fake, {"gemini-flash": "gemini-2.5-flash", "embed": "gemini-embedding-001"}
            ),
            master_keys=KEYS,
        )
    )
    for version in ("v1beta", None):  # the SDK's default (v1) and v1beta
        client = genai_sdk(url, version)
        answer = await client.aio.models.generate_content(model="gemini-flash", contents="Hi there")
        assert answer.text == "You said: Hi there"
        sent = gemini_fake.requests[-1]
        assert sent.path.endswith("/models/gemini-2.5-flash:generateContent")
        assert sent.headers["x-goog-api-key"] == GEMINI_KEY  # the client's key swapped
        said = ""
        async for chunk in await client.aio.models.generate_content_stream(
            model="gemini-flash", contents="a b c d"
        ):
            said += chunk.text or ""
        assert said == "You said: a b c d"
        counted = await client.aio.models.count_tokens(model="gemini-flash", contents="a b c")
        assert counted.total_tokens and counted.total_tokens > 0
        listed = [m.name async for m in await client.aio.models.list()]
        assert "models/gemini-flash" in listed
    embedded = await genai_sdk(url).aio.models.embed_content(model="embed", contents="hello")
    assert embedded.embeddings and embedded.embeddings[0].values
    # Usage from the passed-through answers, in the metrics like any other.
    families = await scrape(http, url)
    labels = {"model": "gemini-flash", "provider": "gem", "api_key_name": "team"}
    assert (
        sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) or 0
    ) > 0
    # The key as `?key=`, as some clients send it: accepted; the wrong one refused in
    # Google's shape.
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]}]}
    path = "/v1beta/models/gemini-flash:generateContent"
    async with http.post(f"{url}{path}?key={CLIENT_KEY}", json=body) as resp:
        assert resp.status == 200
        assert "key" not in gemini_fake.requests[-1].query  # never reaches the upstream
    async with http.post(f"{url}{path}?key=wrong", json=body) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
        assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED"


async def test_gemini_native_clients_translated_for_openai_and_anthropic_providers(
    start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    async with anthropic_upstream() as anth:
        url = await start_proxy(
            make_config(
                anthropic_provider("anth", anth.url, {"claude-g": "claude-up"}),
                master_keys=KEYS,
            )
        )
        client = genai_sdk(url)
        answer = await client.aio.models.generate_content(
            model="claude-g",
            contents="Hi",
            config=genai_types.GenerateContentConfig(
                system_instruction="Be brief.", max_output_tokens=64
            ),
        )
        assert answer.text
        sent = anth.received[-1].body
        assert sent["model"] == "claude-up" and sent["max_tokens"] == 64
        assert sent["system"][0]["text"] == "Be brief." or sent["system"] == "Be brief."
        body = {"contents": [{"role": "user", "parts": [{"text": "stream"}]}]}
        headers = {"x-goog-api-key": CLIENT_KEY}
        async with http.post(
            f"{url}/v1beta/models/claude-g:streamGenerateContent?alt=sse",
            json=body,
            headers=headers,
        ) as resp:
            assert resp.status == 200
            raw = await resp.read()
        check_gemini_stream(raw)
        counted = await client.aio.models.count_tokens(model="claude-g", contents="a b c")
        assert counted.total_tokens


async def test_the_models_list_answers_in_the_callers_format(
    start_proxy: ProxyFactory, gemini_fake: FakeGemini, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(gemini_provider(gemini_fake, {"gemini-flash": None}), master_keys=KEYS)
    )
    async with http.get(f"{url}/v1/models", headers={"x-goog-api-key": CLIENT_KEY}) as resp:
        assert (await resp.json())["models"][0]["name"] == "models/gemini-flash"
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with http.get(f"{url}/v1/models", headers=auth) as resp:
        assert (await resp.json())["data"][0]["id"] == "gemini-flash"


async def test_ai_studio_errors_reach_each_client_in_its_shape(
    start_proxy: ProxyFactory, gemini_fake: FakeGemini
) -> None:
    url = await start_proxy(
        make_config(gemini_provider(gemini_fake, {"m": "gemini-2.5-flash"}), master_keys=KEYS)
    )
    gemini_fake.fail_next(3, status=400)
    with pytest.raises(openai.BadRequestError):
        await openai_sdk(url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        await anthropic_sdk(url).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(genai_errors.ClientError) as caught:
        await genai_sdk(url).aio.models.generate_content(model="m", contents="x")
    assert caught.value.code == 400
    # A schema feature Gemini cannot express: a 400 naming the field, before any call.
    calls = len(gemini_fake.requests)
    bad = {**TOOL["function"], "parameters": {"type": "object", "not": {"type": "string"}}}
    with pytest.raises(openai.BadRequestError) as refused:
        await openai_sdk(url).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": bad}],  # type: ignore[typeddict-item]
        )
    assert "not" in str(refused.value)
    assert len(gemini_fake.requests) == calls


# Vertex AI.


async def test_vertex_gemini_and_claude_models_with_a_service_account(
    start_proxy: ProxyFactory,
    vertex_fake: FakeVertex,
    oauth: FakeGoogleOAuth,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_proxy(
        make_config(
            vertex_provider(
                vertex_fake,
                oauth,
                {"gemini-pro": "gemini-2.5-pro", "claude-sonnet": "claude-sonnet-4@20250514"},
            ),
            master_keys=KEYS,
        )
    )
    answer = await openai_sdk(url).chat.completions.create(
        model="gemini-pro", messages=[{"role": "user", "content": "Hello Vertex"}]
    )
    assert answer.choices[0].message.content == "You said: Hello Vertex"
    sent = vertex_fake.requests[-1]
    assert sent.path == (
        f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
        "gemini-2.5-pro:generateContent"
    )
    message = await anthropic_sdk(url).messages.create(
        model="claude-sonnet", max_tokens=30, messages=[{"role": "user", "content": "Hi Claude"}]
    )
    assert message.content[0].type == "text"
    sent = vertex_fake.requests[-1]
    assert sent.path.endswith("/publishers/anthropic/models/claude-sonnet-4%4020250514:rawPredict")
    assert sent.json is not None
    assert sent.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent.json
    raw = await anthropic_stream(
        http,
        url,
        {
            "model": "claude-sonnet",
            "max_tokens": 30,
            "stream": True,
            "messages": [{"role": "user", "content": "stream"}],
        },
    )
    # Relayed as Vertex streams it (its events are Anthropic's own).
    assert raw.rstrip().endswith(b'{"type":"message_stop"}') or b"message_stop" in raw
    assert vertex_fake.requests[-1].path.endswith(":streamRawPredict")
    raw = await openai_stream(
        http,
        url,
        {"model": "gemini-pro", "stream": True, "messages": [{"role": "user", "content": "s"}]},
    )
    check_openai_stream(raw)
    # One token, fetched once, shared by every call.
    assert oauth.grants == 1


async def test_vertex_tokens_are_refreshed_before_expiry_off_the_request_path(
    start_proxy: ProxyFactory, oauth: FakeGoogleOAuth, vertex_fake: FakeVertex
) -> None:
    oauth.expires_in = 3  # refreshed ahead of expiry, in the background
    url = await start_proxy(
        make_config(
            vertex_provider(vertex_fake, oauth, {"g": "gemini-2.5-flash"}), master_keys=KEYS
        )
    )
    client = openai_sdk(url)
    await client.chat.completions.create(model="g", messages=[{"role": "user", "content": "1"}])
    await oauth.wait_for_grants(2)  # a refresh without any request asking for it
    answer = await client.chat.completions.create(
        model="g", messages=[{"role": "user", "content": "2"}]
    )
    assert answer.choices[0].message.content == "You said: 2"


async def test_a_failing_token_endpoint_is_a_clear_provider_error_never_a_hang(
    start_proxy: ProxyFactory, oauth: FakeGoogleOAuth, vertex_fake: FakeVertex
) -> None:
    oauth.fail_next(100, 400, "invalid_grant", "Invalid JWT Signature.")
    url = await start_proxy(
        make_config(
            vertex_provider(vertex_fake, oauth, {"g": "gemini-2.5-flash"}),
            master_keys=KEYS,
            connect_timeout_secs=2,
        )
    )
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_sdk(url).chat.completions.create(
            model="g", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 502
    assert "invalid_grant" in str(caught.value)
    assert not vertex_fake.requests  # never called without a token


# Amazon Bedrock.


async def test_bedrock_for_openai_and_anthropic_clients_signed_and_streamed(
    start_proxy: ProxyFactory, bedrock_fake: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    model_id = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    url = await start_proxy(
        make_config(bedrock_provider(bedrock_fake, {"claude": model_id}), master_keys=KEYS)
    )
    answer = await openai_sdk(url).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Hello Bedrock"}]
    )
    assert answer.choices[0].message.content == "You said: Hello Bedrock"
    assert bedrock_fake.requests[-1].path.endswith("/converse")
    assert not bedrock_fake.refusals  # botocore recomputed the same signature
    called = await openai_sdk(url).chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert called.choices[0].message.tool_calls
    raw = await openai_stream(
        http,
        url,
        {"model": "claude", "stream": True, "messages": [{"role": "user", "content": "a b c"}]},
    )
    check_openai_stream(raw)
    assert b"c" in raw
    raw = await anthropic_stream(
        http,
        url,
        {
            "model": "claude",
            "max_tokens": 40,
            "stream": True,
            "messages": [{"role": "user", "content": "x y"}],
        },
    )
    check_anthropic_stream(raw)
    assert bedrock_fake.requests[-1].path.endswith("/converse-stream")
    families = await scrape(http, url)
    labels = {"model": "claude", "provider": "bed", "api_key_name": "team"}
    assert (
        sample(families, "llm_proxy_tokens_total", token_type="prompt_tokens", **labels) or 0
    ) > 0


async def test_a_corrupted_bedrock_frame_ends_the_stream_with_an_error_event(
    start_proxy: ProxyFactory, bedrock_fake: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(bedrock_provider(bedrock_fake, {"m": "meta.llama3-70b"}), master_keys=KEYS)
    )
    bedrock_fake.corrupt_next(1)
    raw = await anthropic_stream(
        http,
        url,
        {
            "model": "m",
            "max_tokens": 9,
            "stream": True,
            "messages": [{"role": "user", "content": "a b"}],
        },
    )
    assert raw.rstrip().splitlines()[-2:][0] == b"event: error"
    assert b"corrupted" in raw


async def test_bedrock_throttling_fails_over_to_vertex_for_the_same_model(
    start_proxy: ProxyFactory,
    bedrock_fake: FakeBedrock,
    vertex_fake: FakeVertex,
    oauth: FakeGoogleOAuth,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_proxy(
        make_config(
            bedrock_provider(
                bedrock_fake, {"claude": "anthropic.claude-3-5-sonnet-20240620-v1:0"}, weight=1000
            ),
            vertex_provider(vertex_fake, oauth, {"claude": "claude-sonnet-4@20250514"}, weight=1),
            master_keys=KEYS,
        )
    )
    bedrock_fake.fail_next(1, "ModelNotReadyException")
    message = await anthropic_sdk(url).messages.create(
        model="claude", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"
    assert len(bedrock_fake.requests) == 1 and len(vertex_fake.requests) == 1
    families = await scrape(http, url)
    assert sample(families, "llm_proxy_upstream_attempts_total", provider="bed", outcome="http_5xx")


async def test_credentials_never_leak_into_errors_or_health(
    start_proxy: ProxyFactory,
    bedrock_fake: FakeBedrock,
    vertex_fake: FakeVertex,
    oauth: FakeGoogleOAuth,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    url = await start_proxy(
        make_config(
            bedrock_provider(bedrock_fake, {"b": "amazon.nova-pro-v1:0"}),
            vertex_provider(vertex_fake, oauth, {"v": "gemini-2.5-flash"}),
            master_keys=KEYS,
        )
    )
    await openai_sdk(url).chat.completions.create(
        model="v", messages=[{"role": "user", "content": "x"}]
    )
    async with http.get(f"{url}/health/detailed") as resp:
        text = await resp.text()
    detail = json.loads(text)
    kinds = {c["kind"] for c in detail["credentials"]}
    assert "google_service_account" in kinds
    assert SECRET_KEY not in text and "PRIVATE KEY" not in text
    tokens = await eventually(lambda: list(oauth._tokens))
    assert not [token for token in tokens if token in text]


# Every provider type, for each client: google-genai here (the OpenAI and Anthropic SDKs above).

WEATHER = genai_types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city",
    parameters=genai_types.Schema(
        type=genai_types.Type.OBJECT,
        properties={"city": genai_types.Schema(type=genai_types.Type.STRING)},
        required=["city"],
    ),
)


@pytest.mark.parametrize(
    "model",
    [
        "on-gemini",
        "on-vertex-gemini",
        "on-vertex-claude",
        "on-bedrock",
        "on-openai",
        "on-anthropic",
    ],
)
async def test_google_genai_on_every_provider_type_streamed_and_with_tools(
    model: str,
    start_proxy: ProxyFactory,
    gemini_fake: FakeGemini,
    vertex_fake: FakeVertex,
    oauth: FakeGoogleOAuth,
    bedrock_fake: FakeBedrock,
    upstream: Upstream,
    http: aiohttp.ClientSession,
) -> None:
    async with anthropic_upstream() as anth:
        url = await start_proxy(
            make_config(
                gemini_provider(gemini_fake, {"on-gemini": "gemini-2.5-flash"}),
                vertex_provider(
                    vertex_fake,
                    oauth,
                    {
                        "on-vertex-gemini": "gemini-2.5-pro",
                        "on-vertex-claude": "claude-sonnet-4@20250514",
                    },
                ),
                bedrock_provider(bedrock_fake, {"on-bedrock": "amazon.nova-pro-v1:0"}),
                provider("oai", upstream.api_base, {"on-openai": "gpt-4o-mini"}),
                anthropic_provider("anth", anth.url, {"on-anthropic": "claude-up"}),
                master_keys=KEYS,
            )
        )
        client = genai_sdk(url)
        answer = await client.aio.models.generate_content(model=model, contents="Hello")
        assert answer.text
        assert answer.candidates and answer.candidates[0].finish_reason == "STOP"
        assert answer.usage_metadata and answer.usage_metadata.prompt_token_count
        tools = genai_types.GenerateContentConfig(
            tools=[genai_types.Tool(function_declarations=[WEATHER])],
            automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        )
        called = await client.aio.models.generate_content(
            model=model, contents="Weather in Paris?", config=tools
        )
        assert called.candidates  # a call where the upstream calls tools, text where not
        if model not in ("on-vertex-claude", "on-anthropic"):  # (those fakes answer text)
            assert called.function_calls and called.function_calls[0].name == "get_weather"
        body = {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}
        async with http.post(
            f"{url}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            json=body,
            headers={"x-goog-api-key": CLIENT_KEY},
        ) as resp:
            assert resp.status == 200, await resp.text()
            raw = await resp.read()
        events = check_gemini_stream(raw)
        assert events[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_a_key_in_the_url_never_reaches_a_log_line(
    start_proxy: ProxyFactory,
    gemini_fake: FakeGemini,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = await start_proxy(
        make_config(gemini_provider(gemini_fake, {"g": "gemini-2.5-flash"}), master_keys=KEYS)
    )
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]}]}
    for key in (CLIENT_KEY, "sk-wrong-key-in-url-0000"):
        async with http.post(f"{url}/v1beta/models/g:generateContent?key={key}", json=body):
            pass
    gemini_fake.fail_next(1, status=500)  # an upstream error: logged with its context
    async with http.post(f"{url}/v1beta/models/g:generateContent?key={CLIENT_KEY}", json=body):
        pass
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "generateContent" in text  # the access lines are there...
    assert CLIENT_KEY not in text and "sk-wrong-key-in-url" not in text  # ...without the key
    assert GEMINI_KEY not in text


async def test_gemini_clients_within_their_keys_token_limits_and_budgets(
    start_proxy: ProxyFactory, gemini_fake: FakeGemini, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(
            gemini_provider(gemini_fake, {"g": "gemini-2.5-flash"}),
            master_keys=[{"name": "small", "key": CLIENT_KEY, "tokens_per_minute": 1000}],
            pricing={"g": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        )
    )
    client = genai_sdk(url)
    answer = await client.aio.models.generate_content(model="g", contents="Hi")
    assert answer.text
    families = await scrape(http, url)
    cost = sample(families, "llm_proxy_cost_usd_total", model="g", provider="gem")
    assert cost and cost > 0  # priced from the usage Gemini reported
    # Asking for more output than the key's tokens per minute leave: a 429, in Google's shape.
    with pytest.raises(genai_errors.ClientError) as refused:
        await client.aio.models.generate_content(
            model="g",
            contents="Hi",
            config=genai_types.GenerateContentConfig(max_output_tokens=5000),
        )
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"


async def test_bedrock_context_window_and_refusal_take_their_chains_to_gemini(
    start_proxy: ProxyFactory,
    bedrock_fake: FakeBedrock,
    gemini_fake: FakeGemini,
    http: aiohttp.ClientSession,
) -> None:
    """Routing's chains across clouds: Bedrock's "Input is too long" (a 400
    ValidationException) takes the context-window chain, its guardrail (a 200) the
    content-policy one; each to a Gemini model, for an OpenAI client."""
    url = await start_proxy(
        make_config(
            bedrock_provider(bedrock_fake, {"claude": "anthropic.claude-3-5-sonnet-20240620-v1:0"}),
            gemini_provider(gemini_fake, {"gemini-long": "gemini-2.5-pro"}),
            master_keys=KEYS,
            routing={
                "context_window_fallbacks": {"claude": ["gemini-long"]},
                "content_policy_fallbacks": {"claude": ["gemini-long"]},
            },
        )
    )
    bedrock_fake.fail_next(1, "ValidationException", BEDROCK_CONTEXT)
    raw = await openai_sdk(url).chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-llm-proxy-model"] == "gemini-long"
    assert raw.parse().choices[0].message.content
    bedrock_fake.refuse_next(1, "guardrail_intervened")
    raw = await openai_sdk(url).chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-llm-proxy-model"] == "gemini-long"
    assert len(bedrock_fake.requests) == 2 and len(gemini_fake.requests) == 2
    families = await scrape(http, url)
    for reason in ("context_window", "content_policy"):
        labels = {"from": "claude", "to": "gemini-long", "reason": reason}
        assert sample(families, "llm_proxy_fallbacks_total", **labels) == 1


async def test_a_gemini_client_falls_back_from_a_blocked_prompt(
    start_proxy: ProxyFactory,
    gemini_fake: FakeGemini,
    bedrock_fake: FakeBedrock,
) -> None:
    """A google-genai client: Gemini's blocked prompt (a 200 with promptFeedback.blockReason)
    takes the content-policy chain to a Bedrock model, answered in Gemini's shape."""
    url = await start_proxy(
        make_config(
            gemini_provider(gemini_fake, {"gemini-flash": "gemini-2.5-flash"}),
            bedrock_provider(bedrock_fake, {"claude": "anthropic.claude-3-5-sonnet-20240620-v1:0"}),
            master_keys=KEYS,
            routing={"content_policy_fallbacks": {"gemini-flash": ["claude"]}},
        )
    )
    gemini_fake.block_next(1, "prompt")
    answer = await genai_sdk(url).aio.models.generate_content(
        model="gemini-flash", contents="Hi there"
    )
    assert answer.text
    assert len(gemini_fake.requests) == 1 and len(bedrock_fake.requests) == 1
