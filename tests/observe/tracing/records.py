"""Traced request records, as the request path fills them, for the span tests."""

from __future__ import annotations

from typing import Any

from llm_proxy.observe.records import AttemptRecord, RequestRecord
from llm_proxy.observe.tracing.model import Span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SERVER = "00f067aa0ba902b7"
ATTEMPT_1 = "b7ad6b7169203331"
ATTEMPT_2 = "c8be7c827a314442"
CLIENT_PARENT = "a3ce929d0e0e4736"
TS = 1_750_000_000.25
PROMPT = "What is the capital of France?"
COMPLETION = "The capital of France is Paris."

CHAT_TAIL = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1750000000,'
    b'"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"The capital of France is Paris."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1200,"completion_tokens":8,"total_tokens":1208,'
    b'"prompt_tokens_details":{"cached_tokens":1024}}}'
)
STREAM_TAIL = (
    b'data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1750000000,'
    b'"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
    b"\n\n"
    b'data: {"id":"chatcmpl-2","object":"chat.completion.chunk","created":1750000000,'
    b'"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":1200,'
    b'"completion_tokens":8,"total_tokens":1208,"prompt_tokens_details":{"cached_tokens":0}}}'
    b"\n\ndata: [DONE]\n\n"
)


def attempt(number: int = 1, **over: Any) -> AttemptRecord:
    values: dict[str, Any] = {
        "span_id": ATTEMPT_1 if number == 1 else ATTEMPT_2,
        "number": number,
        "provider": "alpha" if number == 1 else "beta",
        "provider_type": "openai",
        "server_address": "api.openai.com",
        "server_port": 443,
        "model_sent": "gpt-4o-2024-08-06",
        "start": 0.002,
        "end": 0.850,
        "upstream_status": 200,
    }
    return AttemptRecord(**(values | over))


def traced(**over: Any) -> RequestRecord:
    """A sampled, answered, non-streamed chat completion (one attempt)."""
    values: dict[str, Any] = {
        "ts": TS,
        "request_id": "req-1",
        "key_name": "team-a",
        "client": "openai-python",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "gpt-4o",
        "model_sent": "gpt-4o-2024-08-06",
        "provider": "alpha",
        "attempts": ["alpha"],
        "status": 200,
        "duration_ms": 851.0,
        "ttft_ms": None,
        "prompt_tokens": 1200,
        "completion_tokens": 8,
        "cost_usd": 0.00042,
        "streamed": False,
        "error_code": None,
        "prompt": PROMPT,
        "completion": COMPLETION,
        "trace_id": TRACE,
        "span_id": SERVER,
        "sampled": True,
        "route": "/v1/chat/completions",
        "attempt_spans": [attempt()],
        "response_tail": CHAT_TAIL,
    }
    return RequestRecord(**(values | over))


def strings(spans: list[Span]) -> list[str]:
    """Every string a span holds: names, status messages, attribute and event values."""
    out: list[str] = []
    for span in spans:
        out += [span.name, span.status_message, span.trace_state]
        for attributes in [span.attributes, *(e.attributes for e in span.events)]:
            for value in attributes.values():
                values = value if isinstance(value, list) else [value]
                out += [v for v in values if isinstance(v, str)]
    return out
