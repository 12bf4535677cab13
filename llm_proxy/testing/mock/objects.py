"""Files (kept on disk by `MockState`, bounded), batches over them, and vector stores and their
files: each id names the instance that made it, unknown ids get OpenAI's 404."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from llm_proxy.testing.mock.errors import not_found
from llm_proxy.testing.mock.forms import read_form
from llm_proxy.testing.mock.state import STATE, MockState, StoredFile, VectorStore
from llm_proxy.testing.mock.wire import CREATED, json_response, page, read_json, required, seen

# -- Files ----------------------------------------------------------------------------------------


async def file_create(request: web.Request) -> web.Response:
    """Store the `file` part on disk (written as it arrives, never held in memory)."""
    state = request.app[STATE]
    file_id = state.new_id("file-")
    path = state.upload_path(file_id)
    try:
        form = await read_form(request, save=path)
        upload = form.upload("file")
        purpose = form.field("purpose")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    seconds = form.fields.get("expires_after[seconds]")
    obj = {
        "id": file_id,
        "object": "file",
        "bytes": upload.size,
        "created_at": CREATED,
        "filename": upload.filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": CREATED + int(seconds) if seconds else None,
        "status_details": None,
    }
    state.add_file(StoredFile(obj, path, upload.lines))
    return json_response(obj)


async def file_list(request: web.Request) -> web.Response:
    seen(request)
    purpose = request.query.get("purpose")
    files = [f.obj for f in request.app[STATE].files.values()]
    return json_response(
        page(request, [f for f in files if purpose in (None, f["purpose"])], limit=10_000)
    )


async def file_retrieve(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].files.get(seen(request)).obj)


async def file_delete(request: web.Request) -> web.Response:
    file_id = seen(request)
    request.app[STATE].files.delete(file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})


async def file_content(request: web.Request) -> web.FileResponse:
    stored = request.app[STATE].files.get(seen(request))
    return web.FileResponse(stored.path, headers={"Content-Type": "application/octet-stream"})


# -- Batches --------------------------------------------------------------------------------------


async def batch_create(request: web.Request) -> web.Response:
    """A batch over a file this instance stored; it stays `validating` until cancelled."""
    state = request.app[STATE]
    data = await read_json(request)
    file_id = required(data, "input_file_id")
    endpoint = required(data, "endpoint")
    window = required(data, "completion_window")
    if file_id not in state.files:
        raise not_found("file", file_id, param="input_file_id")
    batch = {
        "id": state.new_id("batch_"),
        "object": "batch",
        "endpoint": endpoint,
        "model": data.get("model"),
        "errors": None,
        "input_file_id": file_id,
        "completion_window": window,
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": CREATED,
        "in_progress_at": None,
        "expires_at": CREATED + 86_400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": state.files.get(file_id).lines, "completed": 0, "failed": 0},
        "metadata": data.get("metadata"),
    }
    if (data.get("metadata") or {}).get("mock_complete") == "true":
        await _complete(state, batch)
    state.batches.add(batch["id"], batch)
    return json_response(batch)


async def _complete(state: MockState, batch: dict[str, Any]) -> None:
    """`metadata.mock_complete: "true"`: the batch is done at once, with an output file and
    usage (10 input and 5 output tokens per request), as a finished batch is retrieved."""
    lines = batch["request_counts"]["total"]
    file_id = state.new_id("file-")
    path = state.upload_path(file_id)
    content = b"".join(
        b'{"custom_id": "%d", "response": {"status_code": 200}}\n' % i for i in range(lines)
    )
    await asyncio.to_thread(path.write_bytes, content)
    obj = {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": CREATED,
        "filename": "batch_output.jsonl",
        "purpose": "batch_output",
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
    state.add_file(StoredFile(obj, path, lines))
    batch.update(
        status="completed",
        completed_at=CREATED,
        output_file_id=file_id,
        request_counts={"total": lines, "completed": lines, "failed": 0},
        usage={"input_tokens": 10 * lines, "output_tokens": 5 * lines, "total_tokens": 15 * lines},
    )


async def batch_retrieve(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].batches.get(seen(request)))


async def batch_list(request: web.Request) -> web.Response:
    seen(request)
    return json_response(page(request, request.app[STATE].batches.values()))


async def batch_cancel(request: web.Request) -> web.Response:
    """Answers `cancelling` (as OpenAI does); later retrieves see `cancelled`."""
    batch = request.app[STATE].batches.get(seen(request))
    if batch["status"] in ("cancelled", "completed", "failed", "expired"):
        return json_response(batch)
    batch.update(status="cancelled", cancelling_at=CREATED, cancelled_at=CREATED)
    return json_response({**batch, "status": "cancelling", "cancelled_at": None})


# -- Vector stores --------------------------------------------------------------------------------


def _vector_store(store: VectorStore) -> dict[str, Any]:
    """The object, with its file counts and usage as of now."""
    counts = {"in_progress": 0, "completed": len(store.files), "failed": 0, "cancelled": 0}
    usage = sum(f["usage_bytes"] for f in store.files.values())
    return {**store.obj, "file_counts": {**counts, "total": len(store.files)}, "usage_bytes": usage}


def _attach(state: MockState, store: VectorStore, file_id: str, data: dict[str, Any]) -> None:
    if file_id not in state.files:
        raise not_found("file", file_id, param="file_id")
    store.files[file_id] = {
        "id": file_id,
        "object": "vector_store.file",
        "created_at": CREATED,
        "usage_bytes": state.files.get(file_id).obj["bytes"],
        "vector_store_id": store.obj["id"],
        "status": "completed",
        "last_error": None,
        "attributes": data.get("attributes") or {},
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        },
    }


async def vector_store_create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await read_json(request)
    file_ids = data.get("file_ids") or []
    for file_id in file_ids:
        if file_id not in state.files:
            raise not_found("file", file_id, param="file_ids")
    vs_id = state.new_id("vs_")
    store = VectorStore(
        {
            "id": vs_id,
            "object": "vector_store",
            "created_at": CREATED,
            "name": data.get("name") or "",
            "description": data.get("description"),
            "status": "completed",
            "expires_after": data.get("expires_after"),
            "expires_at": None,
            "last_active_at": CREATED,
            "metadata": data.get("metadata") or {},
        },
        {},
    )
    for file_id in file_ids:
        _attach(state, store, file_id, {})
    state.vector_stores.add(vs_id, store)
    return json_response(_vector_store(store))


async def vector_store_list(request: web.Request) -> web.Response:
    seen(request)
    stores = request.app[STATE].vector_stores.values()
    return json_response(page(request, [_vector_store(s) for s in stores]))


async def vector_store_retrieve(request: web.Request) -> web.Response:
    return json_response(_vector_store(request.app[STATE].vector_stores.get(seen(request))))


async def vector_store_update(request: web.Request) -> web.Response:
    store = request.app[STATE].vector_stores.get(request.match_info["id"])
    data = await read_json(request)
    store.obj.update({k: data[k] for k in ("name", "metadata", "expires_after") if k in data})
    return json_response(_vector_store(store))


async def vector_store_delete(request: web.Request) -> web.Response:
    vs_id = seen(request)
    request.app[STATE].vector_stores.delete(vs_id)
    return json_response({"id": vs_id, "object": "vector_store.deleted", "deleted": True})


async def vector_store_file_add(request: web.Request) -> web.Response:
    state = request.app[STATE]
    store = state.vector_stores.get(request.match_info["id"])
    data = await read_json(request)
    file_id = required(data, "file_id")
    _attach(state, store, file_id, data)
    return json_response(store.files[file_id])


async def vector_store_file_list(request: web.Request) -> web.Response:
    store = request.app[STATE].vector_stores.get(seen(request))
    return json_response(page(request, store.files.values()))


def _vector_store_file(request: web.Request) -> tuple[VectorStore, str]:
    store = request.app[STATE].vector_stores.get(seen(request))
    file_id = request.match_info["file_id"]
    if file_id not in store.files:
        raise not_found("vector store file", file_id)
    return store, file_id


async def vector_store_file_retrieve(request: web.Request) -> web.Response:
    store, file_id = _vector_store_file(request)
    return json_response(store.files[file_id])


async def vector_store_file_delete(request: web.Request) -> web.Response:
    store, file_id = _vector_store_file(request)
    del store.files[file_id]
    return json_response({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})
