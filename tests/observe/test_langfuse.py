"""The Langfuse exporter (`llm_proxy.observe.langfuse`) against a fake ingestion API on
loopback that checks Basic auth and validates every batch as Langfuse's schema does: settings
from the environment, what each request becomes (a trace and its generation), content capture,
sampling, refused keys, an outage and the recovery after it, the queue bound, and close()."""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from llm_proxy.observe.langfuse import INGESTION_WARNING, LangfuseExporter, LangfuseSettings
from llm_proxy.observe.langfuse_events import trace_id
from llm_proxy.observe.records import ErrorRecord, RequestRecord
from tests.helpers import Upstream, eventually, free_port, sdk
from tests.helpers.langfuse import (
    PUBLIC,
    SECRET,
    FakeLangfuse,
    settings,
)
from tests.helpers.langfuse_otlp import FakeLangfuseOtlp
from tests.helpers.processes import serve_process


def record(i: int = 0, **over: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "ts": 1_750_000_000.0 + i,
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
        "prompt": f"question {i}",
        "completion": f"answer {i}",
    }
    return RequestRecord(**(values | over))


@pytest.fixture
async def fake() -> AsyncIterator[FakeLangfuse]:
    server = FakeLangfuse()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def exporters() -> AsyncIterator[Callable[..., LangfuseExporter]]:
    """Make exporters (started by the test); every one is closed at the end."""
    made: list[LangfuseExporter] = []

    def make(s: LangfuseSettings, **kwargs: Any) -> LangfuseExporter:
        made.append(LangfuseExporter(s, **kwargs))
        return made[-1]

    yield make
    for exporter in made:
        await exporter.close()


# Settings from the environment.

ENABLED = {
    "LANGFUSE_ENABLED": "true",
    "LANGFUSE_PUBLIC_KEY": PUBLIC,
    "LANGFUSE_SECRET_KEY": SECRET,
}


def test_settings_defaults() -> None:
    s = LangfuseSettings.from_env(ENABLED)
    assert s == LangfuseSettings(PUBLIC, SECRET)
    assert s.host == "https://cloud.langfuse.com"
    assert s.ingestion_url == "https://cloud.langfuse.com/api/public/ingestion"
    assert (s.sample_rate, s.flush_interval, s.debug, s.capture_content) == (1.0, 5.0, False, False)


def test_settings_from_every_variable() -> None:
    s = LangfuseSettings.from_env(
        ENABLED
        | {
            "LANGFUSE_ENABLED": "Yes",
            "LANGFUSE_HOST": "http://langfuse.internal:3000/",
            "LANGFUSE_SAMPLE_RATE": "0.25",
            "LANGFUSE_FLUSH_INTERVAL": "0.5",
            "LANGFUSE_DEBUG": "1",
            "LANGFUSE_CAPTURE_CONTENT": "TRUE",
        }
    )
    assert s is not None
    assert s.host == "http://langfuse.internal:3000"
    assert s.ingestion_url == "http://langfuse.internal:3000/api/public/ingestion"
    assert (s.sample_rate, s.flush_interval, s.debug, s.capture_content) == (0.25, 0.5, True, True)


def test_export_is_otlp_by_default() -> None:
    s = LangfuseSettings.from_env(ENABLED)
    assert s is not None
    assert s.export == "otlp"
    assert s.otlp_url == "https://cloud.langfuse.com/api/public/otel/v1/traces"
    assert s.authorization() == "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()


@pytest.mark.parametrize(
    ("value", "export"),
    [
        ("", "otlp"),
        (" otlp ", "otlp"),
        ("OTLP", "otlp"),
        ("ingestion", "ingestion"),
        ("Ingestion", "ingestion"),
    ],
)
def test_langfuse_export(value: str, export: str) -> None:
    s = LangfuseSettings.from_env(ENABLED | {"LANGFUSE_EXPORT": value})
    assert s is not None
    assert s.export == export


@pytest.mark.parametrize("value", ["otel", "batch", "ingestion-api", "grpc"])
def test_a_bad_langfuse_export_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="LANGFUSE_EXPORT") as caught:
        LangfuseSettings.from_env(ENABLED | {"LANGFUSE_EXPORT": value})
    assert repr(value) in str(caught.value)


