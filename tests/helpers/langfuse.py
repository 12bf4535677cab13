"""A fake Langfuse ingestion API on loopback (`FakeLangfuse`) that checks Basic auth and
validates every batch as Langfuse's schema does, and exporter `settings` that point at it."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from llm_proxy.observe.langfuse import LangfuseSettings

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
    """Settings for `FakeLangfuse`: the legacy ingestion API it fakes (LANGFUSE_EXPORT=
    ingestion; the OTLP export's fake is tests/helpers/langfuse_otlp.py)."""
    values: dict[str, Any] = {
        "public_key": PUBLIC,
        "secret_key": SECRET,
        "host": url,
        "flush_interval": 0.05,
        "export": "ingestion",
    }
    return LangfuseSettings(**(values | over))
