"""The mock's Vertex AI: its token endpoint as google-auth uses it with `mock_service_account`,
Google's models as google-genai (Vertex mode) reads them, Anthropic's models (rawPredict,
streamRawPredict) as Anthropic's own Vertex client reads them; the bearer token and the body
checks."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from anthropic import AsyncAnthropicVertex
from google import genai
from google.auth.transport.requests import Request
from google.genai import types
from google.oauth2 import service_account

from llm_proxy.testing.mock import anthropic_stream_events, count_input_tokens
from llm_proxy.testing.mock.vertex import JWT_BEARER, TOKEN_PATH, mock_service_account
from tests.helpers import Upstream
from tests.testing.conftest import MockFactory

pytestmark = pytest.mark.filterwarnings(
    # google-genai's async client subclasses aiohttp.ClientSession, which aiohttp warns against.
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

PROJECT, LOCATION = "mock-project", "us-east5"
PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
BEARER = {"Authorization": "Bearer mock-token-1"}
HELLO = [{"role": "user", "content": "hi"}]
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def credentials(mock: Upstream) -> service_account.Credentials:
    info = mock_service_account(mock.url + TOKEN_PATH, PROJECT)
    found: service_account.Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        info, scopes=[CLOUD_PLATFORM]
    )
    return found


async def post(
    http: aiohttp.ClientSession, mock: Upstream, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.post(mock.url + path, data=orjson.dumps(body), headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_service_account_gets_tokens_from_the_mock(start_mock: MockFactory) -> None:
    """google-auth signs its JWT with the generated key and the mock hands out a token for
    it; a refresh gets the next one."""
    mock = await start_mock()
    creds = credentials(mock)
    await asyncio.to_thread(creds.refresh, Request())
    assert creds.token == "mock-token-1" and creds.valid
    await asyncio.to_thread(creds.refresh, Request())
    assert creds.token == "mock-token-2"
    form = mock.recorded[-1].body.decode()
    assert mock.recorded[-1].path == TOKEN_PATH and "assertion=" in form


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": JWT_BEARER, "assertion": "a.b.c"}, None),
        ({"grant_type": "refresh_token", "refresh_token": "1//r", "client_id": "c"}, None),
        ({"grant_type": JWT_BEARER}, "invalid_grant"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
async def test_token_grants(
    start_mock: MockFactory, http: aiohttp.ClientSession, form: dict[str, str], error: str | None
) -> None:
    mock = await start_mock()
    async with http.post(mock.url + TOKEN_PATH, data=form) as resp:
        body = await resp.json()
    if error is None:
        assert resp.status == 200
        assert body == {"access_token": "mock-token-1", "expires_in": 3600, "token_type": "Bearer"}
    else:
        assert resp.status == 400 and body["error"] == error and body["error_description"]


async def test_google_models_through_google_genai(start_mock: MockFactory) -> None:
    """google-genai in Vertex mode, its credentials the mock's service account: the call
    carries the token the mock issued, the answer and its stream are Gemini's."""
    mock = await start_mock(chunks=2)
    client = genai.Client(
        vertexai=True,
        project=PROJECT,
        location=LOCATION,
        credentials=credentials(mock),
        http_options=types.HttpOptions(base_url=mock.url),
    )
    answer = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert answer.text == "tok0 tok1 "
    call = mock.recorded[-1]
    assert call.path.endswith(
        f"/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    )
    assert call.headers["Authorization"] == "Bearer mock-token-1"
    stream = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="x")
    assert [chunk.text async for chunk in stream] == ["tok0 ", "tok1 "]


async def test_anthropic_models_through_anthropics_vertex_client(start_mock: MockFactory) -> None:
    """rawPredict answers a Message, streamRawPredict streams exactly as /v1/messages does."""
    mock = await start_mock(chunks=3)
    vertex = AsyncAnthropicVertex(
        region=LOCATION, project_id=PROJECT, access_token="tok", base_url=mock.url + "/v1"
    )
    async with vertex as client:
        message = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.model == "claude-sonnet-4-5"
        assert [block.type for block in message.content] == ["text"]
        assert message.content[0].text == "tok0 tok1 tok2 "  # type: ignore[union-attr]
        sent = orjson.loads(mock.recorded[-1].body)
        assert "model" not in sent and isinstance(sent["anthropic_version"], str)
        assert mock.recorded[-1].path == f"{PREFIX}/anthropic/models/claude-sonnet-4-5:rawPredict"

        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = [piece async for piece in stream.text_stream]
        assert text == ["tok0 ", "tok1 ", "tok2 "]
    assert mock.recorded[-1].path.endswith(":streamRawPredict")


async def test_stream_raw_predict_bytes(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(chunks=2)
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 8, "messages": HELLO}
    path = f"{PREFIX}/anthropic/models/claude-x:streamRawPredict"
    async with http.post(mock.url + path, json=body, headers=BEARER) as resp:
        raw = await resp.read()
    tokens = count_input_tokens(body)
    assert raw == b"".join(anthropic_stream_events("claude-x", 2, input_tokens=tokens))


GENERATE = "/google/models/g:generateContent"
RAW = "/anthropic/models/c:rawPredict"
MESSAGES = {"anthropic_version": "v", "max_tokens": 8, "messages": HELLO}
NO_CONTENTS: dict[str, Any] = {"contents": []}
INVALID = "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "shape"),
    [
        (GENERATE, NO_CONTENTS, {}, 401, "UNAUTHENTICATED"),
        (GENERATE, NO_CONTENTS, {"Authorization": "Bearer "}, 401, "UNAUTHENTICATED"),
        (GENERATE, NO_CONTENTS, BEARER, 400, "INVALID_ARGUMENT"),
        ("/google/models/g:rawPredict", {}, BEARER, 404, "NOT_FOUND"),
        ("/meta/models/m:rawPredict", {}, BEARER, 404, "NOT_FOUND"),
        (RAW, {"max_tokens": 8, "messages": HELLO}, BEARER, 400, INVALID),
        (RAW, {**MESSAGES, "model": "c"}, BEARER, 400, INVALID),
        (RAW, {"anthropic_version": "v", "messages": HELLO}, BEARER, 400, INVALID),
        (RAW, MESSAGES, {}, 401, "UNAUTHENTICATED"),
    ],
)
async def test_errors(
    start_mock: MockFactory,
    http: aiohttp.ClientSession,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    shape: str,
) -> None:
    """Google's shape for what Google's front answers (the token, the route), Anthropic's for
    what Anthropic's model checks."""
    mock = await start_mock()
    got, answer = await post(http, mock, PREFIX + path, body, headers)
    assert got == status
    if shape.isupper():
        assert (answer["error"]["code"], answer["error"]["status"]) == (status, shape)
    else:
        assert answer["type"] == "error" and answer["error"]["type"] == shape
