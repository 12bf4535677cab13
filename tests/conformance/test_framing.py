"""Framings real servers seldom pick, scripted on a raw socket: each answer whole through the
proxy, each request received once, the keep-alive connection reused only when it may be."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conformance import raw
from tests.conformance.conftest import assert_answered, assert_once, chat, new_id, start_in_front
from tests.helpers import ProxyFactory

CASES = [
    # (framing, the upstream closes after each answer)
    (raw.chunked_with_extensions_and_trailers, False),
    (raw.after_interim_answers, False),
    (raw.close_delimited, True),
    (raw.http10, True),
    (raw.http10_sized, True),  # HTTP/1.0 without keep-alive: not reusable, though sized
]


@pytest.mark.parametrize(("framing", "closes"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_framing(
    framing: raw.Framing, closes: bool, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    upstream = raw.RawUpstream(framing, closes=closes)
    async with upstream.running() as api_base:
        proxy = await start_in_front(start_proxy, api_base)
        ids = [new_id(framing.__name__) for _ in range(6)]
        for i, request_id in enumerate(ids):
            stream = i % 2 == 1
            assert_answered(
                await chat(http, proxy, request_id, stream=stream), request_id, stream=stream
            )
    assert_once(dict(upstream.seen), ids)
    # A keep-alive framing is reused (the trailers and interim answers were consumed whole).
    assert upstream.connections == (len(ids) if closes else 1)


@pytest.mark.parametrize("stream", [True, False])
async def test_reset_mid_body(
    stream: bool, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """The upstream resets the connection halfway through its answer. A stream ends with an
    OpenAI-style error event; a small sized body, read whole before anything is sent, becomes a
    clean 502. Never re-sent (it was answered)."""
    framing = raw.chunked if stream else raw.sized
    upstream = raw.RawUpstream(framing, reset_after=200)
    async with upstream.running() as api_base:
        proxy = await start_in_front(start_proxy, api_base)
        request_id = new_id("reset")
        body = {"model": "m", "messages": [{"content": request_id}], "stream": stream}
        async with http.post(proxy + "/v1/chat/completions", json=body) as resp:
            if stream:
                assert resp.status == 200
                events = await resp.read()
                assert events.endswith(b"\n\n")
                error = json.loads(events.rstrip().rsplit(b"\n\n", 1)[-1][6:])
                assert error["error"]["code"] == "upstream_error"
                assert b"[DONE]" not in events
            else:
                assert resp.status == 502
                assert (await resp.json())["error"]["code"] == "upstream_error"
    assert upstream.seen == {request_id: 1}
