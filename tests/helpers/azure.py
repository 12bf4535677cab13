"""A fake Azure OpenAI (as strict as the real one about deployments, api-version and the
`api-key` header) and a plain recorder, both keeping what they received, and the provider entry
that reaches the Azure fake."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.helpers import provider

DEPLOYMENT = "my-deployment"
API_VERSION = "2024-10-21"
AZURE_KEY = "azure-key-0123456789abcdef"


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: CIMultiDict[str]


@dataclass
class Fake:
    """A running fake upstream and what it received."""

    url: str
    calls: list[Seen] = field(default_factory=list)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-az",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def _chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, **extra}
    return b"data: " + orjson.dumps({**body, "model": "gpt-4o", "choices": choices}) + b"\n\n"


async def answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """A chat completion, streamed as Azure streams it when asked (a first chunk holding only
    the prompt filter results, a usage chunk when `include_usage`)."""
    if not body.get("stream"):
        return web.json_response(_completion("Hello from Azure"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk([], prompt_filter_results=[{"prompt_index": 0}]))
    for piece in ("Hello", " from", " Azure"):
        await resp.write(_chunk([{"index": 0, "delta": {"content": piece}}]))
    await resp.write(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        await resp.write(_chunk([], usage=usage))
    await resp.write(b"data: [DONE]\n\n")
    return resp


def _azure_error(status: int, code: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": code}}, status=status)


def azure_app(calls: list[Seen]) -> web.Application:
    """Azure OpenAI as strict as the real one: only `POST /openai/deployments/my-deployment/
    chat/completions?api-version=2024-10-21` (and `GET /openai/models`) with `api-key: <key>`;
    401 without the key, 404 for any other path, version or deployment."""

    def refused(request: web.Request) -> web.Response | None:
        calls.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers)))
        if request.headers.get("api-key") != AZURE_KEY:
            return _azure_error(401, "401")  # "Access denied due to invalid subscription key"
        if request.query.getall("api-version", []) != [API_VERSION]:
            return _azure_error(404, "404")  # "Resource not found"
        return None

    async def chat(request: web.Request) -> web.StreamResponse:
        no = refused(request)
        if no is not None:
            return no
        if request.match_info["deployment"] != DEPLOYMENT:
            return _azure_error(404, "DeploymentNotFound")
        return await answer(request, await request.json())

    async def models(request: web.Request) -> web.Response:
        no = refused(request)
        return web.json_response({"object": "list", "data": []}) if no is None else no

    async def anything_else(request: web.Request) -> web.Response:
        calls.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers)))
        return _azure_error(404, "404")

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat)
    app.router.add_get("/openai/models", models)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app


def recorder_app(calls: list[Seen]) -> web.Application:
    """An OpenAI-compatible upstream that answers every chat and records what it received."""

    async def chat(request: web.Request) -> web.StreamResponse:
        calls.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers)))
        return await answer(request, await request.json())

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def azure_provider(api_base: str, **extra: Any) -> dict[str, Any]:
    return {
        **provider("azure", api_base, {"gpt-4o": DEPLOYMENT, "gpt-4o-mini": None}),
        "api_key": AZURE_KEY,
        "provider_type": "azure",
        "auth": "api-key",
        "query_params": {"api-version": API_VERSION},
        **extra,
    }
