"""Anthropic's `POST /v1/messages/count_tokens`: the exact count of an Anthropic provider of the
model when one serves it (the request forwarded, with failover among those), else the proxy's
own estimate (tiktoken's cl100k_base over the request's text: close for English, not exact).

Authenticated like every call, and never limited nor charged: counting spends no tokens.
(`POST /v1/messages` itself is `handlers.proxy_handler("/messages")`.)
"""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from llm_proxy.keys import LIFECYCLE, STATE
from llm_proxy.protocols.messages_via_chat import request_text
from llm_proxy.proxy import tokens
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.forward import forward
from llm_proxy.proxy.handlers import (
    check_content_type,
    model_of,
    refuse_duplicate_model,
    route_for,
)
from llm_proxy.proxy.jsonbody import parse_object
from llm_proxy.proxy.request_body import read_body, release
from llm_proxy.proxy.routing import Route
from llm_proxy.proxy.upstream import ANTHROPIC

COUNT_TOKENS: Final = "/messages/count_tokens"
ESTIMATE_HEADER: Final = "x-llm-proxy-estimated"  # "true" on a count the proxy made itself


async def count_tokens(request: web.Request) -> web.StreamResponse:
    state = request[STATE]
    check_content_type(request.headers.get("Content-Type"))
    lifecycle = request.app[LIFECYCLE]
    try:
        body = await read_body(request, state, lifecycle)
        data = parse_object(body)
        refuse_duplicate_model(body)
        state.model = model = model_of(data)
        name = state.snapshot.routes.normalize(model)
        route = route_for(request, state, model, name, data)
        upstreams = state.snapshot.upstreams
        exact = [t for t in route.targets if upstreams[t.provider.name].protocol == ANTHROPIC]
        if exact:
            if len(exact) < len(route.targets):
                route = Route(exact, route.label)
            call = Call(COUNT_TOKENS, body, data, model, name, False, anthropic=True)
            return await forward(request, route, call)
        (count,) = await tokens.count(request_text(data))
        answer = orjson.dumps({"input_tokens": count})
        return web.Response(
            body=answer, content_type="application/json", headers={ESTIMATE_HEADER: "true"}
        )
    finally:
        release(lifecycle, state)