def test_the_ingestion_warning_names_the_removal() -> None:
    assert "2026-11-16" in INGESTION_WARNING
    assert "removed" in INGESTION_WARNING
    assert "LANGFUSE_EXPORT" in INGESTION_WARNING
    assert "self-hosted" in INGESTION_WARNING


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LANGFUSE_ENABLED": "false"},
        ENABLED | {"LANGFUSE_ENABLED": "0"},
        {"LANGFUSE_HOST": "x"},
    ],
)
def test_not_enabled_means_none(env: dict[str, str]) -> None:
    assert LangfuseSettings.from_env(env) is None


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"LANGFUSE_ENABLED": "maybe"}, "LANGFUSE_ENABLED"),
        ({"LANGFUSE_PUBLIC_KEY": ""}, "LANGFUSE_PUBLIC_KEY"),
        ({"LANGFUSE_SECRET_KEY": "  "}, "LANGFUSE_SECRET_KEY"),
        ({"LANGFUSE_PUBLIC_KEY": "pk:lf"}, "LANGFUSE_PUBLIC_KEY"),
        ({"LANGFUSE_SAMPLE_RATE": "half"}, "LANGFUSE_SAMPLE_RATE"),
        ({"LANGFUSE_SAMPLE_RATE": "1.5"}, "LANGFUSE_SAMPLE_RATE"),
        ({"LANGFUSE_SAMPLE_RATE": "-0.1"}, "LANGFUSE_SAMPLE_RATE"),
        ({"LANGFUSE_SAMPLE_RATE": "nan"}, "LANGFUSE_SAMPLE_RATE"),
        ({"LANGFUSE_FLUSH_INTERVAL": "0"}, "LANGFUSE_FLUSH_INTERVAL"),
        ({"LANGFUSE_FLUSH_INTERVAL": "-5"}, "LANGFUSE_FLUSH_INTERVAL"),
        ({"LANGFUSE_FLUSH_INTERVAL": "inf"}, "LANGFUSE_FLUSH_INTERVAL"),
        ({"LANGFUSE_FLUSH_INTERVAL": "5s"}, "LANGFUSE_FLUSH_INTERVAL"),
        ({"LANGFUSE_HOST": "ftp://langfuse.example"}, "LANGFUSE_HOST"),
        ({"LANGFUSE_HOST": "cloud.langfuse.com"}, "LANGFUSE_HOST"),
        ({"LANGFUSE_HOST": "https://"}, "LANGFUSE_HOST"),
        ({"LANGFUSE_HOST": "https://h:99999"}, "LANGFUSE_HOST"),
        ({"LANGFUSE_HOST": "https://u:p@langfuse.example"}, "LANGFUSE_HOST"),
        ({"LANGFUSE_HOST": "https://langfuse.example/?x=1"}, "LANGFUSE_HOST"),
        ({"LANGFUSE_DEBUG": "verbose"}, "LANGFUSE_DEBUG"),
        ({"LANGFUSE_CAPTURE_CONTENT": "all"}, "LANGFUSE_CAPTURE_CONTENT"),
    ],
)
def test_bad_values_name_the_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable) as caught:
        LangfuseSettings.from_env(ENABLED | change)
    assert SECRET not in str(caught.value)


def test_the_secret_key_is_never_shown() -> None:
    s = LangfuseSettings.from_env(ENABLED)
    assert s is not None
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert PUBLIC in repr(s)
    assert SECRET not in repr(LangfuseExporter(s))


# What is sent.


