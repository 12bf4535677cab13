"""A fake of Langfuse's OTLP traces endpoint on loopback (`FakeLangfuseOtlp`): POST
`/api/public/otel/v1/traces`, Basic auth (401 otherwise), OTLP/HTTP protobuf or JSON bodies
(gzip allowed), decoded with `opentelemetry-proto`; it maps spans onto traces and
observations as Langfuse's ingestion does (langfuse/langfuse,
packages/shared/src/server/otel/OtelIngestionProcessor.ts), as far as llm-proxy's spans use it,
and records what a real server would refuse or silently drop in `problems`."""

from __future__ import annotations

import base64
import gzip
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.helpers.langfuse import PUBLIC, SECRET

OTLP_PATH = "/api/public/otel/v1/traces"
LEVELS = {"DEBUG", "DEFAULT", "WARNING", "ERROR"}
# gen_ai.operation.name values Langfuse makes generations of (ObservationTypeMapper.ts)
_GENERATION_OPERATIONS = {"chat", "completion", "text_completion", "generate_content", "generate"}
# Attributes holding prompt or completion text: none may be sent with capture off.
CONTENT_ATTRIBUTES = {
    "langfuse.trace.input",
    "langfuse.trace.output",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
}
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@dataclass
class Observation:
    id: str
    trace_id: str
    parent_id: str | None
    type: str  # span, generation, embedding, ...
    name: str
    start: int  # ns
    end: int
    level: str
    status_message: str | None
    model: str | None
    usage: dict[str, Any]
    cost: dict[str, Any]
    completion_start: datetime | None
    input: Any
    output: Any
    metadata: dict[str, Any]
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]


@dataclass
class Trace:
    id: str
    name: str | None = None
    user_id: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    input: Any = None
    output: Any = None
    observations: dict[str, Observation] = field(default_factory=dict)

    @property
    def generations(self) -> list[Observation]:
        return [o for o in self.observations.values() if o.type == "generation"]


