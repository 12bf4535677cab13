"""The mock's Gemini API (AI Studio) as Google's own SDK (google-genai) reads it: answers, streams
(byte for byte), function calls, thoughts, counting, embeddings, models; the key and Google's
error shape."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llm_proxy.testing.mock.gemini import embedding, plan, prompt_tokens, sse_events
from tests.helpers import Upstream
from tests.testing.conftest import MockFactory

# google-genai's async client subclasses aiohttp.ClientSession, which aiohttp warns against.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

KEY = {"x-goog-api-key": "AIza-mock-test"}
GENERATE = "/v1beta/models/m:generateContent"
HI = [{"text": "hi"}]
HELLO = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
WEATHER = types.FunctionDeclaration(
    name="weather",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "days": types.Schema(type=types.Type.INTEGER),
        },
        required=["city", "days"],
    ),
)


def client(mock: Upstream) -> genai.Client:
    options = types.HttpOptions(base_url=mock.url, api_version="v1beta")
    return genai.Client(api_key="AIza-mock-test", http_options=options)


async def post(
    http: aiohttp.ClientSession,
    mock: Upstream,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    sent = KEY if headers is None else headers
    async with http.post(mock.url + path, data=orjson.dumps(body), headers=sent) as resp:
        return resp.status, await resp.read()


async def test_answer_and_its_usage(start_mock: MockFactory) -> None:
    """Text in the server's chunks; promptTokenCount is what countTokens says."""
    mock = await start_mock(chunks=3)
    sdk = client(mock).aio
    counted = await sdk.models.count_tokens(model="gemini-2.5-flash", contents="hi")
    answer = await sdk.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert answer.text == "tok0 tok1 tok2 "
    assert answer.candidates is not None
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.model_version == "gemini-2.5-flash"
    usage = answer.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == counted.total_tokens == prompt_tokens(HELLO)
    assert (usage.candidates_token_count, usage.total_token_count) == (
        3,
        usage.prompt_token_count + 3,
    )
    assert mock.recorded[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"


async def test_stream_as_the_sdk_reads_it_and_byte_for_byte(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    """One text piece per chunk, the last finished with the whole usage; the bytes are
    `sse_events`' (`data: ...\\r\\n\\r\\n`), and without alt=sse the same responses as an array."""
    mock = await start_mock(chunks=4)
    stream = await client(mock).aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="hi"
    )
    chunks = [chunk async for chunk in stream]
    assert [chunk.text for chunk in chunks] == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    finishes = [chunk.candidates[0].finish_reason for chunk in chunks if chunk.candidates]
    assert finishes == [None, None, None, types.FinishReason.STOP]
    last_usage = chunks[-1].usage_metadata
    assert last_usage is not None and last_usage.candidates_token_count == 4

    path = "/v1beta/models/m:streamGenerateContent"
    async with http.post(mock.url + path + "?alt=sse", json=HELLO, headers=KEY) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    expected = plan(HELLO, "m", "resp-mock_2", 4, "first")
    assert raw == b"".join(sse_events(expected))
    assert raw.count(b"\r\n\r\n") == 4 and raw.endswith(b"\r\n\r\n")

    async with http.post(mock.url + path, json=HELLO, headers=KEY) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        array = orjson.loads(await resp.read())
    assert [item["candidates"][0]["content"]["parts"][0]["text"] for item in array] == [
        "tok0 ",
        "tok1 ",
        "tok2 ",
        "tok3 ",
    ]
    assert array[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_stream_is_paced(start_mock: MockFactory, http: aiohttp.ClientSession) -> None:
    """`mock_delay_ms` between the pieces, as on the OpenAI and Anthropic routes."""
    mock = await start_mock()
    body = {**HELLO, "mock_chunks": 3, "mock_delay_ms": 40}
    started = time.perf_counter()
    path = "/v1beta/models/m:streamGenerateContent?alt=sse"
    async with http.post(mock.url + path, json=body, headers=KEY) as resp:
        raw = await resp.read()
    assert time.perf_counter() - started >= 0.12  # three writes, each followed by the delay
    assert raw.count(b"data: ") == 3


async def test_function_call_then_its_response(start_mock: MockFactory) -> None:
    """A declared function is called with arguments made from its schema (Gemini's upper-case
    types read); after its functionResponse, the answer quotes it; mode NONE calls none."""
    mock = await start_mock(chunks=2)
    sdk = client(mock).aio
    tools: list[Any] = [types.Tool(function_declarations=[WEATHER])]
    answer = await sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="weather in Paris?",
        config=types.GenerateContentConfig(tools=tools),
    )
    assert answer.function_calls is not None
    (function_call,) = answer.function_calls
    assert (function_call.name, function_call.args) == ("weather", {"city": "mock", "days": 1})

    contents = [
        types.Content(role="user", parts=[types.Part(text="weather in Paris?")]),
        types.Content(role="model", parts=[types.Part(function_call=function_call)]),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="weather", response={"result": "sunny"})],
        ),
    ]
    answer = await sdk.models.generate_content(
        model="gemini-2.5-flash", contents=contents, config=types.GenerateContentConfig(tools=tools)
    )
    assert answer.text == 'The tool said: "sunny"'

    none = types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.NONE
        )
    )
    answer = await sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="weather?",
        config=types.GenerateContentConfig(tools=tools, tool_config=none),
    )
    assert answer.function_calls is None and answer.text == "tok0 tok1 "


