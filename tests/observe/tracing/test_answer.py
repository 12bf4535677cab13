"""The answer tail's facts (`llm_proxy.observe.tracing.answer`) on real-shaped OpenAI and
Anthropic bodies and streams, whole and cut: at the start (the tail of a long answer), and
mid-event (a stream aborted)."""

from __future__ import annotations

import pytest

from llm_proxy.observe.tracing.answer import NOTHING, Answer, read_answer

CHAT_BODY = (
    b'{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion",'
    b'"created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":'
    b'{"role":"assistant","content":"Say \\"model\\": \\"fake\\", \\"finish_reason\\": \\"x\\"",'
    b'"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,'
    b'"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
    b'"service_tier":"default","system_fingerprint":"fp_b376dfbbd5"}'
)

CHAT_TOOL_BODY = (
    b'{"id":"chatcmpl-tool1","object":"chat.completion","created":1741569952,'
    b'"model":"gpt-4o-2024-08-06","choices":['
    b'{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":'
    b'"call_abc123","type":"function","function":{"name":"get_weather","arguments":'
    b'"{\\"location\\":\\"Paris\\"}"}}]},"finish_reason":"tool_calls"},'
    b'{"index":1,"message":{"role":"assistant","content":"It is"},"finish_reason":"length"}],'
    b'"usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99}}'
)


def chat_stream(choices: int = 1) -> bytes:
    head = b'"id":"chatcmpl-stream42","object":"chat.completion.chunk","created":1741569952,'
    head += b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306"'
    events = []
    for i in range(choices):
        events.append(
            b"{" + head + b',"choices":[{"index":%d,"delta":{"role":"assistant","content":""},'
            b'"logprobs":null,"finish_reason":null}]}' % i
        )
    for word in (b"Hello", b" there", b"!"):
        for i in range(choices):
            events.append(
                b"{" + head + b',"choices":[{"index":%d,"delta":{"content":"%s"},'
                b'"logprobs":null,"finish_reason":null}]}' % (i, word)
            )
    for i, reason in zip(range(choices), (b"stop", b"length"), strict=False):
        events.append(
            b"{" + head + b',"choices":[{"index":%d,"delta":{},"logprobs":null,'
            b'"finish_reason":"%s"}]}' % (i, reason)
        )
    events.append(
        b"{" + head + b',"choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,'
        b'"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
        b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}'
    )
    return b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n"


RESPONSES_BODY = (
    b'{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response",'
    b'"created_at":1741476542,"status":"completed","error":null,"incomplete_details":null,'
    b'"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{'
    b'"type":"message","id":"msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",'
    b'"status":"completed","role":"assistant","content":[{"type":"output_text","text":'
    b'"In a peaceful grove...","annotations":[]}]}],"parallel_tool_calls":true,'
    b'"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},'
    b'"output_tokens":87,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":123},'
    b'"user":null,"metadata":{}}'
)

RESPONSES_INCOMPLETE_STREAM = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","sequence_number":7,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":"grove"}\n\n'
    b"event: response.incomplete\n"
    b'data: {"type":"response.incomplete","sequence_number":8,"response":{"id":"resp_inc9",'
    b'"object":"response","created_at":1741476542,"status":"incomplete","incomplete_details":'
    b'{"reason":"max_output_tokens"},"model":"o4-mini-2025-04-16","output":[],'
    b'"usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":0},'
    b'"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":36}}}'
    b"\n\n"
)

ANTHROPIC_BODY = (
    b'{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is '
    b'Claude."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather",'
    b'"input":{"location":"San Francisco, CA"}}],"stop_reason":"tool_use",'
    b'"stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":2051,'
    b'"cache_read_input_tokens":0,"output_tokens":503,"service_tier":"standard"}}'
)


def anthropic_stream(text_events: int = 3) -> bytes:
    out = [
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",'
        b'"type":"message","role":"assistant","content":[],"model":"claude-opus-4-1-20250805",'
        b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
        b'"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":1}}}\n\n',
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
        b'"text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
    ]
    for i in range(text_events):
        out.append(
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
            b'"text":"word %d "}}\n\n' % i
        )
    out += [
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"output_tokens":15}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    return b"".join(out)


def test_openai_chat_body() -> None:
    assert read_answer(CHAT_BODY) == Answer(
        response_id="chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        response_model="gpt-4.1-2025-04-14",
        finish_reasons=("stop",),
        cache_read_tokens=1024,
        reasoning_tokens=0,
    )


def test_escaped_keys_in_the_content_are_not_read() -> None:
    answer = read_answer(CHAT_BODY)
    assert answer.response_model != "fake"
    assert answer.finish_reasons == ("stop",)


def test_tool_calls_and_several_choices() -> None:
    answer = read_answer(CHAT_TOOL_BODY)
    assert answer.response_id == "chatcmpl-tool1"  # not the tool call's id
    assert answer.finish_reasons == ("tool_calls", "length")
    assert answer.cache_read_tokens is None  # no details: unknown, not 0


