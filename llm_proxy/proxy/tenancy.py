"""Objects belong to the master key that created them (`llm_proxy.proxy.owners` remembers
which). A key sees its own objects only: an id another key created is a 404 with the same
body as an id nobody created, a list shows only the caller's objects, and an object a body
names (a batch's input file, a vector store's files, a file in a message, a response to
continue) must be the caller's too. A key marked `shared_objects` (an account-wide key) sees
every object; the keys of a team with `shared_objects` see each other's (membership as the
current config says: a key moved to another team takes its objects with it), never another
team's; without authentication there is one tenant.

Batches: a key limited to some models may run a batch only on a file the proxy saw uploaded
(so it knows the models its lines name: `llm_proxy.proxy.batch_files`), and a batch's usage,
once a finished batch is seen, is charged to its key's budget, once.

Tested in tests/proxy/test_objects.py (two tenants for every collection) and
tests/proxy/test_owners.py.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
import structlog
from aiohttp import web

from llm_proxy import errors
from llm_proxy.config.model import price_for
from llm_proxy.keys import LIMITER, OWNERS, STATE
from llm_proxy.proxy.keyring import KeyEntry, model_not_allowed
from llm_proxy.proxy.owners import Owner, Owners
from llm_proxy.proxy.state import RequestState

log = structlog.get_logger()

MAX_ID_CHARS: Final = 200
# Collections a key may list (`GET /v1/files`): the answer is filtered to the key's own
# objects. The upstream is asked for its largest page (this many), so that a page holds the
# caller's objects among everyone's; the client's `limit` applies after filtering. Other
# collections have no list call at OpenAI: a key that is not shared may not list them.
LISTS: Final = {"files": 10_000, "batches": 100, "vector_stores": 100}
_DEFAULT_LIMIT: Final = {"files": 10_000, "batches": 20, "vector_stores": 20}
# Body fields naming stored objects, wherever they are (a batch's input, a vector store's
# files, a message's file part, file_search's stores, a follow-up's response).
_ID_FIELDS: Final = frozenset(("file_id", "input_file_id", "previous_response_id"))
_ID_LISTS: Final = frozenset(("file_ids", "vector_store_ids"))
# A body naming none of them is not walked (one C-speed search: chat bodies rarely name any).
# A field name can be spelt with escapes (`"file\u005fid"`); JSON encoders escape only
# control and non-ASCII characters, so an escaped printable ASCII character is walked too.
NAMES_OBJECTS: Final = re.compile(
    rb'"(?:file_ids?|input_file_id|vector_store_ids)"|\\u00[2-7]', re.IGNORECASE
)
_MAX_DEPTH: Final = 32
_TERMINAL: Final = frozenset(("completed", "failed", "expired", "cancelled"))


def visible(owner: Owner | None, key: KeyEntry | None) -> bool:
    """Whether `key` may use an object `owner` describes (None: unknown to the proxy): its
    own, or (its team has `shared_objects`) one a key of its team created."""
    if key is None or key.shared_objects:
        return True  # one tenant (no authentication), or an account-wide key
    if owner is None:
        return False
    if owner.key == key.name:
        return True
    team = key.team
    return team is not None and team.shared_objects and owner.key in team.members


def isolated(key: KeyEntry | None) -> bool:
    """Whether `key` sees only its own objects."""
    return key is not None and not key.shared_objects


def not_found(object_id: str, param: str = "id") -> errors.ProxyError:
    """The one answer for an id the key may not use, whoever created it (or nobody)."""
    return errors.ProxyError(
        404, f"No such object: {object_id[:MAX_ID_CHARS]!r}.", code="object_not_found", param=param
    )


def named_ids(data: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(field, id) for every stored object `data` names, at any depth."""
    found: list[tuple[str, str]] = []
    if depth > _MAX_DEPTH:
        return found
    if isinstance(data, dict):
        for name, value in data.items():
            if name in _ID_FIELDS and isinstance(value, str):
                found.append((name, value))
            elif name in _ID_LISTS and isinstance(value, list):
                found.extend((name, v) for v in value if isinstance(v, str))
            elif isinstance(value, dict | list):
                found.extend(named_ids(value, depth + 1))
    elif isinstance(data, list):
        for value in data:
            if isinstance(value, dict | list):
                found.extend(named_ids(value, depth + 1))
    return found


