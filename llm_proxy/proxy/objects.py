"""Calls that name no model: files, batches, uploads, vector stores, conversations, and a
stored response (`GET /v1/responses/{id}`). They go to the provider that holds the object
(`llm_proxy.proxy.owners`); a call about no object in particular (`files.list`,
`files.create`) goes to `default_provider` (or the only provider). A batch goes where its
input file is; a Responses follow-up (`previous_response_id`, `conversation`) where that
response or conversation is.

Objects belong to the master key that created them. A key sees its own objects only: an id
another key created is a 404 with the same body as an id nobody created, a list shows only
the caller's objects, and an object named in a body (a batch's input file, a vector store's
files, a follow-up's response) must be the caller's too. A key marked `shared_objects` (an
account-wide key) sees every object, and without authentication there is one tenant.

The upstream path is rebuilt from the matched collection and the path's segments, each
decoded, checked and percent-encoded as one segment: nothing a client sends can resolve to
another path of the provider (`/v1/files/x/../../chat/completions` is a 400).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote, unquote

import orjson
import structlog
from aiohttp import web

from llm_proxy import errors
from llm_proxy.config.model import Provider, price_for
from llm_proxy.keys import LIFECYCLE, LIMITER, OWNERS, STATE
from llm_proxy.middlewares.observe import Handler
from llm_proxy.proxy.batch_files import batch_models
from llm_proxy.proxy.call import Call
from llm_proxy.proxy.forward import forward
from llm_proxy.proxy.jsonbody import parse_object
from llm_proxy.proxy.keyring import KeyEntry, model_not_allowed
from llm_proxy.proxy.owners import Owner, Owners
from llm_proxy.proxy.request_body import read_body, release
from llm_proxy.proxy.routing import Route, Target
from llm_proxy.proxy.snapshot import Snapshot
from llm_proxy.proxy.state import RequestState
from llm_proxy.proxy.uploads import Upload, boundary_of, spool

log = structlog.get_logger()

# Collections whose POST creates an object the proxy must remember, by kind.
KINDS: Final = {
    "files": "file",
    "batches": "batch",
    "vector_stores": "vector_store",
    "conversations": "conversation",
    "responses": "response",
    "uploads": "upload",
}
# Collections a key may list (`GET /v1/files`): the answer is filtered to the key's own
# objects. The upstream is asked for its largest page (this many), so that a page holds the
# caller's objects among everyone's; the client's `limit` applies after filtering. Other
# collections have no list call at OpenAI: a key that is not shared may not list them.
LISTS: Final = {"files": 10_000, "batches": 100, "vector_stores": 100}
_DEFAULT_LIMIT: Final = {"files": 10_000, "batches": 20, "vector_stores": 20}
_MAX_ID_CHARS: Final = 200
_DECODINGS: Final = (
    4  # a segment is checked as decoded once, twice, ... (an upstream may decode again)
)
_FILE_FIELDS: Final = ("input_file_id", "file_id")
_TERMINAL: Final = frozenset(("completed", "failed", "expired", "cancelled"))
_UNSAFE_QUERY: Final = frozenset(chr(c) for c in (*range(0x21), 0x7F))
# Every visible ASCII character stays as the client sent it; others are percent-encoded.
_QUERY_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F))


def object_segments(request: web.Request) -> list[str]:
    """The path's segments after the collection (the id, then the rest), each decoded and
    checked: an empty or dot segment (`.`, `..`, in any encoding, decoded any number of
    times), one holding a slash, a backslash or a control character is a 400."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    skip = 3 if canonical.startswith("/v1/") else 2  # "", ["v1",] collection
    # rel_url keeps `%2F` encoded: a segment is what the router matched as one.
    raw = request.rel_url.raw_path.split("/")[skip:]
    return [_segment(s) for s in raw]


