"""The reference limit: a bare aiohttp forwarder with no features at all, written as well as
aiohttp allows.

One ClientSession; copy method, path, headers and body. An answer with a Content-Length is read
whole and sent with one `web.Response` (aiohttp's cheapest path, about 15-20 % less CPU than
streaming it chunk by chunk); anything else (SSE) is streamed as it arrives.
Usage: python tests/perf/bare.py UPSTREAM_BASE_URL PORT
"""

import sys
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM, PORT = sys.argv[1].rstrip("/"), int(sys.argv[2])
SKIP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIP}
    async with request.app[SESSION].request(
        request.method, UPSTREAM + request.path_qs, headers=headers, data=await request.read()
    ) as upstream:
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in SKIP}
        if upstream.content_length is not None:
            return web.Response(status=upstream.status, headers=out, body=await upstream.read())
        response = web.StreamResponse(status=upstream.status, headers=out)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def session(app: web.Application) -> AsyncIterator[None]:
    # No pool cap (aiohttp's default is 100), so 1,000 streams compare like for like.
    async with aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(limit=0)
    ) as s:
        app[SESSION] = s
        yield


app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_route("*", "/{tail:.*}", forward)
web.run_app(
    app, host="127.0.0.1", port=PORT, access_log=None, print=None, loop=uvloop.new_event_loop()
)
