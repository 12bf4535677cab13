"""The mock's Bedrock Converse API: its event stream decoded by botocore's own decoder, both
routes as boto3's bedrock-runtime client reads them (tool use, tool results, reasoning), the
signature's presence and Bedrock's error shape."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped]  # no stubs: a test reference only
import orjson
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.eventstream import (  # type: ignore[import-untyped]
    EventStreamBuffer,
    EventStreamMessage,
)
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from llm_proxy.testing.mock.bedrock import encode_headers, encode_message
from tests.helpers import Upstream
from tests.testing.conftest import MockFactory

SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAMOCK/20260101/us-east-1/bedrock/"}
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ASSISTANT_FIRST = [{"role": "assistant", "content": [{"text": "x"}]}]
HELLO = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
WEATHER = {
    "toolSpec": {
        "name": "weather",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
    }
}


def runtime(mock: Upstream) -> Any:
    """boto3's bedrock-runtime client at the mock (dummy static keys: it signs, the mock
    does not check)."""
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=mock.url,
        aws_access_key_id="AKIAMOCKMOCKMOCKMOCK",
        aws_secret_access_key="mock-secret",
        config=Config(retries={"max_attempts": 1}),
    )


async def post(
    http: aiohttp.ClientSession,
    mock: Upstream,
    body: Any,
    path: str = f"/model/{MODEL}/converse-stream",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    sent = SIGNED if headers is None else headers
    async with http.post(mock.url + path, data=orjson.dumps(body), headers=sent) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def decoded(raw: bytes) -> list[EventStreamMessage]:
    """The messages, by botocore's decoder (it checks both CRCs and every length)."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return list(buffer)


def events(messages: list[EventStreamMessage]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for message in messages:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":content-type"] == "application/json"
        payload = orjson.loads(message.payload)
        assert payload.pop("p")  # Bedrock's padding
        out.append((message.headers[":event-type"], payload))
    return out


async def test_stream_decoded_by_botocore(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    """messageStart, the text deltas and their block's stop, messageStop, metadata with the
    usage; each frame whole in botocore's reading (lengths and CRCs)."""
    mock = await start_mock(chunks=3)
    status, headers, raw = await post(http, mock, HELLO)
    assert status == 200 and headers["Content-Type"] == "application/vnd.amazon.eventstream"
    got = events(decoded(raw))
    assert [name for name, _ in got] == [
        "messageStart",
        *["contentBlockDelta"] * 3,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert got[0][1] == {"role": "assistant"}
    deltas = [payload for name, payload in got if name == "contentBlockDelta"]
    assert [d["delta"]["text"] for d in deltas] == ["tok0 ", "tok1 ", "tok2 "]
    assert {d["contentBlockIndex"] for d in deltas} == {0}
    assert got[-2][1] == {"stopReason": "end_turn"}
    usage = got[-1][1]["usage"]
    assert usage["outputTokens"] == 3
    assert usage["totalTokens"] == usage["inputTokens"] + 3
    assert got[-1][1]["metrics"] == {"latencyMs": 0}


async def test_boto3_converse_and_its_stream(start_mock: MockFactory) -> None:
    """boto3 reads both routes; the stream's text adds up to the Converse answer's."""
    mock = await start_mock(chunks=4)
    client = runtime(mock)
    answer = await asyncio.to_thread(client.converse, modelId=MODEL, **HELLO)
    assert answer["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "tok0 tok1 tok2 tok3 "}],
    }
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"]["outputTokens"] == 4
    assert mock.recorded[-1].path == f"/model/{MODEL}/converse"
    assert mock.recorded[-1].headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")

    def stream() -> list[dict[str, Any]]:
        return list(client.converse_stream(modelId=MODEL, **HELLO)["stream"])

    streamed = await asyncio.to_thread(stream)
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in streamed if "contentBlockDelta" in e
    )
    assert text == "tok0 tok1 tok2 tok3 "
    assert streamed[-2] == {"messageStop": {"stopReason": "end_turn"}}
    assert streamed[-1]["metadata"]["usage"] == answer["usage"]


async def test_tool_use_then_its_result(start_mock: MockFactory) -> None:
    """A toolConfig tool is called (its start, then its input in fragments that add up); after
    its toolResult the answer quotes it."""
    mock = await start_mock(chunks=2)
    client = runtime(mock)
    tools = {"tools": [WEATHER]}
    answer = await asyncio.to_thread(client.converse, modelId=MODEL, toolConfig=tools, **HELLO)
    assert answer["stopReason"] == "tool_use"
    (block,) = answer["output"]["message"]["content"]
    use = block["toolUse"]
    assert (use["name"], use["input"]) == ("weather", {"city": "mock"})

    def stream() -> list[dict[str, Any]]:
        return list(client.converse_stream(modelId=MODEL, toolConfig=tools, **HELLO)["stream"])

    streamed = await asyncio.to_thread(stream)
    start = next(e["contentBlockStart"] for e in streamed if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "weather"
    fragments = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in streamed
        if "contentBlockDelta" in e
    ]
    assert len(fragments) > 1 and orjson.loads("".join(fragments)) == {"city": "mock"}
    assert streamed[-2] == {"messageStop": {"stopReason": "tool_use"}}

    messages = [
        *HELLO["messages"],
        {"role": "assistant", "content": [block]},
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}
            ],
        },
    ]
    answer = await asyncio.to_thread(
        client.converse, modelId=MODEL, toolConfig=tools, messages=messages
    )
    assert answer["output"]["message"]["content"] == [{"text": 'The tool said: "sunny"'}]


