"""Amazon Bedrock's Converse API: `POST /model/{modelId}/converse` (a ConverseResponse) and
`/model/{modelId}/converse-stream` (`application/vnd.amazon.eventstream`: AWS's binary event
stream, as botocore decodes it), so that a Bedrock provider, boto3's `bedrock-runtime` client
(`endpoint_url` at the mock) or anything else speaking Converse runs without an AWS account.

A call needs an `Authorization: AWS4-HMAC-SHA256 ...` header (not verified); without one, a
403 `{"message"}` with `x-amzn-ErrorType: UnrecognizedClientException`. The body is checked as
Bedrock checks it (400 ValidationException): a JSON object with `messages` (user and
assistant turns, each a list of content blocks) and no field Converse does not know (the mock's
`mock_*` knobs aside).

The answer is the Messages mock's (`anthropic_answer.plan_answer`, on the request read as a
Messages request): `tok0 tok1 ...` (or `mock_content`) in `mock_chunks` pieces, a `toolUse` of
a `toolConfig` tool when the last turn answers none (`toolChoice` obeyed; `--tool` as for
Messages), the quoted `toolResult` after one, reasoning first when
`additionalModelRequestFields.thinking` turns it on. The stream's events, in Bedrock's order:
messageStart, per block its contentBlockStart (a toolUse only), contentBlockDelta pieces and
contentBlockStop, messageStop (the stop reason), metadata (usage and metrics); each payload
padded with a `p` field, as Bedrock pads. Pieces are paced by `mock_delay_ms` / `--delay-ms`;
`mock_error_after` ends the stream with a `modelStreamErrorException` after that many deltas;
`mock_status` fails the call with that status's exception (`EXCEPTIONS`).

Frames are encoded once: each is cached by its event type and payload, so a plain stream's
frames are looked up, not encoded, from the second stream on."""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any, Final

import orjson
from aiohttp import web

from llm_proxy.testing.mock.anthropic_answer import Answer, plan_answer, tool_fragments
from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.state import OPTIONS, STATE
from llm_proxy.testing.mock.wire import record, send, stream_chunks, stream_delay

EVENT_STREAM: Final = "application/vnd.amazon.eventstream"
# Bedrock's exception for each status it answers (its API reference, "Errors").
EXCEPTIONS: Final = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
# Converse's request fields (the mock's `mock_*` knobs are accepted besides).
FIELDS: Final = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    }
)
_PADDING: Final = "abcdefghijklmnopqrstuvwxyzABCDEF"
_HEADERS: Final = {"x-amzn-RequestId": "00000000-0000-4000-8000-000000000000"}
_STRING: Final = 7  # the header value type of a string


def bedrock_error(status: int, message: str, exception: str | None = None) -> MockError:
    kind = exception or EXCEPTIONS.get(status, "InternalServerException")
    return MockError(status, message, body={"message": message}, headers={"x-amzn-ErrorType": kind})


# The event stream


def encode_headers(headers: dict[str, str]) -> bytes:
    """String headers as the event stream writes them: name length (1 byte), name, type 7,
    value length (2 bytes), value."""
    out = bytearray()
    for name, value in headers.items():
        raw = value.encode()
        out += bytes([len(name)]) + name.encode() + bytes([_STRING])
        out += struct.pack(">H", len(raw)) + raw
    return bytes(out)


def encode_message(headers: bytes, payload: bytes) -> bytes:
    """One event-stream message: the prelude (total length, headers length, their CRC32),
    the headers, the payload and the CRC32 of all of it."""
    prelude = struct.pack(">II", 12 + len(headers) + len(payload) + 4, len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


@functools.cache
def _event_headers(event_type: str) -> bytes:
    return encode_headers(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        }
    )


@functools.lru_cache(maxsize=4096)
def event_frame(event_type: str, payload: bytes) -> bytes:
    """The frame of one event (cached: a stream repeats the same ones)."""
    return encode_message(_event_headers(event_type), payload)


