"""Tracing through the proxy: real requests (the openai SDK, aiohttp), a real upstream on
loopback that records the `traceparent` it was sent, and a collector that decodes every export
with the official OpenTelemetry protobuf definitions (tests/helpers/otlp_collector.py).

Plain, streamed, failed-over and client-aborted requests; a client's trace continued and a bad
`traceparent` ignored; the collector down, refusing and back; `llm-proxy serve` configured by
the OTEL_* variables alone, flushing on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from llm_proxy.config.model import TracingSettings
from llm_proxy.observe.tracing.settings import resolve
from tests.helpers import (
    ProxyFactory,
    Upstream,
    eventually,
    make_config,
    provider,
    sdk,
    serve,
    yaml_config,
)
from tests.helpers.otlp_collector import Answer, FakeCollector
from tests.helpers.processes import serve_process
from tests.helpers.upstreams import FaultyUpstream

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SERVER, CLIENT = 2, 3  # SpanKind
ERROR = 2  # Status.code


@pytest.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    collector = FakeCollector()
    await collector.start()
    try:
        yield collector
    finally:
        await collector.stop()


def tracing(collector: FakeCollector, **settings: Any) -> Any:
    """The tracing plan for `collector` (no OTEL_* variable of the test's environment)."""
    plan = resolve(
        TracingSettings(traces_endpoint=collector.url, flush_interval_secs=0.05, **settings), {}
    )
    assert plan is not None
    return plan


def by_kind(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    (server,) = [s for s in spans if s["kind"] == SERVER]
    return server, [s for s in spans if s["kind"] == CLIENT]


def traces(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        out.setdefault(span["trace_id"], []).append(span)
    return out


async def test_plain_and_streamed_requests_are_traced(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, tmp_path: Path
) -> None:
    jsonl = tmp_path / "requests.jsonl"
    config = make_config(
        provider("alpha", upstream.api_base, {"gpt-4o": "gpt-4o-2024-08-06"}),
        pricing={"gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 2}},
        request_log={"jsonl_path": str(jsonl)},
    )
    url = await start_proxy(config, tracing=tracing(collector))
    async with sdk(url) as client:
        plain = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            pass
    spans = await collector.wait_for_spans(4)
    assert collector.problems == []
    assert len(spans) == 4
    by_trace = traces(spans)
    assert len(by_trace) == 2
    sent = {r.headers["traceparent"] for r in upstream.recorded}
    for trace_id, trace in by_trace.items():
        server, (attempt,) = by_kind(trace)
        assert server["resource"]["service.name"] == "llm-proxy"
        assert server["resource"]["telemetry.sdk.name"] == "llm-proxy"
        assert server["scope"][0] == "llm-proxy"
        assert server["name"] == "POST /v1/chat/completions"
        assert server["parent_span_id"] == ""  # a new trace: the proxy's span is its root
        a = server["attributes"]
        assert a["http.request.method"] == "POST"
        assert a["http.route"] == "/v1/chat/completions"
        assert a["http.response.status_code"] == 200
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-4o"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["llm_proxy.cost.usd"] > 0
        assert a["llm_proxy.key.name"] == "anonymous"
        assert a["llm_proxy.client.name"] == "openai-python"
        assert server["status"] == (0, "")
        # The attempt: a child of the server span, and the span the upstream was told of.
        assert attempt["parent_span_id"] == server["span_id"]
        assert f"00-{trace_id}-{attempt['span_id']}-01" in sent
        b = attempt["attributes"]
        assert b["gen_ai.request.model"] == "gpt-4o-2024-08-06"  # as sent
        assert b["gen_ai.response.model"]
        assert b["server.address"] == "127.0.0.1"
        assert b["llm_proxy.attempt.number"] == 1
        assert b["llm_proxy.attempt.outcome"] == "ok"
        assert b["http.response.status_code"] == 200
        assert server["start"] <= attempt["start"] <= attempt["end"] <= server["end"]
    streamed = next(t for t in by_trace.values() if by_kind(t)[0]["events"])
    server, (attempt,) = by_kind(streamed)
    assert [e["name"] for e in server["events"]] == [
        "llm_proxy.first_token",
        "llm_proxy.stream_end",
    ]
    assert server["events"][1]["attributes"]["llm_proxy.stream.complete"] is True
    assert server["attributes"]["gen_ai.request.stream"] is True
    assert server["attributes"]["gen_ai.response.time_to_first_chunk"] > 0
    assert server["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert [e["name"] for e in attempt["events"]] == [
        "llm_proxy.first_token",
        "llm_proxy.stream_end",
    ]
    # The trace id is in the request log, for both requests.
    plain_trace = next(t for t in by_trace if t not in (streamed[0]["trace_id"],))

    def lines() -> list[Any]:
        return [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]

    logged = await eventually(lambda: len(lines()) == 2 and lines(), what="2 records in the file")
    assert {r["trace_id"] for r in logged} == set(by_trace)
    assert plain.headers["x-request-id"] in {r["request_id"] for r in logged}
    assert plain_trace in by_trace


async def test_a_clients_trace_is_continued_and_a_bad_traceparent_ignored(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    config = make_config(provider("alpha", upstream.api_base, {"m": None}))
    url = await start_proxy(config, tracing=tracing(collector))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {
        "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    }
    async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
    for bad in ("00-garbage", f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01", "x" * 2000):
        async with http.post(
            url + "/v1/chat/completions", json=body, headers={"traceparent": bad}
        ) as resp:
            assert resp.status == 200  # a malformed header never fails a request
    spans = await collector.wait_for_spans(8)
    by_trace = traces(spans)
    assert len(by_trace) == 4
    server, (attempt,) = by_kind(by_trace[CLIENT_TRACE])
    assert server["parent_span_id"] == CLIENT_SPAN
    assert server["flags"] == 0x301  # sampled, parent known to be remote
    assert attempt["flags"] == 0x101  # its parent (the server span) is local
    assert server["trace_state"] == attempt["trace_state"] == headers["tracestate"]
    (continued,) = [r for r in upstream.recorded if CLIENT_TRACE in r.headers["traceparent"]]
    assert continued.headers["traceparent"] == f"00-{CLIENT_TRACE}-{attempt['span_id']}-01"
    assert continued.headers["tracestate"] == headers["tracestate"]
    assert len(continued.headers.getall("traceparent")) == 1  # the client's is not forwarded
    for trace_id, trace in by_trace.items():
        if trace_id != CLIENT_TRACE:
            assert by_kind(trace)[0]["parent_span_id"] == ""


async def test_an_unsampled_caller_is_followed_and_the_upstream_still_joins(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    config = make_config(provider("alpha", upstream.api_base, {"m": None}))
    url = await start_proxy(config, tracing=tracing(collector))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    unsampled = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"}
    async with http.post(url + "/v1/chat/completions", json=body, headers=unsampled) as resp:
        assert resp.status == 200
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    spans = await collector.wait_for_spans(2)
    assert CLIENT_TRACE not in traces(spans)  # parent-based: the caller said not sampled
    first = upstream.recorded[0].headers["traceparent"]
    assert first.startswith(f"00-{CLIENT_TRACE}-") and first.endswith("-00")
    assert first != unsampled["traceparent"]  # the attempt's own span id, not the client's


async def test_a_failed_over_request_has_one_span_per_attempt(
    start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    broken, healthy = FaultyUpstream("status:503"), FaultyUpstream("ok")
    async with serve(broken.app) as broken_url, serve(healthy.app) as healthy_url:
        config = make_config(
            provider("first", broken_url + "/v1", {"m": None}, weight=1000),
            provider("second", healthy_url + "/v1", {"m": None}, weight=1),
        )
        url = await start_proxy(config, tracing=tracing(collector))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
        spans = await collector.wait_for_spans(3)
    server, attempts = by_kind(spans)
    assert server["attributes"]["llm_proxy.attempt.count"] == 2
    assert server["attributes"]["llm_proxy.provider.name"] == "second"
    assert server["status"] == (0, "")
    first, second = sorted(attempts, key=lambda s: s["attributes"]["llm_proxy.attempt.number"])
    assert {first["parent_span_id"], second["parent_span_id"]} == {server["span_id"]}
    assert first["attributes"]["llm_proxy.provider.name"] == "first"
    assert first["attributes"]["llm_proxy.attempt.outcome"] == "http_5xx"
    assert first["attributes"]["llm_proxy.attempt.retry_reason"] == "http_5xx"
    assert first["attributes"]["http.response.status_code"] == 503
    assert first["attributes"]["error.type"] == "http_5xx"
    assert first["status"][0] == ERROR
    assert second["attributes"]["llm_proxy.attempt.outcome"] == "ok"
    assert "llm_proxy.attempt.retry_reason" not in second["attributes"]
    assert second["status"] == (0, "")
    assert first["end"] <= second["start"]


async def test_a_client_that_hangs_up_mid_stream_is_a_cancellation(
    start_proxy: ProxyFactory, collector: FakeCollector
) -> None:
    stalled = FaultyUpstream("stall_mid_stream")
    async with serve(stalled.app) as upstream_url:
        config = make_config(provider("slow", upstream_url + "/v1", {"m": None}))
        url = await start_proxy(config, tracing=tracing(collector))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with aiohttp.ClientSession() as http:
            resp = await http.post(url + "/v1/chat/completions", json=body)
            assert resp.status == 200
            await resp.content.readuntil(b"\n\n")  # the first event, then the client leaves
            resp.close()
        spans = await collector.wait_for_spans(2)
    server, (attempt,) = by_kind(spans)
    assert server["attributes"]["http.response.status_code"] == 499
    assert server["status"] == (0, "")  # a cancellation, not an error
    assert attempt["attributes"]["llm_proxy.attempt.outcome"] == "client_closed"
    assert "error.type" not in attempt["attributes"]
    assert server["events"][0]["name"] == "llm_proxy.first_token"
    end = server["events"][-1]
    assert end["name"] == "llm_proxy.stream_end"
    assert end["attributes"]["llm_proxy.stream.complete"] is False


async def test_a_refused_request_is_a_server_span_alone(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    config = make_config(provider("alpha", upstream.api_base, {"m": None}))
    url = await start_proxy(config, tracing=tracing(collector))
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 404
    (server,) = await collector.wait_for_spans(1)
    assert server["attributes"]["http.response.status_code"] == 404
    assert server["attributes"]["llm_proxy.error.code"] == "model_not_found"
    assert server["status"] == (0, "")  # a 4xx is the client's affair


async def metric(http: Any, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_a_dead_then_refusing_collector_costs_requests_nothing_and_is_counted(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    config = make_config(provider("alpha", upstream.api_base, {"m": None}))
    url = await start_proxy(config, tracing=tracing(collector))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    await collector.stop()  # down: connections refused
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
    assert loop.time() - started < 5  # (each is a loopback call: the export is not waited for)
    failures = 'llm_proxy_trace_export_failures_total{exporter="otlp"}'
    await eventually(lambda: metric(http, url, failures), what="a failed export counted")
    await collector.start()  # back: the held batch is delivered, nothing lost
    spans = await collector.wait_for_spans(10, timeout=15)
    assert len(traces(spans)) == 5
    # A batch the collector refuses (400) is dropped and counted, and the next one goes.
    collector.answer_next(Answer(status=400, error_message="bad batch"))
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    dropped = 'llm_proxy_trace_spans_total{exporter="otlp",result="dropped"}'
    await eventually(lambda: metric(http, url, dropped), what="the refused batch's spans counted")
    assert await metric(http, url, dropped) == 2
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    await collector.wait_for_spans(12)
    sent = 'llm_proxy_trace_spans_total{exporter="otlp",result="sent"}'

    async def all_sent() -> bool:
        return await metric(http, url, sent) == 12

    await eventually(all_sent, what="12 spans counted as sent")


async def test_a_429_with_retry_after_is_waited_for(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    config = make_config(provider("alpha", upstream.api_base, {"m": None}))
    url = await start_proxy(config, tracing=tracing(collector))
    collector.answer_next(Answer(status=429, headers={"Retry-After": "2"}))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    await collector.wait_for_spans(2, timeout=10)
    refused, delivered = collector.requests[0], collector.delivered[0]
    assert refused.status == 429
    assert delivered.at - refused.at >= 2.0  # Retry-After honoured (the backoff alone: 1 s)
    assert delivered.body == refused.body  # the same batch, re-sent


async def test_serve_exports_with_the_otel_variables_and_flushes_on_sigterm(
    upstream: Upstream, collector: FakeCollector, tmp_path: Path
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,authorization=Bearer%20otel-secret-123",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_SERVICE_NAME": "gateway-eu",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=ml",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # ten minutes: only the shutdown sends
    }
    async with serve_process(yaml_config(upstream), tmp_path, env) as served:
        async with sdk(served.url) as client:
            for _ in range(3):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
        assert collector.requests == []  # nothing sent before the shutdown
        served.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(served.proc.wait(), 15)
    assert served.proc.returncode == 0
    spans = collector.spans()
    assert len(spans) == 6 and len(traces(spans)) == 3
    (received,) = collector.requests
    assert received.headers["x-tenant"] == "acme"
    assert received.headers["Authorization"] == "Bearer otel-secret-123"
    assert received.headers.get("Content-Encoding") == "gzip"
    resource = spans[0]["resource"]
    assert resource["service.name"] == "gateway-eu"
    assert resource["deployment.environment"] == "test" and resource["team"] == "ml"
    log = served.log
    assert b"otel-secret-123" not in log
    assert b'"event": "tracing"' in log or b'"event":"tracing"' in log
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith(b"{")]
    access = [line for line in lines if line.get("event") == "request"]
    assert {line["trace_id"] for line in access if line["path"].endswith("/completions")} == set(
        traces(spans)
    )


async def test_check_config_names_a_bad_otel_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers: []\nrequire_auth: false\n")
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "llm_proxy", "check-config", str(path)),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode != 0
    assert b"OTEL_EXPORTER_OTLP_PROTOCOL" in err and b"gRPC is not supported" in err
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "llm_proxy", "check-config", str(path)),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"tracing: on, http://127.0.0.1:4318/v1/traces (http/json" in out


async def test_requests_refused_for_want_of_a_key_are_not_traced(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    """A keyless client sending thousands of requests a second must not become thousands of
    traces (as it is no request-log row): refusals (401) are counted in metrics only."""
    config = make_config(
        provider("alpha", upstream.api_base, {"m": None}),
        master_keys=[{"name": "team", "key": "sk-team-0123456789"}],
    )
    url = await start_proxy(config, tracing=tracing(collector))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for i in range(20):
        headers = {"Authorization": f"Bearer sk-wrong-{i}"} if i % 2 else {}
        async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
            assert resp.status == 401
    ok = {"Authorization": "Bearer sk-team-0123456789"}
    async with http.post(url + "/v1/chat/completions", json=body, headers=ok) as resp:
        assert resp.status == 200
    spans = await collector.wait_for_spans(2)
    assert len(traces(spans)) == 1
    assert by_kind(spans)[0]["attributes"]["llm_proxy.key.name"] == "team"


async def test_health_detailed_shows_where_records_and_spans_go(
    upstream: Upstream, start_proxy: ProxyFactory, collector: FakeCollector, http: Any
) -> None:
    """At 3 a.m.: is the collector taking spans? /health/detailed says, per sink, what was
    written, dropped and queued, and for span exporters where they go (never the secret that
    may be in the URL's query or the headers) and whether exports fail now."""
    config = make_config(provider("alpha", upstream.api_base, {"m": None}))
    plan = resolve(
        TracingSettings(
            traces_endpoint=collector.url + "?api-key=secret-in-the-query",
            headers=(("authorization", "Bearer header-secret-456"),),
            flush_interval_secs=0.05,
        ),
        {},
    )
    url = await start_proxy(config, tracing=plan)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    await collector.wait_for_spans(2)

    async def exports() -> list[dict[str, Any]]:
        async with http.get(url + "/health/detailed") as resp:
            text = await resp.text()
        assert "secret-in-the-query" not in text and "header-secret-456" not in text
        found: list[dict[str, Any]] = orjson.loads(text)["exports"]
        return found

    async def sent() -> bool:
        (otlp,) = await exports()
        return bool(otlp["spans_sent"] == 2 and otlp["written"] == 1)

    await eventually(sent, what="the export counted")
    (otlp,) = await exports()
    assert otlp["sink"] == "otlp"
    assert otlp["endpoint"] == collector.url
    assert (otlp["failing"], otlp["dropped"], otlp["queued"]) == (False, 0, 0)
    await collector.stop()
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200

    async def failing() -> bool:
        (otlp,) = await exports()
        return bool(otlp["failing"] and otlp["failed_exports"] >= 1)

    await eventually(failing, what="the failing export shown")