def _segment(raw: str) -> str:
    value = unquote(raw, errors="surrogateescape")
    level = value
    for _ in range(_DECODINGS):
        if level in ("", ".", "..") or "/" in level or "\\" in level or not level.isprintable():
            raise errors.ProxyError(
                400,
                f"Invalid path segment {raw[:60]!r}: an object path holds ids and names "
                "only (no empty or dot segments, slashes, backslashes or control characters).",
                code="invalid_path",
            )
        decoded = unquote(level, errors="surrogateescape")
        if decoded == level:
            break
        level = decoded
    return value


def upstream_path(collection: str, segments: list[str]) -> str:
    """The path the provider gets after its `/v1`: the collection, then each segment
    percent-encoded as one segment."""
    return (
        "/"
        + collection
        + "".join("/" + quote(s, safe="", errors="surrogateescape") for s in segments)
    )


def client_query(request: web.Request) -> str:
    """The client's query string as it was sent (encoded; `+` stays `+`); a 400 for a space
    or control character, which would break the upstream's request line."""
    raw = request.rel_url.raw_query_string
    if not raw:
        return ""
    if not _UNSAFE_QUERY.isdisjoint(raw):
        raise errors.ProxyError(
            400,
            "The query string holds a space or a control character: percent-encode it.",
            code="invalid_query",
        )
    return raw if raw.isascii() else quote(raw, safe=_QUERY_SAFE, errors="surrogateescape")


def visible(owner: Owner | None, key: KeyEntry | None) -> bool:
    """Whether `key` may use an object `owner` describes (None: unknown to the proxy)."""
    if key is None or key.shared_objects:
        return True  # one tenant (no authentication), or an account-wide key
    return owner is not None and owner.key == key.name


def not_found(object_id: str, param: str = "id") -> errors.ProxyError:
    """The one answer for an id the key may not use, whoever created it (or nobody)."""
    return errors.ProxyError(
        404, f"No such object: {object_id[:_MAX_ID_CHARS]!r}.", code="object_not_found", param=param
    )


def object_handler(collection: str) -> Handler:
    """`/v1/<collection>` and `/v1/<collection>/{id}/...`, every method."""
    kind = KINDS[collection]

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request[STATE]
        snapshot = state.snapshot
        key = state.api_key
        isolated = key is not None and not key.shared_objects
        segments = object_segments(request)
        query = client_query(request)
        owners = request.app[OWNERS]
        lifecycle = request.app[LIFECYCLE]
        method = request.method
        upload = None
        try:
            body: bytes | Upload = b""
            if boundary_of(request.headers.get("Content-Type", "")) is not None:
                body = upload = await spool(
                    request, snapshot.max_body_bytes, snapshot.config.body_timeout_secs, b""
                )
            elif request.body_exists:
                body = await read_body(request, state, lifecycle)
            object_id = segments[0] if segments else None
            owner: Owner | None = None
            if object_id is not None:
                if len(object_id) > _MAX_ID_CHARS:
                    raise errors.bad_param("id", f"The id is longer than {_MAX_ID_CHARS}.")
                owner = await owners.owner(object_id)
                if not visible(owner, key):
                    raise not_found(object_id)
            if method == "POST" and isinstance(body, bytes) and body:
                named = await _named_inputs(request, body, key, collection, object_id is None)
                owner = owner or named
            models = None
            if upload is not None and collection == "files" and object_id is None:
                models = await batch_models(upload, boundary_of(request.headers["Content-Type"]))
            listing = object_id is None and method == "GET"
            limit = 0
            if listing and isolated:
                if collection not in LISTS:
                    raise errors.ProxyError(
                        400,
                        f"Listing {collection} needs a key with `shared_objects: true`: the "
                        "proxy cannot tell this key's objects from others'.",
                        code="list_not_available",
                    )
                query, limit = _widened(query, collection)
            provider = _provider(snapshot, owner.provider if owner else None, object_id)
            inspect = bool(limit) or collection == "batches" or segments[1:] == ["complete"]
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
                owners.forget(object_id)
            if inspect and isinstance(response, web.Response):
                await _inspect(request, response, collection, provider.name, owner, limit)
            return response
        finally:
            release(lifecycle, state)
            if upload is not None:
                upload.close()

    return handle