async def test_reasoning_when_thinking_is_on(start_mock: MockFactory) -> None:
    mock = await start_mock(chunks=1)
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    answer = await asyncio.to_thread(
        runtime(mock).converse,
        modelId=MODEL,
        additionalModelRequestFields=thinking,
        **HELLO,
    )
    reasoning, text = answer["output"]["message"]["content"]
    assert reasoning["reasoningContent"]["reasoningText"]["text"] == "Thinking it over."
    assert reasoning["reasoningContent"]["reasoningText"]["signature"]
    assert text == {"text": "tok0 "}


async def test_error_after_deltas_is_an_exception_frame(
    start_mock: MockFactory, http: aiohttp.ClientSession
) -> None:
    mock = await start_mock(chunks=3)
    _, _, raw = await post(http, mock, {**HELLO, "mock_error_after": 1})
    messages = decoded(raw)
    assert [m.headers[":message-type"] for m in messages] == ["event", "event", "exception"]
    assert messages[-1].headers[":exception-type"] == "modelStreamErrorException"
    assert orjson.loads(messages[-1].payload) == {"message": "mock stream error"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "kind"),
    [
        (HELLO, {}, 403, "UnrecognizedClientException"),
        (HELLO, {"Authorization": "Bearer x"}, 403, "UnrecognizedClientException"),
        ([], SIGNED, 400, "ValidationException"),
        ({"messages": []}, SIGNED, 400, "ValidationException"),
        ({**HELLO, "model": MODEL}, SIGNED, 400, "ValidationException"),
        ({"messages": ASSISTANT_FIRST}, SIGNED, 400, "ValidationException"),
        ({**HELLO, "mock_status": 429}, SIGNED, 429, "ThrottlingException"),
    ],
)  # fmt: skip
async def test_errors_in_bedrocks_shape(
    start_mock: MockFactory,
    http: aiohttp.ClientSession,
    body: Any,
    headers: dict[str, str],
    status: int,
    kind: str,
) -> None:
    mock = await start_mock()
    for path in (f"/model/{MODEL}/converse", f"/model/{MODEL}/converse-stream"):
        got, answer_headers, raw = await post(http, mock, body, path, headers)
        assert (got, answer_headers["x-amzn-ErrorType"]) == (status, kind)
        assert set(orjson.loads(raw)) == {"message"}


async def test_boto3_reads_the_errors(start_mock: MockFactory) -> None:
    mock = await start_mock()
    with pytest.raises(ClientError) as raised:
        await asyncio.to_thread(
            runtime(mock).converse,
            modelId=MODEL,
            messages=ASSISTANT_FIRST,
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_encoder_against_botocore() -> None:
    """Any header values and payload (UTF-8 beyond ASCII, empty) decode as they were."""
    for payload in (b"", orjson.dumps({"text": "héllo ✓"}), b"x" * 70_000):
        frame = encode_message(encode_headers({":event-type": "é", "x": ""}), payload)
        (message,) = decoded(frame)
        assert message.headers == {":event-type": "é", "x": ""}
        assert message.payload == payload
