"""The fake Bedrock Runtime (tests/helpers/bedrock_upstream.py) against boto3's bedrock-runtime
client (its SigV4 signature and its event-stream parser are the real ones: what it sends the
fake must verify, what the fake streams it must decode) and raw HTTP signed by botocore for
the checks boto3's own parameter validation would stop first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import boto3  # type: ignore[import-untyped]
import orjson
import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError, EventStreamError  # type: ignore[import-untyped]
from yarl import URL

from llm_proxy.protocols.refusals import classify_answer, classify_error
from tests.helpers.bedrock_upstream import ACCESS_KEY, REGION, SECRET_KEY, FakeBedrock
from tests.helpers.refusals import BEDROCK_CONTEXT, BEDROCK_REFUSALS

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
WEATHER = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            }
        },
    }
}


def said(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as fake:
        yield fake


MakeClient = Callable[..., Any]


@pytest.fixture
def client() -> Iterator[MakeClient]:
    """boto3 bedrock-runtime clients for a fake (without retries), closed at the end."""
    made: list[Any] = []

    def make(
        fake: FakeBedrock,
        *,
        secret: str = SECRET_KEY,
        key: str = ACCESS_KEY,
        region: str = REGION,
        token: str | None = None,
    ) -> Any:
        made.append(
            boto3.client(
                "bedrock-runtime",
                endpoint_url=fake.url,
                region_name=region,
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                aws_session_token=token,
                config=Config(retries={"total_max_attempts": 1}),
            )
        )
        return made[-1]

    yield make
    for bedrock in made:
        bedrock.close()


async def call(function: Callable[..., Any], **kwargs: Any) -> Any:
    """A blocking boto3 call, off the loop the fake runs on."""
    return await asyncio.to_thread(function, **kwargs)


async def stream_events(
    bedrock: Any, seen: list[dict[str, Any]] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """A converse_stream's events, read whole (into `seen` if given, so that what came before
    an error is kept); the stream is closed whatever happens."""
    events = [] if seen is None else seen

    def read() -> None:
        stream = bedrock.converse_stream(**kwargs)["stream"]
        try:
            events.extend(stream)
        finally:
            stream.close()

    await asyncio.to_thread(read)
    return events


def sign(
    fake: FakeBedrock,
    body: bytes,
    *,
    operation: str = "converse",
    secret: str = SECRET_KEY,
    token: str | None = None,
) -> tuple[URL, dict[str, str]]:
    url = f"{fake.url}/model/{quote(MODEL, safe='')}/{operation}"
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(ACCESS_KEY, secret, token), "bedrock", REGION).add_auth(request)
    return URL(url, encoded=True), dict(request.headers)


async def raw_post(
    http: aiohttp.ClientSession, fake: FakeBedrock, body: Any, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    data = orjson.dumps(body)
    url, headers = sign(fake, data, **kwargs)
    async with http.post(url, data=data, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_converse(fake: FakeBedrock, client: MakeClient) -> None:
    answer = await call(
        client(fake).converse,
        modelId=MODEL,
        system=[{"text": "Be brief"}],
        messages=said("Hello there"),
        inferenceConfig={"maxTokens": 100},
    )
    assert answer["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "You said: Hello there"}],
    }
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"] == {"inputTokens": 4, "outputTokens": 4, "totalTokens": 8}
    assert answer["metrics"] == {"latencyMs": 100}
    sent = fake.requests[-1]
    assert sent.model_id == MODEL
    assert sent.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert sent.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert fake.refusals == []


async def test_arn_model_ids_and_unknown_models(client: MakeClient) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v2:1"
    async with FakeBedrock(models=frozenset({arn})) as fake:
        answer = await call(client(fake).converse, modelId=arn, messages=said("hi"))
        assert answer["stopReason"] == "end_turn"
        assert fake.requests[-1].model_id == arn
        assert "%2F" in fake.requests[-1].path
        with pytest.raises(ClientError) as info:
            await call(client(fake).converse, modelId=MODEL, messages=said("hi"))
        assert info.value.response["Error"]["Code"] == "ValidationException"


async def test_tool_use_and_result(fake: FakeBedrock, client: MakeClient) -> None:
    bedrock = client(fake)
    tools = {"tools": [WEATHER]}
    answer = await call(
        bedrock.converse, modelId=MODEL, messages=said("Weather?"), toolConfig=tools
    )
    assert answer["stopReason"] == "tool_use"
    use = answer["output"]["message"]["content"][0]["toolUse"]
    assert use == {
        "toolUseId": "tooluse_fake0001",
        "name": "get_weather",
        "input": {"city": "example", "days": 1},
    }
    messages = [
        *said("Weather?"),
        answer["output"]["message"],
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"t": 21}}]}}
            ],
        },
    ]
    answer = await call(bedrock.converse, modelId=MODEL, messages=messages, toolConfig=tools)
    assert answer["output"]["message"]["content"] == [{"text": 'Result received: {"t":21}'}]
    assert answer["stopReason"] == "end_turn"


async def test_converse_stream_text(fake: FakeBedrock, client: MakeClient) -> None:
    events = await stream_events(client(fake), modelId=MODEL, messages=said("one two three"))
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[0]["messageStart"] == {"role": "assistant"}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:4])
    assert text == "You said: one two three"
    assert events[-2]["messageStop"] == {"stopReason": "end_turn"}
    assert events[-1]["metadata"]["usage"] == {
        "inputTokens": 3,
        "outputTokens": 5,
        "totalTokens": 8,
    }


async def test_converse_stream_tool_use(fake: FakeBedrock, client: MakeClient) -> None:
    events = await stream_events(
        client(fake), modelId=MODEL, messages=said("Weather?"), toolConfig={"tools": [WEATHER]}
    )
    kinds = [next(iter(e)) for e in events]
    assert kinds[:2] == ["messageStart", "contentBlockStart"]
    assert events[1]["contentBlockStart"] == {
        "start": {"toolUse": {"toolUseId": "tooluse_fake0001", "name": "get_weather"}},
        "contentBlockIndex": 0,
    }
    fragments = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events[2:-3]]
    assert len(fragments) == 3
    assert orjson.loads("".join(fragments)) == {"city": "example", "days": 1}
    assert events[-2]["messageStop"] == {"stopReason": "tool_use"}


async def test_reasoning(fake: FakeBedrock, client: MakeClient) -> None:
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    answer = await call(
        client(fake).converse,
        modelId=MODEL,
        messages=said("Why"),
        additionalModelRequestFields=thinking,
    )
    content = answer["output"]["message"]["content"]
    assert content[0] == {
        "reasoningContent": {"reasoningText": {"text": "Thinking about: Why", "signature": "c2ln"}}
    }
    assert content[1] == {"text": "You said: Why"}
    events = await stream_events(
        client(fake), modelId=MODEL, messages=said("Why"), additionalModelRequestFields=thinking
    )
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert (
        "".join(
            d["delta"]["reasoningContent"].get("text", "")
            for d in deltas
            if d["contentBlockIndex"] == 0
        )
        == "Thinking about: Why"
    )
    assert {"signature": "c2ln"} in [d["delta"].get("reasoningContent") for d in deltas]
    assert "".join(d["delta"].get("text", "") for d in deltas if d["contentBlockIndex"] == 1) == (
        "You said: Why"
    )


async def test_cache_points_write_then_read(fake: FakeBedrock, client: MakeClient) -> None:
    system = [{"text": "a long system prompt"}, {"cachePoint": {"type": "default"}}]
    bedrock = client(fake)
    first = await call(bedrock.converse, modelId=MODEL, system=system, messages=said("hi"))
    second = await call(bedrock.converse, modelId=MODEL, system=system, messages=said("hi"))
    assert first["usage"]["cacheWriteInputTokens"] == 4
    assert "cacheReadInputTokens" not in first["usage"]
    assert second["usage"]["cacheReadInputTokens"] == 4
    assert second["usage"]["inputTokens"] == 1
    assert second["usage"]["totalTokens"] == 1 + 4 + 3


async def test_frames_decode_with_botocore(fake: FakeBedrock, http: aiohttp.ClientSession) -> None:
    body = {"messages": said("hi")}
    status, headers, raw = await raw_post(http, fake, body, operation="converse-stream")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    for message in messages:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":content-type"] == "application/json"
        assert "p" in orjson.loads(message.payload)  # Bedrock's padding


async def test_corrupt_frame(
    fake: FakeBedrock, http: aiohttp.ClientSession, client: MakeClient
) -> None:
    fake.corrupt_next()
    _, _, raw = await raw_post(http, fake, {"messages": said("hi")}, operation="converse-stream")
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    with pytest.raises(ChecksumMismatch):
        list(buffer)

    fake.corrupt_next()
    with pytest.raises(ChecksumMismatch):
        await stream_events(client(fake), modelId=MODEL, messages=said("hi"))


@pytest.mark.parametrize("kind", ["throttlingException", "modelStreamErrorException"])
async def test_exception_frame(fake: FakeBedrock, kind: str, client: MakeClient) -> None:
    fake.stream_exception_next(1, kind)
    seen: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as info:
        await stream_events(client(fake), seen, modelId=MODEL, messages=said("hi"))
    assert info.value.response["Error"]["Code"] == kind
    assert [next(iter(e)) for e in seen] == ["messageStart", "contentBlockDelta"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("ThrottlingException", 429),
        ("ModelNotReadyException", 429),
        ("ServiceUnavailableException", 503),
    ],
)
async def test_fail_next(fake: FakeBedrock, error: str, status: int, client: MakeClient) -> None:
    fake.fail_next(1, error)
    bedrock = client(fake)
    with pytest.raises(ClientError) as info:
        await call(bedrock.converse, modelId=MODEL, messages=said("hi"))
    assert info.value.response["Error"]["Code"] == error
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    await call(bedrock.converse, modelId=MODEL, messages=said("hi"))


async def test_refusals_classified(fake: FakeBedrock, http: aiohttp.ClientSession) -> None:
    """A prompt too long (fail_next with Bedrock's message) and the refusals (refuse_next) are
    what `llm_proxy.protocols.refusals` classifies."""
    fake.fail_next(1, "ValidationException", BEDROCK_CONTEXT)
    status, headers, body = await raw_post(http, fake, {"messages": said("hi")})
    assert status == 400
    assert headers["x-amzn-ErrorType"].startswith("ValidationException:")
    assert classify_error("bedrock", status, body) == "context_window"
    for stop in ("guardrail_intervened", "content_filtered"):
        fake.refuse_next(1, stop)
        status, _, body = await raw_post(http, fake, {"messages": said("hi")})
        answer = orjson.loads(body)
        assert (status, answer["stopReason"]) == (200, stop)
        assert answer["output"]["message"]["content"] == [{"text": BEDROCK_REFUSALS[stop]}]
        assert classify_answer("bedrock", body) == "content_policy"
    status, _, body = await raw_post(http, fake, {"messages": said("hi")})
    assert classify_answer("bedrock", body) is None


async def test_refusal_streamed(fake: FakeBedrock, client: MakeClient) -> None:
    fake.refuse_next()
    events = await stream_events(client(fake), modelId=MODEL, messages=said("one two three"))
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text == BEDROCK_REFUSALS["guardrail_intervened"]
    assert {"messageStop": {"stopReason": "guardrail_intervened"}} in events


async def test_throttle_shape(fake: FakeBedrock, http: aiohttp.ClientSession) -> None:
    fake.throttle_next(2)
    for _ in range(2):
        status, headers, raw = await raw_post(http, fake, {"messages": said("hi")})
        assert status == 429
        assert headers["x-amzn-ErrorType"].startswith("ThrottlingException:")
        assert orjson.loads(raw) == {
            "message": "Too many requests, please wait before trying again."
        }
    status, _, _ = await raw_post(http, fake, {"messages": said("hi")})
    assert status == 200


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"secret": "wrong-secret"}, "InvalidSignatureException"),
        ({"key": "AKIAOTHERKEY00000000"}, "UnrecognizedClientException"),
        ({"region": "eu-west-1"}, "InvalidSignatureException"),
    ],
)
async def test_signature_refused(
    fake: FakeBedrock, credentials: dict[str, str], code: str, client: MakeClient
) -> None:
    with pytest.raises(ClientError) as info:
        await call(client(fake, **credentials).converse, modelId=MODEL, messages=said("hi"))
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert fake.refusals and fake.refusals[0].startswith(code)
    assert "wrong-secret" not in fake.refusals[0]


async def test_signature_message(fake: FakeBedrock, http: aiohttp.ClientSession) -> None:
    status, headers, raw = await raw_post(http, fake, {"messages": said("hi")}, secret="x")
    assert status == 403
    assert headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")
    assert orjson.loads(raw)["message"].startswith(
        "The request signature we calculated does not match"
    )


async def test_tampered_body(fake: FakeBedrock, http: aiohttp.ClientSession) -> None:
    url, headers = sign(fake, orjson.dumps({"messages": said("hi")}))
    async with http.post(url, data=orjson.dumps({"messages": said("ho")}), headers=headers) as r:
        assert r.status == 403
    assert fake.refusals[-1].startswith("InvalidSignatureException: The request signature")


async def test_session_token(client: MakeClient) -> None:
    async with FakeBedrock(session_token="session-token-1") as fake:
        with pytest.raises(ClientError) as info:
            await call(client(fake).converse, modelId=MODEL, messages=said("hi"))
        assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
        answer = await call(
            client(fake, token="session-token-1").converse, modelId=MODEL, messages=said("hi")
        )
        assert answer["stopReason"] == "end_turn"
        assert "session-token-1" not in repr(fake)


async def test_clock_skew(client: MakeClient) -> None:
    async with FakeBedrock(clock=lambda: time.time() + 400) as fake:
        with pytest.raises(ClientError) as info:
            await call(client(fake).converse, modelId=MODEL, messages=said("hi"))
        assert info.value.response["Error"]["Message"].startswith("Signature expired")
    async with FakeBedrock(clock=lambda: time.time() - 400) as fake:
        with pytest.raises(ClientError) as info:
            await call(client(fake).converse, modelId=MODEL, messages=said("hi"))
        assert info.value.response["Error"]["Message"].startswith("Signature not yet current")


USE = {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {}}}
RESULT = {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "21"}]}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "must start with a user message"),
        ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, "start with a user"),
        ({"messages": [*said("a"), *said("b")]}, "must alternate between user and assistant"),
        ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, "start with a user"),
        ({"messages": [{"role": "user", "content": []}]}, "content field in the Message"),
        ({"messages": [{"role": "user", "content": [{"text": " "}]}]}, "is blank"),
        (
            {"messages": [{"role": "user", "content": [{"text": "x", "image": {}}]}]},
            "exactly one member",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "Unknown member 'type'"),
        (
            {"messages": [*said("a"), {"role": "assistant", "content": [USE]}]},
            "toolConfig field must be defined",
        ),
        (
            {
                "messages": [*said("a"), {"role": "assistant", "content": [USE]}, *said("b")],
                "toolConfig": {"tools": [WEATHER]},
            },
            "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_1",
        ),
        (
            {
                "messages": [
                    *said("a"),
                    {"role": "assistant", "content": [USE]},
                    {
                        "role": "user",
                        "content": [{"toolResult": {"toolUseId": "other", "content": []}}],
                    },
                ],
                "toolConfig": {"tools": [WEATHER]},
            },
            "Expected toolResult blocks",
        ),
        (
            {
                "messages": [{"role": "user", "content": [RESULT]}],
                "toolConfig": {"tools": [WEATHER]},
            },
            "exceeds the number of toolUse blocks",
        ),
        (
            {"messages": said("a"), "inferenceConfig": {"maxTokens": 5, "topK": 3}},
            "extraneous key [topK]",
        ),
        (
            {"messages": said("a"), "toolConfig": {"tools": [{"toolSpec": {"name": "a b"}}]}},
            "regular expression pattern",
        ),
    ],
)
async def test_validation(
    fake: FakeBedrock, http: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, headers, raw = await raw_post(http, fake, body)
    assert status == 400, raw
    assert headers["x-amzn-ErrorType"].startswith("ValidationException:")
    assert message in orjson.loads(raw)["message"]


async def test_hold_until_released(fake: FakeBedrock, client: MakeClient) -> None:
    gate = fake.hold()
    task = asyncio.create_task(call(client(fake).converse, modelId=MODEL, messages=said("hi")))
    await fake.wait_for_requests(1)
    assert not task.done()
    gate.set()
    assert (await task)["stopReason"] == "end_turn"


async def test_prefilled_answer_continued(fake: FakeBedrock, client: MakeClient) -> None:
    messages = [*said("hi"), {"role": "assistant", "content": [{"text": "Sure"}]}]
    answer = await call(client(fake).converse, modelId=MODEL, messages=messages)
    assert answer["output"]["message"]["content"] == [{"text": "(continued)"}]
