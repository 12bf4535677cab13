"""The session-wide stream check (`tests.helpers.stream_check`) fails a cut or unframed stream
read through the `http` fixture, and passes a whole one."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import serve
from tests.helpers.stream_check import check_framing


def test_framing_wants_whole_json_events_and_an_end() -> None:
    check_framing(b'data: {"a": 1}\n\n: comment\n\ndata: [DONE]\n\n')
    check_framing(b'data: {"a": 1}\n\ndata: {"error": {"message": "x"}}\n\n')
    for broken in (
        b'data: {"a": 1}\n\n',  # no end
        b'data: {"a": 1}\n\ndata: {"b"',  # cut inside an event
        b'data: {"a": 1\n\ndata: [DONE]\n\n',  # not JSON
    ):
        with pytest.raises((AssertionError, ValueError)):
            check_framing(broken)


async def test_the_http_fixture_checks_what_it_reads(http: aiohttp.ClientSession) -> None:
    async def cut(request: web.Request) -> web.Response:
        return web.Response(body=b'data: {"a": 1}\n\n', content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", cut)
    async with serve(app) as url, http.post(url + "/v1/chat/completions", json={}) as resp:
        with pytest.raises(AssertionError, match="no end"):
            await resp.read()
