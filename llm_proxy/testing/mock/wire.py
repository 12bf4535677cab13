"""Reading requests and writing answers, for every handler: a JSON body (recorded, its
`mock_status` obeyed), the per-request stream fields (`mock_chunks`, `mock_delay_ms`), JSON
answers, cursor pages and chunked bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import CIMultiDict

from llm_proxy.testing.mock.errors import MockError, forced, missing
from llm_proxy.testing.mock.state import OPTIONS, RECORDED, Recorded

CREATED: Final = 1_700_000_000  # every object's `created`: answers are deterministic


def record(
    request: web.Request, body: bytes, size: int | None = None, form: dict[str, Any] | None = None
) -> None:
    if request.app[OPTIONS].record:
        request.app[RECORDED].append(
            Recorded(
                request.path,
                CIMultiDict(request.headers),
                body,
                request.method,
                len(body) if size is None else size,
                form,
                request.query_string,
            )
        )


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON body, recorded; a 400 for one that is not a JSON object, the error a
    `mock_status` field asks for."""
    body = await request.read()
    record(request, body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise MockError(400, "We could not parse the JSON body of your request.")
    if "mock_status" in data:
        raise forced(int(data["mock_status"]))
    return data


def required(data: dict[str, Any], name: str) -> Any:
    if data.get(name) is None:
        raise missing(name)
    return data[name]


def json_response(obj: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj),
        content_type="application/json",
        headers={"x-request-id": "req_mock"},
    )


def page(
    request: web.Request, items: Iterable[dict[str, Any]], *, limit: int = 20, order: str = "desc"
) -> dict[str, Any]:
    """A cursor page of `items` (oldest first) as OpenAI lists: `limit`, `order`, `after`."""
    try:
        limit = max(1, min(int(request.query.get("limit", limit)), 10_000))
    except ValueError:
        raise MockError(400, "Invalid 'limit': expected an integer.", param="limit") from None
    seq = list(items)
    if request.query.get("order", order) == "desc":
        seq.reverse()
    if after := request.query.get("after"):
        ids = [item["id"] for item in seq]
        seq = seq[ids.index(after) + 1 :] if after in ids else []
    data = seq[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(seq) > limit,
    }


async def send(
    request: web.Request,
    content_type: str,
    pieces: Iterable[bytes],
    delay: float,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Write `pieces` as a chunked body, each its own write (so a relay is tested chunk by
    chunk), `delay` seconds apart."""
    resp = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
    await resp.prepare(request)
    try:
        for piece in pieces:
            await resp.write(piece)
            if delay:
                await asyncio.sleep(delay)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client hung up (a proxy does when its own client does): not an error
    return resp


def seen(request: web.Request) -> str:
    """Record a request without a body; the `{id}` of its path."""
    record(request, b"")
    return request.match_info.get("id", "")


def stream_delay(request: web.Request, data: dict[str, Any]) -> float:
    """Seconds between stream chunks: `mock_delay_ms`, else the server's `--delay-ms`."""
    return float(data.get("mock_delay_ms", request.app[OPTIONS].delay_ms)) / 1000


def stream_chunks(request: web.Request, data: dict[str, Any]) -> int:
    """Content chunks in a stream: `mock_chunks`, else the server's `--chunks`."""
    return int(data.get("mock_chunks", request.app[OPTIONS].chunks))
