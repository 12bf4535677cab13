"""A sink for OTLP/HTTP traces, for the tracing benchmark: it takes every export, counts it and
answers at once, and does as little else as it can (it shares a CPU with the load generator).

    python -m tests.perf.sink_collector --port PORT [--trace-id HEX32] [--sample-every N]

`POST /v1/traces`: the body is read whole and counted (requests, bytes as sent); the first
export of each exporter and every N-th after it (the benchmark's `SAMPLE_EVERY`) is also
inflated when gzipped and its spans counted (a shallow walk of the protobuf message, or the
JSON mapping's `resourceSpans`), with how many of them carry `--trace-id` (a continued
trace). Walking every body cost this process ~10 ms of CPU per export, on the CPU the load
generator and the fake upstream share: enough to slow them, which made the traced proxies
less loaded, hence costlier per request, than the untraced ones. `spans` and
`spans_in_trace` are the sampled exports' (`decoded` of them); the benchmark scales them by
`requests / decoded`. The answer is 200 with an empty ExportTraceServiceResponse (no bytes,
`application/x-protobuf`; `{}` to a JSON export). A body it cannot read is still answered 200
and counted as undecodable: the benchmark measures the exporter's cost, and a refusal would
change it (retries).

Counts are kept per exporter, named by the `x-bench-scenario` header the benchmark gives each
proxy (OTEL_EXPORTER_OTLP_HEADERS); `GET /stats` returns them as JSON with `idle_secs`, the
seconds since the last export that carried spans or could not be read (null before the first),
which tells the benchmark when a proxy's queued spans have all arrived.
"""

from __future__ import annotations

import argparse
import gzip
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Final

import orjson
from aiohttp import web

PATH: Final = "/v1/traces"
SCENARIO_HEADER: Final = "x-bench-scenario"
SAMPLE_EVERY: Final = 10  # the benchmark's (`--sample-every`); 1 (every export): the default


@dataclass
class Tally:
    """What one exporter sent."""

    requests: int = 0
    bytes: int = 0  # as sent (compressed when it was)
    spans: int = 0
    spans_in_trace: int = 0  # spans whose trace id is the one the benchmark's clients send
    undecodable: int = 0  # requests whose body could not be read
    decoded: int = 0  # requests whose spans were counted (a sample: see the module docstring)


@dataclass
class Sink:
    trace_id: bytes  # 16 bytes; empty: none expected
    sample_every: int = 1  # count the spans of the first export and every n-th after it
    tallies: dict[str, Tally] = field(default_factory=dict)
    last_export: float | None = None  # time.monotonic() of the last export that held anything


SINK: Final = web.AppKey("sink", Sink)


# The protobuf walk: ExportTraceServiceRequest.resource_spans (1) -> ResourceSpans.scope_spans
# (2) -> ScopeSpans.spans (2) -> Span.trace_id (1). Only length-delimited fields are descended.


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int, wanted: int) -> Iterator[tuple[int, int]]:
    """The (start, end) of every length-delimited field numbered `wanted` in buf[start:end]."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > end:
                raise ValueError("a field runs past its message")
            if number == wanted:
                yield i, i + size
            i += size
        else:
            raise ValueError(f"wire type {wire} (groups are not OTLP)")
    if i != end:
        raise ValueError("a field runs past its message")


def count_protobuf(body: bytes, trace_id: bytes) -> tuple[int, int]:
    """(spans, spans whose trace id is `trace_id`) in an ExportTraceServiceRequest."""
    spans = in_trace = 0
    for rs in _fields(body, 0, len(body), 1):
        for ss in _fields(body, *rs, 2):
            for span_start, span_end in _fields(body, *ss, 2):
                spans += 1
                if trace_id:
                    for id_start, id_end in _fields(body, span_start, span_end, 1):
                        in_trace += body[id_start:id_end] == trace_id
    return spans, in_trace


def count_json(body: bytes, trace_id: bytes) -> tuple[int, int]:
    """The same for OTLP/JSON (ids as hex strings)."""
    wanted = trace_id.hex()
    spans = in_trace = 0
    for rs in orjson.loads(body).get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                spans += 1
                in_trace += bool(wanted) and span.get("traceId", "").lower() == wanted
    return spans, in_trace


async def export(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    tally = sink.tallies.setdefault(request.headers.get(SCENARIO_HEADER, "-"), Tally())
    tally.requests += 1
    is_json = request.content_type == "application/json"
    body = await request.read()  # as sent: the server does not inflate it (`make_app`)
    tally.bytes += len(body)
    spans = in_trace = 0
    if (tally.requests - 1) % sink.sample_every:
        sink.last_export = time.monotonic()  # (an export: the exporter is still at work)
        return _answer(is_json)
    tally.decoded += 1
    try:
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        spans, in_trace = (count_json if is_json else count_protobuf)(body, sink.trace_id)
    except (OSError, EOFError, zlib.error, ValueError, IndexError, AttributeError, TypeError):
        # A body that is not what it claims (not gzip after all, a field past its message).
        tally.undecodable += 1
        sink.last_export = time.monotonic()
    tally.spans += spans
    tally.spans_in_trace += in_trace
    if spans:  # an export without spans (if an exporter sends them) is not a sign of work
        sink.last_export = time.monotonic()
    return _answer(is_json)


def _answer(is_json: bool) -> web.Response:
    if is_json:
        return web.Response(body=b"{}", content_type="application/json")
    return web.Response(body=b"", content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    idle = None if sink.last_export is None else time.monotonic() - sink.last_export
    document = {
        "idle_secs": idle,
        "tallies": {name: asdict(tally) for name, tally in sink.tallies.items()},
    }
    return web.Response(body=orjson.dumps(document), content_type="application/json")


def make_app(trace_id: str = "", sample_every: int = 1) -> web.Application:
    """The sink; `trace_id` (32 hex digits, or empty) the trace whose spans are counted apart;
    the spans of one export in `sample_every` are counted."""
    # The body's size as sent is what it costs the exporter: aiohttp's server would inflate a
    # gzipped body as it reads it (and refuse a bad one), so it is told not to.
    app = web.Application(client_max_size=64 * 1024 * 1024, handler_args={"auto_decompress": False})
    app[SINK] = Sink(bytes.fromhex(trace_id), max(1, sample_every))
    app.router.add_post(PATH, export)
    app.router.add_get("/stats", stats)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trace-id", default="", help="32 hex digits: count this trace's spans")
    parser.add_argument("--sample-every", type=int, default=1, help="count one export in N")
    args = parser.parse_args(argv)
    app = make_app(args.trace_id, args.sample_every)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