async def _named_inputs(
    request: web.Request, body: bytes, key: KeyEntry | None, collection: str, creates: bool
) -> Owner | None:
    """The files a JSON body names (a batch's input, a vector store's files) must be the
    caller's; a new batch or vector store goes where its first file is. A batch's lines must
    name models the key may use."""
    if not request.content_type.endswith("json"):
        return None
    try:
        data: dict[str, Any] = parse_object(body)
    except errors.ProxyError:
        return None  # the provider says what is wrong with it
    named = [(name, data.get(name)) for name in _FILE_FIELDS]
    files = data.get("file_ids")
    if isinstance(files, list):
        named.extend(("file_ids", f) for f in files)
    owners = request.app[OWNERS]
    first: Owner | None = None
    for param, file_id in named:
        if not isinstance(file_id, str):
            continue
        found = await owners.owner(file_id) if 0 < len(file_id) <= _MAX_ID_CHARS else None
        if not visible(found, key):
            raise not_found(file_id, param)
        first = first or found
    if collection == "batches" and creates and key is not None and key.allowed is not None:
        _check_batch_models(request[STATE], key, data.get("input_file_id"), first)
    return first


def _check_batch_models(
    state: RequestState, key: KeyEntry, file_id: Any, owner: Owner | None
) -> None:
    if owner is None or owner.models is None:
        raise errors.ProxyError(
            400,
            f"The API key {key.name!r} may use only some models, and the proxy does not know "
            f"which models the lines of {str(file_id)[:_MAX_ID_CHARS]!r} name: upload the "
            "input file through the proxy (`files.create` with purpose `batch`), then create "
            "the batch on it.",
            code="batch_models_unknown",
            param="input_file_id",
        )
    routes = state.snapshot.routes
    for model in sorted(owner.models):
        if not key.may_use(routes.normalize(model)):
            raise model_not_allowed(model, key.name)


def _widened(query: str, collection: str) -> tuple[str, int]:
    """The query with the upstream's largest `limit`, and the client's limit."""
    kept, limit = [], _DEFAULT_LIMIT[collection]
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        if name != "limit":
            kept.append(part)
            continue
        if not value.isdigit() or not 0 < int(value) <= LISTS[collection]:
            raise errors.bad_param(
                "limit", f"`limit` must be an integer from 1 to {LISTS[collection]}."
            )
        limit = int(value)
    kept.append(f"limit={LISTS[collection]}")
    return "&".join(kept), limit


async def _inspect(
    request: web.Request,
    response: web.Response,
    collection: str,
    provider: str,
    owner: Owner | None,
    limit: int,
) -> None:
    """What the proxy learns from an answer about objects: a list filtered to the caller's
    objects, a completed upload's file and a batch's output files (the creating key's), a
    finished batch's usage (charged to its key, once)."""
    if not isinstance(response.body, bytes):
        return
    try:
        answer = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return
    if not isinstance(answer, dict):
        return
    owners = request.app[OWNERS]
    state = request[STATE]
    key = state.api_key
    creator = owner.key if owner is not None else (key.name if key is not None else None)
    items = answer.get("data") if answer.get("object") == "list" else [answer]
    if not isinstance(items, list):
        return
    if limit:
        items = await _filtered(owners, answer, items, key, limit)
        response.body = orjson.dumps(answer)
    if collection == "uploads":
        made = answer.get("file")
        if isinstance(made, dict) and isinstance(made.get("id"), str):
            owners.remember(made["id"], provider, "file", creator)
    if collection != "batches":
        return
    for batch in items:
        if isinstance(batch, dict) and isinstance(batch.get("id"), str):
            found = owner if owner is not None else owners.known(batch["id"])
            if found is not None:
                await _batch_seen(request, state, owners, batch, found)


