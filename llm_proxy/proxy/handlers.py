"""Thin request handlers. Policy (routing) decides, `forward` and `relay` move the bytes."""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy import errors
from llm_proxy.keys import CACHE, CAPTURE, LIFECYCLE, METRICS, STATE
from llm_proxy.proxy.accounting import capture, reserve, settle
from llm_proxy.proxy.cache import Miss
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.extensions import (
    EXTENSION,
    FALLBACKS_HEADER,
    own_fallbacks,
    take_extensions,
)
from llm_proxy.proxy.forward import forward
from llm_proxy.proxy.jsonbody import has_duplicate_model, parse_object, with_model
from llm_proxy.proxy.keyring import model_not_allowed
from llm_proxy.proxy.objects import affinity
from llm_proxy.proxy.request_body import read_body, release
from llm_proxy.proxy.routing import Route
from llm_proxy.proxy.rules import Rule
from llm_proxy.proxy.state import RequestState
from llm_proxy.proxy.tenancy import NAMES_OBJECTS, check_named
from llm_proxy.proxy.uploads import Upload, boundary_of, spool

JSON: Final = "application/json"
MESSAGES: Final = "/messages"  # Anthropic's Messages API


# Bodies must be JSON; raw bytes (what many HTTP libraries send by default) are read as JSON too.
_ACCEPTED_TYPES: Final = frozenset({"application/json", "application/octet-stream"})


def check_content_type(value: str | None) -> None:
    if value is None:
        return
    media = value.partition(";")[0].strip().lower()
    if media in _ACCEPTED_TYPES or media.endswith("+json"):
        return
    raise errors.ProxyError(
        415,
        f"Unsupported Content-Type {media!r}: send the request body as JSON with "
        "`Content-Type: application/json`.",
        code="unsupported_media_type",
    )


def proxy_handler(endpoint: str) -> Handler:
    """A handler forwarding to `endpoint` ("/chat/completions", ...) of the chosen provider.
    ("/messages": Anthropic's Messages API, translated for a provider that speaks OpenAI's.)
    (One coroutine for the whole request: every open stream holds each frame of its stack.)"""
    anthropic = endpoint == MESSAGES

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request[STATE]
        check_content_type(request.headers.get("Content-Type"))
        lifecycle = request.app[LIFECYCLE]
        try:
            body = await read_body(request, state, lifecycle)
            data = parse_object(body)
            refuse_duplicate_model(body)
            deployment = request.match_info.get("deployment")
            if deployment is not None:
                # An Azure OpenAI route: the deployment in the path names the model, as on
                # Azure, whatever the body says (`AzureOpenAI(azure_deployment=...)` sends its
                # call's `model`, LangChain's AzureChatOpenAI null): it is put in its place.
                body, data = with_model(body, data, deployment)
            model = model_of(data)
            stream = data.get("stream")
            if stream is not None and not isinstance(stream, bool):
                raise errors.bad_param("stream", "`stream` must be a boolean.")
            state.model = model

            name = state.snapshot.routes.normalize(model)
            asked = data  # (the rules read the tags the body carries)
            rules = state.snapshot.rules
            tags = rules is not None and rules.wants_tags
            if EXTENSION in data or (tags and "metadata" in data):
                body, data = take_extensions(state, body, data, tags)
            route = route_for(request, state, model, name, asked)
            name = route.name
            key = state.api_key
            state.streamed = stream is True
            if key is not None and not key.shared_objects and NAMES_OBJECTS.search(body):
                await check_named(request, data)  # another key's file: a 404, as unknown
            creates = None
            if endpoint == "/responses":
                route = await affinity(request, data, route)
                creates = "response"
            call = Call(
                endpoint,
                body,
                data,
                model,
                name,
                stream is True,
                creates=creates,
                anthropic=anthropic,
            )
            return await charged(request, state, route, call)
        finally:
            release(lifecycle, state)

    return handle


