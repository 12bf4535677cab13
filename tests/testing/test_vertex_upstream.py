"""The fake Vertex AI (tests/helpers/vertex_upstream.py) against the official clients: google-genai
in Vertex mode for Gemini, the Anthropic SDK's AnthropicVertex for Claude (both with a static
access token, so no Google credentials are needed), and raw HTTP for the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import pytest
from google import genai
from google.genai import types
from google.genai.client import AsyncClient
from google.oauth2.credentials import Credentials

from tests.helpers.vertex_upstream import ANTHROPIC_VERSION, LOCATION, PROJECT, FakeVertex, host_for

# google-genai's async client subclasses aiohttp.ClientSession, which aiohttp warns against.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

TOKEN = "ya29.fake-access-token"
GEMINI = "gemini-2.5-pro"
CLAUDE = "claude-sonnet-4@20250514"
# The Vertex version, over the SDK's own default (anthropic 2.x sends its API version).
VERSION = {"anthropic_version": ANTHROPIC_VERSION}
BASE = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
X: Any = [{"role": "user", "content": "x"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    async with FakeVertex(token_valid=lambda token: token == TOKEN) as fake:
        yield fake


MakeGemini = Callable[..., AsyncClient]


@pytest.fixture
async def gemini() -> AsyncIterator[MakeGemini]:
    """google-genai async clients in Vertex mode for a fake, closed at the end."""
    made: list[AsyncClient] = []

    def make(fake: FakeVertex, token: str = TOKEN) -> AsyncClient:
        client = genai.Client(
            vertexai=True,
            project=PROJECT,
            location=LOCATION,
            credentials=Credentials(token=token),  # type: ignore[no-untyped-call]
            http_options=types.HttpOptions(base_url=fake.url),
        )
        made.append(client.aio)
        return client.aio

    yield make
    for client in made:
        await client.aclose()


def claude(fake: FakeVertex, token: str = TOKEN) -> anthropic.AsyncAnthropicVertex:
    """(Used as a context manager: its connections are closed at the end.)"""
    return anthropic.AsyncAnthropicVertex(
        region=LOCATION,
        project_id=PROJECT,
        access_token=token,
        base_url=f"{fake.url}/v1",
        max_retries=0,
    )


async def post(
    http: aiohttp.ClientSession, fake: FakeVertex, path: str, body: Any, token: str = TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(fake.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_gemini_through_google_genai(fake: FakeVertex, gemini: MakeGemini) -> None:
    answer = await gemini(fake).models.generate_content(model=GEMINI, contents="Hello there")
    assert answer.text == "You said: Hello there"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.traffic_type == types.TrafficType.ON_DEMAND
    sent = fake.requests[-1]
    assert sent.path.endswith(
        f"/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{GEMINI}:generateContent"
    )
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    stream = await gemini(fake).models.generate_content_stream(model=GEMINI, contents="a b c")
    chunks = [c async for c in stream]
    assert "".join(c.text or "" for c in chunks) == "You said: a b c"
    assert fake.requests[-1].query == {"alt": "sse"}


async def test_gemini_role_required(fake: FakeVertex, http: aiohttp.ClientSession) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    status, answer = await post(http, fake, f"{BASE}/google/models/{GEMINI}:generateContent", body)
    assert status == 400
    assert answer["error"]["message"] == "Please use a valid role: user, model."


async def test_gemini_schema_checks_shared(fake: FakeVertex, http: aiohttp.ClientSession) -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}],
    }
    status, answer = await post(http, fake, f"{BASE}/google/models/{GEMINI}:generateContent", body)
    assert status == 400
    assert 'Unknown name "additionalProperties"' in answer["error"]["message"]


async def test_claude_through_anthropic_vertex(fake: FakeVertex) -> None:
    hello: Any = [{"role": "user", "content": "Hi there"}]
    async with claude(fake) as client:
        message = await client.messages.create(
            model=CLAUDE, max_tokens=100, messages=hello, extra_body=VERSION
        )
        assert message.content[0].type == "text"
        assert message.content[0].text == "You said: Hi there"
        sent = fake.requests[-1]
        assert sent.path == f"{BASE}/anthropic/models/{CLAUDE}:rawPredict"
        assert sent.json["anthropic_version"] == ANTHROPIC_VERSION
        assert "model" not in sent.json
        async with client.messages.stream(
            model=CLAUDE, max_tokens=100, messages=hello, extra_body=VERSION
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
    assert text == "You said: Hi there"
    assert fake.requests[-1].path.endswith(":streamRawPredict")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": CLAUDE, "anthropic_version": ANTHROPIC_VERSION},
            "model: Extra inputs are not permitted",
        ),
        ({}, "anthropic_version: Field required"),
        ({"anthropic_version": "2023-06-01"}, "anthropic_version: Input should be"),
    ],
)
async def test_claude_body_refused(
    fake: FakeVertex, http: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **body}
    status, answer = await post(http, fake, f"{BASE}/anthropic/models/{CLAUDE}:rawPredict", body)
    assert status == 400
    assert answer["type"] == "error"
    assert answer["error"] == {
        "type": "invalid_request_error",
        "message": answer["error"]["message"],
    }
    assert message in answer["error"]["message"]


async def test_claude_count_tokens(fake: FakeVertex, http: aiohttp.ClientSession) -> None:
    path = f"{BASE}/anthropic/models/count-tokens:rawPredict"
    body = {"model": CLAUDE, "system": "Be brief", "messages": [{"role": "user", "content": "a b"}]}
    assert await post(http, fake, path, body) == (200, {"input_tokens": 4})
    del body["model"]
    status, answer = await post(http, fake, path, body)
    assert (status, answer["error"]["message"]) == (400, "model: Field required")


async def test_tokens_refused(fake: FakeVertex, http: aiohttp.ClientSession) -> None:
    path = f"{BASE}/google/models/{GEMINI}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    for token in ("", "ya29.expired"):
        status, answer = await post(http, fake, path, body, token=token)
        assert status == 401
        assert answer["error"]["status"] == "UNAUTHENTICATED"
    async with claude(fake, "ya29.expired") as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=X, extra_body=VERSION)


async def test_project_and_location(fake: FakeVertex, http: aiohttp.ClientSession) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    other_project = f"/v1/projects/other/locations/{LOCATION}/publishers/google/models/{GEMINI}"
    status, answer = await post(http, fake, other_project + ":generateContent", body)
    assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED")
    other_location = (
        f"/v1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/{GEMINI}"
    )
    status, answer = await post(http, fake, other_location + ":generateContent", body)
    assert (status, answer["error"]["status"]) == (404, "NOT_FOUND")
    assert host_for("europe-west4") == "europe-west4-aiplatform.googleapis.com"
    assert host_for("global") == "aiplatform.googleapis.com"
    async with http.post(
        fake.url + f"{BASE}/google/models/{GEMINI}:generateContent",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Host": host_for(LOCATION)},
    ) as resp:
        assert resp.status == 200
    assert fake.requests[-1].host == "us-central1-aiplatform.googleapis.com"


async def test_knobs_on_both_publishers(fake: FakeVertex, gemini: MakeGemini) -> None:
    fake.fail_next(1, 429)
    async with claude(fake) as client:
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=X, extra_body=VERSION)
        assert info.value.body == {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
            }
        }
        fake.break_next()
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with client.messages.stream(
                model=CLAUDE, max_tokens=5, messages=X, extra_body=VERSION
            ) as stream:
                await stream.get_final_message()
    fake.block_next(1, "prompt")
    answer = await gemini(fake).models.generate_content(model=GEMINI, contents="x")
    assert answer.prompt_feedback is not None
    assert answer.prompt_feedback.block_reason == types.BlockedReason.SAFETY
