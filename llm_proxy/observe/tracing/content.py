"""Prompt and completion text on spans, only with content capture on: as the GenAI
conventions' opt-in `gen_ai.client.inference.operation.details` event (messages per the
input/output messages JSON schemas, as JSON text: span attributes cannot nest), and as plain
text for Langfuse's input and output attributes. The proxy keeps the request's text as one
block (`RequestRecord.prompt`), so the input is one user message of one text part."""

from __future__ import annotations

from typing import Final

import orjson

from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.tracing.answer import Answer
from llm_proxy.observe.tracing.model import Attributes, SpanEvent

CONTENT_EVENT: Final = "gen_ai.client.inference.operation.details"


def content_event(record: RequestRecord, answer: Answer, operation: str, at: int) -> SpanEvent:
    """Prompt and completion as the GenAI conventions' opt-in event, at `at` (ns)."""
    attributes: Attributes = {"gen_ai.operation.name": operation}
    if record.prompt is not None:
        attributes["gen_ai.input.messages"] = _json(input_messages(record.prompt))
    if record.completion is not None:
        attributes["gen_ai.output.messages"] = _json(
            output_messages(record.completion, answer, record.status)
        )
    return SpanEvent(CONTENT_EVENT, at, attributes)


def input_messages(prompt: str) -> list[dict[str, object]]:
    return [{"role": "user", "parts": [{"type": "text", "content": clean(prompt)}]}]


def output_messages(completion: str, answer: Answer, status: int) -> list[dict[str, object]]:
    """One assistant message. `finish_reason` is required by the schema: the answer's own,
    else `error` for a failed request, else `stop`."""
    reason = answer.finish_reasons[0] if answer.finish_reasons else None
    reason = reason or ("error" if status >= 400 else "stop")
    return [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": clean(completion)}],
            "finish_reason": reason,
        }
    ]


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def clean(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate (a text cut mid-pair) becomes `?`, so that
    JSON and protobuf encoders take it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="replace").decode()
    return text