async def test_thoughts_when_asked(start_mock: MockFactory) -> None:
    mock = await start_mock(chunks=2)
    thinking = types.ThinkingConfig(include_thoughts=True)
    answer = await client(mock).aio.models.generate_content(
        model="gemini-2.5-pro",
        contents="think",
        config=types.GenerateContentConfig(thinking_config=thinking),
    )
    assert answer.candidates is not None and answer.candidates[0].content is not None
    parts = answer.candidates[0].content.parts or []
    assert [(part.thought, part.text) for part in parts] == [
        (True, "Thinking it over."),
        (None, "tok0 tok1 "),
    ]
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.thoughts_token_count == 2


async def test_embeddings_and_models(start_mock: MockFactory) -> None:
    """embedContent and batchEmbedContents (what the SDK calls): the same text, the same
    vector."""
    mock = await start_mock()
    sdk = client(mock).aio
    async with aiohttp.ClientSession() as http:
        body = {"content": {"parts": [{"text": "a"}]}}
        status, raw = await post(http, mock, "/v1beta/models/e:embedContent", body)
    assert status == 200 and orjson.loads(raw) == {"embedding": {"values": embedding("a")}}
    many = await sdk.models.embed_content(
        model="gemini-embedding-001",
        contents=["a", "b"],
        config=types.EmbedContentConfig(output_dimensionality=4),
    )
    assert many.embeddings is not None
    assert [e.values for e in many.embeddings] == [embedding("a", 4), embedding("b", 4)]
    assert embedding("a", 4) != embedding("b", 4)
    assert mock.recorded[-1].path.endswith(":batchEmbedContents")
    names = [m.name async for m in await sdk.models.list()]
    assert "models/gemini-2.5-flash" in names
    found = await sdk.models.get(model="gemini-2.5-flash")
    assert found.supported_actions == ["generateContent", "countTokens"]


async def test_the_v1_path_answers_too(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(chunks=1)
    status, body = await post(http, mock, "/v1/models/gemini-2.5-flash:generateContent", HELLO)
    assert status == 200
    assert orjson.loads(body)["candidates"][0]["content"]["parts"] == [{"text": "tok0 "}]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "name"),
    [
        (GENERATE, HELLO, {}, 403, "PERMISSION_DENIED"),
        (GENERATE, "[]", KEY, 400, "INVALID_ARGUMENT"),
        (GENERATE, {"contents": []}, KEY, 400, "INVALID_ARGUMENT"),
        (GENERATE, {"contents": [{"parts": []}]}, KEY, 400, "INVALID_ARGUMENT"),
        (GENERATE, {"contents": [{"role": "system", "parts": HI}]}, KEY, 400, "INVALID_ARGUMENT"),
        ("/v1beta/models/m:countTokens", {}, KEY, 400, "INVALID_ARGUMENT"),
        ("/v1beta/models/m:nothing", HELLO, KEY, 404, "NOT_FOUND"),
        (GENERATE, {**HELLO, "mock_status": 429}, KEY, 429, "RESOURCE_EXHAUSTED"),
    ],
)  # fmt: skip
async def test_errors_in_googles_shape(
    start_mock: MockFactory,
    http: aiohttp.ClientSession,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    name: str,
) -> None:
    mock = await start_mock()
    got, raw = await post(http, mock, path, body, headers)
    error = orjson.loads(raw)["error"]
    assert (got, error["code"], error["status"]) == (status, status, name)
    assert isinstance(error["message"], str) and error["message"]


async def test_sdk_sees_the_missing_key_as_google_reports_it(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    """The key may come as `?key=`; a call without either is the SDK's ClientError 403. The
    recorded key is shown cut."""
    mock = await start_mock()
    path = "/v1beta/models/m:generateContent?key=AIza-query"
    async with http.post(mock.url + path, json=HELLO) as resp:
        assert resp.status == 200
    options = types.HttpOptions(base_url=mock.url, api_version="v1beta", headers={})
    sdk = genai.Client(api_key="x", http_options=options)
    headers = sdk._api_client._http_options.headers
    assert headers is not None
    headers.pop("x-goog-api-key")  # a caller without a key
    with pytest.raises(genai_errors.ClientError) as raised:
        await sdk.aio.models.generate_content(model="m", contents="hi")
    assert (raised.value.code, raised.value.status) == (403, "PERMISSION_DENIED")
    async with http.post(mock.url + "/v1beta/models/m:countTokens", json=HELLO, headers=KEY):
        pass
    async with http.get(mock.url + "/mock/requests") as resp:
        shown = (await resp.json())[-1]["headers"]
    assert shown["x-goog-api-key"] == "...test"