class FakeLangfuseOtlp:
    """Langfuse's OTLP endpoint on 127.0.0.1. `fail` answers the next POSTs with given
    statuses (a 429 or 503 with `Retry-After: 0`); `capture` says whether content may come."""

    def __init__(self, capture: bool = False) -> None:
        self.capture = capture
        self.traces: dict[str, Trace] = {}
        self.resources: list[dict[str, Any]] = []
        self.scopes: list[tuple[str, str]] = []  # (name, version)
        self.requests: list[dict[str, str]] = []  # headers of every POST
        self.statuses: list[int] = []
        self.problems: list[str] = []
        self.fail: list[int] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def spans(self) -> int:
        return sum(len(t.observations) for t in self.traces.values())

    async def start(self, port: int = 0) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post(OTLP_PATH, self._export)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _answer(self, status: int, message: str = "") -> web.Response:
        self.statuses.append(status)
        headers = {"Retry-After": "0"} if status in (429, 503) else None
        return web.json_response({"message": message}, status=status, headers=headers)

    async def _export(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        expected = "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return self._answer(401, "Invalid credentials")
        raw = await request.read()
        if self.fail:
            return self._answer(self.fail.pop(0), "busy")
        if request.headers.get("Content-Encoding", "identity") == "gzip":
            raw = gzip.decompress(raw)
        try:
            message = _decode(request.content_type, raw)
        except (DecodeError, json_format.ParseError, ValueError) as exc:
            self.problems.append(f"undecodable body: {exc!r}")
            return self._answer(400, "Invalid request")
        self._ingest(message)
        self.statuses.append(200)
        if request.content_type == "application/x-protobuf":
            body = ExportTraceServiceResponse().SerializeToString()
            return web.Response(body=body, content_type="application/x-protobuf")
        return web.json_response({})

    def _ingest(self, message: ExportTraceServiceRequest) -> None:
        for resource_spans in message.resource_spans:
            self.resources.append(_attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                self.scopes.append((scope_spans.scope.name, scope_spans.scope.version))
                for span in scope_spans.spans:
                    self._span(span)

    def _span(self, span: Any) -> None:
        where = f"span {span.name!r}"
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            self.problems.append(f"{where}: bad ids")
            return
        if span.parent_span_id and len(span.parent_span_id) != 8:
            self.problems.append(f"{where}: bad parent id")
        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
        attributes = _attributes(span.attributes)
        events = [(e.name, _attributes(e.attributes)) for e in span.events]
        trace = self.traces.setdefault(trace_id, Trace(trace_id))
        if span_id in trace.observations:
            self.problems.append(f"{where}: delivered twice")
        if not self.capture:
            sent = CONTENT_ATTRIBUTES & (set(attributes) | {k for _, a in events for k in a})
            if sent:
                self.problems.append(f"{where}: content with capture off: {sorted(sent)}")
        self._trace_fields(trace, attributes, where)
        level = attributes.get("langfuse.observation.level")
        if level is not None and level not in LEVELS:
            self.problems.append(f"{where}: level {level!r}")
        kind = attributes.get("langfuse.observation.type")
        if kind is None:
            operation = attributes.get("gen_ai.operation.name")
            kind = "generation" if operation in _GENERATION_OPERATIONS else "span"
        model = next(
            (
                attributes[k]
                for k in (
                    "langfuse.observation.model.name",
                    "gen_ai.response.model",
                    "gen_ai.request.model",
                )
                if attributes.get(k)
            ),
            None,
        )
        observation = Observation(
            id=span_id,
            trace_id=trace_id,
            parent_id=span.parent_span_id.hex() or None,
            type=kind,
            name=span.name,
            start=span.start_time_unix_nano,
            end=span.end_time_unix_nano,
            level=level or ("ERROR" if span.status.code == 2 else "DEFAULT"),
            status_message=attributes.get("langfuse.observation.status_message")
            or span.status.message
            or None,
            model=model,
            usage=self._json_object(attributes, "langfuse.observation.usage_details", where)
            or _generic_usage(attributes),
            cost=self._json_object(attributes, "langfuse.observation.cost_details", where),
            completion_start=self._time(attributes, where),
            input=attributes.get("langfuse.observation.input"),
            output=attributes.get("langfuse.observation.output"),
            metadata=_prefixed(attributes, "langfuse.observation.metadata."),
            attributes=attributes,
            events=events,
        )
        if observation.end < observation.start:
            self.problems.append(f"{where}: ends before it starts")
        if kind == "generation" and not model:
            self.problems.append(f"{where}: a generation without a model")
        for name, value in observation.usage.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                self.problems.append(f"{where}: usage {name} is {value!r}")
        trace.observations[span_id] = observation

    def _trace_fields(self, trace: Trace, attributes: dict[str, Any], where: str) -> None:
        """Trace fields apply from any span carrying them (a later one overrides)."""
        if "langfuse.trace.name" in attributes:
            trace.name = attributes["langfuse.trace.name"]
        user = attributes.get("langfuse.user.id") or attributes.get("user.id")
        if user:
            trace.user_id = user
        tags = attributes.get("langfuse.trace.tags")
        if tags is not None:
            if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
                self.problems.append(f"{where}: tags {tags!r} are not a string array")
            else:
                trace.tags = tags
        trace.metadata |= _prefixed(attributes, "langfuse.trace.metadata.")
        for name in ("input", "output"):
            if f"langfuse.trace.{name}" in attributes:
                setattr(trace, name, attributes[f"langfuse.trace.{name}"])

    def _json_object(self, attributes: dict[str, Any], name: str, where: str) -> dict[str, Any]:
        value = attributes.get(name)
        if value is None:
            return {}
        try:
            parsed = orjson.loads(value) if isinstance(value, str) else None
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            self.problems.append(f"{where}: {name} is not a JSON object: {value!r}")
            return {}
        return parsed

    def _time(self, attributes: dict[str, Any], where: str) -> datetime | None:
        value = attributes.get("langfuse.observation.completion_start_time")
        if value is None:
            return None
        if not (isinstance(value, str) and _ISO.match(value)):
            self.problems.append(f"{where}: completion_start_time {value!r} is not ISO 8601")
            return None
        return datetime.fromisoformat(value)


def _decode(content_type: str, raw: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    if content_type == "application/x-protobuf":
        message.ParseFromString(raw)
        return message
    if content_type == "application/json":
        # OTLP/JSON writes ids in hex; protobuf's JSON mapping wants base64.
        data = orjson.loads(raw)
        for resource_spans in data.get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if span.get(key):
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        json_format.ParseDict(data, message)
        return message
    raise ValueError(f"content type {content_type}")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _prefixed(attributes: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in attributes.items() if k.startswith(prefix)}


def _generic_usage(attributes: dict[str, Any]) -> dict[str, Any]:
    """Langfuse's gen_ai.usage.* mapping (input without the cache's share), used only when
    `langfuse.observation.usage_details` is absent."""
    usage = _prefixed(attributes, "gen_ai.usage.")
    out: dict[str, Any] = {}
    read = usage.get("cache_read.input_tokens")
    write = usage.get("cache_creation.input_tokens")
    if "input_tokens" in usage:
        out["input"] = max(usage["input_tokens"] - (read or 0) - (write or 0), 0)
    if "output_tokens" in usage:
        out["output"] = usage["output_tokens"]
    if read is not None:
        out["input_cached_tokens"] = read
    if write is not None:
        out["input_cache_creation"] = write
    return out
