"""The Langfuse exporter (`llm_proxy.observe.langfuse`) against a fake ingestion API on
loopback that checks Basic auth and validates every batch as Langfuse's schema does: settings
from the environment, what each request becomes (a trace and its generation), content capture,
sampling, refused keys, an outage and the recovery after it, the queue bound, and close()."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog
from aiohttp import web

from llm_proxy.observe.langfuse import LangfuseExporter, LangfuseSettings
from llm_proxy.observe.langfuse_events import trace_id
from llm_proxy.observe.records import ErrorRecord, RequestRecord
from tests.conftest import Upstream
from tests.processes import free_port, serve_process

PUBLIC = "pk-lf-test-public"
SECRET = "sk-lf-very-secret-1234"

# Langfuse's ingestion schema (fern/apis/server/definition/ingestion.yml, the server's zod
# types), as far as the exporter uses it: the fields each body may carry.
EVENT_FIELDS = {"id", "timestamp", "type", "body"}
TRACE_FIELDS = {"id", "timestamp", "name", "userId", "metadata", "tags", "input", "output"}
GENERATION_FIELDS = {
    "id",
    "traceId",
    "name",
    "startTime",
    "endTime",
    "completionStartTime",
    "model",
    "metadata",
    "usageDetails",
    "costDetails",
    "level",
    "statusMessage",
    "input",
    "output",
}
LEVELS = {"DEBUG", "DEFAULT", "WARNING", "ERROR"}
# ISO 8601 with at least milliseconds and an explicit UTC offset (z.iso.datetime({offset})).
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,6}(Z|[+-]\d\d:\d\d)$")


def _time(value: Any, where: str) -> datetime:
    assert isinstance(value, str) and ISO.match(value), f"{where}: not an ISO timestamp: {value!r}"
    return datetime.fromisoformat(value)


def _check_batch(payload: Any, capture: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate one ingestion request strictly; the trace and generation bodies it holds."""
    assert isinstance(payload, dict) and set(payload) <= {"batch", "metadata"}, payload
    batch = payload["batch"]
    assert isinstance(batch, list) and batch
    assert isinstance(payload.get("metadata", {}), dict)
    traces, generations = [], []
    event_ids = set()
    for event in batch:
        assert isinstance(event, dict) and set(event) == EVENT_FIELDS, event
        assert uuid.UUID(event["id"]).version == 4
        event_ids.add(event["id"])
        _time(event["timestamp"], "event.timestamp")
        body = event["body"]
        assert isinstance(body, dict)
        if not capture:
            assert "input" not in body and "output" not in body, "content sent with capture off"
        if event["type"] == "trace-create":
            assert set(body) <= TRACE_FIELDS, set(body) - TRACE_FIELDS
            for name in ("id", "name", "userId"):
                assert isinstance(body[name], str) and body[name], name
            _time(body["timestamp"], "trace.timestamp")
            assert isinstance(body["metadata"], dict)
            assert isinstance(body["tags"], list) and all(isinstance(t, str) for t in body["tags"])
            traces.append(body)
        elif event["type"] == "generation-create":
            assert set(body) <= GENERATION_FIELDS, set(body) - GENERATION_FIELDS
            for name in ("id", "traceId", "name"):
                assert isinstance(body[name], str) and body[name], name
            start = _time(body["startTime"], "startTime")
            end = _time(body["endTime"], "endTime")
            assert start <= end
            if "completionStartTime" in body:
                assert start <= _time(body["completionStartTime"], "completionStartTime") <= end
            if "model" in body:
                assert isinstance(body["model"], str)
            assert isinstance(body["metadata"], dict)
            for units in ("usageDetails", "costDetails"):
                if units in body:
                    assert isinstance(body[units], dict) and body[units]
                    for key, value in body[units].items():
                        assert isinstance(key, str) and isinstance(value, (int, float))
                        assert value >= 0
            if "usageDetails" in body:
                assert all(isinstance(v, int) for v in body["usageDetails"].values())
            if "level" in body:
                assert body["level"] in LEVELS
                assert isinstance(body["statusMessage"], str)
            generations.append(body)
        else:
            raise AssertionError(f"unexpected event type {event['type']!r}")
    assert len(event_ids) == len(batch), "event ids must be unique"
    # Every trace has exactly one generation in the same batch, and no generation is orphaned.
    assert sorted(t["id"] for t in traces) == sorted(g["traceId"] for g in generations)
    assert len({t["id"] for t in traces}) == len(traces)
    return traces, generations