async def test_each_record_is_a_trace_with_its_generation(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url))
    await exporter.start()
    ok = record(1)
    failed = record(
        2,
        status=502,
        error_code="upstream_unavailable",
        provider="beta",
        attempts=["alpha", "beta"],
        ttft_ms=None,
        prompt_tokens=None,
        completion_tokens=None,
        cost_usd=None,
        streamed=False,
        errors=[ErrorRecord(1_750_000_002.5, "req-2", "alpha", "timeout", None, None)],
    )
    retried = record(
        3, errors=[ErrorRecord(1_750_000_003.1, "req-3", "alpha", "http_5xx", 503, "")]
    )
    plain = record(
        4, model_sent=None, prompt_tokens=7, completion_tokens=None, cost_usd=None, team="search"
    )
    for r in (ok, failed, retried, plain):
        exporter.submit(r)
    await eventually(lambda: len(fake.traces) == 4)
    await eventually(lambda: exporter.sent == 8)  # the exporter has read the fake's answer
    assert fake.problems == []

    trace = fake.traces[trace_id(ok)]
    assert trace["name"] == "llm-proxy /v1/chat/completions"
    assert trace["userId"] == "team-a"
    assert trace["timestamp"] == "2025-06-15T15:06:41.000000Z"
    assert trace["metadata"] == {
        "request_id": "req-1",
        "method": "POST",
        "client": "openai-python",
        "provider": "alpha",
        "attempts": ["alpha"],
        "failed_attempts": [],
        "status": 200,
        "streamed": True,
        "error_code": None,
    }
    assert {"llm-proxy", "provider:alpha", "client:openai-python"} <= set(trace["tags"])
    gen = fake.generations[trace["id"]]
    assert gen["model"] == "gpt-4o-2024-08-06"
    assert gen["startTime"] == "2025-06-15T15:06:41.000000Z"
    assert gen["endTime"] == "2025-06-15T15:06:41.850000Z"
    assert gen["completionStartTime"] == "2025-06-15T15:06:41.120500Z"
    assert gen["usageDetails"] == {"input": 12, "output": 30, "total": 42}
    assert gen["costDetails"] == {"total": 0.00042}
    assert "level" not in gen
    assert gen["metadata"]["key_name"] == "team-a"
    assert gen["metadata"]["model_requested"] == "gpt-4o"
    assert gen["metadata"]["duration_ms"] == 850.0
    assert gen["metadata"]["ttft_ms"] == 120.5

    trace = fake.traces[trace_id(failed)]
    assert "error" in trace["tags"]
    assert trace["metadata"]["error_code"] == "upstream_unavailable"
    assert trace["metadata"]["failed_attempts"] == [
        {"provider": "alpha", "outcome": "timeout", "upstream_status": None}
    ]
    gen = fake.generations[trace["id"]]
    assert gen["level"] == "ERROR"
    assert gen["statusMessage"] == "502 upstream_unavailable"
    assert not {"completionStartTime", "usageDetails", "costDetails"} & set(gen)

    assert fake.generations[trace_id(retried)]["level"] == "WARNING"
    trace = fake.traces[trace_id(plain)]  # of a key in team `search`
    assert "team:search" in trace["tags"] and trace["metadata"]["team"] == "search"
    gen = fake.generations[trace_id(plain)]
    assert gen["model"] == "gpt-4o"
    assert gen["usageDetails"] == {"input": 7, "total": 7}

    assert (exporter.written, exporter.sent, exporter.dropped, exporter.failed_batches) == (
        4,
        8,
        0,
        0,
    )
    assert exporter.queued == 0


async def test_trace_ids_are_stable_and_distinct_when_request_ids_repeat() -> None:
    assert trace_id(record(1)) == trace_id(record(1))
    assert trace_id(record(1)) != trace_id(record(2, request_id="req-1"))


async def test_content_is_sent_only_with_capture(
    exporters: Callable[..., LangfuseExporter],
) -> None:
    fake = FakeLangfuse(capture=True)
    await fake.start()
    try:
        exporter = exporters(settings(fake.url, capture_content=True))
        await exporter.start()
        exporter.submit(record(1))
        exporter.submit(record(2, completion=None))
        exporter.submit(record(3, prompt="cut mid-pair \ud83d"))  # a lone surrogate
        await eventually(lambda: len(fake.traces) == 3)
    finally:
        await fake.stop()
    assert fake.problems == []
    for body in (fake.traces[trace_id(record(1))], fake.generations[trace_id(record(1))]):
        assert (body["input"], body["output"]) == ("question 1", "answer 1")
    assert "output" not in fake.generations[trace_id(record(2))]
    assert fake.generations[trace_id(record(3))]["input"].startswith("cut mid-pair")


