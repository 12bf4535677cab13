"""W3C Trace Context on the request path: the client's `traceparent` and `tracestate` read (a
new trace when absent or malformed: a bad header never fails a request), the sampling decision
made once per request, and the `traceparent` each upstream attempt is sent.

https://www.w3.org/TR/trace-context/ (level 1; level 2's random flag is carried as received).
Everything here runs per request, so it is small: one regular expression for a header that is
present, `random.getrandbits` for new ids (the `random` module reseeds itself in a forked
child, so instances started by fork never share ids).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Final

from llm_proxy.config.sections import TRACING_SAMPLERS

_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
# tracestate: at most 32 list members (`key=value`), 512 characters are what a vendor must
# propagate; a longer or malformed header is dropped whole (the spec allows either).
_TRACESTATE_MEMBER: Final = re.compile(
    r"[ \t]*(?:[a-z0-9][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e][ \t]*"
)
_MAX_TRACESTATE: Final = 512
_MAX_MEMBERS: Final = 32

SAMPLERS: Final = TRACING_SAMPLERS  # OTEL_TRACES_SAMPLER's names


@dataclass(frozen=True, slots=True)
class Parent:
    """A valid `traceparent` from the client."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16
    flags: int  # the trace flags byte (0x01: the caller sampled it)


def parse_traceparent(value: str | None) -> Parent | None:
    """A client's `traceparent`, None when absent or invalid: bad characters or lengths, upper
    case, version `ff`, an all-zero id, or version 00 with anything after its 55 characters. A
    later version's extra fields are ignored, as the spec asks."""
    if value is None:
        return None
    value = value.strip(" \t")
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if len(value) != 55 and (version == "00" or value[55] != "-"):
        return None
    return Parent(trace_id, span_id, int(flags, 16))


def parse_tracestate(values: list[str]) -> str | None:
    """The client's `tracestate` headers joined (a list may be split over several), None when
    absent, empty, too long or malformed: it is then not propagated at all."""
    joined = ",".join(values).strip(" \t,")
    if not joined or len(joined) > _MAX_TRACESTATE:
        return None
    members = [m for m in joined.split(",") if m.strip(" \t")]
    if len(members) > _MAX_MEMBERS:
        return None
    seen = set()
    for member in members:
        if _TRACESTATE_MEMBER.fullmatch(member) is None:
            return None
        key = member.partition("=")[0].strip(" \t")
        if key in seen:  # a key appears once
            return None
        seen.add(key)
    return ",".join(m.strip(" \t") for m in members)


def new_span_id() -> str:
    """16 hex digits, never all zeros."""
    return f"{random.getrandbits(64) or 1:016x}"


def new_trace_id() -> str:
    """32 hex digits, never all zeros; random in the lower 64 bits (ratio sampling reads
    those, as OpenTelemetry's TraceIdRatioBased does)."""
    return f"{random.getrandbits(128) or 1:032x}"


def keeps(trace_id: str, ratio: float) -> bool:
    """Ratio sampling by trace id: the same answer for a trace in every process (and in any
    SDK that implements TraceIdRatioBased): its lower 64 bits below `ratio` x 2^64."""
    if ratio >= 1.0:
        return True
    return int(trace_id[16:], 16) < int(ratio * 2**64)


class Sampler:
    """One of OpenTelemetry's built-in samplers, by its `OTEL_TRACES_SAMPLER` name; `arg` is
    the ratio of the ratio-based ones (`OTEL_TRACES_SAMPLER_ARG`)."""

    __slots__ = ("_parent_based", "_root", "name", "ratio")

    def __init__(self, name: str = "parentbased_always_on", arg: float = 1.0) -> None:
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r} (one of {', '.join(SAMPLERS)})")
        if not 0.0 <= arg <= 1.0:
            raise ValueError(f"the sampler's ratio must be from 0 to 1, got {arg!r}")
        self.name = name
        self._parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        self.ratio = arg if root == "traceidratio" else (1.0 if root == "always_on" else 0.0)
        self._root = root

    def sampled(self, trace_id: str, parent: Parent | None) -> bool:
        if parent is not None and self._parent_based:
            return bool(parent.flags & 0x01)  # the caller decided
        if self.ratio <= 0.0:
            return False
        return keeps(trace_id, self.ratio)


@dataclass(slots=True)
class Trace:
    """A request's trace: the ids its spans carry and whether they are recorded."""

    trace_id: str
    span_id: str  # the proxy's server span
    parent_span_id: str | None  # the client's span
    trace_state: str | None
    sampled: bool

    def traceparent(self, span_id: str) -> bytes:
        """The header lines for an upstream call made by span `span_id` (the attempt's)."""
        flags = b"-01\r\n" if self.sampled else b"-00\r\n"
        line = b"traceparent: 00-" + self.trace_id.encode() + b"-" + span_id.encode() + flags
        if self.trace_state is not None:
            line += b"tracestate: " + self.trace_state.encode() + b"\r\n"
        return line


def start(sampler: Sampler, traceparent: str | None, tracestate: list[str] | None) -> Trace:
    """The trace a request joins: the client's when its `traceparent` is valid (its
    `tracestate` kept), else a new one; sampled by `sampler`."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        trace_id = new_trace_id()
        return Trace(trace_id, new_span_id(), None, None, sampler.sampled(trace_id, None))
    state = parse_tracestate(tracestate) if tracestate else None
    return Trace(
        parent.trace_id,
        new_span_id(),
        parent.span_id,
        state,
        sampler.sampled(parent.trace_id, parent),
    )