async def charged(
    request: web.Request, state: RequestState, route: Route, call: Call
) -> web.StreamResponse:
    """`call` forwarded on `route`, within the key's tokens per minute and budget (a 429 when
    they are spent), its usage counted and charged after."""
    key, data = state.api_key, call.data
    app = request.app
    header = request.headers.get(FALLBACKS_HEADER)
    if header is not None or state.fallbacks is not None:
        own_fallbacks(state, header)
    cache = app[CACHE]
    miss = None
    if cache.on:  # the response cache (`cache:`): a hit is answered here
        found = cache.lookup(request, state, state.rule, call)
        if isinstance(found, Miss):
            miss = found
        elif found is not None:
            if not isinstance(found, web.Response):
                found = await found  # (Redis, a wait for an identical request, a budget)
            if isinstance(found, web.Response):
                if app[CAPTURE]:
                    capture(state, data, app[CAPTURE])
                return found
            miss = found
    answer = None
    try:
        if key is not None and key.reserves:  # tokens per minute or a budget: 429?
            await reserve(app, state, data, call.endpoint)
        answer = await forward(request, route, call)
        return answer
    finally:
        # Also when the client hung up (CancelledError): what was relayed still counts, and
        # the reservation ends (given back when nothing was relayed).
        settle(app, state, data)
        limit = app[CAPTURE]
        if limit:
            capture(state, data, limit)
        if miss is not None:
            cache.finished(app, state, miss, answer)


def upload_handler(endpoint: str) -> Handler:
    """A `multipart/form-data` call routed by its `model` field (audio transcriptions and
    translations, image edits and variations): spooled, then sent byte for byte
    (`llm_proxy.proxy.uploads`). A JSON body goes the way of `proxy_handler`."""
    as_json = proxy_handler(endpoint)

    async def handle(request: web.Request) -> web.StreamResponse:
        if boundary_of(request.headers.get("Content-Type", "")) is None:
            return await as_json(request)
        state = request[STATE]
        snapshot = state.snapshot
        upload = await spool(
            request, snapshot.max_body_bytes, snapshot.config.body_timeout_secs, b"model"
        )
        try:
            # On an Azure route the deployment names the model (the form's is replaced).
            model = request.match_info.get("deployment") or upload.model
            if not model or len(model) > MAX_MODEL_CHARS:
                raise bad_model(model)
            if not model.isprintable():  # (it may become a form field of its own)
                raise errors.bad_param("model", "The model name has a control character.")
            state.model = model
            name = snapshot.routes.normalize(model)
            route = route_for(request, state, model, name, {})
            name = route.name
            # `requested`: the model as the form names it, so the one sent replaces it.
            call = Call(endpoint, upload, {}, upload.model or "", name, False)
            if upload.model is None:  # an Azure route: the form may leave the model out
                call.form_boundary = await _first_boundary(request, upload)
            return await forward(request, route, call)
        finally:
            upload.close()

    return handle


def refuse_duplicate_model(body: bytes) -> None:
    """A body naming `model` twice at the top level is a 400: the proxy would authorize one
    name and an upstream might use the other."""
    if has_duplicate_model(body):
        raise errors.bad_param("model", "The body has more than one top-level `model`.")


def model_of(data: dict[str, Any]) -> str:
    """The body's `model`: a non-empty string of at most MAX_MODEL_CHARS (a 400 otherwise)."""
    model = data.get("model")
    if not isinstance(model, str) or not model or len(model) > MAX_MODEL_CHARS:
        raise bad_model(model)
    return model


def route_for(
    request: web.Request, state: RequestState, model: str, name: str, data: dict[str, Any]
) -> Route:
    """The route serving `model` (`name`: as the routes normalize it), if the key may use it:
    403 otherwise, 404 for a model no route serves. A routing rule that matches may narrow
    it to some providers or send it to another model (`route.name`: the model it serves)."""
    key = state.api_key
    if key is not None and not key.may_use(name):
        raise model_not_allowed(model, key.name)
    snapshot = state.snapshot
    rules = snapshot.rules
    if rules is not None:
        if key is None:
            rule = rules.first(request.headers, None, name, data)
        else:
            rule = rules.first(request.headers, key.name, name, data, key.metadata)
        if rule is not None:
            return _ruled(request, state, rule, name)
    route = snapshot.routes.resolve(name)
    if route is None:
        raise errors.model_not_found(model)
    state.model_label = route.label
    return route


