"""Calls that name no model: files, batches, uploads, vector stores, conversations, and a
stored response (`GET /v1/responses/{id}`). They go to the provider that holds the object
(`llm_proxy.proxy.owners`); a call about no object in particular (`files.list`,
`files.create`) goes to `default_provider` (or the only provider). A batch goes where its
input file is; a Responses follow-up (`previous_response_id`, `conversation`) where that
response or conversation is.

The upstream path is rebuilt from the matched route (`llm_proxy.proxy.object_paths`), and
every object belongs to the key that created it (`llm_proxy.proxy.tenancy`).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy import errors
from llm_proxy.config.model import Provider
from llm_proxy.keys import LIFECYCLE, OWNERS, STATE
from llm_proxy.proxy.batch_files import batch_models
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.forward import forward
from llm_proxy.proxy.object_paths import client_query, object_segments, upstream_path
from llm_proxy.proxy.owners import Owner
from llm_proxy.proxy.request_body import read_body, release
from llm_proxy.proxy.routing import Route, Target
from llm_proxy.proxy.snapshot import Snapshot
from llm_proxy.proxy.tenancy import (
    LISTS,
    MAX_ID_CHARS,
    check_batch_models,
    check_named,
    inspect_answer,
    isolated,
    not_found,
    visible,
    widened,
)
from llm_proxy.proxy.uploads import Upload, boundary_of, spool

# Collections whose POST creates an object the proxy must remember, by kind.
KINDS: Final = {
    "files": "file",
    "batches": "batch",
    "vector_stores": "vector_store",
    "conversations": "conversation",
    "responses": "response",
    "uploads": "upload",
}


def object_handler(collection: str) -> Handler:
    """`/v1/<collection>` and `/v1/<collection>/{id}/...`, every method."""
    kind = KINDS[collection]

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request[STATE]
        segments = object_segments(request)
        query = client_query(request)
        lifecycle = request.app[LIFECYCLE]
        upload = None
        try:
            body: bytes | Upload = b""
            if boundary_of(request.headers.get("Content-Type", "")) is not None:
                snapshot = state.snapshot
                body = upload = await spool(
                    request, snapshot.max_body_bytes, snapshot.config.body_timeout_secs, b""
                )
            elif request.body_exists:
                body = await read_body(request, state, lifecycle)
            return await _object_call(request, collection, kind, segments, query, body, upload)
        finally:
            release(lifecycle, state)
            if upload is not None:
                upload.close()

    return handle


async def _object_call(
    request: web.Request,
    collection: str,
    kind: str,
    segments: list[str],
    query: str,
    body: bytes | Upload,
    upload: Upload | None,
) -> web.StreamResponse:
    """The call, once its body is read: to the provider holding the object (or the default
    one), remembering what it creates and forgets."""
    key = request[STATE].api_key
    method = request.method
    object_id = segments[0] if segments else None
    owner = await _owner(request, object_id)
    if method == "POST" and isinstance(body, bytes) and body:
        named = await _named_inputs(request, body, collection, object_id is None)
        owner = owner or named
    models = None
    if upload is not None and collection == "files" and object_id is None and key:
        models = await batch_models(upload, boundary_of(request.headers["Content-Type"]))
    limit = 0
    if object_id is None and method == "GET" and isolated(key):
        query, limit = _widened_list(query, collection)
    provider = _provider(request[STATE].snapshot, owner.provider if owner else None, object_id)
    inspect = (
        bool(limit)
        or collection == "batches"
        or (collection == "uploads" and segments[1:] == ["complete"])
    )
    call = Call(
        upstream_path(collection, segments),
        body,
        {},
        "",
        "",
        False,
        method=method,
        query=query,
        creates=kind if method == "POST" and object_id is None else None,
        models=models,
        inspect=inspect,
    )
    response = await forward(request, Route([Target(provider, None)], "other"), call)
    if not 200 <= response.status < 300:
        return response
    if method == "DELETE" and object_id is not None and len(segments) == 1:
        request.app[OWNERS].forget(object_id)
    if inspect and isinstance(response, web.Response):
        await inspect_answer(request, response, collection, provider.name, owner, limit)
    return response


async def _owner(request: web.Request, object_id: str | None) -> Owner | None:
    """Who holds the object the path names (None: no object, or one the proxy never saw);
    a 404 when it is another key's."""
    if object_id is None:
        return None
    if len(object_id) > MAX_ID_CHARS:
        raise errors.bad_param("id", f"The id is longer than {MAX_ID_CHARS}.")
    owner = await request.app[OWNERS].owner(object_id)
    if not visible(owner, request[STATE].api_key):
        raise not_found(object_id)
    return owner