class FakeLangfuse:
    """Langfuse's ingestion endpoint on 127.0.0.1: Basic auth (401 otherwise), strict payload
    validation (400 with the reason), 207 with successes; `fail` answers the next POSTs with
    given statuses, `reject` refuses events of a type in the 207, `stall` never answers."""

    def __init__(self, capture: bool = False) -> None:
        self.capture = capture
        self.traces: dict[str, dict[str, Any]] = {}
        self.generations: dict[str, dict[str, Any]] = {}
        self.bodies: list[bytes] = []  # every POST body, failed ones included
        self.statuses: list[int] = []
        self.problems: list[str] = []
        self.fail: list[int] = []
        self.reject: set[str] = set()  # event types refused in the 207
        self.stall = False
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/api/public/ingestion", self._ingest)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _answer(self, status: int, body: Any = None) -> web.Response:
        self.statuses.append(status)
        return web.json_response(body or {"message": "error"}, status=status)

    async def _ingest(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.bodies.append(raw)
        expected = "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._answer(401, {"message": "Invalid credentials"})
        if self.stall:
            await asyncio.sleep(3600)
        if self.fail:
            status = self.fail.pop(0)
            headers = {"Retry-After": "0"} if status == 429 else None
            self.statuses.append(status)
            return web.json_response({"message": "busy"}, status=status, headers=headers)
        if request.content_type != "application/json":
            self.problems.append(f"content type {request.content_type}")
            return self._answer(400)
        try:
            # The stdlib parses as JSON.parse does (a lone surrogate escape is text).
            payload = json.loads(raw)
            traces, generations = _check_batch(payload, self.capture)
        except (AssertionError, KeyError, ValueError) as exc:
            self.problems.append(repr(exc))
            return self._answer(400, {"message": "Invalid request data", "errors": [repr(exc)]})
        for trace in traces:
            if trace["id"] in self.traces:
                self.problems.append(f"trace {trace['id']} delivered twice")
            self.traces[trace["id"]] = trace
        for generation in generations:
            self.generations[generation["traceId"]] = generation
        events = payload["batch"]
        refused = [e for e in events if e["type"] in self.reject]
        return self._answer(
            207,
            {
                "successes": [{"id": e["id"], "status": 201} for e in events if e not in refused],
                "errors": [
                    {
                        "id": e["id"],
                        "status": 400,
                        "message": "Event type not accepted",
                        "error": f"Event type {e['type']!r} is not accepted",
                    }
                    for e in refused
                ],
            },
        )


def settings(url: str, **over: Any) -> LangfuseSettings:
    values: dict[str, Any] = {
        "public_key": PUBLIC,
        "secret_key": SECRET,
        "host": url,
        "flush_interval": 0.05,
    }
    return LangfuseSettings(**(values | over))


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


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


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
    plain = record(4, model_sent=None, prompt_tokens=7, completion_tokens=None, cost_usd=None)
    for r in (ok, failed, retried, plain):
        exporter.submit(r)
    await until(lambda: len(fake.traces) == 4)
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
        await until(lambda: len(fake.traces) == 3)
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
    await asyncio.sleep(0.2)
    assert fake.bodies == []  # less than a batch waits for the interval
    exporter.submit(record(9))
    await until(lambda: len(fake.traces) == 10)
    assert len(fake.bodies) == 1


async def test_debug_logs_each_flush(
    fake: FakeLangfuse, exporters: Callable[..., LangfuseExporter]
) -> None:
    exporter = exporters(settings(fake.url, debug=True))
    with structlog.testing.capture_logs() as logs:
        await exporter.start()
        exporter.submit(record(1))
        await until(lambda: exporter.written == 1)
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
        await until(lambda: exporter.failed_batches == 1)
        for i in range(5, 8):
            exporter.submit(record(i))
        await until(lambda: exporter.failed_batches == 2)
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
        await until(lambda: exporter.dropped == 3)
        exporter.submit(record(3))
        await until(lambda: exporter.dropped == 4)
    events = 4 * len(refused)
    assert (exporter.written, exporter.rejected, exporter.sent) == (0, events, 8 - events)
    lines = [e for e in logs if e["event"] == "langfuse_events_rejected"]
    assert lines[0]["log_level"] == "warning"
    assert lines[0]["message"] == "Event type not accepted"
    assert "is not accepted" in lines[0]["error"]
    assert {e["log_level"] for e in lines[1:]} == {"debug"}

    fake.reject = set()  # accepted whole again: a later refusal warns again
    exporter.submit(record(4))
    await until(lambda: exporter.written == 1)
    fake.reject = refused
    with structlog.testing.capture_logs() as logs:
        exporter.submit(record(5))
        await until(lambda: exporter.dropped == 5)
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
    await until(lambda: len(fake.traces) == 4)
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
        await until(lambda: exporter.failed_batches >= 3)
        assert (exporter.queued, exporter.dropped, exporter.sent) == (20, 0, 0)

        fake = FakeLangfuse()
        await fake.start(port)
        try:
            await until(lambda: len(fake.traces) == 20)
            exporter.submit(record(20))
            await until(lambda: len(fake.traces) == 21)
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
    await until(lambda: exporter.failed_batches >= 1)  # the first batch is held for a retry
    assert not inspect.iscoroutinefunction(exporter.submit)
    for i in range(1, 80):
        assert exporter.submit(record(i)) is None  # sync: queues and returns
    assert (exporter.queued, exporter.dropped) == (50, 30)

    fake = FakeLangfuse()
    await fake.start(port)
    try:
        await until(lambda: len(fake.traces) == 50)
        await asyncio.sleep(0.1)
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
    await asyncio.sleep(0.05)
    assert fake.bodies == []
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


async def test_serve_sends_a_trace_per_request_to_langfuse(
    upstream: Upstream, tmp_path: Path
) -> None:
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
    }
    try:
        async with serve_process(config, tmp_path, env) as served:
            async with openai.AsyncOpenAI(
                api_key="x", base_url=served.url + "/v1", max_retries=0
            ) as client:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "what is up"}],
                    stream=True,
                )
                async for _ in stream:
                    pass
            await until(lambda: len(server.generations) == 1)
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
