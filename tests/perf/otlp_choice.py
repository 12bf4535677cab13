"""What OTLP export costs per request, three ways (docs/decisions/0001-tracing-otlp-export.md).

    .venv/bin/python -m tests.perf.otlp_choice [--rounds N] [--requests N] [--json]

A request's typical spans: a server span with 20 attributes and a client span with 15
attributes and 2 events; a few values change per request (ids, tokens, times, the request
id), the rest repeat (method, route, provider, model, key name), as in production. Contenders:

  sdk      the OpenTelemetry SDK (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http):
           the spans made through its API (start_span, attributes, add_event, end) into a
           BatchSpanProcessor, then encoded as its OTLPSpanExporter does
           (`encode_spans(spans).SerializePartialToString()`). Skipped when not installed.
  proto    our own exporter on the generated messages (opentelemetry-proto): our Span objects
           turned into ExportTraceServiceRequest messages and serialized.
  own      our Span objects encoded by `llm_proxy.observe.tracing.otlp.encode_protobuf`
           (`own (json)`: by `encode_json`); `build only` is the Span objects alone.

Every contender starts from the same record-like data, and `proto` and `own` include building
the Span objects (what `spans.build_spans` does off the request path). CPU is this thread's
(`time.thread_time`, so the SDK's export thread is not counted: its queue is set so that
thread stays idle, and the encoding is timed here), per request, in rounds that interleave the
contenders in a rotating order; each figure is the median of its rounds. gzip (levels 1 and 6)
of the encoded batch is reported apart, as it applies to any contender.

Import cost: each contender's modules imported in a fresh interpreter that has already imported
what the proxy imports anyway (aiohttp, orjson, structlog): the RSS growth and the time.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from llm_proxy.observe.tracing.model import (
    FLAG_HAS_IS_REMOTE,
    FLAG_SAMPLED,
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    Resource,
    Span,
    SpanEvent,
)
from llm_proxy.observe.tracing.otlp import encode_json, encode_protobuf

RESOURCE = Resource(
    {
        "service.name": "llm-proxy",
        "service.version": "0.1.0",
        "service.instance.id": "llm-proxy-7d9f8-abcde",
        "deployment.environment.name": "production",
        "telemetry.sdk.name": "llm-proxy",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": "0.1.0",
    },
    scope_name="llm-proxy",
    scope_version="0.1.0",
)

T0 = 1_765_000_000_000_000_000


def request_data(i: int) -> dict[str, Any]:
    """What a record holds for one request: ids (random) and numbers vary, names repeat."""
    ids = random.Random(i)
    return {
        "trace_id": ids.randbytes(16),
        "span_id": ids.randbytes(8),
        "client_span_id": ids.randbytes(8),
        "parent_span_id": ids.randbytes(8),
        "start": T0 + i * 1_000_000,
        "duration": 850_000_000 + (i % 97) * 1_000_000,
        "ttft": 120_000_000 + (i % 13) * 1_000_000,
        "request_id": ids.randbytes(8).hex(),
        "prompt_tokens": 12 + i % 500,
        "completion_tokens": 30 + i % 700,
        "cost": 0.00042 + (i % 10) * 1e-5,
        "retried": i % 10 == 0,
    }


def server_attributes(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "http.request.method": "POST",
        "http.route": "/v1/chat/completions",
        "url.path": "/v1/chat/completions",
        "url.scheme": "https",
        "http.response.status_code": 200,
        "server.address": "llm-proxy.internal",
        "server.port": 8080,
        "client.address": "10.0.3.17",
        "user_agent.original": "OpenAI/Python 1.54.0",
        "network.protocol.version": "1.1",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": d["prompt_tokens"],
        "gen_ai.usage.output_tokens": d["completion_tokens"],
        "llm_proxy.key_name": "team-a",
        "llm_proxy.client": "openai-python",
        "llm_proxy.provider": "alpha",
        "llm_proxy.request_id": d["request_id"],
        "llm_proxy.cost_usd": d["cost"],
    }


def client_attributes(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": d["prompt_tokens"],
        "gen_ai.usage.output_tokens": d["completion_tokens"],
        "server.address": "api.openai.com",
        "server.port": 443,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "url.full": "https://api.openai.com/v1/chat/completions",
        "llm_proxy.provider": "alpha",
        "llm_proxy.attempt": 1,
        "llm_proxy.retried": d["retried"],
    }


def build_spans(d: dict[str, Any]) -> list[Span]:
    """What `spans.build_spans` makes of a record (our Span objects)."""
    start, end = d["start"], d["start"] + d["duration"]
    return [
        Span(
            d["trace_id"],
            d["span_id"],
            d["parent_span_id"],
            "POST /v1/chat/completions",
            KIND_SERVER,
            start,
            end,
            server_attributes(d),
            flags=FLAG_SAMPLED | FLAG_HAS_IS_REMOTE,
        ),
        Span(
            d["trace_id"],
            d["client_span_id"],
            d["span_id"],
            "chat gpt-4o-2024-08-06",
            KIND_CLIENT,
            start + 1_000_000,
            end - 1_000_000,
            client_attributes(d),
            [
                SpanEvent("gen_ai.first_token", start + d["ttft"]),
                SpanEvent(
                    "exception",
                    start + 2_000_000,
                    {"exception.type": "TimeoutError", "exception.message": "read timeout"},
                ),
            ],
            status_code=STATUS_ERROR if d["retried"] else 0,
        ),
    ]


# --- contenders: each a function (requests' data) -> None, run on one batch ----------------


def own(batch: list[dict[str, Any]]) -> bytes:
    spans: list[Span] = []
    for d in batch:
        spans += build_spans(d)
    return encode_protobuf(RESOURCE, spans)


def own_json(batch: list[dict[str, Any]]) -> bytes:
    spans: list[Span] = []
    for d in batch:
        spans += build_spans(d)
    return encode_json(RESOURCE, spans)


def build_only(batch: list[dict[str, Any]]) -> list[Span]:
    """The part of `own` and `proto` that is `spans.build_spans`'s (the same for both)."""
    spans: list[Span] = []
    for d in batch:
        spans += build_spans(d)
    return spans


