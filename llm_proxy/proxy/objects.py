"""Calls that name no model: files, batches, vector stores, conversations, and a stored
response (`GET /v1/responses/{id}`). They go to the provider that holds the object
(`llm_proxy.proxy.owners`); a call about no object in particular (`files.list`,
`files.create`), or about one the proxy never saw created, goes to `default_provider` (or the
only provider). A batch goes where its input file is; a Responses follow-up
(`previous_response_id`, `conversation`) where that response or conversation is.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from llm_proxy import errors
from llm_proxy.config.model import Provider
from llm_proxy.keys import LIFECYCLE, OWNERS, STATE
from llm_proxy.middlewares.observe import Handler
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.forward import forward
from llm_proxy.proxy.jsonbody import parse_object
from llm_proxy.proxy.request_body import read_body, release
from llm_proxy.proxy.routing import Route, Target
from llm_proxy.proxy.snapshot import Snapshot
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
_MAX_ID_CHARS: Final = 200


def upstream_path(request: web.Request) -> str:
    """The path the provider gets, after its `/v1` (the client's, with or without `/v1`)."""
    path = request.raw_path.partition("?")[0]
    return path[3:] if path.startswith("/v1/") else path


def object_handler(collection: str) -> Handler:
    """`/v1/<collection>` and `/v1/<collection>/{id}/...`, every method."""
    kind = KINDS[collection]

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request[STATE]
        snapshot = state.snapshot
        lifecycle = request.app[LIFECYCLE]
        upload = None
        try:
            body: bytes | Upload = b""
            if boundary_of(request.headers.get("Content-Type", "")) is not None:
                body = upload = await spool(
                    request, snapshot.max_body_bytes, snapshot.config.body_timeout_secs, b""
                )
            elif request.body_exists:
                body = await read_body(request, state, lifecycle)
            object_id = request.match_info.get("id")
            owner: str | None = None
            if object_id is not None:
                if len(object_id) > _MAX_ID_CHARS:
                    raise errors.bad_param("id", f"The id is longer than {_MAX_ID_CHARS}.")
                owner = await request.app[OWNERS].owner(object_id)
            elif request.method == "POST" and isinstance(body, bytes) and body:
                owner = await _owner_of_inputs(request, body)
            provider = _provider(snapshot, owner, object_id)
            creates = kind if request.method == "POST" and object_id is None else None
            call = Call(
                upstream_path(request),
                body,
                {},
                "",
                "",
                False,
                method=request.method,
                query=request.query_string,
                creates=creates,
            )
            return await forward(request, Route([Target(provider, None)], "other"), call)
        finally:
            release(lifecycle, state)
            if upload is not None:
                upload.close()

    return handle


async def _owner_of_inputs(request: web.Request, body: bytes) -> str | None:
    """A new batch goes where its input file is; a vector store where its files are."""
    if not request.content_type.endswith("json"):
        return None
    try:
        data: dict[str, Any] = parse_object(body)
    except errors.ProxyError:
        return None  # the provider says what is wrong with it
    file_id = data.get("input_file_id")
    if not isinstance(file_id, str):
        files = data.get("file_ids")
        file_id = files[0] if isinstance(files, list) and files else None
    if isinstance(file_id, str) and 0 < len(file_id) <= _MAX_ID_CHARS:
        return await request.app[OWNERS].owner(file_id)
    return None


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
    it, whatever the weights say (another account has never seen it)."""
    owners = request.app[OWNERS]
    owner = None
    for name in ("previous_response_id", "conversation"):
        value = data.get(name)
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, str) and 0 < len(value) <= _MAX_ID_CHARS:
            owner = await owners.owner(value)
            if owner is not None:
                break
    if owner is None:
        return route
    for target in route.targets:
        if target.provider.name == owner:
            return Route([target], route.label)
    for p in request[STATE].snapshot.config.providers:
        if p.name == owner:  # the owner does not list the model: it answers anyway
            return Route([Target(p, None)], route.label)
    return route
