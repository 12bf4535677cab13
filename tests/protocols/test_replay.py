"""`llm_proxy.protocols.replay`: a whole chat completion (or completion) served as a stream and a
kept stream folded back, checked by the official openai SDK's own parsers (its stream
accumulator for chat), so what a client reads is the same either way; the kept form of a
stream (no usage chunk, no added `"usage":null`) and what is never kept."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llm_proxy.protocols import replay

USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
TOOL_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1700000001,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "time", "arguments": "{}"},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Sunny, 3°C."},
            "logprobs": {"content": [{"token": "Sunny", "logprob": -0.1, "top_logprobs": []}]},
            "finish_reason": "stop",
        },
    ],
    "usage": USAGE,
}


def _chunks(stream: bytes) -> list[ChatCompletionChunk]:
    out = []
    for event in stream.split(b"\n\n"):
        if event.startswith(b"data: {"):
            out.append(ChatCompletionChunk.model_validate(orjson.loads(event[6:])))
    assert stream.endswith(replay.DONE)
    return out


def _accumulated(stream: bytes) -> Any:
    state = ChatCompletionStreamState()
    for chunk in _chunks(stream):
        state.handle_chunk(chunk)
    return state.get_final_completion()


def test_a_whole_chat_answer_streams_as_the_sdk_reads_it_back() -> None:
    body = orjson.dumps(TOOL_ANSWER)
    converted = replay.whole_to_stream(replay.CHAT, body)
    assert converted is not None
    stream, usage = converted
    assert usage is not None and orjson.loads(usage) == USAGE
    assert b'"usage"' not in stream  # (the kept form: usage only on request)
    final = _accumulated(stream)
    want = ChatCompletion.model_validate(TOOL_ANSWER)
    assert final.id == want.id and final.model == want.model
    assert final.system_fingerprint == "fp_1"
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_1", "weather", '{"city":"Oslo"}'),
        ("call_2", "time", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[1].message.content == "Sunny, 3°C."
    assert final.choices[1].logprobs.content[0].token == "Sunny"
    # With usage asked for: one more chunk, before [DONE], with no choices.
    with_usage = replay.with_usage_chunk(stream, usage, "chat.completion.chunk")
    last = _chunks(with_usage)[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 16
    assert last.id == "chatcmpl-9"
    # Folded back, the stream is the whole answer again.
    whole = replay.stream_to_whole(replay.CHAT, stream, usage)
    assert whole is not None
    assert ChatCompletion.model_validate(orjson.loads(whole)) == want


def test_a_recorded_stream_is_kept_without_its_usage_and_folds_into_the_answer() -> None:
    base = {"id": "chatcmpl-3", "object": "chat.completion.chunk", "created": 5, "model": "m"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    raw = b"".join(b"data: " + orjson.dumps({**e, "usage": None}) + b"\n\n" for e in events)
    raw += b"data: " + orjson.dumps({**base, "choices": [], "usage": USAGE}) + b"\n\n"
    kept = replay.normalize_stream(raw + b"data: [DONE]\n\n")
    assert kept is not None
    stream, usage = kept
    assert b'"usage"' not in stream and usage is not None and orjson.loads(usage) == USAGE
    assert _accumulated(stream).choices[0].message.content == "Hello"
    whole = replay.stream_to_whole(replay.CHAT, stream, usage)
    assert whole is not None
    answer = ChatCompletion.model_validate(orjson.loads(whole))
    assert (answer.id, answer.choices[0].message.content) == ("chatcmpl-3", "Hello")
    assert answer.usage is not None and answer.usage.total_tokens == 16
    # Never kept: no [DONE] (cut short), an error event, anything after [DONE].
    assert replay.normalize_stream(raw) is None
    error = b'data: {"error": {"message": "boom"}}\n\n'
    assert replay.normalize_stream(raw + error + b"data: [DONE]\n\n") is None
    assert replay.normalize_stream(raw + b"data: [DONE]\n\n" + raw) is None


def test_a_completion_streams_and_folds() -> None:
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 3,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": "Hi there", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    converted = replay.whole_to_stream(replay.COMPLETIONS, orjson.dumps(answer))
    assert converted is not None
    stream, usage = converted
    # (The SDK builds stream chunks without validation: a chunk's finish_reason is null.)
    chunks = [orjson.loads(e[6:]) for e in stream.split(b"\n\n") if e.startswith(b"data: {")]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hi there"
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, "stop"]
    whole = replay.stream_to_whole(replay.COMPLETIONS, stream, usage)
    assert whole is not None
    assert Completion.model_validate(orjson.loads(whole)) == Completion.model_validate(answer)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"choices": "no"}', b'{"choices":[1]}'])
def test_what_is_not_an_answer_is_not_converted(body: bytes) -> None:
    assert replay.whole_to_stream(replay.CHAT, body) is None