def make_proto() -> Callable[[list[dict[str, Any]]], bytes]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1 import trace_pb2

    def value(v: Any) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, str):
            return AnyValue(string_value=v)
        out = AnyValue()
        out.array_value.values.extend(value(x) for x in v)
        return out

    def attrs(a: dict[str, Any]) -> list[KeyValue]:
        return [KeyValue(key=k, value=value(v)) for k, v in a.items()]

    def proto(batch: list[dict[str, Any]]) -> bytes:
        spans: list[Span] = []
        for d in batch:
            spans += build_spans(d)
        message = ExportTraceServiceRequest()
        rs = message.resource_spans.add()
        rs.resource.attributes.extend(attrs(RESOURCE.attributes))
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = RESOURCE.scope_name, RESOURCE.scope_version
        ss.spans.extend(
            trace_pb2.Span(
                trace_id=s.trace_id,
                span_id=s.span_id,
                parent_span_id=s.parent_span_id,
                trace_state=s.trace_state,
                flags=s.flags,
                name=s.name,
                kind=s.kind,  # type: ignore[arg-type]
                start_time_unix_nano=s.start_ns,
                end_time_unix_nano=s.end_ns,
                attributes=attrs(s.attributes),
                events=[
                    trace_pb2.Span.Event(
                        time_unix_nano=e.time_ns, name=e.name, attributes=attrs(e.attributes)
                    )
                    for e in s.events
                ],
                status=trace_pb2.Status(code=s.status_code, message=s.status_message),  # type: ignore[arg-type]
            )
            for s in spans
        )
        return message.SerializeToString()

    return proto