async def test_large_content_is_split_into_batches_langfuse_takes(
    exporters: Callable[..., LangfuseExporter],
) -> None:
    fake = FakeLangfuse(capture=True)
    await fake.start()
    try:
        exporter = exporters(settings(fake.url, capture_content=True, flush_interval=60))
        await exporter.start()
        for i in range(9):  # about 400 KB each (the text is in the trace and the generation)
            exporter.submit(record(i, prompt="x" * 200_000))
        exporter.submit(record(9, prompt="y" * 800_000))  # more than a batch on its own
        await exporter.close()
    finally:
        await fake.stop()
    assert fake.problems == []
    assert len(fake.traces) == 10
    assert len(fake.bodies) == 6  # 2+2+2+2+1 records, then the big one alone
    assert all(len(body) < 3_500_000 for body in fake.bodies)  # what Langfuse takes


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 50)])
async def test_sample_rate(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter], rate: float, expected: int
) -> None:
    exporter = exporters(settings(fake.url, sample_rate=rate))
    await exporter.start()
    for i in range(50):
        exporter.submit(record(i))
    await exporter.close()
    assert len(fake.traces) == expected
    assert exporter.dropped == 0
    assert exporter.written == expected


async def test_a_full_batch_is_sent_before_the_interval(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url, flush_interval=60), batch_size=10)
    await exporter.start()
    for i in range(9):
        exporter.submit(record(i))
    # Real time: nothing is to happen, and there is no event for "did not send".
    await asyncio.sleep(0.2)
    assert fake.bodies == []  # less than a batch waits for the interval
    exporter.submit(record(9))
    await eventually(lambda: len(fake.traces) == 10)
    assert len(fake.bodies) == 1


async def test_debug_logs_each_flush(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url, debug=True))
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        exporter.submit(record(1))
        await eventually(lambda: exporter.written == 1)
    flushes = [e for e in logs if e["event"] == "langfuse_flush"]
    assert len(flushes) == 1
    assert flushes[0]["log_level"] == "info"
    assert (flushes[0]["status"], flushes[0]["events"], flushes[0]["accepted"]) == (207, 2, 2)
    assert SECRET not in repr(logs)


# When Langfuse says no, or is away.


async def test_a_wrong_key_drops_the_batch_counted_and_logged_once(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url, secret_key="sk-lf-wrong-secret"))
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(5):
            exporter.submit(record(i))
        await eventually(lambda: exporter.failed_batches == 1)
        for i in range(5, 8):
            exporter.submit(record(i))
        await eventually(lambda: exporter.failed_batches == 2)
    assert fake.statuses == [401, 401]
    assert (exporter.dropped, exporter.sent, exporter.written, exporter.queued) == (8, 0, 0, 0)
    refused = [e for e in logs if e["event"] == "langfuse_batch_refused"]
    assert [e["log_level"] for e in refused] == ["warning", "debug"]
    assert refused[0]["status"] == 401
    assert "wrong-secret" not in repr(logs)
    assert SECRET not in repr(logs)


@pytest.mark.parametrize(
    "refused",
    [
        {"generation-create"},
        # A Langfuse v4 server in events_only mode refuses traces and generations here.
        {"trace-create", "generation-create"},
    ],
)
async def test_events_refused_in_a_207_are_counted_and_warned_once(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter], refused: set[str]
) -> None:
    fake.reject = refused
    exporter = exporters(settings(fake.url))
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(3):
            exporter.submit(record(i))
        await eventually(lambda: exporter.dropped == 3)
        exporter.submit(record(3))
        await eventually(lambda: exporter.dropped == 4)
    events = 4 * len(refused)
    assert (exporter.written, exporter.rejected, exporter.sent) == (0, events, 8 - events)
    lines = [e for e in logs if e["event"] == "langfuse_events_rejected"]
    assert lines[0]["log_level"] == "warning"
    assert lines[0]["message"] == "Event type not accepted"
    assert "is not accepted" in lines[0]["error"]
    assert {e["log_level"] for e in lines[1:]} == {"debug"}

    fake.reject = set()  # accepted whole again: a later refusal warns again
    exporter.submit(record(4))
    await eventually(lambda: exporter.written == 1)
    fake.reject = refused
    with structlog.testing.capture_logs() as logs:
        exporter.submit(record(5))
        await eventually(lambda: exporter.dropped == 5)
    again = [e for e in logs if e["event"] == "langfuse_events_rejected"]
    assert again[0]["log_level"] == "warning"


