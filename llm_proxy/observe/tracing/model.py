"""The spans the proxy exports, as plain data: built from request records off the request path
(`spans.py`), encoded to OTLP (`otlp.py`) by the exporter's task (`exporter.py`).

Ids are raw bytes (16 for a trace, 8 for a span), as OTLP's protobuf carries them; OTLP/JSON
writes them in lower-case hex. Times are nanoseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# An attribute's value: OTLP's AnyValue, limited to what the proxy sets (homogeneous arrays).
AttrValue = str | bool | int | float | list[str] | list[int] | list[float] | list[bool]
Attributes = dict[str, AttrValue]

# SpanKind (opentelemetry/proto/trace/v1/trace.proto)
KIND_INTERNAL: Final = 1
KIND_SERVER: Final = 2
KIND_CLIENT: Final = 3

# Status.StatusCode
STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2

# Span.flags: the W3C trace flags in bits 0-7 (0x01: sampled); bit 8 says whether bit 9 is
# known, bit 9 whether the parent span is remote (another process: the client's span).
FLAG_SAMPLED: Final = 0x01
FLAG_HAS_IS_REMOTE: Final = 0x100
FLAG_IS_REMOTE: Final = 0x200


@dataclass(slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True)
class Span:
    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    parent_span_id: bytes  # b"" for a root span
    name: str
    kind: int  # KIND_*
    start_ns: int
    end_ns: int
    attributes: Attributes = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    trace_state: str = ""  # W3C tracestate, as received (empty: none)
    flags: int = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE


@dataclass(frozen=True, slots=True)
class Resource:
    """Who exports: `service.name` and the rest of OTEL_RESOURCE_ATTRIBUTES, plus the SDK's
    `telemetry.sdk.*` and the scope (instrumentation library) name and version."""

    attributes: Attributes
    scope_name: str = "llm-proxy"
    scope_version: str = ""
