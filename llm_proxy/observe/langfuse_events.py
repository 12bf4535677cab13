"""What a request record becomes in Langfuse: a trace-create and a generation-create event of
its ingestion API, built in the exporter's task (never on the request path), pure functions.

Trace and generation ids are derived from the request id and its arrival time: stable for a
given record, distinct for two requests even when clients reuse an `X-Request-Id`. Prompt and
completion text go only with `capture_content` on. A request that failed is an ERROR
generation (its trace tagged `error`); one answered after failed attempts, a WARNING.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from llm_proxy.observe.records import RequestRecord

# Trace ids are uuid5 names in this namespace (uuid5(NAMESPACE_URL, "llm-proxy:langfuse")).
_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "llm-proxy:langfuse")


def trace_id(record: RequestRecord) -> str:
    """The Langfuse trace id of a record: stable for the record, distinct per request."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{record.request_id}\n{record.ts!r}"))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events(record: RequestRecord, capture_content: bool, now: str) -> list[dict[str, Any]]:
    """A trace-create and a generation-create event for one request."""
    tid = trace_id(record)
    start = iso(record.ts)
    path = record.path if len(record.path) <= 200 else record.path[:200] + "..."
    trace = _trace(record, tid, start, path)
    generation = _generation(record, tid, start, path)
    if record.status >= 400:
        trace["tags"].append("error")
    if capture_content:
        for body in (trace, generation):
            if record.prompt is not None:
                body["input"] = record.prompt
            if record.completion is not None:
                body["output"] = record.completion
    return [
        {"id": str(uuid.uuid4()), "timestamp": now, "type": "trace-create", "body": trace},
        {
            "id": str(uuid.uuid4()),
            "timestamp": now,
            "type": "generation-create",
            "body": generation,
        },
    ]


def _trace(record: RequestRecord, tid: str, start: str, path: str) -> dict[str, Any]:
    """The trace: who called what, and how the attempts went."""
    attempts_failed = [
        {"provider": e.provider, "outcome": e.outcome, "upstream_status": e.upstream_status}
        for e in record.errors
    ]
    trace: dict[str, Any] = {
        "id": tid,
        "timestamp": start,
        "name": f"llm-proxy {path}",
        "userId": record.key_name,
        "tags": ["llm-proxy", f"provider:{record.provider}", f"client:{record.client}"],
        "metadata": {
            "request_id": record.request_id,
            "method": record.method,
            "client": record.client,
            "provider": record.provider,
            "attempts": record.attempts,
            "failed_attempts": attempts_failed,
            "status": record.status,
            "streamed": record.streamed,
            "error_code": record.error_code,
        },
    }
    if record.team is not None:  # the key's team (`teams:`)
        trace["tags"].append(f"team:{record.team}")
        trace["metadata"]["team"] = record.team
    return trace


def _generation(record: RequestRecord, tid: str, start: str, path: str) -> dict[str, Any]:
    """The generation: the model, its timing, usage and cost, and its level."""
    generation: dict[str, Any] = {
        "id": str(uuid.uuid5(_ID_NAMESPACE, tid)),
        "traceId": tid,
        "name": path,
        "startTime": start,
        "endTime": iso(record.ts + record.duration_ms / 1000),
        "metadata": {
            "request_id": record.request_id,
            "provider": record.provider,
            "key_name": record.key_name,
            "model_requested": record.model,
            "status": record.status,
            "attempts": record.attempts,
            "duration_ms": record.duration_ms,
            "ttft_ms": record.ttft_ms,
            "streamed": record.streamed,
        },
    }
    model = record.model_sent or record.model
    if model:
        generation["model"] = model
    if record.ttft_ms is not None:
        generation["completionStartTime"] = iso(record.ts + record.ttft_ms / 1000)
    usage = {
        k: v
        for k, v in (("input", record.prompt_tokens), ("output", record.completion_tokens))
        if v is not None
    }
    if usage:
        usage["total"] = sum(usage.values())
        generation["usageDetails"] = usage
    if record.cost_usd is not None:
        generation["costDetails"] = {"total": record.cost_usd}
    if record.status >= 400:
        generation["level"] = "ERROR"
        generation["statusMessage"] = f"{record.status} {record.error_code or 'error'}"
    elif record.errors:
        generation["level"] = "WARNING"
        generation["statusMessage"] = f"answered after {len(record.errors)} failed attempt(s)"
    return generation


def encode(events: list[dict[str, Any]]) -> bytes:
    """The events as JSON array items (no brackets). orjson refuses text with a lone surrogate
    (a prompt cut mid-pair); the stdlib escapes it as `\\udXXX`, which Langfuse parses."""
    try:
        return orjson.dumps(events)[1:-1]
    except orjson.JSONEncodeError:
        return json.dumps(events, separators=(",", ":")).encode()[1:-1]