@pytest.mark.parametrize("status", [503, 429, 500, 408])
async def test_a_failed_post_is_retried_with_the_same_events(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter], status: int
) -> None:
    fake.fail = [status, status]
    exporter = exporters(settings(fake.url), min_backoff=0.01, max_backoff=0.05)
    await exporter.start()
    for i in range(4):
        exporter.submit(record(i))
    await eventually(lambda: len(fake.traces) == 4)
    # The fake has the traces before the exporter has read its answer: wait for the exporter.
    await eventually(lambda: exporter.sent == 8)
    assert fake.statuses == [status, status, 207]
    assert fake.problems == []
    assert fake.bodies[0] == fake.bodies[1] == fake.bodies[2]  # the same event ids: de-duplicated
    assert (exporter.failed_batches, exporter.dropped, exporter.sent) == (2, 0, 8)


async def test_records_queued_during_an_outage_are_sent_after_it(
    exporters: Callable[..., LangfuseExporter],
) -> None:
    port = free_port()
    exporter = exporters(
        settings(f"http://127.0.0.1:{port}"), batch_size=8, min_backoff=0.02, max_backoff=0.1
    )
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        for i in range(20):
            exporter.submit(record(i))
        await eventually(lambda: exporter.failed_batches >= 3)
        assert (exporter.queued, exporter.dropped, exporter.sent) == (20, 0, 0)

        fake = FakeLangfuse()
        await fake.start(port)
        try:
            await eventually(lambda: len(fake.traces) == 20)
            exporter.submit(record(20))
            await eventually(lambda: len(fake.traces) == 21)
            await eventually(lambda: exporter.sent == 42)  # it has read the last answer
        finally:
            await fake.stop()
    assert fake.problems == []
    assert (exporter.sent, exporter.dropped, exporter.queued) == (42, 0, 0)
    events = [e["event"] for e in logs]
    assert events.count("langfuse_export_recovered") == 1
    failures = [e for e in logs if e["event"] == "langfuse_send_failed"]
    assert failures[0]["log_level"] == "warning"
    assert {e["log_level"] for e in failures[1:]} == {"debug"}


async def test_the_queue_is_bounded_while_langfuse_is_down(
    exporters: Callable[..., LangfuseExporter],
) -> None:
    port = free_port()
    exporter = exporters(
        settings(f"http://127.0.0.1:{port}"),
        queue_size=50,
        batch_size=10,
        min_backoff=0.02,
        max_backoff=0.05,
    )
    await exporter.start()
    exporter.submit(record(0))
    await eventually(lambda: exporter.failed_batches >= 1)  # the first batch is held for a retry
    assert not inspect.iscoroutinefunction(exporter.submit)
    for i in range(1, 80):
        assert exporter.submit(record(i)) is None  # sync: queues and returns
    assert (exporter.queued, exporter.dropped) == (50, 30)

    fake = FakeLangfuse()
    await fake.start(port)
    try:
        await eventually(lambda: len(fake.traces) == 50)
        await exporter.close()  # whatever it still holds is sent now: a second copy shows
    finally:
        await fake.stop()
    # The oldest records were kept, the newest dropped, none delivered twice.
    assert fake.problems == []
    assert set(fake.traces) == {trace_id(record(i)) for i in range(50)}
    assert (exporter.sent, exporter.dropped, exporter.queued) == (100, 30, 0)


async def test_submit_after_close_is_dropped_and_counted(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url))
    await exporter.start()
    await exporter.close()
    exporter.submit(record(1))
    assert (exporter.dropped, exporter.queued) == (1, 0)


# close()


async def test_close_sends_what_is_queued(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url, flush_interval=60))
    await exporter.start()
    for i in range(5):
        exporter.submit(record(i))
    # (That less than a batch is not sent before the interval is the full-batch test's.)
    await exporter.close()
    assert fake.problems == []
    assert len(fake.traces) == 5
    assert (exporter.sent, exporter.dropped, exporter.queued) == (10, 0, 0)


