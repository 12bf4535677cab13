"""The request-path middlewares, on a real app and real sockets: what they record when the
client misbehaves."""

from __future__ import annotations

import aiohttp
import structlog
from aiohttp import web

from llm_proxy.app import create_app
from tests.conftest import make_config, provider, sample, scrape, serve


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