async def _filtered(
    owners: Owners, answer: dict[str, Any], items: list[Any], key: KeyEntry | None, limit: int
) -> list[Any]:
    ids = [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]
    found = await owners.owners(ids)
    own = [
        i
        for i in items
        if isinstance(i, dict) and isinstance(i.get("id"), str) and visible(found.get(i["id"]), key)
    ]
    more = answer.get("has_more") is True or len(own) > limit
    own = own[:limit]
    answer["data"] = own
    answer["has_more"] = more
    answer["first_id"] = own[0]["id"] if own else None
    # With none of the caller's objects on this page, the upstream's cursor lets it go on.
    answer["last_id"] = own[-1]["id"] if own else answer.get("last_id") if more else None
    return own


async def _batch_seen(
    request: web.Request, state: RequestState, owners: Owners, batch: dict[str, Any], owner: Owner
) -> None:
    """A batch's output files belong to its key; its usage, once known, is charged to it."""
    for name in ("output_file_id", "error_file_id"):
        file_id = batch.get(name)
        if not isinstance(file_id, str) or not 0 < len(file_id) <= _MAX_ID_CHARS:
            continue
        if owners.known(file_id) is None:
            owners.remember(file_id, owner.provider, "file", owner.key)
    usage = batch.get("usage")
    if batch.get("status") not in _TERMINAL or not isinstance(usage, dict) or owner.key is None:
        return
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return
    config = state.snapshot.config
    input_file = batch.get("input_file_id")
    file_owner = owners.known(input_file) if isinstance(input_file, str) else None
    models = file_owner.models if file_owner is not None else None
    model = next(iter(models)) if models and len(models) == 1 else batch.get("model")
    price = None
    if isinstance(model, str):
        for p in config.providers:
            if p.name == owner.provider and p.pricing:
                price = price_for(p.pricing, model)
        if price is None and config.pricing:
            price = price_for(config.pricing, model)
    if price is None or not await owners.charge_once(batch["id"]):
        return
    cost = price.cost(prompt, completion)
    request.app[LIMITER].charge_cost(owner.key, cost)
    key = state.api_key
    if key is not None and key.name == owner.key:
        # On this request's log line too: spend is restored from the log after a restart.
        state.prompt_tokens, state.completion_tokens, state.cost_usd = prompt, completion, cost
    log.info("batch_charged", key=owner.key, model=model, cost_usd=round(cost, 6))


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
    it, whatever the weights say (another account has never seen it); the response, the
    conversation and the vector stores it searches must be the caller's."""
    owners = request.app[OWNERS]
    key = request[STATE].api_key
    owner = None
    for name in ("previous_response_id", "conversation"):
        value = data.get(name)
        if isinstance(value, dict):
            value = value.get("id")
        if not isinstance(value, str):
            continue
        found = await owners.owner(value) if 0 < len(value) <= _MAX_ID_CHARS else None
        if not visible(found, key):
            raise not_found(value, name)
        owner = owner or found
    if key is not None and not key.shared_objects:
        await _check_searched_stores(owners, key, data.get("tools"))
    if owner is None:
        return route
    for target in route.targets:
        if target.provider.name == owner.provider:
            return Route([target], route.label)
    for p in request[STATE].snapshot.config.providers:
        if p.name == owner.provider:  # the owner does not list the model: it answers anyway
            return Route([Target(p, None)], route.label)
    return route


async def _check_searched_stores(owners: Owners, key: KeyEntry, tools: Any) -> None:
    """`file_search` over another key's vector store would read its files."""
    if not isinstance(tools, list):
        return
    for tool in tools:
        stores = tool.get("vector_store_ids") if isinstance(tool, dict) else None
        for store in stores if isinstance(stores, list) else ():
            if not isinstance(store, str):
                continue
            found = await owners.owner(store) if 0 < len(store) <= _MAX_ID_CHARS else None
            if not visible(found, key):
                raise not_found(store, "tools")
