"""The Langfuse flavour of a request's spans: the attributes Langfuse's OTLP endpoint
(`/api/public/otel/v1/traces`) maps onto its trace and observations, added to the spans
`spans.build_spans` made, so that each request shows as a trace with one generation.

Read from Langfuse's own ingestion code (langfuse/langfuse, packages/shared/src/server/otel:
`attributes.ts`, `OtelIngestionProcessor.ts`, `ObservationTypeMapper.ts`, 2026-08):

* every span is an observation; `langfuse.observation.type` overrides the type it would infer
  (`gen_ai.operation.name: chat` alone would make every attempt a generation);
* trace fields come from `langfuse.trace.name`, `user.id`, `langfuse.trace.tags` (a string
  array), `langfuse.trace.metadata.<key>`, `langfuse.trace.input` / `.output`; they apply from
  any span carrying them, so a server span continuing a client's trace (not Langfuse's root)
  still names and tags the trace; its parent (the client's span) is kept: Langfuse's trace
  view shows an observation whose parent it lacks as a root (web/src/features/traces/fns/
  treeBuilding.ts), and under the client's own span when the client exports there too;
* a generation's fields: `langfuse.observation.model.name`, `.usage_details` and
  `.cost_details` (JSON objects, taken as given), `.completion_start_time` (ISO 8601),
  `.level` and `.status_message`, `.metadata.<key>`, `.input` / `.output`; a span whose status
  is ERROR is an ERROR observation unless `.level` says otherwise.

The semantics of the ingestion-API export (`observe/langfuse_events.py`) are kept: the trace
is named `llm-proxy {path}`, its user is the key's name, its tags are `llm-proxy`,
`provider:<name>`, `client:<label>` (and `error` for a status >= 400), with the same metadata;
the generation is the answering attempt (the server span when no attempt answered), ERROR for
a status >= 400, WARNING when answered after failed attempts; content only with capture on.
What differs: the generation spans its attempt (latency and TTFT are the upstream's), and the
failed attempts are observations of their own (WARNING when retried).
"""

from __future__ import annotations

from typing import Final

import orjson

from llm_proxy.observe.langfuse_events import iso
from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.tracing.content import clean
from llm_proxy.observe.tracing.model import Attributes, Span

_PATH_CHARS: Final = 200  # as the ingestion export names its traces
# Usage and cost go on the generation only: Langfuse adds up its observations' usage.
_USAGE_PREFIXES: Final = ("gen_ai.usage.", "llm_proxy.cost.")


def annotate(
    record: RequestRecord,
    server: Span,
    clients: list[Span],
    generation: Span | None,
    *,
    capture_content: bool,
) -> None:
    """Add the Langfuse attributes (in place); `generation` is the answering attempt's span,
    None when no attempt answered (then the server span is the generation)."""
    path = record.path if len(record.path) <= _PATH_CHARS else record.path[:_PATH_CHARS] + "..."
    tags = ["llm-proxy", f"provider:{record.provider}", f"client:{record.client}"]
    if record.team is not None:
        tags.append(f"team:{record.team}")
    if record.status >= 400:
        tags.append("error")
    trace: Attributes = {
        "langfuse.trace.name": f"llm-proxy {path}",
        "user.id": record.key_name,
        "langfuse.trace.tags": tags,
    }
    trace |= _metadata("langfuse.trace.metadata.", _trace_metadata(record))
    if capture_content:
        if record.prompt is not None:
            trace["langfuse.trace.input"] = clean(record.prompt)
        if record.completion is not None:
            trace["langfuse.trace.output"] = clean(record.completion)
    server.attributes |= trace

    target = generation or server
    for span in (server, *clients):
        if span is not target:
            span.attributes["langfuse.observation.type"] = "span"
            for name in [n for n in span.attributes if n.startswith(_USAGE_PREFIXES)]:
                del span.attributes[name]
            if span is not server and "llm_proxy.attempt.retry_reason" in span.attributes:
                span.attributes["langfuse.observation.level"] = "WARNING"
    target.attributes |= _generation(record, target, capture_content)


