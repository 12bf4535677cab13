"""An upstream that compresses despite `Accept-Encoding: identity`: nginx with `gzip on`.

nginx compresses only for a request that accepts gzip, and the proxy asks for identity; so a
second nginx server in front (the kind of intermediary that causes this in practice) asks for
gzip and relays the compressed answer unchanged:
proxy -> nginx :front (Accept-Encoding: gzip) -> nginx :gzip (gzip on) -> backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conformance.conftest import (
    Answer,
    assert_answered,
    assert_once,
    new_id,
    seen,
    start_in_front,
)
from tests.conformance.servers import Server, nginx
from tests.helpers import ProxyFactory, free_port, sample, scrape


@pytest.fixture(scope="module")
def gzipping(conformance_tmp: Path, backend: Server) -> Iterator[str]:
    """The api base of an upstream whose every answer is gzip-compressed."""
    front, inner = free_port(), free_port()
    address = backend.url.removeprefix("http://")
    servers = f"""
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass http://127.0.0.1:{inner};
            proxy_http_version 1.1;
            proxy_set_header Accept-Encoding gzip;
            proxy_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{inner};
        gzip on;
        gzip_types text/event-stream application/json;
        gzip_proxied any;
        gzip_min_length 0;
        location / {{
            proxy_pass http://{address};
            proxy_http_version 1.1;
            proxy_buffering off;
        }}
    }}
    """
    with nginx(servers, conformance_tmp):
        yield f"http://127.0.0.1:{front}/v1"


async def test_the_upstream_really_compresses(gzipping: str, http: aiohttp.ClientSession) -> None:
    body = {"model": "m", "messages": [{"content": new_id("direct")}], "stream": True}
    headers = {"Accept-Encoding": "identity"}
    async with http.post(gzipping + "/chat/completions", json=body, headers=headers) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        await resp.read()


@pytest.mark.parametrize("stream", [True, False])
async def test_compressed_answer_relayed_identity(
    gzipping: str,
    backend: Server,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    proxy = await start_in_front(start_proxy, gzipping)
    ids = [new_id("gzip") for _ in range(4)]
    for request_id in ids:
        body = {"model": "m", "messages": [{"content": request_id}], "stream": stream}
        async with http.post(proxy + "/v1/chat/completions", json=body) as resp:
            answer_headers, raw = resp.headers, await resp.read()
        assert_answered(Answer(resp.status, answer_headers, raw), request_id, stream=stream)
    assert_once(await seen(http, backend.url), ids)
    # Tokens as the upstream reported them (7 + 4 per request), not estimated by the proxy.
    metrics = await scrape(http, proxy)
    total = sample(metrics, "llm_proxy_tokens_total", token_type="total_tokens")
    assert total == 11 * len(ids)


async def test_compressed_stream_arrives_incrementally(
    gzipping: str, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """The backend sends an event every 0.3 s: the first must reach the client long before the
    last is sent (a proxy that waited for the end of the gzip stream would deliver all at once)."""
    proxy = await start_in_front(start_proxy, gzipping)
    body = {"model": "slow", "messages": [{"content": new_id("slow")}], "stream": True}
    started = time.monotonic()
    arrivals: list[float] = []
    events = b""
    async with http.post(proxy + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert "Content-Encoding" not in resp.headers
        async for chunk in resp.content.iter_any():
            arrivals.append(time.monotonic() - started)
            events += chunk
    assert arrivals[0] < 0.6 < arrivals[-1], arrivals
    assert events.endswith(b"data: [DONE]\n\n")
    assert b'"usage":{' not in events
    deltas = [json.loads(e[6:]) for e in events.split(b"\n\n") if e and e != b"data: [DONE]"]
    assert len(deltas) == 4
