"""The OTLP/HTTP exporter (`llm_proxy.observe.tracing.exporter`) against a fake collector on
loopback that decodes every POST with the official messages: delivery (protobuf, JSON, gzip,
headers), sampling, a collector that is down then back, slow, throttling (429 and its
Retry-After), unavailable (502-504), refusing (400) or refusing some spans (partial_success),
the queue bound, close() flushing what waits and close() bounded when the collector hangs.

Spans are built by hand here (`build`, two a record): the exporter takes its builder as a
parameter, so these tests do not depend on what `spans.py` makes of a record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import structlog

from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.tracing.exporter import SLICE, OtlpExporter, retry_after_seconds
from llm_proxy.observe.tracing.model import KIND_CLIENT, KIND_SERVER, Resource, Span, SpanEvent
from tests.helpers import eventually
from tests.helpers.otlp_collector import Answer, FakeCollector

SECRET = "Bearer otlp-very-secret-4242"
RESOURCE = Resource({"service.name": "llm-proxy", "deployment.environment.name": "test"})


def record(i: int = 0, **over: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "ts": 1_765_000_000.0 + i,
        "request_id": f"req-{i}",
        "key_name": "team-a",
        "client": "openai-python",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "gpt-4o",
        "model_sent": "gpt-4o-2024-08-06",
        "provider": "alpha",
        "attempts": ["alpha"],
        "status": 200,
        "duration_ms": 850.0,
        "ttft_ms": 120.5,
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "cost_usd": 0.00042,
        "streamed": True,
        "error_code": None,
        "prompt": f"secret question {i}",
        "trace_id": f"{i:016x}" + f"{i:016x}",
        "span_id": f"{i + 1:016x}",
        "sampled": True,
        "route": "/v1/chat/completions",
    }
    return RequestRecord(**(values | over))


def build(rec: RequestRecord) -> list[Span]:
    """A server span and a client span, as `spans.build_spans` would (roughly)."""
    assert rec.trace_id is not None and rec.span_id is not None
    trace_id, span_id = bytes.fromhex(rec.trace_id), bytes.fromhex(rec.span_id)
    start = int(rec.ts * 1e9)
    end = start + int(rec.duration_ms * 1e6)
    return [
        Span(
            trace_id,
            span_id,
            b"",
            f"{rec.method} {rec.route}",
            KIND_SERVER,
            start,
            end,
            {"http.request.method": rec.method, "llm_proxy.request_id": rec.request_id},
        ),
        Span(
            trace_id,
            bytes(reversed(span_id)),
            span_id,
            "chat gpt-4o",
            KIND_CLIENT,
            start + 1000,
            end - 1000,
            {"server.address": "api.openai.com", "server.port": 443},
            [SpanEvent("gen_ai.first_token", start + 120_000_000)],
        ),
    ]


@pytest.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    server = FakeCollector()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def exporters(collector: FakeCollector) -> AsyncIterator[Callable[..., OtlpExporter]]:
    """Make exporters sending to the collector (started by the test); all closed at the end."""
    made: list[OtlpExporter] = []

    def make(**over: Any) -> OtlpExporter:
        values: dict[str, Any] = {
            "name": "otlp",
            "endpoint": collector.url,
            "headers": {"Authorization": SECRET, "X-Tenant": "acme"},
            "protocol": "http/protobuf",
            "compression": "gzip",
            "timeout": 2.0,
            "resource": RESOURCE,
            "build": build,
            "flush_interval": 0.02,
            "min_backoff": 0.02,
            "max_backoff": 0.1,
            "close_timeout": 2.0,
        }
        made.append(OtlpExporter(**(values | over)))
        return made[-1]

    yield make
    for exporter in made:
        await exporter.close()


# Delivery.


@pytest.mark.parametrize(
    ("protocol", "compression", "content_type"),
    [
        ("http/protobuf", "gzip", "application/x-protobuf"),
        ("http/protobuf", "none", "application/x-protobuf"),
        ("http/json", "gzip", "application/json"),
        ("http/json", "none", "application/json"),
    ],
)
async def test_spans_arrive_as_built(
    collector: FakeCollector,
    exporters: Callable[..., OtlpExporter],
    protocol: str,
    compression: str,
    content_type: str,
) -> None:
    exporter = exporters(protocol=protocol, compression=compression)
    await exporter.start()
    for i in range(5):
        exporter.submit(record(i))
    spans = await collector.wait_for_spans(10)
    await eventually(lambda: exporter.spans_sent == 10)
    assert collector.problems == []
    assert (exporter.written, exporter.dropped, exporter.spans_dropped) == (5, 0, 0)
    assert exporter.failed_batches == 0
    request = collector.requests[0]
    assert request.content_type == content_type
    assert request.headers.get("Content-Encoding") == ("gzip" if compression == "gzip" else None)
    if compression == "gzip":  # the bytes on the wire were deflated
        assert request.wire_size is not None and request.wire_size < len(request.body) / 2
    else:
        assert request.wire_size == len(request.body)
    assert request.headers["Authorization"] == SECRET
    assert request.headers["X-Tenant"] == "acme"
    assert request.headers["User-Agent"].startswith("llm-proxy/")
    server = [s for s in spans if s["kind"] == KIND_SERVER]
    assert [s["attributes"]["llm_proxy.request_id"] for s in server] == [
        f"req-{i}" for i in range(5)
    ]
    assert server[3]["trace_id"] == f"{3:016x}" * 2
    assert server[3]["resource"] == RESOURCE.attributes
    client = [s for s in spans if s["kind"] == KIND_CLIENT]
    assert client[3]["parent_span_id"] == server[3]["span_id"]
    assert client[3]["events"][0]["name"] == "gen_ai.first_token"


async def test_full_batches_go_at_once_the_rest_at_the_interval(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    exporter = exporters(batch_size=4, flush_interval=60.0)
    await exporter.start()
    for i in range(8):
        exporter.submit(record(i))
    await collector.wait_for_spans(16)
    assert [r.spans for r in collector.requests] == [8, 8]


async def test_unsampled_records_and_those_outside_the_ratio_are_ignored(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    exporter = exporters(sample_ratio=0.5)
    await exporter.start()
    low = "0" * 16 + "7fffffffffffffff"  # just under half of 2**64: kept
    high = "f" * 16 + "8000000000000000"  # half: not kept
    exporter.submit(record(1, trace_id=low))
    exporter.submit(record(2, trace_id=high))
    exporter.submit(record(3, sampled=False))
    exporter.submit(record(4, trace_id=None))
    exporter.submit(record(5, trace_id="0" * 16 + "0000000000000001"))
    await collector.wait_for_spans(4)
    await eventually(lambda: exporter.written == 2)
    ids = {s["trace_id"] for s in collector.spans()}
    assert ids == {low, "0" * 31 + "1"}
    assert exporter.dropped == 0  # ignored, not dropped
    assert exporters(sample_ratio=0.0)._bound == 0
    with pytest.raises(ValueError, match="sample_ratio"):
        exporters(sample_ratio=1.5)


async def test_a_builder_bug_loses_its_record_only(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    def flaky(rec: RequestRecord) -> list[Span]:
        if rec.request_id == "req-1":
            raise RuntimeError("bug")
        return build(rec)

    exporter = exporters(build=flaky)
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(3):
            exporter.submit(record(i))
        await collector.wait_for_spans(4)
        await eventually(lambda: exporter.written == 2)
    assert exporter.dropped == 1
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["otlp_span_build_failed"]


# A collector that is away, slow or busy: the batch waits and is sent again as it was.


async def test_collector_down_then_back_loses_nothing_and_costs_submit_nothing(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    await collector.stop()  # connection refused from now on
    exporter = exporters(batch_size=50, queue_size=2000)
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        exporter.submit(record(0))
        await eventually(lambda: exporter.failed_batches >= 3)
        started = time.perf_counter()
        for i in range(1, 1000):
            exporter.submit(record(i))
        elapsed = time.perf_counter() - started
        await collector.start()  # the same port
        spans = await collector.wait_for_spans(2000, timeout=10)
        await eventually(lambda: exporter.written == 1000)
    # 1,000 submits while the collector is down: a queue append each (well under 1 ms
    # apiece even on a loaded machine).
    assert elapsed < 0.5, elapsed
    assert len({(s["trace_id"], s["span_id"]) for s in spans}) == 2000  # each once
    assert (exporter.dropped, exporter.spans_dropped, exporter.queued) == (0, 0, 0)
    failed = [e for e in logs if e["event"] == "otlp_send_failed"]
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["reason"] == "ClientConnectorError"
    assert {e["log_level"] for e in failed[1:]} == {"debug"}
    assert any(e["event"] == "otlp_export_recovered" for e in logs)


async def test_slow_collector_times_out_and_the_batch_is_sent_again(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    collector.answer_next(Answer(delay=5.0))
    exporter = exporters(timeout=0.2)
    await exporter.start()
    exporter.submit(record(1))
    await collector.wait_for_spans(2)
    await eventually(lambda: exporter.written == 1)
    assert exporter.failed_batches == 1
    first, second = collector.requests
    assert first.status == 0  # the exporter gave up on it
    assert first.body == second.body


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_busy_or_unavailable_is_retried_with_the_same_bytes(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter], status: int
) -> None:
    collector.answer_next(Answer(status), Answer(status))
    exporter = exporters()
    await exporter.start()
    for i in range(3):
        exporter.submit(record(i))
    await collector.wait_for_spans(6)
    await eventually(lambda: exporter.spans_sent == 6)
    assert [r.status for r in collector.requests] == [status, status, 200]
    assert collector.requests[0].body == collector.requests[1].body == collector.requests[2].body
    assert (exporter.failed_batches, exporter.written, exporter.dropped) == (2, 3, 0)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter], form: str
) -> None:
    until = int(time.time()) + 2  # the HTTP date: whole seconds
    if form == "seconds":
        value = "1"
    else:
        value = format_datetime(datetime.fromtimestamp(until, UTC), usegmt=True)
    collector.answer_next(Answer(429, {"Retry-After": value}))
    exporter = exporters(min_backoff=0.01, max_backoff=5.0)
    await exporter.start()
    exporter.submit(record(1))
    await collector.wait_for_spans(2)
    first, second = collector.requests
    # The backoff alone would be 5-10 ms.
    wait = 1.0 if form == "seconds" else until - first.wall
    assert second.at - first.at >= wait - 0.05
    assert second.at - first.at < wait + 2


async def test_retry_after_is_capped_by_max_backoff(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    collector.answer_next(Answer(503, {"Retry-After": "3600"}))
    exporter = exporters(min_backoff=0.01, max_backoff=0.3)
    await exporter.start()
    exporter.submit(record(1))
    await collector.wait_for_spans(2)
    first, second = collector.requests
    assert 0.25 <= second.at - first.at < 3


def test_retry_after_forms() -> None:
    now = 1_765_000_000.0
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 1.5 ", now) == 1.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0  # past
    later = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert retry_after_seconds(later, now) == 30.0
    for bad in (None, "soon", "-3", "inf", "nan"):
        assert retry_after_seconds(bad, now) is None


# A collector that refuses.


async def test_a_refused_batch_is_dropped_counted_and_warned_once_per_status(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    collector.answer_next(Answer(400), Answer(400), Answer(401))
    exporter = exporters()
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for n in (1, 2, 3):
            exporter.submit(record(n))
            await eventually(lambda n=n: exporter.failed_batches == n)  # type: ignore[misc]
        exporter.submit(record(4))  # accepted: the next 400 warns again
        await collector.wait_for_spans(2)
        collector.answer_next(Answer(400))
        exporter.submit(record(5))
        await eventually(lambda: exporter.failed_batches == 4)
    assert [r.status for r in collector.requests] == [400, 400, 401, 200, 400]
    assert (exporter.dropped, exporter.spans_dropped, exporter.written) == (4, 8, 1)
    refused = [e for e in logs if e["event"] == "otlp_batch_refused"]
    assert [(e["status"], e["log_level"]) for e in refused] == [
        (400, "warning"),
        (400, "debug"),
        (401, "warning"),
        (400, "warning"),
    ]
    assert SECRET not in repr(logs)
    assert "secret question" not in repr(logs)


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
async def test_partial_success_counts_the_rejected_spans(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter], protocol: str
) -> None:
    collector.answer_next(Answer(rejected_spans=3, error_message="too old"))
    exporter = exporters(protocol=protocol)
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(4):
            exporter.submit(record(i))
        await eventually(lambda: exporter.spans_dropped == 3)
    assert (exporter.spans_sent, exporter.written, exporter.dropped) == (5, 4, 0)
    (line,) = [e for e in logs if e["event"] == "otlp_spans_rejected"]
    assert (line["log_level"], line["rejected"], line["message"]) == ("warning", 3, "too old")


# The bound on memory, and shutdown.


async def test_queue_overflow_is_dropped_and_counted(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    await collector.stop()
    exporter = exporters(queue_size=10, batch_size=4, min_backoff=5.0, max_backoff=5.0)
    await exporter.start()
    exporter.submit(record(0))
    await eventually(lambda: exporter.failed_batches == 1)  # one record held, retried later
    for i in range(1, 25):
        exporter.submit(record(i))
    assert (exporter.queued, exporter.dropped) == (10, 15)


async def test_close_flushes_what_waits(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    exporter = exporters(flush_interval=60.0, batch_size=4)
    await exporter.start()
    for i in range(10):
        exporter.submit(record(i))
    await exporter.close()
    assert len(collector.spans()) == 20
    assert (exporter.written, exporter.dropped, exporter.queued) == (10, 0, 0)
    exporter.submit(record(11))  # closed: dropped, counted
    assert exporter.dropped == 1


async def test_close_is_bounded_when_the_collector_hangs(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    collector.answer_next(*[Answer(delay=60.0)] * 5)
    exporter = exporters(timeout=30.0, close_timeout=0.5, batch_size=2)
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(5):
            exporter.submit(record(i))
        await eventually(lambda: len(collector.requests) >= 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await exporter.close()
        took = loop.time() - started
    assert 0.4 <= took < 1.5, took
    assert exporter.written == 0
    assert exporter.dropped == 5
    assert exporter.spans_dropped >= 4  # the held batch's spans at least
    assert any(e["event"] == "otlp_records_lost_at_close" for e in logs)


def test_repr_and_logs_keep_secrets_out() -> None:
    exporter = OtlpExporter(
        name="langfuse",
        endpoint="https://user:pw@collector.example/v1/traces?token=t0k",
        headers={"Authorization": SECRET},
        protocol="http/json",
        compression="none",
        timeout=1.0,
        resource=RESOURCE,
        build=build,
    )
    text = repr(exporter)
    assert SECRET not in text and "pw" not in text and "t0k" not in text
    assert "collector.example/v1/traces" in text


async def test_a_big_batch_is_encoded_with_the_event_loop_free_in_between(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    """512 records are built and encoded a slice (SLICE records) at a time: between slices,
    other tasks run (requests, on the proxy). The builder notes how often a ticker task ran."""
    ticks = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    def noting(rec: RequestRecord) -> list[Span]:
        seen.append(ticks)
        return build(rec)

    exporter = exporters(build=noting, batch_size=512, queue_size=512, flush_interval=60.0)
    task = asyncio.create_task(ticker())
    try:
        await exporter.start()
        for i in range(512):
            exporter.submit(record(i))
        await collector.wait_for_spans(1024, timeout=10)
    finally:
        task.cancel()
    assert [r.spans for r in collector.requests] == [1024]  # one batch
    slices = [seen[i : i + SLICE] for i in range(0, 512, SLICE)]
    assert all(len(set(s)) == 1 for s in slices)  # a slice at once
    assert len({s[0] for s in slices}) == len(slices)  # the ticker ran between slices
    assert len(set(seen)) >= 8  # at most 64 records at a time


async def test_a_record_whose_spans_cannot_be_encoded_is_dropped_alone(
    collector: FakeCollector, exporters: Callable[..., OtlpExporter]
) -> None:
    def broken(rec: RequestRecord) -> list[Span]:
        spans = build(rec)
        if rec.request_id == "req-2":
            spans[0].trace_id = "not bytes"  # type: ignore[assignment]
        return spans

    exporter = exporters(build=broken)
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(4):
            exporter.submit(record(i))
        await collector.wait_for_spans(6)
        await eventually(lambda: exporter.written == 3)
    assert exporter.dropped == 1
    assert {s["attributes"].get("llm_proxy.request_id") for s in collector.spans()} == {
        "req-0",
        "req-1",
        "req-3",
        None,
    }
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["otlp_span_encode_failed"]