def _widened_list(query: str, collection: str) -> tuple[str, int]:
    """A list for a key that sees only its own objects: asked upstream at the largest page
    (then filtered), with the client's limit."""
    if collection not in LISTS:
        raise errors.ProxyError(
            400,
            f"Listing {collection} needs a key with `shared_objects: true`: the "
            "proxy cannot tell this key's objects from others'.",
            code="list_not_available",
        )
    return widened(query, collection)


async def _named_inputs(
    request: web.Request, body: bytes, collection: str, creates: bool
) -> Owner | None:
    """The objects a JSON body names must be the caller's; a new batch or vector store goes
    where its first file is, and a new batch's lines must name models the key may use. (Read
    whatever the Content-Type says: a provider may read it as JSON anyway.)"""
    state = request[STATE]
    key = state.api_key
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        if isolated(key):  # what the proxy cannot read, it cannot check
            raise errors.invalid_json("the body must be JSON the proxy can read") from None
        return None  # the provider says what is wrong with it
    first = await check_named(request, data)
    if collection == "batches" and creates and key is not None and key.allowed is not None:
        check_batch_models(
            state, key, data.get("input_file_id") if isinstance(data, dict) else None, first
        )
    return first


def default_provider(snapshot: Snapshot) -> Provider | None:
    config = snapshot.config
    if config.default_provider is not None:
        for p in config.providers:
            if p.name == config.default_provider:
                return p
        return None
    return config.providers[0] if len(config.providers) == 1 else None


def _provider(snapshot: Snapshot, owner: str | None, object_id: str | None) -> Provider:
    if owner is not None:
        for p in snapshot.config.providers:
            if p.name == owner:
                return p
    provider = default_provider(snapshot)
    if provider is not None:
        return provider
    config = snapshot.config
    if config.default_provider is not None:
        raise errors.ProxyError(
            503,
            f"default_provider {config.default_provider!r} is not served (disabled or removed).",
            type=errors.API_ERROR,
            code="default_provider_unavailable",
        )
    what = f"`{object_id}`" if object_id else "this call"
    raise errors.ProxyError(
        404 if object_id else 400,
        f"No provider is known to hold {what}, and with {len(config.providers)} providers "
        "the proxy cannot guess: set `default_provider` in the config.",
        code="object_owner_unknown",
    )


async def affinity(request: web.Request, data: dict[str, Any], route: Route) -> Route:
    """A Responses call continuing a response or conversation goes to the provider that holds
    it, whatever the weights say (another account has never seen it); both must be the
    caller's (the rest of what the body names is checked by `tenancy.check_named`)."""
    owners = request.app[OWNERS]
    key = request[STATE].api_key
    owner = None
    for name in ("previous_response_id", "conversation"):
        value = data.get(name)
        if isinstance(value, dict):
            value = value.get("id")
        if not isinstance(value, str):
            continue
        found = await owners.owner(value) if 0 < len(value) <= MAX_ID_CHARS else None
        if not visible(found, key):
            raise not_found(value, name)
        owner = owner or found
    if owner is None:
        return route
    for target in route.targets:
        if target.provider.name == owner.provider:
            return Route([target], route.label)
    for p in request[STATE].snapshot.config.providers:
        if p.name == owner.provider:  # the owner does not list the model: it answers anyway
            return Route([Target(p, None)], route.label)
    return route
