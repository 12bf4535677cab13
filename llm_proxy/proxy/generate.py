"""Gemini's API for Google's own clients (the `google-genai` SDK with its base URL pointed at the
proxy): `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`,
`:countTokens`, `:embedContent`, `:batchEmbedContents`, and `GET /v1beta/models[/{model}]`;
the same under `/v1/` (where recent SDKs go). The key is a master key, in `x-goog-api-key` or
`?key=` (which never reaches an upstream nor a log line: paths are logged without queries).

A provider speaking Gemini's API for the model (AI Studio, Vertex's Google models) gets the
body as it came, the model in its own URL; any other is translated (`llm_proxy.proxy.
translation`, through Anthropic's Messages API). Counting tokens and embeddings go only to
providers that do them natively; a count without one is the proxy's own estimate, as for
Anthropic clients.
"""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from llm_proxy import errors
from llm_proxy.keys import LIFECYCLE, STATE
from llm_proxy.protocols import gemini_client
from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.messages_via_chat import request_text
from llm_proxy.proxy import cloud, handlers, tokens
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.forward import forward
from llm_proxy.proxy.handlers import JSON, MAX_MODEL_CHARS, check_content_type, route_for
from llm_proxy.proxy.jsonbody import parse_object
from llm_proxy.proxy.messages import ESTIMATE_HEADER
from llm_proxy.proxy.request_body import read_body, release
from llm_proxy.proxy.routing import Route
from llm_proxy.proxy.state import RequestState

GENERATE: Final = cloud.GENERATE
STREAM: Final = cloud.STREAM_GENERATE
COUNT: Final = cloud.COUNT_TOKENS
EMBEDDINGS: Final = frozenset((cloud.EMBED, cloud.BATCH_EMBED))
ACTIONS: Final = frozenset((GENERATE, STREAM, COUNT)) | EMBEDDINGS


def _split(spec: str) -> tuple[str, str]:
    """`gemini-2.5-flash:generateContent` -> the model and the method (a 404 for an unknown
    method, as Google answers)."""
    model, colon, action = spec.rpartition(":")
    model = model.removeprefix("models/")
    if not colon or action not in ACTIONS:
        raise errors.ProxyError(
            404,
            f"Unknown method {action or spec!r}: the proxy serves generateContent, "
            "streamGenerateContent, countTokens, embedContent and batchEmbedContents.",
            code="not_found",
        )
    if not model or len(model) > MAX_MODEL_CHARS:
        raise errors.bad_param("model", "The model name in the URL is empty or too long.")
    return model, action


async def generate(request: web.Request) -> web.StreamResponse:
    """`POST .../models/{model}:{method}`."""
    state = request[STATE]
    model, action = _split(request.match_info["spec"])
    state.model = model
    check_content_type(request.headers.get("Content-Type"))
    lifecycle = request.app[LIFECYCLE]
    try:
        body = await read_body(request, state, lifecycle)
        data = parse_object(body)
        name = state.snapshot.routes.normalize(model)
        route = route_for(request, state, model, name, data)
        name = route.name
        stream = action == STREAM
        state.streamed = stream
        if action == COUNT:
            return await _count(request, state, route, body, model, name)
        if action in EMBEDDINGS:
            route = _native(state, route, name, "embeddings", ai_studio=True)
        call = Call(action, body, data, model, name, stream, gemini_action=action)
        return await handlers.charged(request, state, route, call)
    finally:
        release(lifecycle, state)


async def _count(
    request: web.Request, state: RequestState, route: Route, body: bytes, model: str, name: str
) -> web.StreamResponse:
    """`countTokens`: a provider's own count when one speaks Gemini's API for the model
    (never limited nor charged: counting spends no tokens), else the proxy's estimate."""
    native = _native(state, route, name, "countTokens", required=False)
    data = parse_object(body)
    if native.targets:
        call = Call(COUNT, body, data, model, name, False, gemini_action=COUNT)
        return await forward(request, native, call)
    try:
        pivot = gemini_client.count_tokens_request(data, model=name)
    except TranslationError as exc:
        raise errors.bad_param(exc.param, exc.message) from None
    (count,) = await tokens.count(request_text(pivot))
    answer = gemini_client.count_tokens_answer({"input_tokens": count})
    return web.Response(
        body=orjson.dumps(answer), content_type=JSON, headers={ESTIMATE_HEADER: "true"}
    )


def _native(
    state: RequestState,
    route: Route,
    name: str,
    what: str,
    *,
    ai_studio: bool = False,
    required: bool = True,
) -> Route:
    """The route's providers that speak Gemini's API for the model (`ai_studio`: AI Studio's
    only); none is a 400 when `required`."""
    upstreams = state.snapshot.upstreams
    native = []
    for target in route.targets:
        upstream = upstreams[target.provider.name]
        place = upstream.cloud
        if place is None or place.protocol(target.model or name) != cloud.GEMINI:
            continue
        if ai_studio and place.kind != "gemini":
            continue
        native.append(target)
    if required and not native:
        raise errors.ProxyError(
            400,
            f"The model `{name}` has no provider answering {what} in Gemini's API "
            f"({'Google AI Studio' if ai_studio else 'Google AI Studio or Vertex AI'}).",
            code="unsupported_endpoint",
            param="model",
        )
    if len(native) == len(route.targets):
        return route
    return Route(native, route.label)


def gemini_asked(request: web.Request) -> bool:
    """A listing in Gemini's format: the caller gave its key as Google's clients do."""
    return "x-goog-api-key" in request.headers or "key" in request.rel_url.query


def _allowed(state: RequestState) -> list[str]:
    key = state.api_key
    names = state.snapshot.routes.model_names
    return [n for n in names if key is None or key.may_use(n)]


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1beta/models` (and `/v1/models` with a Gemini key): the models the key may use,
    in Gemini's `ListModelsResponse`."""
    query = request.rel_url.query
    size = query.get("pageSize")
    try:
        body = gemini_client.gemini_models(
            _allowed(request[STATE]),
            page_size=int(size) if size and size.isdigit() else None,
            page_token=query.get("pageToken") or None,
        )
    except TranslationError as exc:
        raise errors.bad_param(exc.param, exc.message) from None
    return web.Response(body=orjson.dumps(body), content_type=JSON)


async def get_model(request: web.Request) -> web.Response:
    """`GET /v1beta/models/{model}`: one model, found exactly when a call would be routed."""
    state = request[STATE]
    requested = request.match_info["model"].removeprefix("models/")
    routes = state.snapshot.routes
    name = routes.normalize(requested)
    key = state.api_key
    if (
        len(requested) > MAX_MODEL_CHARS
        or (key is not None and not key.may_use(name))
        or routes.resolve(name) is None
    ):
        raise errors.ProxyError(
            404, f"models/{requested} is not found for the API key.", code="model_not_found"
        )
    return web.Response(body=orjson.dumps(gemini_client.gemini_model(name)), content_type=JSON)


async def any_list_models(request: web.Request) -> web.Response:
    """`GET /v1/models`: Gemini's listing for a caller keyed as Google's clients are, else
    OpenAI's (one path, both clients)."""
    if gemini_asked(request):
        return await list_models(request)
    return await handlers.list_models(request)


async def any_get_model(request: web.Request) -> web.Response:
    """`GET /v1/models/{model}`: as `any_list_models`, for one model."""
    if gemini_asked(request):
        return await get_model(request)
    return await handlers.retrieve_model(request)