def make_sdk() -> tuple[Callable[[list[dict[str, Any]]], None], Callable[[], bytes]]:
    """The SDK's two halves: spans through the API into a BatchSpanProcessor (the request
    path), and its exporter's encoding of what the processor hands over."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    class Keep(SpanExporter):
        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []

        def export(self, spans: Any) -> SpanExportResult:
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

    keep = Keep()
    provider = TracerProvider(resource=SdkResource.create(dict(RESOURCE.attributes)))
    # The worker wakes every hour or at 1M spans: it stays idle while a round is timed.
    processor = BatchSpanProcessor(
        keep,
        max_queue_size=1_000_000,
        schedule_delay_millis=3_600_000,
        max_export_batch_size=1_000_000,
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("llm-proxy", "0.1.0")

    def create(batch: list[dict[str, Any]]) -> None:
        for d in batch:
            parent = trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(
                        int.from_bytes(d["trace_id"]),
                        int.from_bytes(d["parent_span_id"]),
                        is_remote=True,
                        trace_flags=TraceFlags(1),
                    )
                )
            )
            start = d["start"]
            server = tracer.start_span(
                "POST /v1/chat/completions",
                context=parent,
                kind=SpanKind.SERVER,
                attributes=server_attributes(d),
                start_time=start,
            )
            client = tracer.start_span(
                "chat gpt-4o-2024-08-06",
                context=trace.set_span_in_context(server),
                kind=SpanKind.CLIENT,
                attributes=client_attributes(d),
                start_time=start + 1_000_000,
            )
            client.add_event("gen_ai.first_token", timestamp=start + d["ttft"])
            client.add_event(
                "exception",
                {"exception.type": "TimeoutError", "exception.message": "read timeout"},
                timestamp=start + 2_000_000,
            )
            if d["retried"]:
                client.set_status(Status(StatusCode.ERROR))
            client.end(end_time=start + d["duration"] - 1_000_000)
            server.end(end_time=start + d["duration"])

    def encode() -> bytes:
        processor.force_flush()
        spans, keep.spans = keep.spans, []
        return encode_spans(spans).SerializePartialToString()

    return create, encode


# --- measuring ------------------------------------------------------------------------------


def cpu_us(fn: Callable[[], object], requests: int) -> float:
    started = time.thread_time()
    fn()
    return (time.thread_time() - started) * 1e6 / requests


IMPORTS = {
    "sdk": "import opentelemetry.sdk.trace, opentelemetry.sdk.trace.export, "
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "proto": "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    "own": "import llm_proxy.observe.tracing.otlp",
}
_PROBE = """
import os, time
import aiohttp, orjson, structlog  # the proxy imports these anyway
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before, t = rss(), time.perf_counter()
{imports}
took = time.perf_counter() - t
print(rss() - before, took)
"""


def import_cost(name: str, runs: int = 5) -> tuple[float, float]:
    """(RSS growth in MiB, import time in ms), medians of fresh interpreters."""
    sizes, times = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(imports=IMPORTS[name])],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"},
        ).stdout.split()
        sizes.append(int(out[0]) / 2**20)
        times.append(float(out[1]) * 1000)
    return statistics.median(sizes), statistics.median(times)


def sdk_installed() -> bool:
    from importlib.util import find_spec

    try:
        return all(
            find_spec(name) is not None
            for name in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:  # a parent package is missing
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=500, help="requests per round")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n = args.requests

    contenders: dict[str, Callable[[list[dict[str, Any]]], object]] = {
        "own": own,
        "own (json)": own_json,
        "proto": make_proto(),
        "build only": build_only,
    }
    sdk_encode: Callable[[], bytes] | None = None
    if sdk_installed():
        sdk_create, sdk_encode = make_sdk()
        contenders["sdk (spans)"] = sdk_create
    else:
        print(
            "sdk: skipped: opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http are not "
            "installed (.venv/bin/pip install opentelemetry-sdk "
            "opentelemetry-exporter-otlp-proto-http)",
            file=sys.stderr,
        )

    figures: dict[str, list[float]] = {name: [] for name in contenders}
    figures["sdk (encode)"] = []
    figures["gzip 1"] = []
    figures["gzip 6"] = []
    names = list(contenders)
    offset = 0
    for r in range(args.rounds + 1):  # round 0 warms up (imports, memo, caches)
        batch = [request_data(r * n + i) for i in range(n)]
        order = names[offset:] + names[:offset]
        offset = (offset + 1) % len(names)
        for name in order:
            fn = contenders[name]
            us = cpu_us(functools.partial(fn, batch), n)
            if name == "sdk (spans)" and sdk_encode is not None:
                enc_us = cpu_us(sdk_encode, n)
                if r:
                    figures["sdk (encode)"].append(enc_us)
            if r:
                figures[name].append(us)
        body = own(batch)
        for level in (1, 6):
            us = cpu_us(functools.partial(gzip.compress, body, level, mtime=0), n)
            if r:
                figures[f"gzip {level}"].append(us)
    body = own([request_data(i) for i in range(n)])
    sizes = {
        "protobuf bytes per request": len(body) / n,
        "gzip 1 bytes per request": len(gzip.compress(body, 1)) / n,
        "gzip 6 bytes per request": len(gzip.compress(body, 6)) / n,
    }
    result: dict[str, Any] = {
        "cpu_us_per_request": {k: round(statistics.median(v), 2) for k, v in figures.items() if v},
        "sizes": {k: round(v) for k, v in sizes.items()},
        "python": sys.version.split()[0],
        "rounds": args.rounds,
        "requests_per_round": n,
    }
    cpu = result["cpu_us_per_request"]
    if "sdk (spans)" in cpu:
        cpu["sdk"] = round(cpu["sdk (spans)"] + cpu["sdk (encode)"], 2)
    imports = {}
    for name in ("own", "proto", "sdk"):
        if name == "sdk" and sdk_encode is None:
            continue
        mib, ms = import_cost(name)
        imports[name] = {"rss_mib": round(mib, 1), "import_ms": round(ms, 1)}
    result["imports"] = imports
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"CPU per request (2 spans), µs, median of {args.rounds} rounds of {n} requests:")
    for name, us in cpu.items():
        print(f"  {name:<14} {us:8.2f}")
    print("Encoded size per request: " + ", ".join(f"{k} {v}" for k, v in result["sizes"].items()))
    print("Import cost (fresh interpreter, after aiohttp/orjson/structlog):")
    for name, figs in imports.items():
        print(f"  {name:<6} +{figs['rss_mib']:5.1f} MiB RSS  {figs['import_ms']:6.1f} ms")


if __name__ == "__main__":
    main()