async def test_close_is_bounded_when_langfuse_hangs(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    fake.stall = True
    exporter = exporters(settings(fake.url, flush_interval=60), close_timeout=0.3)
    await exporter.start()
    for i in range(5):
        exporter.submit(record(i))
    async with asyncio.timeout(5):  # a request alone may take 10 s: close() cuts it short
        await exporter.close()
    assert (exporter.sent, exporter.dropped, exporter.queued) == (0, 5, 0)


# Through the proxy: `llm-proxy serve` configured by the environment, the openai SDK.


async def test_serve_sends_a_trace_per_request_to_langfuse_ingestion_api(
    upstream: Upstream, tmp_path: Path
) -> None:
    """LANGFUSE_EXPORT=ingestion: the legacy batch ingestion API, for old self-hosted servers,
    with a startup warning that names its removal."""
    server = FakeLangfuse(capture=True)
    await server.start()
    config = f"""
providers:
  - name: alpha
    api_base: {upstream.api_base}
    api_key: sk-alpha
    model_mapping: {{gpt-4o-mini: mini-sent}}
require_auth: false
pricing: {{gpt-4o-mini: {{input_per_mtok: 1, output_per_mtok: 2}}}}
"""
    env = {
        **ENABLED,
        "LANGFUSE_HOST": server.url,
        "LANGFUSE_FLUSH_INTERVAL": "0.05",
        "LANGFUSE_CAPTURE_CONTENT": "true",
        "LANGFUSE_EXPORT": "ingestion",
    }
    try:
        async with serve_process(config, tmp_path, env) as served:
            async with sdk(served.url, "x") as client:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "what is up"}],
                    stream=True,
                )
                async for _ in stream:
                    pass
            await eventually(lambda: len(server.generations) == 1)
        assert server.problems == []
        (trace,) = server.traces.values()
        (generation,) = server.generations.values()
        assert trace["userId"] == "anonymous"
        assert generation["model"] == "mini-sent"
        assert generation["usageDetails"]["input"] > 0
        assert generation["costDetails"]["total"] > 0
        assert generation["input"] == "what is up"
        assert generation["output"].startswith("tok0 ")
        assert served.proc.returncode == 0
        assert SECRET.encode() not in served.log
        assert b"langfuse_ingestion_api" in served.log and b"2026-11-16" in served.log
    finally:
        await server.stop()


async def test_serve_sends_each_request_to_langfuse_over_otlp(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The default: Langfuse's OTLP endpoint, Basic auth, one trace per request with one
    generation carrying model, usage, cost, latency and TTFT, content only with capture on."""
    server = FakeLangfuseOtlp(capture=False)
    await server.start()
    config = f"""
providers:
  - name: alpha
    api_base: {upstream.api_base}
    api_key: sk-alpha
    model_mapping: {{gpt-4o-mini: mini-sent}}
require_auth: false
pricing: {{gpt-4o-mini: {{input_per_mtok: 1, output_per_mtok: 2}}}}
"""
    env = {**ENABLED, "LANGFUSE_HOST": server.url, "LANGFUSE_FLUSH_INTERVAL": "0.05"}
    try:
        async with serve_process(config, tmp_path, env) as served:
            async with sdk(served.url, "x") as client:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "what is up"}],
                    stream=True,
                )
                async for _ in stream:
                    pass
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "plain"}]
                )
            await eventually(lambda: len(server.traces) == 2 and server.spans == 4)
        assert server.problems == []
        assert server.statuses and set(server.statuses) == {200}  # POSTed to OTLP_PATH only
        assert all(r["Content-Type"] == "application/x-protobuf" for r in server.requests)
        streamed, plain = sorted(
            server.traces.values(), key=lambda t: t.metadata.get("streamed") is not True
        )
        for trace in (streamed, plain):
            (generation,) = trace.generations
            assert trace.user_id == "anonymous"
            assert generation.model == "mini-sent"
            assert generation.usage["input"] > 0 and generation.usage["output"] > 0
            assert generation.cost["total"] > 0
            assert generation.end > generation.start
            assert generation.input is None and generation.output is None  # capture off
        assert streamed.generations[0].completion_start is not None  # the TTFT
        assert served.proc.returncode == 0
        assert SECRET.encode() not in served.log
    finally:
        await server.stop()


async def test_serve_refuses_bad_langfuse_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers: []\nrequire_auth: false\n")
    env = {**os.environ, "LANGFUSE_ENABLED": "true", "LANGFUSE_PUBLIC_KEY": PUBLIC}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_proxy", "check-config", str(path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode != 0
    assert b"LANGFUSE_SECRET_KEY" in err
