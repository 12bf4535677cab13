"""The Uploads API (a large file sent in parts, then completed into a file) and conversations
(`/v1/conversations`, with their items): each id names the instance that made it, unknown ids
get OpenAI's 404."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from llm_proxy.testing.mock.errors import MockError, not_found
from llm_proxy.testing.mock.forms import read_form
from llm_proxy.testing.mock.state import STATE, StoredFile
from llm_proxy.testing.mock.wire import CREATED, json_response, page, read_json, required, seen

# -- Uploads --------------------------------------------------------------------------------------


async def upload_create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await read_json(request)
    upload = {
        "id": state.new_id("upload_"),
        "object": "upload",
        "bytes": int(required(data, "bytes")),
        "created_at": CREATED,
        "filename": required(data, "filename"),
        "purpose": required(data, "purpose"),
        "status": "pending",
        "expires_at": CREATED + 3600,
        "file": None,
    }
    state.uploads.add(upload["id"], {"upload": upload, "parts": {}})
    return json_response(upload)


async def upload_part(request: web.Request) -> web.Response:
    """A part: the form's `data` file, kept on disk until the upload completes."""
    state = request.app[STATE]
    held = state.uploads.get(request.match_info["id"])
    part_id = state.new_id("part_")
    path = state.upload_path(part_id)
    form = await read_form(request, save=path, saved="data")
    form.upload("data")
    held["parts"][part_id] = path
    return json_response(
        {
            "id": part_id,
            "object": "upload.part",
            "created_at": CREATED,
            "upload_id": held["upload"]["id"],
        }
    )


async def upload_complete(request: web.Request) -> web.Response:
    """The parts, in the order given, become a file (named in the answer's `file`)."""
    state = request.app[STATE]
    held = state.uploads.get(request.match_info["id"])
    data = await read_json(request)
    part_ids = required(data, "part_ids")
    paths = [held["parts"][p] for p in part_ids if p in held["parts"]]
    if len(paths) != len(part_ids):
        raise MockError(400, "Unknown part id.", param="part_ids")
    upload = held["upload"]
    file_id = state.new_id("file-")
    path = state.upload_path(file_id)
    content = b"".join([await asyncio.to_thread(p.read_bytes) for p in paths])
    await asyncio.to_thread(path.write_bytes, content)
    obj = {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": CREATED,
        "filename": upload["filename"],
        "purpose": upload["purpose"],
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
    state.add_file(StoredFile(obj, path, content.count(b"\n")))
    upload.update(status="completed", file=obj)
    return json_response(upload)


async def upload_cancel(request: web.Request) -> web.Response:
    held = request.app[STATE].uploads.get(seen(request))
    held["upload"]["status"] = "cancelled"
    return json_response(held["upload"])


# -- Conversations --------------------------------------------------------------------------------


def _items(state: Any, conv_id: str, items: Any) -> list[dict[str, Any]]:
    made = []
    for item in items if isinstance(items, list) else ():
        made.append({"id": state.new_id("msg_"), "conversation": conv_id, **item})
    return made


async def conversation_create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await read_json(request)
    conv_id = state.new_id("conv_")
    conv = {
        "id": conv_id,
        "object": "conversation",
        "created_at": CREATED,
        "metadata": data.get("metadata") or {},
    }
    state.conversations.add(
        conv_id, {"conversation": conv, "items": _items(state, conv_id, data.get("items"))}
    )
    return json_response(conv)


async def conversation_retrieve(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].conversations.get(seen(request))["conversation"])


async def conversation_update(request: web.Request) -> web.Response:
    held = request.app[STATE].conversations.get(request.match_info["id"])
    data = await read_json(request)
    held["conversation"]["metadata"] = data.get("metadata") or {}
    return json_response(held["conversation"])


async def conversation_delete(request: web.Request) -> web.Response:
    conv_id = seen(request)
    request.app[STATE].conversations.delete(conv_id)
    return json_response({"id": conv_id, "object": "conversation.deleted", "deleted": True})


async def conversation_items(request: web.Request) -> web.Response:
    held = request.app[STATE].conversations.get(seen(request))
    return json_response(page(request, held["items"]))


async def conversation_items_add(request: web.Request) -> web.Response:
    state = request.app[STATE]
    conv_id = request.match_info["id"]
    held = state.conversations.get(conv_id)
    data = await read_json(request)
    made = _items(state, conv_id, required(data, "items"))
    held["items"].extend(made)
    return json_response(page(request, made, order="asc"))


def _item(request: web.Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    held = request.app[STATE].conversations.get(seen(request))
    item_id = request.match_info["item_id"]
    for item in held["items"]:
        if item["id"] == item_id:
            return held["items"], item
    raise not_found("item", item_id)


async def conversation_item(request: web.Request) -> web.Response:
    return json_response(_item(request)[1])


async def conversation_item_delete(request: web.Request) -> web.Response:
    items, item = _item(request)
    items.remove(item)
    return json_response(
        request.app[STATE].conversations.get(request.match_info["id"])["conversation"]
    )