def _generation(record: RequestRecord, span: Span, capture: bool) -> Attributes:
    attributes: Attributes = {"langfuse.observation.type": "generation"}
    model = record.model_sent or record.model or span.attributes.get("gen_ai.response.model")
    if isinstance(model, str) and model:
        attributes["langfuse.observation.model.name"] = model
    usage = _usage(record, span)
    if usage:
        attributes["langfuse.observation.usage_details"] = orjson.dumps(usage).decode()
    if record.cost_usd is not None:
        attributes["langfuse.observation.cost_details"] = orjson.dumps(
            {"total": record.cost_usd}
        ).decode()
    first = _first_token_ns(record, span)
    if first is not None:
        attributes["langfuse.observation.completion_start_time"] = iso(first / 1e9)
    if record.status >= 400:
        attributes["langfuse.observation.level"] = "ERROR"
        attributes["langfuse.observation.status_message"] = (
            f"{record.status} {record.error_code or 'error'}"
        )
    elif record.errors or len(record.attempt_spans) > 1:
        failed = len(record.errors) or len(record.attempt_spans) - 1
        attributes["langfuse.observation.level"] = "WARNING"
        attributes["langfuse.observation.status_message"] = (
            f"answered after {failed} failed attempt(s)"
        )
    attributes |= _metadata("langfuse.observation.metadata.", _generation_metadata(record))
    if capture:
        if record.prompt is not None:
            attributes["langfuse.observation.input"] = clean(record.prompt)
        if record.completion is not None:
            attributes["langfuse.observation.output"] = clean(record.completion)
    return attributes


def _usage(record: RequestRecord, span: Span) -> dict[str, int]:
    """Langfuse's usage keys, as its own gen_ai.* mapping makes them: `input` without the
    cache's reads and writes, which are `input_cached_tokens` and `input_cache_creation`."""
    usage: dict[str, int] = {}
    read = span.attributes.get("gen_ai.usage.cache_read.input_tokens")
    write = span.attributes.get("gen_ai.usage.cache_creation.input_tokens")
    cached = (read if isinstance(read, int) else 0) + (write if isinstance(write, int) else 0)
    if record.prompt_tokens is not None:
        usage["input"] = max(record.prompt_tokens - cached, 0)
    if record.completion_tokens is not None:
        usage["output"] = record.completion_tokens
    if usage:
        usage["total"] = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
    if isinstance(read, int):
        usage["input_cached_tokens"] = read
    if isinstance(write, int):
        usage["input_cache_creation"] = write
    return usage


def _first_token_ns(record: RequestRecord, span: Span) -> int | None:
    for event in span.events:
        if event.name == "llm_proxy.first_token":
            return event.time_ns
    if record.ttft_ms is not None:
        return round(record.ts * 1e9) + round(record.ttft_ms * 1e6)
    return None


def _trace_metadata(record: RequestRecord) -> dict[str, object]:
    return {
        "request_id": record.request_id,
        "method": record.method,
        "client": record.client,
        "team": record.team,  # left out when None
        "provider": record.provider,
        "attempts": record.attempts,
        "failed_attempts": orjson.dumps(  # JSON text: objects cannot be attribute values
            [
                {"provider": e.provider, "outcome": e.outcome, "upstream_status": e.upstream_status}
                for e in record.errors
            ]
        ).decode(),
        "status": record.status,
        "streamed": record.streamed,
        "error_code": record.error_code,
    }


def _generation_metadata(record: RequestRecord) -> dict[str, object]:
    return {
        "request_id": record.request_id,
        "provider": record.provider,
        "key_name": record.key_name,
        "model_requested": record.model,
        "status": record.status,
        "attempts": record.attempts,
        "duration_ms": record.duration_ms,
        "ttft_ms": record.ttft_ms,
        "streamed": record.streamed,
    }


def _metadata(prefix: str, values: dict[str, object]) -> Attributes:
    """One attribute per metadata key (None left out); a list of strings is an array."""
    out: Attributes = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[prefix + key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[prefix + key] = [str(v) for v in value]
        else:
            out[prefix + key] = orjson.dumps(value).decode()
    return out
