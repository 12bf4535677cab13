"""The app: `create_mock_app` wires the routes, the error middleware, the `x-mock-instance`
header and the removal of uploads on cleanup; `run_mock` serves it (`llm-proxy mock-upstream`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from aiohttp import web

from llm_proxy.testing.mock import bedrock, gemini, vertex
from llm_proxy.testing.mock.anthropic import count_tokens, messages
from llm_proxy.testing.mock.chat import chat, completions, embeddings, models
from llm_proxy.testing.mock.errors import render_errors
from llm_proxy.testing.mock.media import (
    image_edit,
    image_file,
    image_generate,
    image_variation,
    speech,
    transcriptions,
    translations,
)
from llm_proxy.testing.mock.objects import (
    batch_cancel,
    batch_create,
    batch_list,
    batch_retrieve,
    file_content,
    file_create,
    file_delete,
    file_list,
    file_retrieve,
    vector_store_create,
    vector_store_delete,
    vector_store_file_add,
    vector_store_file_delete,
    vector_store_file_list,
    vector_store_file_retrieve,
    vector_store_list,
    vector_store_retrieve,
    vector_store_update,
)
from llm_proxy.testing.mock.responses import (
    response_cancel,
    response_delete,
    response_input_items,
    response_retrieve,
    responses,
)
from llm_proxy.testing.mock.scoring import moderations, rerank
from llm_proxy.testing.mock.state import (
    OPTIONS,
    RECORDED,
    STATE,
    MockOptions,
    MockState,
    Recorded,
)
from llm_proxy.testing.mock.uploads import (
    conversation_create,
    conversation_delete,
    conversation_item,
    conversation_item_delete,
    conversation_items,
    conversation_items_add,
    conversation_retrieve,
    conversation_update,
    upload_cancel,
    upload_complete,
    upload_create,
    upload_part,
)

# Request headers shown by GET /mock/requests only as their last four characters: a real
# client pointed at the mock may send a real key.
_CREDENTIALS: Final = frozenset(
    {"authorization", "x-api-key", "api-key", "cookie", "x-goog-api-key", "x-amz-security-token"}
)


async def recorded_requests(request: web.Request) -> web.Response:
    """`GET /mock/requests`: what the mock received (with `--record`), oldest first, at most
    the last 1,000: method, path, query, headers (credentials cut to their end) and the body
    (JSON parsed; other bodies as their size)."""
    return web.json_response([_shown(item) for item in request.app[RECORDED]])


def _shown(item: Recorded) -> dict[str, Any]:
    headers = {
        name: ("..." + value[-4:] if name.lower() in _CREDENTIALS else value)
        for name, value in item.headers.items()
    }
    try:
        body: Any = orjson.loads(item.body) if item.body else None
    except orjson.JSONDecodeError:
        body = {"bytes": item.size or len(item.body)}
    if item.form is not None:
        body = {"form": item.form, "bytes": item.size}
    return {
        "method": item.method,
        "path": item.path,
        "query": item.query,
        "headers": headers,
        "body": body,
    }


async def _name_instance(request: web.Request, response: web.StreamResponse) -> None:
    # A signal, not a middleware: it also reaches streamed answers, which are sent before a
    # middleware would see them.
    response.headers["x-mock-instance"] = request.app[OPTIONS].name


async def _uploads(app: web.Application) -> AsyncIterator[None]:
    yield
    app[STATE].close()


# Every route the mock answers: (method, path, handler).
_ROUTES: Final = (
    ("POST", "/v1/chat/completions", chat),
    ("POST", "/v1/completions", completions),
    ("POST", "/v1/messages", messages),
    ("POST", "/v1/messages/count_tokens", count_tokens),
    ("POST", "/v1/embeddings", embeddings),
    ("GET", "/v1/models", models),
    ("POST", "/v1/responses", responses),
    ("GET", "/v1/responses/{id}", response_retrieve),
    ("DELETE", "/v1/responses/{id}", response_delete),
    ("POST", "/v1/responses/{id}/cancel", response_cancel),
    ("GET", "/v1/responses/{id}/input_items", response_input_items),
    ("POST", "/v1/images/generations", image_generate),
    ("POST", "/v1/images/edits", image_edit),
    ("POST", "/v1/images/variations", image_variation),
    ("GET", "/mock/image.png", image_file),
    ("POST", "/v1/audio/speech", speech),
    ("POST", "/v1/audio/transcriptions", transcriptions),
    ("POST", "/v1/audio/translations", translations),
    ("POST", "/v1/moderations", moderations),
    ("POST", "/v1/rerank", rerank),
    ("POST", "/v1/files", file_create),
    ("GET", "/v1/files", file_list),
    ("GET", "/v1/files/{id}", file_retrieve),
    ("DELETE", "/v1/files/{id}", file_delete),
    ("GET", "/v1/files/{id}/content", file_content),
    ("POST", "/v1/batches", batch_create),
    ("GET", "/v1/batches", batch_list),
    ("GET", "/v1/batches/{id}", batch_retrieve),
    ("POST", "/v1/batches/{id}/cancel", batch_cancel),
    ("POST", "/v1/vector_stores", vector_store_create),
    ("GET", "/v1/vector_stores", vector_store_list),
    ("GET", "/v1/vector_stores/{id}", vector_store_retrieve),
    ("POST", "/v1/vector_stores/{id}", vector_store_update),
    ("DELETE", "/v1/vector_stores/{id}", vector_store_delete),
    ("POST", "/v1/vector_stores/{id}/files", vector_store_file_add),
    ("GET", "/v1/vector_stores/{id}/files", vector_store_file_list),
    ("GET", "/v1/vector_stores/{id}/files/{file_id}", vector_store_file_retrieve),
    ("DELETE", "/v1/vector_stores/{id}/files/{file_id}", vector_store_file_delete),
    ("POST", "/v1/uploads", upload_create),
    ("POST", "/v1/uploads/{id}/parts", upload_part),
    ("POST", "/v1/uploads/{id}/complete", upload_complete),
    ("POST", "/v1/uploads/{id}/cancel", upload_cancel),
    ("POST", "/v1/conversations", conversation_create),
    ("GET", "/v1/conversations/{id}", conversation_retrieve),
    ("POST", "/v1/conversations/{id}", conversation_update),
    ("DELETE", "/v1/conversations/{id}", conversation_delete),
    ("GET", "/v1/conversations/{id}/items", conversation_items),
    ("POST", "/v1/conversations/{id}/items", conversation_items_add),
    ("GET", "/v1/conversations/{id}/items/{item_id}", conversation_item),
    ("DELETE", "/v1/conversations/{id}/items/{item_id}", conversation_item_delete),
    # Google's Gemini API, Vertex AI's publishers' models and token endpoint, Bedrock Converse.
    *gemini.ROUTES,
    *vertex.ROUTES,
    *bedrock.ROUTES,
)


def create_mock_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=1 << 30, middlewares=[render_errors])
    app[OPTIONS] = options or MockOptions()
    app[RECORDED] = deque(maxlen=1000)
    app[STATE] = MockState(app[OPTIONS])
    app.on_response_prepare.append(_name_instance)
    app.cleanup_ctx.append(_uploads)
    app.router.add_get("/mock/requests", recorded_requests)
    for method, path, handler in _ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD, as before
        else:
            app.router.add_route(method, path, handler)
    return app


def run_mock(host: str, port: int, options: MockOptions) -> None:
    started = time.strftime("%H:%M:%S")
    print(f"mock upstream on http://{host}:{port}/v1 ({options.name}, {started})", flush=True)
    # A large accept queue, like a real provider's: the fake upstream must not be what a burst
    # of new connections waits on (the benchmark opens 1,000 streams at once).
    web.run_app(
        create_mock_app(options),
        host=host,
        port=port,
        access_log=None,
        print=None,
        backlog=4096,
    )