def _frame(event_type: str, payload: dict[str, Any]) -> bytes:
    return event_frame(event_type, orjson.dumps({**payload, "p": _PADDING}))


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = encode_headers(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        }
    )
    return encode_message(headers, orjson.dumps({"message": message}))


# The request, read as a Messages request


def _check(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns, checked as Bedrock checks a Converse request."""
    if unknown := sorted(k for k in data if k not in FIELDS and not k.startswith("mock_")):
        raise bedrock_error(
            400, f"Malformed input request: extraneous key [{unknown[0]}] is not permitted."
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bedrock_error(400, "A conversation must start with a user message.")
    for index, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise bedrock_error(400, f"messages.{index}.role: must be user or assistant")
        if not isinstance(turn.get("content"), list) or not turn["content"]:
            raise bedrock_error(400, f"messages.{index}.content: must not be empty")
    if messages[0]["role"] != "user":
        raise bedrock_error(400, "A conversation must start with a user message.")
    return messages


def _result_text(result: dict[str, Any]) -> str:
    texts = []
    for block in result.get("content") or []:
        if isinstance(block, dict):
            text = block.get("text")
            json = orjson.dumps(block.get("json")).decode()
            texts.append(text if isinstance(text, str) else json)
    return "".join(texts)


def _last_turn(turn: dict[str, Any]) -> dict[str, Any]:
    blocks = [
        {"type": "tool_result", "content": _result_text(block["toolResult"])}
        for block in turn["content"]
        if isinstance(block, dict) and isinstance(block.get("toolResult"), dict)
    ]
    return {"role": "user", "content": blocks or "..."}


def _tools(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": spec["name"], "input_schema": (spec.get("inputSchema") or {}).get("json")}
        for tool in config.get("tools") or []
        if isinstance(tool, dict)
        for spec in (tool.get("toolSpec"),)
        if isinstance(spec, dict) and isinstance(spec.get("name"), str)
    ]


def _tool_choice(config: dict[str, Any]) -> dict[str, Any] | None:
    choice = config.get("toolChoice") or {}
    if "any" in choice:
        return {"type": "any"}
    if isinstance(choice.get("tool"), dict):
        return {"type": "tool", "name": choice["tool"].get("name")}
    return None


def prompt_tokens(data: dict[str, Any]) -> int:
    """The bytes of the JSON of the system, messages and tool config, over 4, at least 1."""
    counted = [data.get("system"), data.get("messages"), data.get("toolConfig")]
    return max(1, len(orjson.dumps(counted)) // 4)


def plan(data: dict[str, Any], model: str, message_id: str, chunks: int, tool: str) -> Answer:
    messages = _check(data)
    config = data.get("toolConfig") or {}
    extra = data.get("additionalModelRequestFields") or {}
    pivot = {
        "model": model,
        "messages": [_last_turn(messages[-1])],
        "tools": _tools(config),
        "tool_choice": _tool_choice(config),
        "thinking": extra.get("thinking") if isinstance(extra, dict) else None,
        "mock_content": data.get("mock_content"),
        "mock_cache_read_tokens": data.get("mock_cache_read_tokens", 0),
        "mock_cache_write_tokens": data.get("mock_cache_write_tokens", 0),
    }
    answer = plan_answer(pivot, message_id, chunks, tool)
    return Answer(
        message_id=answer.message_id,
        model=model,
        text=answer.text,
        thinking=answer.thinking,
        tool_use=answer.tool_use,
        input_tokens=prompt_tokens(data),
        cache_read_tokens=answer.cache_read_tokens,
        cache_write_tokens=answer.cache_write_tokens,
    )


# The answer, as Bedrock writes it


def usage(answer: Answer) -> dict[str, int]:
    """`inputTokens` excludes the cache's reads and writes, as Bedrock counts."""
    counts = {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens
        + answer.output_tokens
        + answer.cache_read_tokens
        + answer.cache_write_tokens,
    }
    if answer.cache_read_tokens:
        counts["cacheReadInputTokens"] = answer.cache_read_tokens
    if answer.cache_write_tokens:
        counts["cacheWriteInputTokens"] = answer.cache_write_tokens
    return counts


def stop_reason(answer: Answer) -> str:
    return "tool_use" if answer.tool_use is not None else "end_turn"


def converse_response(answer: Answer, latency_ms: int = 0) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.thinking:
        reasoning = {"text": "".join(answer.thinking), "signature": answer.signature}
        content.append({"reasoningContent": {"reasoningText": reasoning}})
    if answer.text:
        content.append({"text": "".join(answer.text)})
    if answer.tool_use is not None:
        use = answer.tool_use
        content.append({"toolUse": {"toolUseId": use.id, "name": use.name, "input": use.input}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(answer),
        "usage": usage(answer),
        "metrics": {"latencyMs": latency_ms},
    }


def _blocks(answer: Answer) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """Each content block: its contentBlockStart's `start` (a toolUse only) and deltas."""
    blocks: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    if answer.thinking:
        deltas = [{"reasoningContent": {"text": piece}} for piece in answer.thinking]
        deltas.append({"reasoningContent": {"signature": answer.signature}})
        blocks.append((None, deltas))
    if answer.text:
        blocks.append((None, [{"text": piece} for piece in answer.text]))
    if answer.tool_use is not None:
        use = answer.tool_use
        start = {"toolUse": {"toolUseId": use.id, "name": use.name}}
        fragments = [{"toolUse": {"input": part}} for part in tool_fragments(use) if part]
        blocks.append((start, fragments))
    return blocks


def stream_frames(
    answer: Answer, latency_ms: int = 0, error_after: int | None = None
) -> list[bytes]:
    """The exact frames of the answer's ConverseStream (see the module's docstring)."""
    frames = [_frame("messageStart", {"role": "assistant"})]
    sent = 0
    for index, (start, deltas) in enumerate(_blocks(answer)):
        if start is not None:
            frames.append(_frame("contentBlockStart", {"start": start, "contentBlockIndex": index}))
        for delta in deltas:
            if sent == error_after:
                return [*frames, exception_frame("modelStreamErrorException", "mock stream error")]
            sent += 1
            frames.append(_frame("contentBlockDelta", {"delta": delta, "contentBlockIndex": index}))
        frames.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(_frame("messageStop", {"stopReason": stop_reason(answer)}))
    metadata = {"usage": usage(answer), "metrics": {"latencyMs": latency_ms}}
    frames.append(_frame("metadata", metadata))
    return frames


# Handlers


async def _read(request: web.Request) -> dict[str, Any]:
    """The JSON body, recorded first; the signature's presence checked, then the body."""
    body = await request.read()
    record(request, body)
    if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
        raise bedrock_error(
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise bedrock_error(400, "Malformed input request: the body is not a JSON object.")
    if "mock_status" in data:
        status = int(data["mock_status"])
        raise bedrock_error(status, f"mock upstream error {status}")
    return data


def _plan(request: web.Request, data: dict[str, Any]) -> Answer:
    options, state = request.app[OPTIONS], request.app[STATE]
    chunks = stream_chunks(request, data)
    return plan(data, request.match_info["model"], state.new_id("msg_"), chunks, options.tool)


async def converse(request: web.Request) -> web.Response:
    """`POST /model/{modelId}/converse`."""
    data = await _read(request)
    body = orjson.dumps(converse_response(_plan(request, data)))
    return web.Response(body=body, content_type="application/json", headers=_HEADERS)


async def converse_stream(request: web.Request) -> web.StreamResponse:
    """`POST /model/{modelId}/converse-stream`."""
    data = await _read(request)
    answer = _plan(request, data)
    delay = stream_delay(request, data)
    error_after = data.get("mock_error_after")
    latency_ms = round(delay * 1000 * len(answer.text))
    frames = stream_frames(answer, latency_ms, None if error_after is None else int(error_after))
    return await send(request, EVENT_STREAM, frames, delay, headers=_HEADERS)


ROUTES: Final[tuple[tuple[str, str, Any], ...]] = (
    ("POST", "/model/{model}/converse", converse),
    ("POST", "/model/{model}/converse-stream", converse_stream),
)
