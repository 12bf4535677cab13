"""The request-path middlewares, on a real app and real sockets: what they record when the
client misbehaves."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import structlog
from aiohttp import web

from llm_proxy.app import create_app
from llm_proxy.middlewares.observe import LOG_REFUSED_EVERY_SECS
from tests.helpers import (
    ProxyFactory,
    Upstream,
    eventually,
    make_config,
    provider,
    sample,
    scrape,
    serve,
)
from tests.helpers.db import rows, wait_rows
from tests.helpers.langfuse import FakeLangfuse, settings


async def test_client_gone_while_headers_are_written_is_one_499_line(
    http: aiohttp.ClientSession,
) -> None:
    app = create_app(make_config(provider("a", "http://127.0.0.1:9/v1", {"m": None})))

    async def hangs_up(request: web.Request) -> web.StreamResponse:
        # The client's connection goes away just before the response head is written.
        assert request.transport is not None
        request.transport.close()
        response = web.StreamResponse()
        await response.prepare(request)
        return response

    app.router.add_post("/v1/hangs-up", hangs_up)
    async with serve(app) as url:
        with structlog.testing.capture_logs() as logs:
            try:
                async with http.post(url + "/v1/hangs-up") as resp:
                    await resp.read()
            except aiohttp.ClientError:
                pass
            m = await scrape(http, url)
    events = [e for e in logs if e["event"] != "request" or e.get("path") == "/v1/hangs-up"]
    assert [(e["event"], e.get("status")) for e in events] == [("request", 499)], events
    assert sample(m, "llm_proxy_requests_total", status_code="499") == 1


KEY = "sk-team-0123456789abcdef"


async def test_refused_requests_are_counted_never_written(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str, http: aiohttp.ClientSession
) -> None:
    """A client without a valid key once wrote a request-log row and a Langfuse trace per
    request (10.8k rows in 10 s): refusals are counted in metrics, and logged at most once
    per LOG_REFUSED_EVERY_SECS with a count."""
    fake = FakeLangfuse()
    await fake.start()
    try:
        config = make_config(
            provider("a", upstream.api_base, {"m": None}),
            master_keys=[{"name": "team", "key": KEY}],
            admin_key="adm-0123456789abcdef",
            metrics_token="metrics-0123456789",
            request_log={"flush_interval_secs": 0.05, "database_url": config_dsn},
        )
        url = await start_proxy(config, langfuse=settings(fake.url))
        body = {"model": "m", "messages": []}
        started = time.monotonic()

        async def refused(i: int) -> int:
            headers = {} if i % 3 == 0 else {"Authorization": f"Bearer sk-wrong-{i}"}
            path = ("/v1/chat/completions", "/v1/models", "/admin/v1/config")[i % 3]
            async with http.request(
                "POST" if i % 3 == 0 else "GET", url + path, json=body, headers=headers
            ) as resp:
                return resp.status

        with structlog.testing.capture_logs() as logs:
            statuses = await asyncio.gather(*(refused(i) for i in range(300)))
            assert set(statuses) == {401}
            ok = {"Authorization": f"Bearer {KEY}"}
            async with http.post(url + "/v1/chat/completions", json=body, headers=ok) as resp:
                assert resp.status == 200
        elapsed = time.monotonic() - started
        # The records leave in order: once the accepted request is written, any refused one
        # would have been too.
        written = await wait_rows(config_dsn, "SELECT status FROM request_logs", 1)
        await eventually(lambda: len(fake.traces) >= 1, timeout=5)
        assert [r["status"] for r in written] == [200]
        assert [r["status"] for r in await rows(config_dsn, "SELECT status FROM request_logs")] == [
            200
        ]
        assert len(fake.traces) == 1
        families = await scrape(http, url, headers={"Authorization": "Bearer metrics-0123456789"})
        counted = sum(
            s.value
            for s in families["llm_proxy_requests"].samples
            if s.name == "llm_proxy_requests_total" and s.labels["status_code"] == "401"
        )
        assert counted == 300
    finally:
        await fake.stop()
    assert not [e for e in logs if e["event"] == "request" and e["status"] == 401]
    lines = [e for e in logs if e["event"] == "unauthenticated_requests"]
    assert 1 <= len(lines) <= 1 + elapsed / LOG_REFUSED_EVERY_SECS, lines
    assert lines[0]["count"] == 1 and lines[0]["status"] == 401
    assert all(KEY not in repr(e) and "sk-wrong" not in repr(e) for e in logs)