def _ruled(request: web.Request, state: RequestState, rule: Rule, name: str) -> Route:
    """The route a matching rule gives: its model (which the key must be allowed too), over
    its providers only (for every fallback model as well). None of them serving the model
    is a 404 naming the rule, never a route elsewhere."""
    state.rule = rule.name
    request.app[METRICS].rule_matched(rule.name)
    key = state.api_key
    target = name
    if rule.model is not None:
        target = rule.model
        if key is not None and not key.may_use(target):
            raise model_not_allowed(target, key.name)
        state.model = target
    routes = state.snapshot.routes
    if rule.providers is None:
        route = routes.resolve(target)
    else:
        state.only = rule.providers
        route = routes.narrowed(target, rule.providers)
    if route is None:
        if rule.providers is not None and routes.resolve(target) is not None:
            providers = ", ".join(sorted(rule.providers))
            raise errors.ProxyError(
                404,
                f"Routing rule {rule.name!r} sends this request to providers {providers}, "
                f"none of which serves the model `{target}`.",
                code="model_not_found",
                param="model",
            )
        raise errors.model_not_found(target)
    state.model_label = route.label
    return route


# Model names are echoed in errors and logs and key caches: bounded (real names are < 100).
MAX_MODEL_CHARS: Final = 256


async def name_refused_model(request: web.Request) -> None:
    """For a request refused before its handler ran (a 429 at admission), the model it named,
    for its access line and request log: an Azure route's deployment, or a JSON body's
    `model`, the body read (within the usual limits) and parsed here, in this error path
    only. An admitted request's body is read once, by its handler. A body over the limits or
    not JSON leaves the model unnamed, the refusal being the answer (so does a multipart form:
    spooling it is not worth it)."""
    state = request[STATE]
    model = request.match_info.get("deployment")
    if model is None and request.method == "POST" and request.can_read_body:
        lifecycle = request.app[LIFECYCLE]
        try:
            check_content_type(request.headers.get("Content-Type"))
            data = orjson.loads(await read_body(request, state, lifecycle))
        except (errors.ProxyError, orjson.JSONDecodeError):
            return
        finally:
            release(lifecycle, state)
        model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, str) and 0 < len(model) <= MAX_MODEL_CHARS:
        state.model = model


async def _first_boundary(request: web.Request, upload: Upload) -> bytes | None:
    """The form's boundary when the body starts with it (no preamble, as every client sends
    it), so a part put before it is the form's first; None otherwise."""
    boundary = boundary_of(request.headers.get("Content-Type", ""))
    chunks = upload.chunks()
    try:
        first = await anext(chunks, b"")
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    if boundary is None or not first.startswith(b"--" + boundary + b"\r\n"):
        return None
    return boundary


def bad_model(model: object) -> errors.ProxyError:
    if model is None or model == "":
        message = "`model` is required and must be a non-empty string."
    elif isinstance(model, str):
        message = f"`model` is longer than {MAX_MODEL_CHARS} characters."
    else:
        message = f"`model` must be a string, got {type(model).__name__}."
    return errors.bad_param("model", message)


async def list_models(request: web.Request) -> web.Response:
    state = request[STATE]
    key = state.api_key
    body = key.models_body if key is not None else None
    return web.Response(body=body or state.snapshot.models_body, content_type=JSON)


async def retrieve_model(request: web.Request) -> web.Response:
    """`GET /v1/models/{model}` (the SDK's `models.retrieve`): found exactly when a chat
    naming it would be routed (an exact name, or one a wildcard, regex or `"*"` mapping
    serves) and the key may use it; 404 otherwise. (`/v1/models` lists exact names only.)"""
    state = request[STATE]
    requested = request.match_info["model"]
    routes = state.snapshot.routes
    name = routes.normalize(requested)
    key = state.api_key
    if (
        len(requested) > MAX_MODEL_CHARS
        or (key is not None and not key.may_use(name))
        or routes.resolve(name) is None
    ):
        raise errors.model_not_found(requested)
    body = {"id": name, "object": "model", "created": 0, "owned_by": "llm-proxy"}
    return web.Response(body=orjson.dumps(body), content_type=JSON)