async def check_named(request: web.Request, data: Any) -> Owner | None:
    """Every object `data` names must be the caller's (else a 404 naming it); the owner of
    the first one (a new batch or vector store goes where its files are)."""
    owners, key = request.app[OWNERS], request[STATE].api_key
    first = None
    for param, object_id in named_ids(data):
        found = await owners.owner(object_id) if 0 < len(object_id) <= MAX_ID_CHARS else None
        if not visible(found, key):
            raise not_found(object_id, param)
        first = first or found
    return first


def check_batch_models(
    state: RequestState, key: KeyEntry, file_id: Any, owner: Owner | None
) -> None:
    """A key limited to some models runs a batch only on a file whose lines name them."""
    if owner is None or owner.models is None:
        raise errors.ProxyError(
            400,
            f"The API key {key.name!r} may use only some models, and the proxy does not know "
            f"which models the lines of {str(file_id)[:MAX_ID_CHARS]!r} name: upload the "
            "input file through the proxy (`files.create` with purpose `batch`), then create "
            "the batch on it.",
            code="batch_models_unknown",
            param="input_file_id",
        )
    routes = state.snapshot.routes
    for model in sorted(owner.models):
        if not key.may_use(routes.normalize(model)):
            raise model_not_allowed(model, key.name)


def widened(query: str, collection: str) -> tuple[str, int]:
    """A list's query with the upstream's largest `limit`, and the client's limit."""
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


async def inspect_answer(
    request: web.Request,
    response: web.Response,
    collection: str,
    provider: str,
    owner: Owner | None,
    limit: int,
) -> None:
    """What the proxy learns from a successful answer about objects: a list filtered to the
    caller's objects (`limit`: the client's; 0: not filtered), a completed upload's file and
    a batch's output files (the creating key's), a finished batch's usage (charged to its
    key, once)."""
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
        if not isinstance(file_id, str) or not 0 < len(file_id) <= MAX_ID_CHARS:
            continue
        if owners.known(file_id) is None:
            owners.remember(file_id, owner.provider, "file", owner.key)
    usage = batch.get("usage")
    if batch.get("status") not in _TERMINAL or not isinstance(usage, dict) or owner.key is None:
        return
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return
    input_file = batch.get("input_file_id")
    file_owner = owners.known(input_file) if isinstance(input_file, str) else None
    models = file_owner.models if file_owner is not None else None
    # The client's name for the model (what prices are configured by) when the file names
    # one; else the batch's own `model`.
    model = next(iter(models)) if models and len(models) == 1 else batch.get("model")
    config = state.snapshot.config
    price = None
    if isinstance(model, str):
        for p in config.providers:
            if p.name == owner.provider and p.pricing:
                price = price_for(p.pricing, model)
        if price is None and config.pricing:
            price = price_for(config.pricing, model)
    if price is None or not await owners.charge_once(batch["id"], owner):
        return
    cost = price.cost(prompt, completion)
    limiter = request.app[LIMITER]
    limiter.charge_cost(owner.key, cost)
    for team in state.snapshot.keys.teams.values():  # and its team's, as every request's
        if owner.key in team.members:
            limiter.charge_cost(team.name, cost)
    key = state.api_key
    if key is not None and key.name == owner.key:
        # On this request's log line too: spend is restored from the log after a restart.
        state.prompt_tokens, state.completion_tokens, state.cost_usd = prompt, completion, cost
    log.info("batch_charged", key=owner.key, model=model, cost_usd=round(cost, 6))