def test_openai_chat_stream() -> None:
    answer = read_answer(chat_stream())
    assert answer == Answer(
        response_id="chatcmpl-stream42",
        response_model="gpt-4o-mini-2024-07-18",
        finish_reasons=("stop",),
        cache_read_tokens=0,
        reasoning_tokens=0,
        stream_end=True,
    )
    assert read_answer(chat_stream(choices=2)).finish_reasons == ("stop", "length")


def test_responses_body_and_incomplete_stream() -> None:
    assert read_answer(RESPONSES_BODY) == Answer(
        response_id="resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        response_model="gpt-4.1-2025-04-14",
        cache_read_tokens=12,
        reasoning_tokens=5,
    )
    assert read_answer(RESPONSES_INCOMPLETE_STREAM) == Answer(
        response_id="resp_inc9",
        response_model="o4-mini-2025-04-16",
        finish_reasons=("max_output_tokens",),
        cache_read_tokens=0,
        reasoning_tokens=16,
        stream_end=True,
    )


def test_anthropic_body() -> None:
    assert read_answer(ANTHROPIC_BODY) == Answer(
        response_id="msg_013Zva2CMHLNnXjNJJKqJ2EF",  # not the tool_use block's
        response_model="claude-sonnet-4-5-20250929",
        finish_reasons=("tool_use",),
        cache_read_tokens=0,
        cache_write_tokens=2051,
    )


def test_anthropic_stream_whole() -> None:
    assert read_answer(anthropic_stream()) == Answer(
        response_id="msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        response_model="claude-opus-4-1-20250805",
        finish_reasons=("end_turn",),
        cache_read_tokens=1800,  # message_start's: the final message_delta has none
        cache_write_tokens=0,
        stream_end=True,
    )


def test_anthropic_stream_tail_without_its_start() -> None:
    stream = anthropic_stream(text_events=200)
    tail = stream[-2048:]
    assert b"message_start" not in tail
    assert read_answer(tail) == Answer(finish_reasons=("end_turn",), stream_end=True)


@pytest.mark.parametrize("body", [CHAT_BODY, CHAT_TOOL_BODY, RESPONSES_BODY, ANTHROPIC_BODY])
def test_a_tail_cut_anywhere_only_loses_what_was_cut(body: bytes) -> None:
    """Every suffix (the tail of a longer answer) reads as a subset of the whole: a value is
    either the whole one or absent, never a fragment."""
    whole = read_answer(body)
    for start in range(len(body)):
        part = read_answer(body[start:])
        assert part.response_id in (None, whole.response_id), start
        assert part.response_model in (None, whole.response_model), start
        assert set(part.finish_reasons) <= set(whole.finish_reasons), start
        assert part.cache_read_tokens in (None, whole.cache_read_tokens), start
        assert part.cache_write_tokens in (None, whole.cache_write_tokens), start


def test_a_stream_aborted_mid_event() -> None:
    stream = chat_stream()
    cut = stream[: stream.rindex(b'"finish_reason":"stop"') + 20]  # mid-value
    answer = read_answer(cut)
    assert answer.finish_reasons == ()
    assert answer.stream_end is False
    assert answer.response_model == "gpt-4o-mini-2024-07-18"
    aborted = anthropic_stream()[:-30]  # message_stop cut
    assert read_answer(aborted).stream_end is False
    assert read_answer(aborted).finish_reasons == ("end_turn",)


@pytest.mark.parametrize("tail", [None, b"", b"\x00\xff garbage", b'{"error":{"type":"x"}}'])
def test_nothing_to_read(tail: bytes | None) -> None:
    assert read_answer(tail) == NOTHING


def test_a_head_joined_to_a_tail() -> None:
    """`Relayed.facts`: the first 4 KB, a blank line, the last 2 KB. A long Anthropic stream's
    id, model and cache counts come from its head."""
    stream = anthropic_stream(text_events=300)
    facts = stream[:4096] + b"\n\n" + stream[-2048:]
    assert read_answer(facts) == Answer(
        response_id="msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        response_model="claude-opus-4-1-20250805",
        finish_reasons=("end_turn",),
        cache_read_tokens=1800,
        cache_write_tokens=0,
        stream_end=True,
    )


def test_a_chunk_in_both_the_head_and_the_tail_counts_once() -> None:
    stream = chat_stream()
    finish = stream.index(b'"finish_reason":"stop"')
    head = stream[: stream.index(b"\n\n", finish) + 2]  # ends with the finish chunk
    tail = stream[finish - 150 :]  # overlaps it
    assert read_answer(head + b"\n\n" + tail).finish_reasons == ("stop",)


def test_a_heads_last_key_never_pairs_with_the_tails_first_value() -> None:
    head = b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","model":'
    tail = b'"not-a-model"}]}\n\n'
    assert read_answer(head + b"\n\n" + tail).response_model is None
