"""A fake OpenTelemetry collector on loopback (`FakeCollector`): OTLP/HTTP traces decoded with
the official generated messages (opentelemetry-proto), so what it accepts is what a real
collector parses, whatever our encoder believes.

`POST /v1/traces` takes `application/x-protobuf` (ExportTraceServiceRequest.FromString) or
`application/json` (google.protobuf.json_format, after turning OTLP/JSON's hex ids into the
base64 the proto3 mapping expects), gzipped or not. Every POST is recorded (`requests`): its
headers, content type, decoded message and the loop time it arrived. A body it cannot decode
is answered 400 and noted in `problems`. `answer_next(...)` scripts the next answers (a
status, headers such as Retry-After, a delay, a partial_success); `stop()` and `start(port)`
take it down and bring it back on the same port. `wait_for_spans(n)` waits on a condition.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PATH = "/v1/traces"
_HEX_IDS = ("traceId", "spanId", "parentSpanId")


@dataclass
class Answer:
    """How to answer one POST (the default: 200 with an empty response message)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow collector)
    rejected_spans: int = 0  # a partial_success in a 2xx
    error_message: str = ""


@dataclass
class Received:
    at: float  # the loop's time when the POST arrived
    wall: float  # and the wall clock's (an HTTP-date Retry-After is in wall time)
    headers: dict[str, str]
    content_type: str
    wire_size: int | None  # Content-Length: the body's size as sent (compressed if it was)
    body: bytes  # decompressed
    message: ExportTraceServiceRequest | None  # None: it could not be decoded
    status: int = 0  # what it was answered (0: not yet, or the client hung up first)

    @property
    def spans(self) -> int:
        return sum(
            len(ss.spans)
            for rs in (self.message.resource_spans if self.message else ())
            for ss in rs.scope_spans
        )


def any_value(value: AnyValue) -> Any:
    """An AnyValue as a Python value (an array as a list)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(kvs)
    return {kv.key: any_value(kv.value) for kv in items}


def flatten(message: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Every span of a request as a dict: ids in hex, its resource's and scope's attributes,
    events and status as plain values."""
    out = []
    for rs in message.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    {
                        "resource": resource,
                        "scope": (ss.scope.name, ss.scope.version),
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "trace_state": span.trace_state,
                        "flags": span.flags,
                        "name": span.name,
                        "kind": span.kind,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "attributes": attributes(span.attributes),
                        "events": [
                            {
                                "name": e.name,
                                "time": e.time_unix_nano,
                                "attributes": attributes(e.attributes),
                            }
                            for e in span.events
                        ],
                        "status": (span.status.code, span.status.message),
                    }
                )
    return out


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON into the message: hex ids become base64 first (OTLP's one departure from the
    proto3 JSON mapping); anything else the mapping refuses raises ParseError."""
    data = json.loads(body)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if name in _HEX_IDS and isinstance(value, str):
                    node[name] = base64.b64encode(bytes.fromhex(value)).decode()
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    fix(data)
    message = ExportTraceServiceRequest()
    json_format.ParseDict(data, message)
    return message


class FakeCollector:
    """An OTLP/HTTP traces receiver on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self.port = 0
        self._script: deque[Answer] = deque()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def spans(self) -> list[dict[str, Any]]:
        """Every span delivered (answered 2xx), flattened, in the order received."""
        return [s for r in self.delivered if r.message is not None for s in flatten(r.message)]

    def answer_next(self, *answers: Answer) -> None:
        self._script.extend(answers)

    async def start(self, port: int = 0) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(PATH, self._receive)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port or self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Down: connections refused until `start()` again (the port is kept)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for_spans(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least `n` spans were delivered; all of them."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.spans()) >= n)
        return self.spans()

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least `n` POSTs were answered (whatever the answer)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: sum(1 for r in self.requests if r.status) >= n)
        return self.requests

    async def _receive(self, request: web.Request) -> web.Response:
        at = asyncio.get_running_loop().time()
        raw = await request.read()
        received = Received(
            at,
            time.time(),
            dict(request.headers),
            request.content_type,
            request.content_length,
            raw,
            None,
        )
        self.requests.append(received)
        answer = self._script.popleft() if self._script else Answer()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        try:
            # aiohttp's server inflates a gzipped body itself; one it left alone is inflated here.
            if raw[:2] == b"\x1f\x8b":
                raw = received.body = gzip.decompress(raw)
            if request.content_type == "application/x-protobuf":
                received.message = ExportTraceServiceRequest.FromString(raw)
            elif request.content_type == "application/json":
                received.message = parse_json(raw)
            else:
                raise ValueError(f"content type {request.content_type!r}")
        except Exception as exc:
            self.problems.append(repr(exc))
            return await self._answer(received, 400, {}, b"cannot decode", "text/plain")
        response = ExportTraceServiceResponse()
        if answer.rejected_spans or answer.error_message:
            response.partial_success.rejected_spans = answer.rejected_spans
            response.partial_success.error_message = answer.error_message
        if request.content_type == "application/json":
            body = json_format.MessageToJson(response).encode()
        else:
            body = response.SerializeToString()
        return await self._answer(
            received, answer.status, answer.headers, body, request.content_type
        )

    async def _answer(
        self, received: Received, status: int, headers: dict[str, str], body: bytes, ctype: str
    ) -> web.Response:
        async with self._changed:
            received.status = status
            self._changed.notify_all()
        return web.Response(status=status, headers=headers, body=body, content_type=ctype)
