"""The fake Gemini API (tests/helpers/gemini_upstream.py) against Google's own SDK (google-genai:
what it sends is what the fake must take, what the fake answers is what it must parse) and
raw HTTP for the checks the SDK would never trip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import errors, types
from google.genai.client import AsyncClient

from llm_proxy.protocols.refusals import classify_answer, classify_error
from tests.helpers.gemini_upstream import KEY, SIGNATURE, FakeGemini
from tests.helpers.refusals import GEMINI_CONTEXT

# google-genai's async client subclasses aiohttp.ClientSession, which aiohttp warns against.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

MODEL = "gemini-2.5-flash"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING"},
            "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "INTEGER"},
        },
        "required": ["city", "unit"],
    },
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


MakeSdk = Callable[..., AsyncClient]


@pytest.fixture
async def sdk() -> AsyncIterator[MakeSdk]:
    """google-genai async clients for a fake, closed at the end."""
    made: list[AsyncClient] = []

    def make(fake: FakeGemini, key: str = KEY) -> AsyncClient:
        client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fake.url))
        made.append(client.aio)
        return client.aio

    yield make
    for client in made:
        await client.aclose()


async def post(
    http: aiohttp.ClientSession, fake: FakeGemini, path: str, body: Any, key: str = KEY
) -> tuple[int, Any]:
    async with http.post(
        f"{fake.url}/v1beta/models/{path}", json=body, headers={"x-goog-api-key": key}
    ) as resp:
        return resp.status, await resp.json()


def said(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


async def test_sdk_generate_content(fake: FakeGemini, sdk: MakeSdk) -> None:
    answer = await sdk(fake).models.generate_content(model=MODEL, contents="Hello there")
    assert answer.text == "You said: Hello there"
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.prompt_token_count == 2
    assert answer.usage_metadata.candidates_token_count == 4
    assert answer.usage_metadata.total_token_count == 6
    sent = fake.requests[-1]
    assert sent.path.endswith(f"/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json["contents"] == [{"parts": [{"text": "Hello there"}], "role": "user"}]


async def test_sdk_stream_in_chunks_with_usage_last(fake: FakeGemini, sdk: MakeSdk) -> None:
    stream = await sdk(fake).models.generate_content_stream(
        model=MODEL, contents="one two three four"
    )
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 3
    assert "".join(c.text or "" for c in chunks) == "You said: one two three four"
    assert [c.candidates[0].finish_reason for c in chunks if c.candidates] == [
        None,
        None,
        types.FinishReason.STOP,
    ]
    assert chunks[0].usage_metadata and chunks[0].usage_metadata.candidates_token_count is None
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.total_token_count == 4 + 6
    assert fake.requests[-1].query == {"alt": "sse"}


async def test_sse_framing_is_googles(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{fake.url}/v1/models/{MODEL}:streamGenerateContent?alt=sse&key={KEY}", json=said("hi")
    ) as resp:
        raw = await resp.read()
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: {") for e in events[:-1])
    last = orjson.loads(events[-2][len(b"data: ") :])
    assert last["candidates"][0]["finishReason"] == "STOP"
    status, body = await post(http, fake, f"{MODEL}:streamGenerateContent", said("hi"))
    assert status == 400, body  # no alt=sse


async def test_sdk_function_call_from_required_properties(fake: FakeGemini, sdk: MakeSdk) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(**WEATHER)])]  # type: ignore[arg-type]
    )
    answer = await sdk(fake).models.generate_content(
        model=MODEL, contents="Weather in Paris?", config=config
    )
    assert answer.function_calls is not None
    call = answer.function_calls[0]
    assert (call.id, call.name, call.args) == (
        "call_1",
        "get_weather",
        {"city": "example", "unit": "celsius"},
    )
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP


async def test_function_response_round_trip(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    reply = {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}
    body: dict[str, Any] = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [reply]},
        ],
        "tools": [{"functionDeclarations": [WEATHER]}],
    }
    status, answer = await post(http, fake, f"{MODEL}:generateContent", body)
    assert status == 200, answer
    assert answer["candidates"][0]["content"]["parts"] == [{"text": 'Result received: {"temp":21}'}]
    orphan = {"contents": [body["contents"][0], body["contents"][2]]}
    status, answer = await post(http, fake, f"{MODEL}:generateContent", orphan)
    assert status == 400
    assert "immediately after a function call turn" in answer["error"]["message"]
    twice = {"contents": [*body["contents"][:2], {"role": "user", "parts": [reply, reply]}]}
    status, answer = await post(http, fake, f"{MODEL}:generateContent", twice)
    assert status == 400
    assert "number of function response parts" in answer["error"]["message"]


async def test_thoughts_first_and_counted_apart(fake: FakeGemini, sdk: MakeSdk) -> None:
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=512)
    )
    answer = await sdk(fake).models.generate_content(
        model=MODEL, contents="Why is the sky blue", config=config
    )
    assert answer.candidates and answer.candidates[0].content
    parts = answer.candidates[0].content.parts or []
    assert parts[0].thought is True
    assert parts[0].text == "Thinking about: Why is the sky blue"
    assert parts[1].text == "You said: Why is the sky blue"
    assert parts[1].thought_signature == b"fake-thought-signature"
    usage = answer.usage_metadata
    assert usage is not None
    assert usage.thoughts_token_count == 9
    assert usage.total_token_count == 5 + 7 + 9


async def test_thought_signatures_required_on_replayed_calls(
    http: aiohttp.ClientSession,
) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {}}}
    reply = {"functionResponse": {"name": "get_weather", "response": {}}}
    body: dict[str, Any] = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [reply]},
        ]
    }
    async with FakeGemini(require_thought_signatures=True) as fake:
        status, answer = await post(http, fake, f"{MODEL}:generateContent", body)
        assert status == 400
        assert "missing a thought_signature" in answer["error"]["message"]
        body["contents"][1]["parts"][0]["thoughtSignature"] = SIGNATURE
        status, answer = await post(http, fake, f"{MODEL}:generateContent", body)
        assert status == 200
        # Only the current turn's calls are checked: those before the last user text are not.
        del body["contents"][1]["parts"][0]["thoughtSignature"]
        body["contents"] += [
            {"role": "model", "parts": [{"text": "It is sunny."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ]
        status, answer = await post(http, fake, f"{MODEL}:generateContent", body)
        assert status == 200, answer


async def test_sdk_count_tokens_list_and_embed(fake: FakeGemini, sdk: MakeSdk) -> None:
    client = sdk(fake)
    counted = await client.models.count_tokens(model=MODEL, contents="a b c")
    assert counted.total_tokens == 3
    pager = await client.models.list(config={"page_size": 2})
    names = [m.name async for m in pager]
    assert names == [
        "models/gemini-2.5-flash",
        "models/gemini-2.5-pro",
        "models/gemini-embedding-001",
    ]
    assert [r.query.get("pageToken") for r in fake.requests if r.method == "GET"] == [None, "2"]
    embedded = await client.models.embed_content(
        model="gemini-embedding-001", contents=["ab", "cd"]
    )
    assert embedded.embeddings is not None
    assert [e.values for e in embedded.embeddings] == [
        [97 / 256, 98 / 256] * 4,
        [99 / 256, 100 / 256] * 4,
    ]
    assert fake.requests[-1].path.endswith("/models/gemini-embedding-001:batchEmbedContents")


async def test_embed_content_checks_the_model(
    fake: FakeGemini, http: aiohttp.ClientSession
) -> None:
    path = "gemini-embedding-001:embedContent"
    content = {"parts": [{"text": "x"}]}
    ok = {"model": "models/gemini-embedding-001", "content": content, "outputDimensionality": 3}
    status, answer = await post(http, fake, path, ok)
    assert (status, answer) == (200, {"embedding": {"values": [120 / 256] * 3}})
    status, _ = await post(http, fake, path, {**ok, "model": "models/other"})
    assert status == 400
    batch = {"requests": [{"model": "models/gemini-2.5-pro", "content": content}]}
    status, _ = await post(http, fake, "gemini-embedding-001:batchEmbedContents", batch)
    assert status == 400


async def test_keys(fake: FakeGemini, http: aiohttp.ClientSession, sdk: MakeSdk) -> None:
    with pytest.raises(errors.ClientError) as info:
        await sdk(fake, "wrong").models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == 400
    assert info.value.status == "INVALID_ARGUMENT"
    assert info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    async with http.post(f"{fake.url}/v1beta/models/{MODEL}:generateContent", json=said("x")) as r:
        assert r.status == 403
        assert (await r.json())["error"]["status"] == "PERMISSION_DENIED"
    assert "wrong" not in repr(fake) and KEY not in repr(fake)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user"),
        ({"contents": [{"role": "user", "parts": []}]}, "parts must not be empty"),
        (
            {"contents": [{"role": "user", "parts": [{"text": ""}]}]},
            "required oneof field 'data' must have one initialized field",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"text": "x", "inlineData": {}}]}]},
            "Oneof field 'data' is already set",
        ),
        ({**said("x"), "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
        ({**said("x"), "temperature": 1}, 'Unknown name "temperature"'),
        (
            {
                **said("x"),
                "generationConfig": {"thinkingConfig": {"budget": 3}},
            },
            "at 'generation_config.thinking_config'",
        ),
    ],
)
async def test_requests_google_refuses(
    fake: FakeGemini, http: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, answer = await post(http, fake, f"{MODEL}:generateContent", body)
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert message in answer["error"]["message"]


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("additionalProperties", False),
        ("$ref", "#/$defs/x"),
        ("$defs", {}),
        ("const", "a"),
        ("oneOf", [{"type": "STRING"}]),
        ("$schema", "http://json-schema.org/draft-07/schema#"),
    ],
)
async def test_schema_keywords_outside_geminis_subset(
    fake: FakeGemini, http: aiohttp.ClientSession, keyword: str, value: Any
) -> None:
    nested = {"type": "OBJECT", "properties": {"x": {"type": "STRING", keyword: value}}}
    tools = [{"functionDeclarations": [{"name": "f", "parameters": nested}]}]
    status, answer = await post(
        http, fake, f"{MODEL}:generateContent", {**said("x"), "tools": tools}
    )
    assert status == 400
    assert answer["error"]["message"] == (
        f'Invalid JSON payload received. Unknown name "{keyword}" at '
        "'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field."
    )
    # parametersJsonSchema takes any JSON Schema.
    tools = [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": nested}]}]
    status, _ = await post(http, fake, f"{MODEL}:generateContent", {**said("x"), "tools": tools})
    assert status == 200


async def test_type_lists_refused(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    schema = {"type": "object", "properties": {"x": {"type": ["string", "null"]}}}
    tools = [{"function_declarations": [{"name": "f", "parameters": schema}]}]
    status, answer = await post(
        http, fake, f"{MODEL}:generateContent", {**said("x"), "tools": tools}
    )
    assert status == 400
    assert "Invalid value at" in answer["error"]["message"]


async def test_json_mode_and_max_tokens(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    config: dict[str, Any] = {"responseMimeType": "application/json", "responseJsonSchema": schema}
    status, answer = await post(
        http, fake, f"{MODEL}:generateContent", {**said("x"), "generationConfig": config}
    )
    assert status == 200
    assert answer["candidates"][0]["content"]["parts"] == [{"text": '{"n":1}'}]
    config = {"maxOutputTokens": 2}
    _, answer = await post(
        http, fake, f"{MODEL}:generateContent", {**said("a b c"), "generationConfig": config}
    )
    candidate = answer["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "You said:"}]
    assert candidate["finishReason"] == "MAX_TOKENS"


async def test_cached_content_counts(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    body = {**said("a b"), "cachedContent": "cachedContents/abc"}
    _, answer = await post(http, fake, f"{MODEL}:generateContent", body)
    assert answer["usageMetadata"]["cachedContentTokenCount"] == 32
    assert answer["usageMetadata"]["promptTokenCount"] == 34


async def test_fail_next(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    fake.fail_next(2, 429, retry_after="7")
    fake.fail_next(1, 503)
    for status, name in [
        (429, "RESOURCE_EXHAUSTED"),
        (429, "RESOURCE_EXHAUSTED"),
        (503, "UNAVAILABLE"),
    ]:
        async with http.post(
            f"{fake.url}/v1beta/models/{MODEL}:generateContent",
            json=said("x"),
            headers={"x-goog-api-key": KEY},
        ) as resp:
            assert resp.status == status
            assert (await resp.json())["error"]["status"] == name
            assert (resp.headers.get("Retry-After") == "7") == (status == 429)
    status, _ = await post(http, fake, f"{MODEL}:generateContent", said("x"))
    assert status == 200


async def test_safety_blocks(fake: FakeGemini, sdk: MakeSdk) -> None:
    client = sdk(fake)
    fake.block_next(1, "prompt")
    answer = await client.models.generate_content(model=MODEL, contents="bad")
    assert answer.prompt_feedback is not None
    assert answer.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not answer.candidates
    fake.block_next(1, "response")
    stream = await client.models.generate_content_stream(model=MODEL, contents="one two three")
    chunks = [c async for c in stream]
    assert chunks[0].text == "You said"
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == (
        types.FinishReason.SAFETY
    )
    assert len(chunks) == 2


async def test_refusals_classified(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    """What the knobs answer is what `llm_proxy.protocols.refusals` classifies: a prompt too
    long (a 400 with Google's message), a blocked prompt and a blocked response (200s)."""
    fake.fail_next(1, 400, message=GEMINI_CONTEXT)
    fake.block_next(1, "prompt")
    fake.block_next(1, "response")
    expected = [(400, "context_window"), (200, "content_policy"), (200, "content_policy")]
    for status, reason in [*expected, (200, None)]:
        async with http.post(
            f"{fake.url}/v1beta/models/{MODEL}:generateContent",
            json=said("x"),
            headers={"x-goog-api-key": KEY},
        ) as resp:
            assert resp.status == status
            body = await resp.read()
        if status == 400:
            assert orjson.loads(body)["error"]["message"] == GEMINI_CONTEXT
            assert classify_error("gemini", status, body) == reason
        else:
            assert classify_answer("gemini", body) == reason


async def test_break_mid_stream(fake: FakeGemini, sdk: MakeSdk) -> None:
    fake.break_next()
    stream = await sdk(fake).models.generate_content_stream(model=MODEL, contents="a b c d")
    seen = []

    async def read() -> None:
        async for chunk in stream:
            seen.append(chunk.text)

    with pytest.raises(errors.APIError) as info:
        await read()
    assert len(seen) == 1
    assert seen[0] and "You said: a b c d".startswith(seen[0])
    assert info.value.code == 500


async def test_hold_until_released(fake: FakeGemini, sdk: MakeSdk) -> None:
    gate = fake.hold()
    call = asyncio.create_task(sdk(fake).models.generate_content(model=MODEL, contents="hi"))
    await fake.wait_for_requests(1)
    assert not call.done()
    gate.set()
    assert (await call).text == "You said: hi"


async def test_prefilled_answer_continued(fake: FakeGemini, http: aiohttp.ClientSession) -> None:
    body = {"contents": [*said("hi")["contents"], {"role": "model", "parts": [{"text": "Sure"}]}]}
    status, answer = await post(http, fake, f"{MODEL}:generateContent", body)
    assert status == 200
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "(continued)"}]
